"""One run per model file: charrnn.locks.model_lock and the commands that hold it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.locks import ModelInUseError, lock_path, model_lock

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--hidden-size", "8", "--batch-size", "4", "--seq-length", "8", "--seed", "0"]


def tiny_text(n_lines: int = 120) -> str:
    rng = np.random.default_rng(0)
    words = ("the", "cat", "sat", "on", "a", "mat", "and", "a", "dog", "ran", "to", "it")
    return "\n".join(" ".join(rng.choice(words, 6)) for _ in range(n_lines)) + "\n"


def test_a_second_holder_is_refused_with_the_first_ones_process_id(tmp_path):
    model = tmp_path / "m.npz"
    with model_lock(model) as where:
        assert where == lock_path(model) and where.read_text().strip() == str(os.getpid())
        # flock locks belong to open files, so a second open in this process conflicts too
        refused = pytest.raises(ModelInUseError, match=f"m.npz is in use: process {os.getpid()}")
        with refused, model_lock(model):
            pass
    assert not lock_path(model).exists()  # removed at the end of the run
    with model_lock(model):  # and free again
        pass


def test_a_lock_file_left_by_a_dead_run_is_taken_over(tmp_path):
    model = tmp_path / "m.npz"
    lock_path(model).write_text("999999999\n")  # what a SIGKILLed run leaves: no flock held
    with model_lock(model) as where:
        assert where.read_text().strip() == str(os.getpid())


def test_charrnn_train_and_forecast_refuse_a_model_in_use(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text(tiny_text(), encoding="utf-8")
    with model_lock(tmp_path / "m.npz"):
        for args in (
            ["train", "t.txt", "--model", "m.npz", *TINY],
            ["train", "t.txt", "--model", "m.npz", "--resume"],
            ["forecast", "t.csv", "--save", "m.npz"],
        ):
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 1, result.output
            assert f"in use: process {os.getpid()}" in result.output, result.output
            assert "Traceback" not in result.output
    assert not (tmp_path / "m.npz").exists()


def _charrnn(*args, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CHARRNN_PARALLEL="0")
    return subprocess.Popen(
        [sys.executable, "-m", "charrnn", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _wait_for_lock(path: Path, pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip() == str(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never named process {pid}")


def test_two_real_runs_on_one_model_and_a_killed_holder(tmp_path):
    """A training process holds the lock; a second `charrnn train` on the same model is
    refused naming it; once it is SIGKILLed its lock file stays, and the next run takes it."""
    (tmp_path / "t.txt").write_text(tiny_text(), encoding="utf-8")
    model = tmp_path / "m.npz"
    common = ["train", "t.txt", "--model", str(model), *TINY]
    first = _charrnn(*common, "--max-iter", "100000", "--max-time", "0", cwd=tmp_path)
    try:
        _wait_for_lock(lock_path(model), first.pid)
        second = _charrnn(*common, "--overwrite", "--max-iter", "1", cwd=tmp_path)
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 1, out
        assert f"in use: process {first.pid}" in out and "Traceback" not in out
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    assert lock_path(model).read_text().strip() == str(first.pid)  # stale, no flock held
    third = _charrnn(*common, "--overwrite", "--max-iter", "1", cwd=tmp_path)
    out, _ = third.communicate(timeout=120)
    assert third.returncode == 0, out
    assert model.exists() and not lock_path(model).exists()
