"""Does a gate initialisation change language-model quality? Held-out loss after a fixed budget.

    python scripts/gate_init_quality.py --corpus shakespeare --gate-init forget1,chrono \\
        --seeds 0,1 --chars 1000000 [--cell gru] [--json out.json]

For every seed and every ``gate_init``, ``CharRNNGenerator`` with its defaults (a 2 x 256 GRU,
``seq_length`` 64, batches of 32, Adam 5e-3 with warm-up and cosine decay) apart from
``gate_init``, ``--cell`` and the budget trains on the first ``--chars`` characters of the
corpus: ``--passes`` passes, no time limit and no early stopping, so every run makes the same
number of updates whatever the machine's load. The last 10% of those characters are held out
(the estimator's ``validation_fraction``); the figure is the validation loss in nats per
character after the last pass. Runs alternate between the initialisations (seed 0 of each,
then seed 1, ...) so that a change of machine load falls on both; the same seed gives both the
same weights apart from the gate biases.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import click
import numpy as np

from charrnn import CharRNNGenerator
from charrnn.data.corpora import read_text, resolve_corpus
from charrnn.engine.network import GATE_INITS
from charrnn.io import atomic_write


def _list(ctx, param, value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command()
@click.option("--corpus", default="shakespeare", show_default=True)
@click.option(
    "--gate-init", "gate_inits", default="forget1,chrono", show_default=True, callback=_list
)
@click.option("--seeds", default="0,1", show_default=True, callback=_list)
@click.option("--cell", default=None, show_default="the estimator's default")
@click.option("--chars", type=click.IntRange(10_000), default=1_000_000, show_default=True)
@click.option("--passes", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(corpus, gate_inits, seeds, cell, chars, passes, json_path):
    """Validation nats/char after the same number of updates, per gate_init and seed."""
    bad = [g for g in gate_inits if g not in GATE_INITS]
    if bad:
        raise click.BadParameter(f"must be among {', '.join(GATE_INITS)}", param_hint="--gate-init")
    text = read_text(resolve_corpus(corpus))[:chars]
    extra = {} if cell is None else {"cell": cell}
    runs = []
    for seed in (int(s) for s in seeds):
        for gate_init in gate_inits:
            est = CharRNNGenerator(
                gate_init=gate_init,
                max_iter=passes,
                early_stopping=False,
                random_state=seed,
                **extra,
            )
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # max_iter ending the run is the budget
                est.fit(text)
            run = {
                "cell": est.cell,
                "gate_init": gate_init,
                "seed": seed,
                "val_loss": est.history_[-1]["val_loss"],
                "train_loss": est.history_[-1]["train_loss"],
                "updates": est.history_[-1]["step"],
                "seconds": round(time.perf_counter() - t0, 1),
                "load_before": load,
            }
            runs.append(run)
            click.echo(
                f"{run['cell']} gate_init={gate_init:<8} seed {seed}: validation "
                f"{run['val_loss']:.4f} nats/char, training {run['train_loss']:.4f}, "
                f"{run['updates']} updates, {run['seconds']:.0f} s (load {load:.1f})"
            )
    click.echo("\nmean validation nats/char over seeds:")
    for gate_init in gate_inits:
        v = [r["val_loss"] for r in runs if r["gate_init"] == gate_init]
        click.echo(f"  {gate_init:<8} {np.mean(v):.4f}  ({', '.join(f'{x:.4f}' for x in v)})")
    if json_path is not None:
        doc = {
            "corpus": corpus,
            "chars": len(text),
            "passes": passes,
            "runs": runs,
            "python": platform.python_version(),
        }
        with atomic_write(json_path, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
