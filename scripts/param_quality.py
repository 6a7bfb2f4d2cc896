"""Does a parameter's value change language-model quality? Held-out loss after a fixed budget.

    python scripts/param_quality.py --param gate_init --values forget1,chrono \\
        --seeds 0,1 --chars 1000000 [--set cell=lstm ...] [--json out.json]

For every seed and every value of ``--param``, ``CharRNNGenerator`` with its defaults (see its
docstring) apart from that parameter, the ``--set`` overrides and the budget trains on the
first ``--chars`` characters of the corpus: ``--passes`` passes, no time limit and no early
stopping, so every run makes the same number of updates whatever the machine's load. The last
10% of those characters are held out (the estimator's ``validation_fraction``); the figure is
the validation loss in nats per character after the last pass. Runs alternate between the
values (seed 0 of each, then seed 1, ...) so that a change of machine load falls on both; the
same seed gives every value the same initial weights unless the parameter changes them.
This is how the defaults of ``gate_init`` and ``optimizer`` were checked against Shakespeare
(docs/benchmarks.md, long memory).
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
from charrnn.cli.options import click_type, parameter_table
from charrnn.data.corpora import read_text, resolve_corpus
from charrnn.io import atomic_write


def _list(ctx, param, value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _value(name: str, text: str):
    """``text`` read as the parameter ``name`` takes it, by the type ``charrnn train`` uses for
    it (from the estimator's parameter table): ``"5e-3"`` -> 5e-3 for ``learning_rate``."""
    table = parameter_table(CharRNNGenerator)
    if name not in table:
        raise click.UsageError(f"CharRNNGenerator has no parameter {name!r}")
    try:
        return click_type(table[name].rule, name).convert(text, None, None)
    except click.BadParameter as err:
        raise click.UsageError(f"{name}: {err.message}") from None


def _settings(ctx, param, pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--set")
        out[name.strip()] = _value(name.strip(), value.strip())
    return out


@click.command()
@click.option("--corpus", default="shakespeare", show_default=True)
@click.option("--param", "name", default="gate_init", show_default=True, help="Parameter to vary.")
@click.option("--values", default="forget1,chrono", show_default=True, callback=_list)
@click.option("--seeds", default="0,1", show_default=True, callback=_list)
@click.option(
    "--set", "settings", multiple=True, callback=_settings, help="NAME=VALUE for every run."
)
@click.option("--chars", type=click.IntRange(10_000), default=1_000_000, show_default=True)
@click.option("--passes", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(corpus, name, values, seeds, settings, chars, passes, json_path):
    """Validation nats/char after the same number of updates, per value and seed."""
    values = [_value(name, v) for v in values]
    # the estimator's own checks name a bad parameter or value before any training
    for value in values:
        try:
            CharRNNGenerator(**{**settings, name: value})._validate_params()
        except (TypeError, ValueError) as err:
            raise click.UsageError(str(err)) from None
    text = read_text(resolve_corpus(corpus))[:chars]
    runs = []
    for seed in (int(s) for s in seeds):
        for value in values:
            est = CharRNNGenerator(
                **{**settings, name: value},
                max_iter=passes,
                early_stopping=False,
                random_state=seed,
            )
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # max_iter ending the run is the budget
                est.fit(text)
            run = {
                "cell": est.cell,
                "param": name,
                "value": value,
                "settings": settings,
                "seed": seed,
                "val_loss": est.history_[-1]["val_loss"],
                "train_loss": est.history_[-1]["train_loss"],
                "updates": est.history_[-1]["step"],
                "seconds": round(time.perf_counter() - t0, 1),
                "load_before": load,
            }
            runs.append(run)
            click.echo(
                f"{run['cell']} {name}={value!s:<8} seed {seed}: validation "
                f"{run['val_loss']:.4f} nats/char, training {run['train_loss']:.4f}, "
                f"{run['updates']} updates, {run['seconds']:.0f} s (load {load:.1f})"
            )
    click.echo("\nmean validation nats/char over seeds:")
    for value in values:
        v = [r["val_loss"] for r in runs if r["value"] == value]
        click.echo(f"  {value!s:<8} {np.mean(v):.4f}  ({', '.join(f'{x:.4f}' for x in v)})")
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
