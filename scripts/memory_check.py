"""The training-memory estimate against the memory training actually takes.

For a few configurations, a child process builds the data, notes its peak resident memory
(``ru_maxrss``), trains a few steps, and reports how much the peak grew; the estimate is
``estimator.check_memory(X, y).total`` (:mod:`charrnn.engine.memory`), which ``fit`` compares
with the available memory before allocating anything. Parallel groups are switched off
(``CHARRNN_PARALLEL=0``) so that the whole run is in the one process measured.

    nice -n 10 .venv/bin/python scripts/memory_check.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20

CONFIGS = {
    "generator lstm 2x1024, batch 32 x 64": (
        "generator", dict(cell="lstm", hidden_size=1024, num_layers=2, batch_size=32,
                          seq_length=64),
    ),
    "generator gru 2x256, batch 256 x 128": (
        "generator", dict(cell="gru", hidden_size=256, num_layers=2, batch_size=256,
                          seq_length=128),
    ),
    "generator rnn 1x512 embedding 64, batch 64 x 100": (
        "generator", dict(cell="rnn", hidden_size=512, num_layers=1, embedding_dim=64,
                          batch_size=64, seq_length=100),
    ),
    "classifier bi-lstm 256, 64 texts x 400": (
        "classifier", dict(cell="lstm", hidden_size=256, bidirectional=True, batch_size=64,
                           embedding_dim=32),
    ),
    "regressor gru 2x128, 128 sequences x 200 x 4": (
        "regressor", dict(cell="gru", hidden_size=128, num_layers=2, batch_size=128),
    ),
}  # fmt: skip
STEPS = 4


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(kind: str, params: dict) -> dict:
    from sklearn.exceptions import ConvergenceWarning

    from charrnn import CharRNNClassifier, CharRNNGenerator, RNNRegressor

    rng = np.random.default_rng(0)
    common = dict(max_iter=1, random_state=0, validation_fraction=0.0, early_stopping=False)
    if kind == "generator":
        est = CharRNNGenerator(**common, **params)
        n = est.batch_size * est.seq_length * (STEPS + 2)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz .,\n"))
        X, y = "".join(rng.choice(letters, size=n)), None
    elif kind == "classifier":
        est = CharRNNClassifier(**common, **params)
        letters = np.array(list("abcdefghij "))
        X = ["".join(rng.choice(letters, size=400)) for _ in range(est.batch_size * STEPS)]
        y = [i % 2 for i in range(len(X))]
    else:
        est = RNNRegressor(**common, **params)
        X = rng.standard_normal((est.batch_size * STEPS, 200, 4))
        y = rng.standard_normal(len(X))
    estimate = est.check_memory(X, y)
    before = _peak()
    steps = []

    def stop_after(est_, trainer, *_):
        steps.append(1)
        return len(steps) >= STEPS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if kind == "generator":
            est.fit(X, on_step=stop_after)
        else:  # batch_size * STEPS samples: one pass is STEPS steps
            est.fit(X, y)
            steps.extend([1] * (len(X) // est.batch_size))
    return {
        "estimate": estimate.total,
        "parts": estimate.describe(),
        "grew": _peak() - before,
        "steps": len(steps),
    }


@click.command()
@click.option("--child", "child_spec", default=None, hidden=True)
def main(child_spec):
    """Print the estimate and the measured growth of peak memory for each configuration."""
    if child_spec is not None:
        kind, params = json.loads(child_spec)
        print(json.dumps(child(kind, params)))
        return
    env = dict(os.environ, CHARRNN_PARALLEL="0", PYTHONPATH=str(ROOT))
    print(f"{'configuration':<50} {'estimate':>10} {'measured':>10} {'ratio':>6}")
    for name, spec in CONFIGS.items():
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = r["estimate"] / max(r["grew"], 1)
        print(
            f"{name:<50} {r['estimate'] / MiB:>7.0f} MiB {r['grew'] / MiB:>6.0f} MiB {ratio:>6.2f}"
        )
        print(f"    ({r['parts']}; {r['steps']} steps)")


if __name__ == "__main__":
    main()
