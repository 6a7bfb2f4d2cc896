"""Soak test of interrupted training: many random SIGKILLs and SIGINTs, resumed after each.

Trains a small model with ``charrnn train`` twice on the same text with the same seed: once
straight through (the reference), and once interrupted ``--interruptions`` times at random
moments by SIGKILL (the run dies at once; its last complete save, at a pass end, survives) or
SIGINT (the run stops between two steps, saves and exits), each time started again with
``--resume`` (or afresh when the killed run had not saved yet). After every interruption the
model file must load; a SIGKILLed run's lock file must be taken over by the next run. At the
end the two runs' weights are compared: resuming is exact, so they must agree within float32
rounding. Not part of the test suite (it takes minutes); run with ``nice``:

    nice -n 10 .venv/bin/python scripts/soak.py                     # 50 interruptions
    nice -n 10 .venv/bin/python scripts/soak.py --interruptions 5   # a quick look

Exit status 0 when every file loaded and the weights agree within ``--tolerance``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from charrnn import load

ROOT = Path(__file__).resolve().parent.parent
PLAYS = ROOT / "corpora" / "shakespeare_plays.json"


def write_corpus(path: Path, n_chars: int) -> None:
    """The first ``n_chars`` characters of the plays' speeches, one line per verse line."""
    plays = json.loads(PLAYS.read_text(encoding="utf-8"))["plays"]
    lines, size = [], 0
    for play in plays:
        for speaker, verse in play["speeches"]:
            for line in [f"{speaker}:", *verse]:
                lines.append(line)
                size += len(line) + 1
                if size >= n_chars:
                    path.write_text("\n".join(lines)[:n_chars], encoding="utf-8")
                    return
    path.write_text("\n".join(lines), encoding="utf-8")


def train_command(corpus: Path, model: Path, options: list[str], resume: bool) -> list[str]:
    command = [sys.executable, "-m", "charrnn", "train", str(corpus), "--model", str(model)]
    return command + options + (["--resume"] if resume else [])


def environment() -> dict[str, str]:
    env = dict(os.environ)
    # the charrnn of this checkout, whatever the venv's editable install points at
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def weights(path: Path) -> dict[str, np.ndarray]:
    return load(path).params_


def finished(model: Path, max_iter: int) -> bool:
    if not model.exists():
        return False
    progress = load(model).training_progress_
    return progress is not None and progress["epoch"] >= max_iter


@click.command()
@click.option("--interruptions", type=click.IntRange(1), default=50, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the moments.")
@click.option("--chars", type=click.IntRange(10_000), default=60_000, show_default=True)
@click.option("--max-iter", type=click.IntRange(1), default=80, show_default=True)
@click.option(
    "--delay",
    type=(float, float),
    default=(2.0, 8.0),
    show_default=True,
    help="Seconds after starting a run before it is interrupted: uniform in [LOW, HIGH].",
)
@click.option("--tolerance", type=float, default=1e-5, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None)
def main(interruptions, seed, chars, max_iter, delay, tolerance, workdir):
    """Interrupt a training run many times, resume it each time, compare with a straight run."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="charrnn-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus.txt"
    write_corpus(corpus, chars)
    options = [
        "--cell", "lstm", "--hidden-size", "64", "--num-layers", "2", "--batch-size", "16",
        "--seq-length", "32", "--max-iter", str(max_iter), "--max-time", "0",
        "--seed", "0", "--dropout", "0.1", "--no-early-stopping",
    ]  # fmt: skip
    env = environment()
    out = subprocess.DEVNULL

    reference = workdir / "reference.npz"
    t0 = time.perf_counter()
    subprocess.run(train_command(corpus, reference, options, False), env=env, check=True,
                   stdout=out, stderr=out)  # fmt: skip
    t_reference = time.perf_counter() - t0
    print(f"reference: {max_iter} passes in {t_reference:.0f} s ({workdir})", flush=True)

    rng = np.random.default_rng(seed)
    model = workdir / "interrupted.npz"
    counts = {"SIGINT": 0, "SIGKILL": 0, "runs": 0, "loads": 0, "finished_early": 0}
    exit_codes: dict[int, int] = {}
    t0 = time.perf_counter()
    done = 0
    while done < interruptions and not finished(model, max_iter):
        resume = model.exists() and load(model).training_progress_ is not None
        proc = subprocess.Popen(
            train_command(corpus, model, options, resume), env=env, stdout=out, stderr=out
        )
        counts["runs"] += 1
        wait = rng.uniform(*delay)
        name = "SIGKILL" if rng.random() < 0.5 else "SIGINT"
        try:
            proc.wait(timeout=wait)
            counts["finished_early"] += 1  # the run ended before its moment came
        except subprocess.TimeoutExpired:
            proc.send_signal(getattr(signal, name))
            proc.wait()
            counts[name] += 1
            done += 1
        exit_codes[proc.returncode] = exit_codes.get(proc.returncode, 0) + 1
        if model.exists():
            load(model)  # raises (and ends the soak) if an interruption left a bad file
            counts["loads"] += 1
        print(f"  {done:3d}: {name:7s} after {wait:4.1f} s, exit {proc.returncode}", flush=True)
    # the last run goes to the end
    while not finished(model, max_iter):
        resume = model.exists() and load(model).training_progress_ is not None
        subprocess.run(train_command(corpus, model, options, resume), env=env, check=True,
                       stdout=out, stderr=out)  # fmt: skip
        counts["runs"] += 1
    t_interrupted = time.perf_counter() - t0

    a, b = weights(reference), weights(model)
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    leftovers = sorted(p.name for p in workdir.iterdir() if p.name.endswith((".tmp", ".lock")))
    print(f"interruptions: {done} ({counts['SIGINT']} SIGINT, {counts['SIGKILL']} SIGKILL)")
    print(f"runs: {counts['runs']}, model files loaded after an interruption: {counts['loads']}")
    print(f"exit codes of the interrupted runs: {dict(sorted(exit_codes.items()))}")
    print(f"time: reference {t_reference:.0f} s, interrupted series {t_interrupted:.0f} s")
    print(f"max |weight difference| from the uninterrupted run: {diff:.3g}")
    print(f"files left behind (temporary or lock): {leftovers or 'none'}")
    sys.exit(0 if diff <= tolerance else 1)


if __name__ == "__main__":
    main()
