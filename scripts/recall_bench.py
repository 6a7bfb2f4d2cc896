"""Recall benchmark: can rnn, lstm and gru recall a key across LAG steps, with default settings?

The task of issue 18, set up as a learner would with the public estimator
(:func:`charrnn.diagnostics.recall_documents`, :func:`charrnn.diagnostics.recall_generator`):
each document is a key (one of four letters), LAG dots, a cue ``?`` and the key again, e.g.
``C.....?C``; ``CharRNNGenerator.fit`` reads the documents as one stream separated by its
end-of-document symbol, ``predict`` on a held-out document up to its cue gives the character it
expects next, and accuracy is the share of held-out documents whose key it names (chance 1/4).

Every run is ``CharRNNGenerator`` with its defaults (``gate_init`` included) apart from what the
task fixes: one layer of 64 units, ``seq_length = 4 * (LAG + 2)`` (so a BPTT chunk holds about
four documents and most recalls lie inside one chunk), batches of 32, Adam at 1e-2, no
validation. The budget is the same for every cell and lag: ``--passes`` passes over
``--documents`` training documents (the learning-rate schedule, warm-up then cosine decay,
spans them). A run "recalls" at accuracy >= 0.9; the table gives the median over seeds and the
range.

Gradient flow: on held-out documents, the norm of the recall loss's gradient with respect to
the hidden state at the step that read the key, divided by the norm at lag 1
(:func:`charrnn.diagnostics.recall_gradient_ratio`), at initialisation and after training
(geometric means over seeds).

    .venv/bin/python scripts/recall_bench.py --jobs 2 --json docs/recall_bench.json \\
        --plot docs/memory_recall.png
    .venv/bin/python scripts/recall_bench.py --from-json docs/recall_bench.json   # tables again
    .venv/bin/python scripts/recall_bench.py --lags 10 --seeds 1 --passes 2   # smoke run
    .venv/bin/python scripts/recall_bench.py --gate-init forget1   # the initialisation before

Each run trains in one process (``CHARRNN_PARALLEL=0``, one BLAS thread); ``--jobs`` runs
several at once.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import click
import numpy as np
from threadpoolctl import threadpool_limits

from charrnn.diagnostics import (
    RECALL_N_KEYS,
    recall_accuracy,
    recall_documents,
    recall_generator,
    recall_gradient_ratio,
    recall_stream_accuracy,
)
from charrnn.engine.network import GATE_INITS
from charrnn.engine.optim import OPTIMIZERS
from charrnn.io import atomic_write

CELLS = ("rnn", "lstm", "gru")
RECALLS = 0.9  # accuracy at which a run counts as recalling
TEST_SEED = 10_000  # held-out documents: the same for every cell and seed
N_GRADIENT_DOCS = 64  # held-out documents the gradient ratio is averaged over


def _int_list(ctx, param, value: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not items or min(items) < 0:
        raise click.BadParameter(f"expected non-negative integers, got {value!r}")
    return items


def _cell_list(ctx, param, value: str) -> list[str]:
    cells = [v.strip() for v in value.split(",") if v.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise click.BadParameter(f"cells must be among {','.join(CELLS)}, got {value!r}")
    return cells


def run_one(cell, lag, seed, *, documents, passes, gate_init, optimizer, test):
    """Train one model on the recall task at ``lag``; return its measurements."""
    train = recall_documents(documents, lag, np.random.default_rng([seed, lag]))
    chosen = {"gate_init": gate_init, "optimizer": optimizer}
    extra = {k: v for k, v in chosen.items() if v is not None}
    model = recall_generator(cell, lag, max_iter=passes, random_state=seed, **extra)
    initial = recall_generator(cell, lag, random_state=seed, **extra).initialize(train)
    ratio_init = recall_gradient_ratio(initial, test[:N_GRADIENT_DOCS])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter ending the run is the budget, not a problem
        model.fit(train)
    seconds = time.perf_counter() - t0
    return {
        "cell": cell,
        "lag": lag,
        "seed": seed,
        "gate_init": model.gate_init,
        "optimizer": model.optimizer,
        "learning_rate": model.learning_rate,
        "accuracy": recall_accuracy(model, test, n_context=0),
        "stream_accuracy": recall_stream_accuracy(model, test),
        "grad_ratio": recall_gradient_ratio(model, test[:N_GRADIENT_DOCS]),
        "grad_ratio_init": ratio_init,
        "updates": model.history_[-1]["step"],
        "passes": model.n_iter_,
        "chars": model.n_chars_seen_,
        "train_seconds": round(seconds, 2),
        "final_train_loss": model.history_[-1]["train_loss"],
    }


def _run_limited(cell, lag, seed, **kwargs):
    # one process per run: no worker processes of its own, one BLAS thread
    os.environ["CHARRNN_PARALLEL"] = "0"
    with threadpool_limits(1, user_api="blas"):
        return run_one(cell, lag, seed, **kwargs)


def _run_all(order, jobs: int, tests: dict, common: dict):
    """Yield each run's record as it finishes: ``jobs`` at a time in processes, or one after
    another here (so that a serial run's JSON, too, is written after every run)."""
    if jobs == 1:
        for lag, seed, cell in order:
            yield _run_limited(cell, lag, seed, test=tests[lag], **common)
        return
    with ProcessPoolExecutor(jobs) as pool:
        futures = [
            pool.submit(_run_limited, cell, lag, seed, test=tests[lag], **common)
            for lag, seed, cell in order
        ]
        for fut in as_completed(futures):
            yield fut.result()


def _geomean(values):
    v = np.asarray([x for x in values if x > 0 and math.isfinite(x)])
    return float(np.exp(np.log(v).mean())) if v.size else float("nan")


def summarise(records, cells, lags):
    """Per (cell, lag): median, lowest and highest accuracy, runs that recall, gradient ratios."""
    rows = {}
    for cell in cells:
        for lag in lags:
            rs = [r for r in records if r["cell"] == cell and r["lag"] == lag]
            if not rs:
                continue
            acc = [r["accuracy"] for r in rs]
            stream = [r["stream_accuracy"] for r in rs]
            rows[(cell, lag)] = {
                "median_accuracy": float(np.median(acc)),
                "min_accuracy": float(np.min(acc)),
                "max_accuracy": float(np.max(acc)),
                "recalled": sum(a >= RECALLS for a in acc),
                "median_stream_accuracy": float(np.median(stream)),
                "min_stream_accuracy": float(np.min(stream)),
                "max_stream_accuracy": float(np.max(stream)),
                "runs": len(rs),
                "grad_ratio": _geomean(r["grad_ratio"] for r in rs),
                "grad_ratio_init": _geomean(r["grad_ratio_init"] for r in rs),
            }
    return rows


def _accuracy_table(rows, cells, lags, key) -> list[str]:
    out = ["| lag | " + " | ".join(cells) + " |", "|---:|" + "---:|" * len(cells)]
    for lag in lags:
        cellv = []
        for cell in cells:
            r = rows.get((cell, lag))
            cellv.append(
                ""
                if r is None
                else f"{r['median_' + key]:.2f} [{r['min_' + key]:.2f}, {r['max_' + key]:.2f}]"
            )
        out.append(f"| {lag} | " + " | ".join(cellv) + " |")
    return out


def markdown_tables(rows, cells, lags) -> str:
    chance = f"chance 1/{RECALL_N_KEYS} = {1 / RECALL_N_KEYS:.2f}"
    out = [
        f"Recall with predict (each held-out document from the zero state): median over seeds "
        f"[lowest, highest] ({chance})",
        "",
        *_accuracy_table(rows, cells, lags, "accuracy"),
        "",
        "Recall in the stream (held-out documents read one after another with the state "
        "carried from one document to the next, no reset): median [lowest, highest]",
        "",
        *_accuracy_table(rows, cells, lags, "stream_accuracy"),
        "",
        "Gradient reaching the key: ||dL/dh|| at the key step (lag LAG+1) / at lag 1, "
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


def plot(records, rows, cells, lags, path: Path, title: str) -> None:
    """Left: recall accuracy against lag (predict: median, range and one dot per run; in the
    stream: median). Right: gradient ratio, trained and initialised. One legend below both."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    colours = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    jitter = {"rnn": 0.95, "lstm": 1.0, "gru": 1.05}
    # series from a second --from-json file ("lstm rmsprop") get colours of their own
    extra_colours = iter(["tab:purple", "tab:orange", "tab:brown", "tab:olive", "tab:cyan"])
    for k, cell in enumerate(c for c in cells if c not in colours):
        colours[cell] = next(extra_colours, "black")
        jitter[cell] = 1.02 + 0.02 * k
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    handles = []
    for cell in cells:
        c = colours[cell]
        xs = [lag for lag in lags if (cell, lag) in rows]
        med = np.array([rows[(cell, x)]["median_accuracy"] for x in xs])
        lo = med - [rows[(cell, x)]["min_accuracy"] for x in xs]
        hi = [rows[(cell, x)]["max_accuracy"] for x in xs] - med
        handles.append(
            ax1.errorbar(
                [x * jitter[cell] for x in xs],
                med,
                yerr=[lo, hi],
                fmt="-o",
                color=c,
                capsize=3,
                label=cell,
            )
        )
        ax1.plot(
            xs,
            [rows[(cell, x)]["median_stream_accuracy"] for x in xs],
            "--",
            color=c,
            alpha=0.6,
        )
        runs = [r for r in records if r["cell"] == cell]
        ax1.scatter(
            [r["lag"] * jitter[cell] for r in runs],
            [r["accuracy"] for r in runs],
            color=c,
            alpha=0.35,
            s=14,
        )
        ax2.plot(xs, [rows[(cell, x)]["grad_ratio"] for x in xs], "-o", color=c)
        ax2.plot(xs, [rows[(cell, x)]["grad_ratio_init"] for x in xs], "--", color=c, alpha=0.6)
    ax1.axhline(1 / RECALL_N_KEYS, color="grey", linestyle=":")
    ax1.axhline(RECALLS, color="grey", linestyle="--", linewidth=0.8)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks(lags, [str(x) for x in lags])
        ax.set_xlabel("lag (dots between key and cue)")
        ax.grid(True, alpha=0.3)
    ax1.set_ylim(0, 1.02)
    ax1.set_ylabel("recall accuracy")
    ax1.set_title(
        "recall after the cue: predict (solid, median and range; dots: runs),\n"
        "in the stream (dashed, median); dotted: chance, dashed grey: 0.9",
        fontsize=9,
    )
    ax2.set_yscale("log")
    ax2.set_ylabel("||dL/dh|| at the key step / at lag 1")
    ax2.set_title(
        "gradient reaching the key (geometric mean over seeds):\n"
        "trained (solid), initialised (dashed)",
        fontsize=9,
    )
    styles = [Line2D([], [], color="grey", linestyle=":", label="chance")]
    fig.legend(handles=handles + styles, loc="outside lower center", ncol=len(handles) + 1)
    fig.suptitle(title, fontsize=10)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=120)


def _budget(settings, records) -> str:
    # runs saved before the optimizer was recorded all used Adam at 1e-2
    optimizers = sorted(
        {f"{r.get('optimizer', 'adam')} {r.get('learning_rate', 1e-2):g}" for r in records}
    )
    gates = sorted({r["gate_init"] for r in records})
    return (
        f"{settings['passes']} passes over {settings['documents']} documents, hidden 64, "
        f"batch 32, seq_length 4 * (lag + 2), {' / '.join(optimizers)}, "
        f"gate_init {' / '.join(gates)}"
    )


def merge_saved(saved: list[dict]) -> tuple[list[dict], dict]:
    """Runs and settings of several ``--json`` files as one table.

    A cell that an earlier file already holds becomes its own series, named by the cell and
    the later file's optimizer and gate initialisation where they differ (``"lstm rmsprop"``).
    The files must share the budget (documents and passes), or they could not share a table.
    """
    first = saved[0]["settings"]
    for doc in saved[1:]:
        for key in ("documents", "passes"):
            if doc["settings"][key] != first[key]:
                raise click.UsageError(
                    f"--from-json files differ in {key} ({first[key]} and "
                    f"{doc['settings'][key]}): one table needs one budget"
                )
    records, cells, seen = [], [], {}
    for doc in saved:
        for r in doc["runs"]:
            how = (r.get("optimizer", "adam"), r["gate_init"])
            label = r["cell"]
            if seen.setdefault(label, how) != how:
                first_how = seen[r["cell"]]
                label = " ".join([r["cell"], *(h for h, f in zip(how, first_how) if h != f)])
            if label not in cells:
                cells.append(label)
            records.append({**r, "cell": label})
    settings = {
        **first,
        "cells": cells,
        "lags": sorted({g for doc in saved for g in doc["settings"]["lags"]}),
        "seeds": max(doc["settings"]["seeds"] for doc in saved),
    }
    return records, settings


def _report(records, settings, elapsed, plot_path) -> None:
    """Print the tables and a one-line description of the budget; draw the figure."""
    cells = [c for c in settings["cells"] if any(r["cell"] == c for r in records)]
    lags = [g for g in settings["lags"] if any(r["lag"] == g for r in records)]
    rows = summarise(records, cells, lags)
    click.echo(markdown_tables(rows, cells, lags))
    took = "" if elapsed is None else f", {elapsed / 60:.1f} min"
    click.echo(f"\n{len(records)} runs{took}; {_budget(settings, records)}")
    if plot_path is not None:
        title = f"recall task, {settings['seeds']} seed(s) per lag:\n{_budget(settings, records)}"
        plot(records, rows, cells, lags, plot_path, title)
        click.echo(f"plot written to {plot_path}", err=True)


def _write_json(path, settings, records, cells, lags, elapsed=None):
    rows = summarise(records, cells, lags)
    summary = [{"cell": c, "lag": g, **v} for (c, g), v in rows.items()]
    doc = {"settings": settings, "runs": records, "summary": summary, "elapsed_s": elapsed}
    with atomic_write(path, "w") as f:
        json.dump(doc, f, indent=1)


@click.command()
@click.option(
    "--lags",
    default="10,20,50,100,200",
    show_default=True,
    callback=_int_list,
    help="Comma-separated numbers of dots between key and cue.",
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
    "--documents",
    type=click.IntRange(32),
    default=4000,
    show_default=True,
    help="Training documents per run.",
)
@click.option(
    "--passes",
    type=click.IntRange(1),
    default=60,
    show_default=True,
    help="Passes over the training documents (max_iter).",
)
@click.option(
    "--gate-init",
    type=click.Choice(GATE_INITS),
    default=None,
    show_default="the estimator's default",
    help="gate_init of every run.",
)
@click.option(
    "--optimizer",
    type=click.Choice(sorted(OPTIMIZERS)),
    default=None,
    show_default="the estimator's default",
    help="optimizer of every run (at the task's learning rate, 1e-2).",
)
@click.option(
    "--n-test", type=click.IntRange(1), default=500, show_default=True, help="Held-out documents."
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
    multiple=True,
    help="Do not train: print the tables (and --plot) from the runs saved by an earlier --json "
    "(repeat to put several in one table, e.g. the defaults and --optimizer rmsprop).",
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
    documents,
    passes,
    gate_init,
    optimizer,
    n_test,
    jobs,
    json_path,
    from_json,
    plot_path,
):
    """Recall a key across LAG dots: rnn vs lstm vs gru, default settings, same budget."""
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError("--plot needs matplotlib") from None
    if from_json:
        saved = [json.loads(path.read_text(encoding="utf-8")) for path in from_json]
        records, merged = merge_saved(saved)
        elapsed = None if len(saved) > 1 else saved[0].get("elapsed_s")
        _report(records, merged, elapsed, plot_path)
        return
    settings = {
        "lags": lags,
        "seeds": seeds,
        "cells": cells,
        "documents": documents,
        "passes": passes,
        "gate_init": gate_init,
        "optimizer": optimizer,
        "n_test": n_test,
        "jobs": jobs,
        "load_before": os.getloadavg()[0],
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    tests = {
        lag: recall_documents(n_test, lag, np.random.default_rng([TEST_SEED, lag])) for lag in lags
    }
    # the longest runs first, so the last ones to finish are short
    order = [
        (lag, seed, cell)
        for lag in sorted(lags, reverse=True)
        for seed in range(seeds)
        for cell in cells
    ]
    records = []
    t_start = time.perf_counter()
    common = dict(documents=documents, passes=passes, gate_init=gate_init, optimizer=optimizer)
    # Every run is seeded on its own, so the results do not depend on --jobs or on the order.
    for rec in _run_all(order, jobs, tests, common):
        records.append(rec)
        click.echo(
            f"lag {rec['lag']:>4} seed {rec['seed']} {rec['cell']:<4} accuracy "
            f"{rec['accuracy']:.3f} (stream {rec['stream_accuracy']:.3f})  grad ratio "
            f"{rec['grad_ratio']:.1e} "
            f"(init {rec['grad_ratio_init']:.1e})  {rec['updates']} updates, "
            f"{rec['train_seconds']:.1f} s",
            err=True,
        )
        if json_path is not None:
            _write_json(json_path, settings, records, cells, lags)
    records.sort(key=lambda r: (r["lag"], r["seed"], cells.index(r["cell"])))
    elapsed = time.perf_counter() - t_start
    settings["load_after"] = os.getloadavg()[0]
    if json_path is not None:
        _write_json(json_path, settings, records, cells, lags, elapsed)
    _report(records, settings, elapsed, plot_path)


if __name__ == "__main__":
    sys.exit(main())
