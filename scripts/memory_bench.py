"""Long-range memory benchmark: can rnn, lstm and gru recall a key across LAG steps?

The recall task (:func:`charrnn.diagnostics.make_recall_task`): each line is a key letter, LAG
random filler characters, a cue ``?`` and the key again, e.g. ``C.-..-?C``. Predicting the
character after the cue needs the key carried across LAG + 1 steps; the cue spares the model
from counting (with a fixed LAG a model may still count, and one that does can misfire when
started from an unfamiliar state -- see below). Every cell gets the same budget at every lag:
the same number of optimiser updates on the same training lines, with the same hidden size,
batch size and seeds. Learning rates differ per cell (``DEFAULT_RATES``): in a pilot at lag 20
the rnn stalled or diverged at the rate the lstm needed to move at all.

How the lines are fed (this decides what truncated BPTT can learn):

- The training text is the lines one after another, one per line, read as one stream; the
  hidden state is carried from line to line, as when training on any text.
- ``seq_length`` is exactly one line (LAG + 4 symbols with the newline) and the number of lines
  is a multiple of ``batch_size``, so each of the parallel streams starts on a line boundary
  and *every* BPTT chunk holds one whole line per stream: the gradient from each recall always
  reaches its key inside the chunk, and none is cut off by a chunk boundary. (With chunks not
  aligned to lines, only the recalls whose key falls in the same chunk teach anything; a chunk
  shorter than LAG + 2 teaches nothing at all -- truncated BPTT cannot learn a dependency
  longer than its window, whatever the cell.)
- Accuracy is measured on held-out lines with ``predict``: each query is a held-out line up to
  its cue, preceded by a few other held-out lines (at least 128 characters), so the model
  starts the query in the kind of state it saw in training rather than from the zero state.
  (Without that context a model that recalls perfectly in the stream can score 0: trained on
  one continuous stream, it never saw the zero state, and if it times the recall by counting
  it answers one step early.) Chance is 1 / n_keys. A run "recalls" at accuracy >= 0.9.
- Gradient flow: on held-out lines, the norm of the recall loss's gradient with respect to the
  top-layer hidden state at the step that read the key, divided by the norm at lag 1
  (:func:`charrnn.diagnostics.recall_gradient_ratio`), for the trained model and at
  initialisation (geometric means over seeds).

    .venv/bin/python scripts/memory_bench.py --jobs 2 --json runs.json --plot recall.png
    .venv/bin/python scripts/memory_bench.py --from-json runs.json     # the tables again
    .venv/bin/python scripts/memory_bench.py --lags 5,20 --seeds 1 --updates 100   # smoke run

The full run (3 cells x 6 lags x 3 seeds, 1500 updates each) took 20 minutes with ``--jobs 2``
on two CPU cores shared with other work; the lag-200 lstm runs dominate (about 3 minutes each).
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
import warnings
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path

import click
import numpy as np
from threadpoolctl import threadpool_limits

from charrnn import CharRNNGenerator
from charrnn.diagnostics import (
    init_model,
    make_recall_task,
    recall_accuracy,
    recall_gradient_ratio,
    recall_text,
)
from charrnn.io import atomic_write

CELLS = ("rnn", "lstm", "gru")
RECALLS = 0.9  # accuracy at which a run counts as recalling
TEST_SEED = 10_000  # held-out lines: the same for every cell and seed
# Each cell at the best of 2e-3 / 5e-3 / 1e-2 in a one-seed pilot at lag 20 with 1500 updates:
# the rnn diverged or stalled at 1e-2, the lstm barely moved at 5e-3.
DEFAULT_RATES = "rnn=5e-3,lstm=1e-2,gru=1e-2"


def _int_list(ctx, param, value: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not items or min(items) < 0:
        raise click.BadParameter(f"expected non-negative integers, got {value!r}")
    return items


def _learning_rates(ctx, param, value: str) -> dict[str, float]:
    """``0.005`` (every cell) or ``rnn=5e-3,lstm=1e-2,gru=1e-2``."""
    rates = {}
    try:
        if "=" not in value:
            return dict.fromkeys(CELLS, _positive(float(value)))
        for item in value.split(","):
            cell, rate = item.split("=")
            if cell.strip() not in CELLS:
                raise ValueError
            rates[cell.strip()] = _positive(float(rate))
    except ValueError:
        raise click.BadParameter(
            f"expected a positive number or cell=rate pairs like rnn=5e-3,lstm=1e-2, got {value!r}"
        ) from None
    return rates


def _positive(x: float) -> float:
    if not (x > 0 and math.isfinite(x)):
        raise ValueError
    return x


def _cell_list(ctx, param, value: str) -> list[str]:
    cells = [v.strip() for v in value.split(",") if v.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise click.BadParameter(f"cells must be among {','.join(CELLS)}, got {value!r}")
    return cells


def run_one(
    cell,
    lag,
    seed,
    *,
    updates,
    batch_size,
    hidden_size,
    learning_rate,
    n_keys,
    fillers,
    test,
    max_time,
):
    """Train one model on the recall task at ``lag``; return its measurements."""
    rng = np.random.default_rng([seed, lag])
    # updates x batch_size lines: each stream holds `updates` whole lines, one per BPTT chunk
    train = make_recall_task(updates * batch_size, lag, n_keys, rng, fillers=fillers)
    model = CharRNNGenerator(
        cell=cell,
        hidden_size=hidden_size,
        num_layers=1,
        seq_length=lag + 4,  # one line: key, fillers, cue, key, newline
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_iter=1,
        max_time=max_time,
        validation_fraction=0.0,
        early_stopping=False,
        random_state=seed,
    )
    initial = init_model(
        recall_text(train), cell=cell, hidden_size=hidden_size, num_layers=1, random_state=seed
    )
    ratio_init = recall_gradient_ratio(initial, test[:64])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a max_time stop is reported in the record instead
        model.fit(recall_text(train))
    seconds = time.perf_counter() - t0
    n_context = max(2, math.ceil(128 / (lag + 4)))
    return {
        "cell": cell,
        "lag": lag,
        "seed": seed,
        "accuracy": recall_accuracy(model, test, n_context),
        "grad_ratio": recall_gradient_ratio(model, test[:64]),
        "grad_ratio_init": ratio_init,
        "updates": model.history_[-1]["step"],
        "chars": model.n_chars_seen_,
        "train_seconds": round(seconds, 2),
        "final_train_loss": model.history_[-1]["train_loss"],
    }


def _run_limited(cell, lag, seed, *, threads, **kwargs):
    with threadpool_limits(threads, user_api="blas"):
        return run_one(cell, lag, seed, **kwargs)


class _Serial:
    """The part of an executor's interface used here, running each call at once."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args, **kwargs):
        fut = Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


def _geomean(values):
    v = np.asarray([x for x in values if x > 0 and math.isfinite(x)])
    return float(np.exp(np.log(v).mean())) if v.size else float("nan")


def summarise(records, cells, lags):
    """Per (cell, lag): mean accuracy, fraction of runs that recall, geometric-mean ratios."""
    rows = {}
    for cell in cells:
        for lag in lags:
            rs = [r for r in records if r["cell"] == cell and r["lag"] == lag]
            if not rs:
                continue
            acc = [r["accuracy"] for r in rs]
            rows[(cell, lag)] = {
                "mean_accuracy": float(np.mean(acc)),
                "recalled": sum(a >= RECALLS for a in acc),
                "runs": len(rs),
                "grad_ratio": _geomean(r["grad_ratio"] for r in rs),
                "grad_ratio_init": _geomean(r["grad_ratio_init"] for r in rs),
            }
    return rows


def markdown_tables(rows, cells, lags, n_keys) -> str:
    out = [
        f"Recall accuracy after the cue (mean over seeds; runs with accuracy >= {RECALLS} "
        f"recalled / runs; chance = 1/{n_keys} = {1 / n_keys:.3f})",
        "",
        "| lag | " + " | ".join(cells) + " |",
        "|---:|" + "---:|" * len(cells),
    ]
    for lag in lags:
        cellv = []
        for cell in cells:
            r = rows.get((cell, lag))
            cellv.append(
                "" if r is None else f"{r['mean_accuracy']:.2f} ({r['recalled']}/{r['runs']})"
            )
        out.append(f"| {lag} | " + " | ".join(cellv) + " |")
    out += [
        "",
        "Gradient flow to the key: ||dL/dh|| at the key step (lag LAG+1) / at lag 1, "
        "trained (initialised), geometric mean over seeds",
        "",
        "| lag | " + " | ".join(cells) + " |",
        "|---:|" + "---:|" * len(cells),
    ]
    for lag in lags:
        cellv = []
        for cell in cells:
            r = rows.get((cell, lag))
            cellv.append("" if r is None else f"{r['grad_ratio']:.1e} ({r['grad_ratio_init']:.1e})")
        out.append(f"| {lag} | " + " | ".join(cellv) + " |")
    return "\n".join(out)


def plot(records, rows, cells, lags, n_keys, path: Path, title: str) -> None:
    """Left: recall accuracy against lag (mean line, one dot per run). Right: gradient ratio."""
    from matplotlib.figure import Figure

    colours = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for cell in cells:
        c = colours[cell]
        xs = [lag for lag in lags if (cell, lag) in rows]
        ax1.plot(xs, [rows[(cell, x)]["mean_accuracy"] for x in xs], "-o", color=c, label=cell)
        runs = [r for r in records if r["cell"] == cell]
        jitter = {"rnn": 0.95, "lstm": 1.0, "gru": 1.05}[cell]
        ax1.scatter(
            [r["lag"] * jitter for r in runs],
            [r["accuracy"] for r in runs],
            color=c,
            alpha=0.35,
            s=14,
        )
        ax2.plot(
            xs, [rows[(cell, x)]["grad_ratio"] for x in xs], "-o", color=c, label=f"{cell} trained"
        )
        # each run too: the runs that recall are the ones whose gradient reaches the key
        ax2.scatter(
            [r["lag"] * jitter for r in runs],
            [r["grad_ratio"] for r in runs],
            color=c,
            alpha=0.35,
            s=14,
        )
        ax2.plot(
            xs,
            [rows[(cell, x)]["grad_ratio_init"] for x in xs],
            "--",
            color=c,
            alpha=0.6,
            label=f"{cell} initialised",
        )
    ax1.axhline(1 / n_keys, color="grey", linestyle=":", label="chance")
    ax1.axhline(RECALLS, color="grey", linestyle="--", linewidth=0.8)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks(lags, [str(x) for x in lags])
        ax.set_xlabel("lag (filler characters between key and cue)")
        ax.grid(True, alpha=0.3)
    ax1.set_ylim(0, 1.02)
    ax1.set_ylabel("recall accuracy")
    ax1.set_title("recall of the key after the cue", fontsize=10)
    ax1.legend(fontsize=8)
    ax2.set_yscale("log")
    ax2.set_ylabel("||dL/dh|| at the key step / at lag 1")
    ax2.set_title("gradient reaching the key", fontsize=10)
    ax2.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=120)


@click.command()
@click.option(
    "--lags",
    default="5,10,20,50,100,200",
    show_default=True,
    callback=_int_list,
    help="Comma-separated filler lengths.",
)
@click.option(
    "--seeds",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Runs per (cell, lag), seeds 0..N-1.",
)
@click.option("--cells", default=",".join(CELLS), show_default=True, callback=_cell_list)
@click.option(
    "--updates",
    type=click.IntRange(1),
    default=1500,
    show_default=True,
    help="Optimiser updates per run (one pass over updates x batch-size lines).",
)
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--hidden-size", type=click.IntRange(1), default=64, show_default=True)
@click.option(
    "--learning-rate",
    "learning_rates",
    default=DEFAULT_RATES,
    show_default=True,
    callback=_learning_rates,
    help="One rate for every cell, or cell=rate pairs (Adam, warm-up then cosine decay).",
)
@click.option(
    "--fillers", default=".-", show_default=True, help="Filler alphabet, drawn at random."
)
@click.option(
    "--max-time",
    type=click.FloatRange(0, min_open=True),
    default=None,
    show_default="none",
    help="Also stop each run after this many seconds.",
)
@click.option("--n-keys", type=click.IntRange(2, 26), default=8, show_default=True)
@click.option(
    "--n-test",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="Held-out lines per lag.",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="BLAS threads per run (one is fastest for these small matrices).",
)
@click.option(
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Runs trained at the same time, in separate processes.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write every run and the summary here (updated after each run).",
)
@click.option(
    "--from-json",
    "from_json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Do not train: print the tables (and --plot) from the runs saved by an earlier --json.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the figure here (needs matplotlib).",
)
def main(
    lags,
    seeds,
    cells,
    updates,
    batch_size,
    hidden_size,
    learning_rates,
    fillers,
    max_time,
    n_keys,
    n_test,
    threads,
    jobs,
    json_path,
    from_json,
    plot_path,
):
    """Recall a key across LAG filler characters: rnn vs lstm vs gru, same budget."""
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError("--plot needs matplotlib") from None
    try:
        make_recall_task(1, 1, n_keys, 0, fillers=fillers)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fillers") from None
    if from_json is not None:
        saved = json.loads(from_json.read_text(encoding="utf-8"))
        st = saved["settings"]
        _report(saved["runs"], st, saved.get("elapsed_s"), plot_path)
        return
    settings = {
        "lags": lags,
        "seeds": seeds,
        "cells": cells,
        "updates": updates,
        "batch_size": batch_size,
        "hidden_size": hidden_size,
        "learning_rates": learning_rates,
        "fillers": fillers,
        "max_time": max_time,
        "n_keys": n_keys,
        "n_test": n_test,
        "threads": threads,
        "jobs": jobs,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    tests = {
        lag: make_recall_task(
            n_test, lag, n_keys, np.random.default_rng([TEST_SEED, lag]), fillers=fillers
        )
        for lag in lags
    }
    jobs_list = [(lag, seed, cell) for lag in lags for seed in range(seeds) for cell in cells]
    common = dict(
        updates=updates,
        batch_size=batch_size,
        hidden_size=hidden_size,
        n_keys=n_keys,
        fillers=fillers,
        max_time=max_time,
        threads=threads,
    )
    records = []
    t_start = time.perf_counter()
    # Every run is seeded on its own, so the results do not depend on --jobs or on the order.
    with ProcessPoolExecutor(jobs) if jobs > 1 else _Serial() as pool:
        futures = [
            pool.submit(
                _run_limited,
                cell,
                lag,
                seed,
                test=tests[lag],
                learning_rate=learning_rates[cell],
                **common,
            )
            for lag, seed, cell in jobs_list
        ]
        for fut in as_completed(futures):
            rec = fut.result()
            records.append(rec)
            click.echo(
                f"lag {rec['lag']:>4} seed {rec['seed']} {rec['cell']:<4} accuracy "
                f"{rec['accuracy']:.3f}  grad ratio {rec['grad_ratio']:.1e} "
                f"(init {rec['grad_ratio_init']:.1e})  {rec['updates']} updates, "
                f"{rec['train_seconds']:.1f} s",
                err=True,
            )
            if json_path is not None:
                _write_json(json_path, settings, records, cells, lags)
    records.sort(key=lambda r: (r["lag"], r["seed"], cells.index(r["cell"])))
    elapsed = time.perf_counter() - t_start
    if json_path is not None:
        _write_json(json_path, settings, records, cells, lags, elapsed)
    _report(records, settings, elapsed, plot_path)


def _report(records, settings, elapsed, plot_path) -> None:
    """Print the tables and a one-line description of the budget; draw the figure."""
    cells = [c for c in settings["cells"] if any(r["cell"] == c for r in records)]
    lags = [g for g in settings["lags"] if any(r["lag"] == g for r in records)]
    rows = summarise(records, cells, lags)
    click.echo(markdown_tables(rows, cells, lags, settings["n_keys"]))
    rates = ", ".join(f"{c} {settings['learning_rates'][c]:g}" for c in cells)
    took = "" if elapsed is None else f", {elapsed / 60:.1f} min"
    click.echo(
        f"\n{len(records)} runs{took}; hidden {settings['hidden_size']}, batch "
        f"{settings['batch_size']}, {settings['updates']} updates of one line per stream, "
        f"fillers {settings['fillers']!r}, learning rates {rates}"
    )
    if plot_path is not None:
        title = (
            f"recall task, hidden {settings['hidden_size']}, {settings['updates']} updates x "
            f"batch {settings['batch_size']}, {settings['seeds']} seed(s) per lag"
        )
        plot(records, rows, cells, lags, settings["n_keys"], plot_path, title)
        click.echo(f"plot written to {plot_path}", err=True)


def _write_json(path, settings, records, cells, lags, elapsed=None):
    rows = summarise(records, cells, lags)
    summary = [{"cell": c, "lag": g, **v} for (c, g), v in rows.items()]
    doc = {"settings": settings, "runs": records, "summary": summary, "elapsed_s": elapsed}
    with atomic_write(path, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
