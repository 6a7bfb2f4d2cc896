"""Tests for ``charrnn train`` (charrnn.cli.train), through click.testing.CliRunner.

Every test runs in its own temporary working directory with its own corpora folder, so
nothing is written to the repository and no corpus is ever downloaded.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import signal

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import load
from charrnn.cli import cli
from charrnn.cli import train as cli_train
from charrnn.cli.train import TRAIN_DEFAULTS
from charrnn.data.corpora import CORPORA_ENV
from charrnn.engine import network

TINY = ["--hidden-size", "8", "--num-layers", "1", "--batch-size", "4", "--seq-length", "8"]
TINY += ["--seed", "0"]


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


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(tiny_text(), encoding="utf-8")
    return path


def run(*args, code=0):
    """Invoke the CLI; check the exit code and that no Python traceback escaped."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def error_line(result) -> str:
    """The single 'Error: ...' line of a failed command."""
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


# --------------------------------------------------------------------------------------------
# A normal run


def test_train_saves_model_reports_loss_and_sample(corpus, tmp_path):
    result = run("train", corpus, "--max-iter", "2", *TINY)
    model = tmp_path / "models" / "tiny.npz"
    gen = load(model)
    assert gen.n_iter_ == 2 and gen.stop_reason_ == "max_iter"
    assert gen.training_corpus_["n_chars"] == len(corpus.read_text(encoding="utf-8"))
    # one line and one sample per pass, then the final report
    assert len(re.findall(r"^pass \d/2: train loss", result.output, re.M)) == 2
    m = re.search(r"validation loss: ([\d.]+) nats/char \(([\d.]+) bits/char\)", result.output)
    nats, bits = float(m[1]), float(m[2])
    assert bits == pytest.approx(nats / math.log(2), abs=1e-3)
    # early stopping keeps the best weights: the reported loss is theirs
    assert nats == pytest.approx(-gen.best_validation_score_, abs=1e-3)
    assert "sample (200 characters" in result.output
    assert (tmp_path / "models" / "LAST").read_text().strip() == os.path.join("models", "tiny.npz")


def test_named_corpus_and_model_option(tmp_path):
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "python.txt").write_text(tiny_text(), encoding="utf-8")
    run("train", "python", "--max-iter", "1", *TINY)
    assert (tmp_path / "models" / "python.npz").is_file()
    run("train", "python", "--max-iter", "1", "--model", "out/sub/m.npz", *TINY)
    assert load(tmp_path / "out" / "sub" / "m.npz").n_iter_ == 1
    assert (tmp_path / "models" / "LAST").read_text().strip() == os.path.join("out", "sub", "m.npz")


def test_options_reach_the_estimator(corpus, tmp_path):
    args = ["--cell", "gru", "--embedding-dim", "5", "--dropout", "0.1", "--optimizer", "sgd"]
    args += ["--weight-decay", "0.25"]
    args += ["--clip-norm", "0", "--no-early-stopping", "--lr-schedule", "constant"]
    args += ["--dtype", "float64", "--learning-rate", "0.05", "--validation-fraction", "0.2"]
    run("train", corpus, "--max-iter", "1", *TINY, *args)
    gen = load(tmp_path / "models" / "tiny.npz")
    p = gen.get_params()
    assert (p["cell"], p["embedding_dim"], p["dropout"], p["optimizer"]) == ("gru", 5, 0.1, "sgd")
    assert p["weight_decay"] == 0.25 and gen._optim_state["sgd.weight_decay"] == 0.25
    assert p["clip_norm"] is None and p["early_stopping"] is False
    assert (p["lr_schedule"], p["dtype"], p["learning_rate"]) == ("constant", "float64", 0.05)
    assert p["validation_fraction"] == 0.2 and p["max_time"] == TRAIN_DEFAULTS["max_time"]
    assert gen.params_["Why"].dtype == np.float64


def test_progress_lines_without_a_terminal(corpus, monkeypatch):
    monkeypatch.setattr(cli_train, "LOG_EVERY_SECONDS", 0.0)
    result = run("train", corpus, "--max-iter", "1", *TINY)
    assert re.search(
        r"^step [\d,]+/[\d,]+: loss [\d.]+, chars/s [\d,]+, left ", result.output, re.M
    )


# --------------------------------------------------------------------------------------------
# Bad input: one line, non-zero exit, nothing written


def test_missing_corpus(tmp_path):
    result = run("train", "nope.txt", code=1)
    assert "neither a known corpus name" in error_line(result)
    assert not (tmp_path / "models").exists()


def test_directory_corpus(tmp_path):
    (tmp_path / "adir").mkdir()
    assert "is a directory" in error_line(run("train", "adir", code=1))


def test_not_utf8_names_offset_and_remedies(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(tiny_text().encode() + b"caf\xe9\n")
    line = error_line(run("train", path, *TINY, code=1))
    offset = len(tiny_text().encode()) + 3
    assert f"byte offset {offset}" in line and "--encoding" in line and "--errors replace" in line
    # both remedies work
    run("train", path, "--encoding", "latin-1", "--max-iter", "1", *TINY)
    run("train", path, "--errors", "replace", "--max-iter", "1", "--overwrite", *TINY)
    assert "\ufffd" in load(tmp_path / "models" / "latin.npz").vocab_.chars


def test_unknown_encoding(corpus):
    assert "encoding='klingon'" in error_line(run("train", corpus, "--encoding", "klingon", code=1))


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert "is empty" in error_line(run("train", "empty.txt", code=1))


def test_too_short_corpus_names_the_options(tmp_path):
    (tmp_path / "short.txt").write_text("hello world\n")
    result = run("train", "short.txt", code=2)
    assert "too short" in result.output and "--batch-size" in result.output
    assert "--seq-length" in result.output
    assert not (tmp_path / "models" / "short.npz").exists()


def test_unwritable_model_path_fails_before_training(corpus, tmp_path):
    (tmp_path / "afile").write_text("x")
    result = run("train", corpus, "--model", "afile/m.npz", *TINY, code=1)
    assert "afile" in error_line(result) and "pass 1" not in result.output


def test_model_path_is_a_directory(corpus, tmp_path):
    (tmp_path / "adir").mkdir()
    assert "is a directory" in run("train", corpus, "--model", "adir", code=2).output


def test_not_enough_disk_space(corpus, tmp_path, monkeypatch):
    class Usage:
        free = 1000

    monkeypatch.setattr(cli_train.shutil, "disk_usage", lambda p: Usage)
    line = error_line(run("train", corpus, *TINY, code=1))
    assert "not enough free disk space" in line
    assert not (tmp_path / "models" / "tiny.npz").exists()


@pytest.mark.parametrize(
    "option",
    [
        ["--hidden-size", "0"],
        ["--num-layers", "-1"],
        ["--dropout", "1"],
        ["--dropout", "nan"],
        ["--learning-rate", "0"],
        ["--learning-rate", "inf"],
        ["--cell", "transformer"],
        ["--optimizer", "lamb"],
        ["--weight-decay", "-0.1"],
        ["--validation-fraction", "1"],
        ["--max-time", "-5"],
        ["--seq-length", "x"],
        ["--errors", "ignore"],
        ["--seed", "-1"],
    ],
)
def test_bad_option_values(corpus, option):
    result = run("train", corpus, *option, code=2)
    assert option[0] in result.output


def test_existing_model_is_not_overwritten_by_accident(corpus, tmp_path):
    run("train", corpus, "--max-iter", "1", *TINY)
    model = tmp_path / "models" / "tiny.npz"
    before = model.read_bytes()
    result = run("train", corpus, "--max-iter", "1", *TINY, code=2)
    assert "--resume" in result.output and "--overwrite" in result.output
    assert "contradict" in run("train", corpus, "--resume", "--overwrite", code=2).output
    assert model.read_bytes() == before


def test_corrupt_model_file_untouched_after_failed_train(corpus, tmp_path):
    model = tmp_path / "m.npz"
    junk = bytes(range(256)) * 4
    model.write_bytes(junk)
    assert "m.npz" in error_line(run("train", corpus, "--model", model, "--resume", code=1))
    (tmp_path / "short.txt").write_text("too short\n")
    run("train", "short.txt", "--model", model, "--overwrite", code=2)
    assert model.read_bytes() == junk


# --------------------------------------------------------------------------------------------
# Interruptions, budgets and --resume


def _interrupt_at(monkeypatch, call: int, signum=signal.SIGINT):
    """Deliver ``signum`` to this process during the ``call``-th training step."""
    real = network.loss_and_grads
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(network, "loss_and_grads", wrapper)


def test_interrupt_saves_and_resume_matches_an_uninterrupted_run(corpus, tmp_path, monkeypatch):
    args = ["--max-iter", "3", *TINY]
    run("train", corpus, "--model", "whole.npz", *args)
    with monkeypatch.context() as m:
        _interrupt_at(m, 100)  # in the second pass
        result = run("train", corpus, "--model", "cut.npz", *args, code=128 + signal.SIGINT)
    assert "interrupted (SIGINT)" in result.output
    stopped = load(tmp_path / "cut.npz")
    assert stopped.n_iter_ == 1 and stopped._training_state is not None
    command = result.output.split("To resume:")[1].strip().splitlines()[0]
    argv = shlex.split(command)
    assert argv[:2] == ["charrnn", "train"] and "--resume" in argv
    run(*argv[1:])
    whole, resumed = load(tmp_path / "whole.npz"), load(tmp_path / "cut.npz")
    assert resumed.n_iter_ == 3 and resumed.n_chars_seen_ == whole.n_chars_seen_
    for name, value in whole.params_.items():
        np.testing.assert_allclose(resumed.params_[name], value, rtol=1e-5, atol=1e-6)


def test_sigterm_stops_and_saves(corpus, tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, 5, signal.SIGTERM)
    result = run("train", corpus, "--max-iter", "2", *TINY, code=128 + signal.SIGTERM)
    assert "SIGTERM" in result.output and "--resume" in result.output
    assert load(tmp_path / "models" / "tiny.npz").stop_reason_ == "interrupted (SIGTERM)"


def test_time_budget_then_resume_with_a_larger_budget(corpus, tmp_path):
    result = run("train", corpus, "--max-time", "0.01", "--max-iter", "500", *TINY)
    assert "used the time budget" in result.output and "To train longer" in result.output
    model = tmp_path / "models" / "tiny.npz"
    first = load(model)
    assert first.stop_reason_ == "max_time" and first.n_iter_ < 500
    assert "time budget" in error_line(run("train", corpus, "--resume", code=2))
    target = first.n_iter_ + 1
    run("train", corpus, "--resume", "--max-time", "0", "--max-iter", target)
    second = load(model)
    assert second.n_iter_ == target and second.stop_reason_ == "max_iter"
    assert second.max_time is None and second.n_chars_seen_ > first.n_chars_seen_
    assert len(second.history_) > len(first.history_)
    # finished: a further resume needs a larger --max-iter
    assert "already completed" in error_line(run("train", corpus, "--resume", code=2))


def test_resume_refuses_a_budget_used_up_by_the_validated_part(corpus, tmp_path):
    # With a final stretch the validated part stops at (1 - refit_fraction) of --max-time, so
    # the time it records can be below --max-time; resuming with the same budget must still
    # be refused rather than train again.
    run("train", corpus, "--max-time", "0.01", "--max-iter", "500", *TINY)
    model = tmp_path / "models" / "tiny.npz"
    gen = load(model)
    assert gen.stop_reason_ == "max_time"
    gen._training_state[0]["elapsed"] = 0.5 * gen.max_time  # what a slow first step leaves
    gen.save(model)
    assert load(model).training_progress_["elapsed"] < gen.max_time
    assert "time budget" in error_line(run("train", corpus, "--resume", code=2))
    before = load(model).n_chars_seen_
    run("train", corpus, "--resume", "--max-time", "0.02")
    assert load(model).n_chars_seen_ > before


def test_resume_refuses_other_text_and_fixed_options(corpus, tmp_path):
    run("train", corpus, "--max-iter", "1", *TINY)
    shuffled = tmp_path / "other" / "tiny.txt"
    shuffled.parent.mkdir()
    shuffled.write_text(corpus.read_text()[::-1])
    common = ["--model", "models/tiny.npz", "--resume", "--max-iter", "2"]
    assert "differs" in error_line(run("train", shuffled, *common, code=2))
    shorter = tmp_path / "shorter.txt"
    shorter.write_text(corpus.read_text()[:-10])
    assert "needs the same text" in error_line(run("train", shorter, *common, code=2))
    line = error_line(run("train", corpus, "--resume", "--hidden-size", "9", code=2))
    assert "--hidden-size cannot change" in line
    # repeating the original options is fine
    run("train", corpus, "--resume", "--max-iter", "2", *TINY)
    assert load(tmp_path / "models" / "tiny.npz").n_iter_ == 2


def test_resume_needs_a_model_with_training_state(corpus, tmp_path):
    assert "nothing to resume" in error_line(run("train", corpus, "--resume", code=2))
    run("train", corpus, "--max-iter", "1", *TINY)
    gen = load(tmp_path / "models" / "tiny.npz")
    gen._training_state = None
    gen.save(tmp_path / "models" / "tiny.npz")
    assert "no training state" in error_line(run("train", corpus, "--resume", code=2))


def test_divergence_exits_1_and_keeps_finite_weights(corpus, tmp_path, monkeypatch):
    real = network.loss_and_grads
    calls = {"n": 0}

    def exploding(*args, **kwargs):
        calls["n"] += 1
        loss, grads, state = real(*args, **kwargs)
        return (math.nan if calls["n"] >= 90 else loss), grads, state

    monkeypatch.setattr(network, "loss_and_grads", exploding)
    result = run("train", corpus, "--max-iter", "3", *TINY, code=1)
    line = error_line(result)
    assert "diverged" in line and "--learning-rate" in line and "saved" in line
    gen = load(tmp_path / "models" / "tiny.npz")
    assert gen.diverged_ and gen.stop_reason_ == "diverged"
    assert all(np.isfinite(v).all() for v in gen.params_.values())


# --------------------------------------------------------------------------------------------
# Big files: streamed through a TextCorpus and trained on from a memory-mapped id cache


@pytest.fixture
def streamed(monkeypatch):
    """Treat every corpus file as big."""
    monkeypatch.setattr(cli_train, "STREAM_OVER_BYTES", 0)


def test_big_file_trains_like_the_same_text_in_memory(corpus, tmp_path, monkeypatch):
    in_memory = run("train", corpus, "--model", "mem.npz", "--max-iter", "2", *TINY)
    assert "memory-mapped" not in in_memory.output
    monkeypatch.setattr(cli_train, "STREAM_OVER_BYTES", 0)
    streamed = run("train", corpus, "--model", "big.npz", "--max-iter", "2", *TINY)
    assert "memory-mapped id cache" in streamed.output
    assert len(list(tmp_path.glob("tiny.txt.*.uint8.ids"))) == 1
    mem, big = load(tmp_path / "mem.npz"), load(tmp_path / "big.npz")
    assert big.training_corpus_ == mem.training_corpus_
    # close, not bitwise: the default --max-time makes the schedule read the wall clock
    for name, value in mem.params_.items():
        np.testing.assert_allclose(big.params_[name], value, rtol=1e-5, atol=1e-6)
    loss = r"validation loss: ([\d.]+)"
    assert float(re.search(loss, streamed.output)[1]) == pytest.approx(
        float(re.search(loss, in_memory.output)[1]), abs=2e-4
    )


def test_big_file_interrupt_and_resume(corpus, tmp_path, monkeypatch, streamed):
    args = ["--max-iter", "2", *TINY]
    run("train", corpus, "--model", "whole.npz", *args)
    with monkeypatch.context() as m:
        _interrupt_at(m, 40)
        run("train", corpus, "--model", "cut.npz", *args, code=128 + signal.SIGINT)
    assert load(tmp_path / "cut.npz").stop_reason_ == "interrupted (SIGINT)"
    run("train", corpus, "--model", "cut.npz", "--resume")
    whole, resumed = load(tmp_path / "whole.npz"), load(tmp_path / "cut.npz")
    for name, value in whole.params_.items():
        np.testing.assert_allclose(resumed.params_[name], value, rtol=1e-5, atol=1e-6)
    # the fingerprint is taken by streaming: another text of the same length is refused
    corpus.write_text(corpus.read_text()[::-1])
    line = error_line(
        run("train", corpus, "--model", "cut.npz", "--resume", "--max-iter", 3, code=2)
    )
    assert "differs" in line


def test_big_file_not_utf8_names_the_offset(tmp_path, streamed):
    path = tmp_path / "latin.txt"
    path.write_bytes(tiny_text().encode() + b"caf\xe9\n")
    line = error_line(run("train", path, *TINY, code=1))
    assert f"byte offset {len(tiny_text().encode()) + 3}" in line and "--errors replace" in line
    run("train", path, "--errors", "replace", "--max-iter", "1", *TINY)
    assert "\ufffd" in load(tmp_path / "models" / "latin.npz").vocab_.chars


def test_ctrl_c_during_the_final_evaluation_is_a_clean_message(corpus, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_train, "final_validation", interrupted)
    result = run("train", corpus, "--model", "m.npz", "--max-iter", "1", *TINY, code=130)
    assert "Interrupted during the final evaluation; m.npz is saved" in result.output
    assert load("m.npz").n_iter_ == 1


# --------------------------------------------------------------------------------------------
# What was held out, what the final model saw, and where the samples come from


def test_summary_says_what_was_held_out_and_what_the_final_model_saw(tmp_path):
    # long enough for a held-out tail of several streams (so a standard error)
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(tiny_text(n_lines=800), encoding="utf-8")
    n = len(corpus.read_text(encoding="utf-8"))
    result = run("train", corpus, "--max-iter", "2", *TINY)
    assert TRAIN_DEFAULTS["refit_fraction"] > 0
    assert re.search(
        r"Held out for validation: the last 10% of the text \([\d,]+ of ", result.output
    )
    assert f"The final model then trained on all {n:,} characters" in result.output
    gen = load(tmp_path / "models" / "tiny.npz")
    assert gen.final_stretch_["steps"] > 0
    assert gen.dropout is None and "chosen by corpus size" in result.output
    # a bare run trains with AdamW's decoupled weight decay, and the saved optimiser state says so
    assert (gen.optimizer, gen.weight_decay) == ("adamw", 0.1)
    assert gen._optim_state["adamw.weight_decay"] == 0.1
    assert re.search(
        r"validation loss: [\d.]+ nats/char \([\d.]+ bits/char\), standard error", result.output
    )
    kept = run("train", corpus, "--max-iter", "2", "--refit-fraction", "0", "-m", "k.npz", *TINY)
    assert "never trained on the held-out part" in kept.output
    assert load(tmp_path / "k.npz").final_stretch_ is None


def test_samples_come_from_the_weights_that_are_saved(corpus, tmp_path, monkeypatch):
    from charrnn.estimators.generator import CharRNNGenerator

    seen = []
    real_sample = CharRNNGenerator.sample

    def sample(self, *args, **kwargs):
        seen.append({k: v.copy() for k, v in self.params_.items()})
        return real_sample(self, *args, **kwargs)

    monkeypatch.setattr(CharRNNGenerator, "sample", sample)
    run("train", corpus, "--max-iter", "2", *TINY)
    saved = load(tmp_path / "models" / "tiny.npz").params_
    assert len(seen) == 3  # one per pass, then the final one
    for name, value in saved.items():
        np.testing.assert_array_equal(seen[-1][name], value)
