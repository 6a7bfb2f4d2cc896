"""Tests for the ``charrnn`` command group and its sample / evaluate / info / corpora commands
(charrnn.cli and its command modules); ``train`` is in test_cli_train.py.

Every test runs in its own temporary working directory with its own corpora folder: nothing is
written to the repository and no corpus is downloaded.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np
import pytest
from click.testing import CliRunner

import charrnn
from charrnn import CharRNNGenerator, load
from charrnn.cli import cli
from charrnn.cli.train import TRAIN_DEFAULTS
from charrnn.data.corpora import CORPORA, CORPORA_ENV
from charrnn.engine import network

TINY = ["--hidden-size", "8", "--num-layers", "1", "--batch-size", "4", "--seq-length", "8"]
TINY += ["--seed", "0"]
NUMBER = r"([\d.]+)"


def tiny_text(n_lines: int = 120, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    words = ("the", "cat", "sat", "on", "a", "mat", "and", "a", "dog", "ran", "to", "it")
    return "\n".join(" ".join(rng.choice(words, 6)) for _ in range(n_lines)) + "\n"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CORPORA_ENV, str(tmp_path / "corpora"))
    monkeypatch.delenv("CHARRNN_MODELS_DIR", raising=False)
    monkeypatch.delenv("CHARRNN_DEBUG", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained once through the CLI (no early stopping: last weights are kept)."""
    d = tmp_path_factory.mktemp("trained")
    corpus = d / "tiny.txt"
    corpus.write_text(tiny_text(), encoding="utf-8")
    model = d / "m.npz"
    env = {"CHARRNN_MODELS_DIR": str(d / "models"), CORPORA_ENV: str(d / "corpora")}
    args = ["train", str(corpus), "--model", str(model), "--max-iter", "2"]
    # no final stretch: the held-out tail stays unseen, so evaluate can check it
    args += ["--no-early-stopping", "--refit-fraction", "0"]
    result = CliRunner(env=env).invoke(cli, [*args, *TINY])
    assert result.exit_code == 0, result.output
    return SimpleNamespace(corpus=corpus, model=model, gen=load(model))


def run(*args, code=0):
    """Invoke the CLI; check the exit code and that no Python traceback escaped."""
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


# --------------------------------------------------------------------------------------------
# The group


def test_version_and_commands():
    assert f"version {charrnn.__version__}" in run("--version").output
    out = run("--help").output
    for name in ("train", "sample", "evaluate", "info", "corpora", "forecast"):
        assert re.search(rf"^\s+{name}\s", out, re.M), name


@pytest.mark.slow  # spawns processes: make test-fast leaves it out
def test_python_dash_m_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "charrnn", "--version"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and charrnn.__version__ in proc.stdout


@pytest.mark.parametrize(
    "name", ["train", "sample", "evaluate", "info", "corpora", "gradients", "forecast"]
)
def test_every_option_shows_its_default(name):
    command = cli.commands[name]
    options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
    assert options
    for option in options:
        assert option.show_default not in (None, False), option.name
    # Click shows no default for an on/off flag that is off by default (--resume, --overwrite)
    shown = [p for p in options if not (p.is_flag and not p.secondary_opts and p.default is False)]
    help_text = " ".join(run(name, "--help").output.split())
    assert help_text.count("[default:") == len(shown)


def test_train_defaults_are_the_estimators():
    signature = inspect.signature(CharRNNGenerator).parameters
    options = {p.name: p for p in cli.commands["train"].params}
    covered = set(signature) & set(options)
    # every estimator parameter has an option, except two that make no sense on a command line
    assert set(signature) - covered == {"verbose", "warm_start"}
    for name in covered:
        expected = TRAIN_DEFAULTS.get(name, signature[name].default)
        assert options[name].default == expected, name
    # the deliberate differences: a bare `charrnn train` fits in 15 minutes, its time budget
    # governs, it ends on all the text, chooses dropout by corpus size and decays weights
    assert set(TRAIN_DEFAULTS) == {
        "max_time",
        "max_iter",
        "refit_fraction",
        "dropout",
        "optimizer",
        "weight_decay",
    }
    assert TRAIN_DEFAULTS["max_time"] <= 840 and TRAIN_DEFAULTS["dropout"] is None
    assert (TRAIN_DEFAULTS["optimizer"], TRAIN_DEFAULTS["weight_decay"]) == ("adamw", 0.1)
    help_text = " ".join(run("train", "--help").output.split())
    assert f"[default: {signature['hidden_size'].default}; x>=1]" in help_text


def test_debug_env_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("CHARRNN_DEBUG", "1")
    result = CliRunner().invoke(cli, ["train", "missing.txt"])
    assert isinstance(result.exception, ValueError)


# --------------------------------------------------------------------------------------------
# sample


def test_sample_prints_prime_and_continuation(trained):
    result = run("sample", "-m", trained.model, "--len", "40", "--prime", "the ", "--seed", "3")
    assert result.output.startswith("the ")
    # 40 symbols; an end-of-document symbol (which an untrained model may draw) prints as ""
    assert len("the ") + 30 < len(result.output) <= len("the ") + 40 + 1
    again = run("sample", "-m", trained.model, "--length", "40", "--prime", "the ", "--seed", "3")
    assert again.output == result.output
    other = run("sample", "-m", trained.model, "--len", "40", "--prime", "the ", "--seed", "4")
    assert other.output != result.output


def test_sample_several_are_separated(trained):
    result = run("sample", "-m", trained.model, "--n", "3", "--len", "10", "--top-k", "3")
    assert len(re.findall(r"^----- sample \d of 3 -----$", result.output, re.M)) == 3
    run("sample", "-m", trained.model, "--len", "0", "--top-p", "0.5", "-t", "1.5")


def test_sample_unseen_prime_character(trained):
    assert "never saw" in error_line(run("sample", "-m", trained.model, "--prime", "Z!", code=1))


@pytest.mark.parametrize(
    "option",
    [
        ["--temperature", "0"],
        ["--temperature", "nan"],
        ["--top-p", "1.5"],
        ["--top-k", "0"],
        ["--len", "-1"],
        ["--n", "0"],
        ["--seed", "-3"],
    ],
)
def test_sample_bad_values(trained, option):
    assert option[0] in run("sample", "-m", trained.model, *option, code=2).output


def test_missing_model_and_no_last_model(tmp_path):
    assert "does not exist" in run("sample", "--model", "nope.npz", code=2).output
    result = run("sample", code=2)
    assert "no --model given" in result.output and "charrnn train" in result.output


def test_last_trained_model_is_the_default(tmp_path):
    (tmp_path / "t.txt").write_text(tiny_text(), encoding="utf-8")
    run("train", "t.txt", "--max-iter", "1", *TINY)
    assert (tmp_path / "models" / "LAST").read_text().strip() == str(Path("models", "t.npz"))
    result = run("sample", "--len", "25", "--seed", "0")
    assert 15 < len(result.output) <= 26
    run("info")
    (tmp_path / "models" / "t.npz").unlink()
    assert "no longer exists" in run("sample", code=2).output


class _Payload:
    """Unpickling this would create a file: the marker that code in a model file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _bad_model(kind: str, path: Path) -> None:
    header = np.frombuffer(b'{"format": "charrnn", "format_version": 1}', dtype=np.uint8)
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(500))
    elif kind == "truncated":
        np.savez(path, __header__=header, w=np.zeros(1000))
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "foreign":
        np.savez(path, weights=np.zeros(3))
    elif kind == "future":
        future = b'{"format": "charrnn", "format_version": 99}'
        np.savez(path, __header__=np.frombuffer(future, dtype=np.uint8))
    elif kind == "pickle":
        payload = np.array([_Payload(path.parent / "pwned")], dtype=object)
        np.savez(path, __header__=header, w=payload)


@pytest.mark.parametrize("kind", ["random", "truncated", "foreign", "future", "pickle"])
@pytest.mark.parametrize("command", ["sample", "info"])
def test_bad_model_files_are_one_line_errors(tmp_path, kind, command):
    path = tmp_path / "bad.npz"
    _bad_model(kind, path)
    before = path.read_bytes()
    line = error_line(run(command, "--model", path, code=1))
    assert "bad.npz" in line
    assert not (tmp_path / "pwned").exists()
    assert path.read_bytes() == before


# --------------------------------------------------------------------------------------------
# evaluate


def _losses(output: str, label: str) -> tuple[float, float, float]:
    line = next(x for x in output.splitlines() if x.startswith(label))
    m = re.search(rf"{NUMBER} nats/char, {NUMBER} bits/char, perplexity {NUMBER}", line)
    return float(m[1]), float(m[2]), float(m[3])


def test_evaluate_training_text_matches_training_validation(trained):
    result = run("evaluate", "-m", trained.model, trained.corpus)
    nats, bits, ppl = _losses(result.output, "whole text")
    assert bits == pytest.approx(nats / math.log(2), abs=1e-3)
    assert ppl == pytest.approx(math.exp(nats), rel=1e-3)
    val, _, _ = _losses(result.output, "validation split (last 10%, held out in training)")
    assert val == pytest.approx(trained.gen.history_[-1]["val_loss"], abs=1e-4)
    assert "unknown characters: none" in result.output


def test_evaluate_says_the_final_stretch_trained_on_the_held_out_text(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(tiny_text(), encoding="utf-8")
    run("train", corpus, "--model", tmp_path / "s.npz", "--max-iter", "1", *TINY)
    result = run("evaluate", "-m", tmp_path / "s.npz", corpus)
    _losses(result.output, "validation split (last 10%, held out, then trained on)")


def test_evaluate_counts_unknown_characters(trained, tmp_path):
    (tmp_path / "x.txt").write_text("the cat QQ sat on Z mat\n" * 5, encoding="utf-8")
    result = run("evaluate", "-m", trained.model, "x.txt")
    assert "unknown characters: 15 occurrences of 2 characters" in result.output
    assert "validation split" not in result.output  # not a named corpus nor the training text
    nats, _, _ = _losses(result.output, "whole text")
    assert math.isfinite(nats)


def test_evaluate_named_corpus_reports_its_split(trained, tmp_path):
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "python.txt").write_text(tiny_text(seed=1), encoding="utf-8")
    result = run("evaluate", "-m", trained.model, "python")
    _losses(result.output, "validation split (last 10% of the corpus)")


def test_evaluate_bad_text(trained, tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"the cat\xff")
    line = error_line(run("evaluate", "-m", trained.model, "bad.txt", code=1))
    assert "byte offset 7" in line
    assert "Error" in run("evaluate", "-m", trained.model, "missing.txt", code=1).output


# --------------------------------------------------------------------------------------------
# info


def test_info_describes_the_model(trained):
    out = run("info", "--model", trained.model).output
    gen = trained.gen
    assert f"parameter count: {network.n_parameters(gen.params_):,}" in out
    assert f"vocabulary: {gen.vocab_.size} symbols" in out
    assert re.search(r"^\s*hidden_size\s+= 8$", out, re.M)
    rows = re.findall(r"^\s+\d\+?\s+[\d.]+\s+[\d.-]+\s+[\d,]+", out, re.M)
    assert len(rows) == len(gen.history_) == 2
    assert f"best validation loss: {-gen.best_validation_score_:.4f} nats/char" in out


def test_info_plot_writes_an_image(trained, tmp_path):
    result = run("info", "-m", trained.model, "--plot", "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot written to curves.png" in result.output


def test_info_plot_errors(trained, tmp_path, monkeypatch):
    result = run("info", "-m", trained.model, "--plot", "curves.xyz", code=1)
    assert "image format" in error_line(result) and "model:" not in result.output
    assert "does not exist" in error_line(
        run("info", "-m", trained.model, "--plot", "no/dir/c.png", code=1)
    )
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert "needs matplotlib" in error_line(
        run("info", "-m", trained.model, "--plot", "c.png", code=1)
    )
    assert not (tmp_path / "c.png").exists()


# --------------------------------------------------------------------------------------------
# corpora


@pytest.fixture
def fake_builders(monkeypatch):
    """Replace both corpus builders with ones that write a small text, recording the calls."""
    built = []

    def fake(name):
        def build(path, progress):
            built.append(name)
            Path(path).write_text(tiny_text(seed=2), encoding="utf-8")
            if progress:
                progress(f"fake {name} written")

        return build

    for name in ("python", "shakespeare"):
        monkeypatch.setitem(CORPORA, name, dataclasses.replace(CORPORA[name], builder=fake(name)))
    return built


def test_corpora_lists_and_builds(tmp_path, fake_builders):
    out = run("corpora").output
    for name in ("python", "shakespeare"):
        assert re.search(rf"^{name}\s+not built\s+{re.escape(str(tmp_path))}", out, re.M)
    out = run("corpora", "--build", "python").output
    assert fake_builders == ["python"] and "fake python written" in out
    assert re.search(r"^python\s+[\d.]+ MB", out, re.M)
    assert re.search(r"^shakespeare\s+not built", out, re.M)
    run("corpora", "--build")
    assert sorted(fake_builders[1:]) == ["python", "shakespeare"]
    assert "--build" in run("corpora", "--build", "klingon", code=2).output


def test_train_builds_a_missing_named_corpus(tmp_path, fake_builders):
    result = run("train", "shakespeare", "--max-iter", "1", *TINY)
    assert "Building the 'shakespeare' corpus" in result.output
    assert fake_builders == ["shakespeare"]
    assert (tmp_path / "models" / "shakespeare.npz").is_file()
