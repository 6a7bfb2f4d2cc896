"""Tests for ``charrnn complete``, ``charrnn fill``, ``charrnn visualize`` and
``charrnn sample --beam-width`` (charrnn.cli.complete, .fill, .visualize, .sample): the output
is the library's, and bad input is a one-line error naming the argument."""

from __future__ import annotations

import json
import re

import click
import pytest
from click.testing import CliRunner

from charrnn import CharRNNGenerator
from charrnn.cli import cli

TEXT = "the cat meows.\nthe dog barks.\n" * 30


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARRNN_MODELS_DIR", raising=False)
    monkeypatch.delenv("CHARRNN_DEBUG", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    gen = CharRNNGenerator(
        hidden_size=16,
        num_layers=1,
        seq_length=16,
        batch_size=4,
        learning_rate=2e-2,
        max_iter=8,
        validation_fraction=0,
        random_state=0,
    ).fit(TEXT)
    path = tmp_path_factory.mktemp("model") / "m.npz"
    gen.save(path)
    return gen, path


def run(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("name", ["complete", "fill", "visualize", "sample"])
def test_commands_are_registered_and_show_their_defaults(name):
    command = cli.commands[name]
    for option in command.params:
        if isinstance(option, click.Option) and option.name != "help" and not option.required:
            assert option.show_default not in (None, False), option.name


def test_complete_prints_the_librarys_words(trained):
    gen, path = trained
    out = run("complete", "the dog barks.\nthe cat", "-m", path, "--top-k", "3").output
    rows = re.findall(r"^\s*(\d)\. (\S+)\s+([\d.]+)$", out, re.M)
    expected = gen.complete("the dog barks.\nthe cat", top_k=3)
    assert [(w, float(p)) for _, w, p in rows] == [(w, round(p, 4)) for w, p in expected]


def test_fill_prints_every_combination_best_first(trained):
    gen, path = trained
    out = run(
        "fill", "the ___ ___.", "-m", path, "--candidates", "cat,dog", "--candidates", "barks,meows"
    ).output
    texts = re.findall(r"^\s*\d\. (.+?)\s+(-[\d.]+) nats\s+([\d.]+)%$", out, re.M)
    expected = gen.fill("the ___ ___.", [["cat", "dog"], ["barks", "meows"]])
    assert [t for t, _, _ in texts] == [t for t, _ in expected]
    assert [float(s) for _, s, _ in texts] == [round(s, 3) for _, s in expected]
    assert sum(float(p) for _, _, p in texts) == pytest.approx(100, abs=0.3)
    top = run("fill", "the ___.", "-m", path, "-c", "cat,dog,cow", "--top", "1").output
    assert len(top.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["complete", ""], 1, "prefix must not be empty"),
        (["complete", "the Zoo"], 1, "prefix contains 1 character"),
        (["fill", "the cat", "-c", "a"], 1, "blank"),
        (["fill", "the ___ ___", "-c", "cat"], 1, "2 blank"),
        (["fill", "the ___", "-c", "cat", "-c", "dog"], 1, "1 blank"),
        (["fill", "the ___", "-c", "cat,Zebra"], 1, r"candidates\[0\]\[1\]"),
        (["sample", "--beam-width", "2", "--n", "3"], 1, "beam_width"),
        (["sample", "--beam-width", "2", "-t", "0.5"], 2, "--temperature"),
    ],
)
def test_bad_input_is_one_line(trained, args, code, message):
    _, path = trained
    result = run(*args, "-m", path, code=code)
    assert re.search(message, error_line(result)), result.output


def test_sample_with_a_beam_prints_the_most_likely_text(trained):
    gen, path = trained
    out = run("sample", "-m", path, "--prime", "the d", "--len", "30", "--beam-width", "3").output
    expected = gen.sample(1, 30, prime="the d", beam_width=3, stop_at_end=False)[0]
    assert out == "the d" + expected + "\n"


def test_visualize_writes_the_page_and_says_when_it_cut(trained, tmp_path):
    _, path = trained
    (tmp_path / "in.txt").write_text(TEXT, encoding="utf-8")
    out = run(
        "visualize",
        "-m",
        path,
        "--text",
        tmp_path / "in.txt",
        "--out",
        tmp_path / "p.html",
        "--max-chars",
        "50",
    ).output
    assert f"has {len(TEXT):,} characters; the page shows the first 50" in out
    html = (tmp_path / "p.html").read_text(encoding="utf-8")
    data = json.loads(
        re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S).group(1)
    )
    assert data["text"] == TEXT[:50] and "first 50" in data["cut_message"]
    short = run("visualize", "-m", path, "--text", tmp_path / "in.txt").output
    assert "note:" not in short and (tmp_path / "activations.html").is_file()
    (tmp_path / "bad.txt").write_text("Zebra", encoding="utf-8")
    bad = run("visualize", "-m", path, "--text", tmp_path / "bad.txt", code=1)
    assert "text contains 1 character" in error_line(bad)
