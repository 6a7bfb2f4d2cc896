"""The Makefile's ``train`` and ``sample`` targets, run for real on a tiny corpus and budget.

They use the repository's existing virtual environment: ``-o .venv/.installed`` tells make to
treat the install stamp as up to date, so the venv is never re-created or reinstalled here
(``make install`` / ``.ci/run`` do that). Output goes to temporary folders only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from charrnn import load

ROOT = Path(__file__).resolve().parent.parent
STAMP = ".venv/.installed"

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None
    or not (ROOT / STAMP).is_file()
    or not (ROOT / ".venv" / "bin" / "charrnn").is_file(),
    reason="needs make and an installed .venv (run `make install`)",
)


def make(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-o", STAMP, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # spawns processes: make test-fast leaves it out
def test_make_train_then_sample(tmp_path):
    rng = np.random.default_rng(0)
    words = ("to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis")
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words, 7)) for _ in range(150)) + "\n")
    model = tmp_path / "out" / "m.npz"
    env = dict(os.environ)
    env["CHARRNN_MODELS_DIR"] = str(tmp_path / "models")  # keeps models/LAST out of the repo
    env["CHARRNN_CORPORA_DIR"] = str(tmp_path / "corpora")
    args = "--max-time 5 --max-iter 2 --hidden-size 16 --num-layers 1 --batch-size 4 "
    args += "--seq-length 16 --seed 0"
    proc = make("train", f"CORPUS={corpus}", f"MODEL={model}", f"ARGS={args}", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pip install" not in proc.stdout  # the venv was left alone
    assert "validation loss:" in proc.stdout and "sample (200 characters" in proc.stdout
    gen = load(model)
    assert gen.hidden_size == 16 and gen.n_iter_ >= 1
    assert (tmp_path / "models" / "LAST").read_text().strip() == str(model)

    # `make sample` with no MODEL uses the model just trained (models/LAST)
    proc = make("sample", "ARGS=--len 60 --seed 1 --prime to", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sample_lines = proc.stdout.split("charrnn sample", 1)[1].split("\n", 1)[1]
    assert sample_lines.startswith("to")


@pytest.mark.slow  # spawns processes: make test-fast leaves it out
def test_make_forecast_a_csv_series(tmp_path):
    series = tmp_path / "series.csv"
    t = np.arange(80)
    series.write_text("value\n" + "\n".join(f"{np.sin(i / 2):.4f}" for i in t) + "\n")
    args = "--season 6 --horizon 3 --max-iter 2 --hidden-size 4 --seed 0"
    proc = make("forecast", f"SERIES={series}", f"ARGS={args}", env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "series.csv: 80 values; gru 4 units, window 12" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].split()[0] == "3"
