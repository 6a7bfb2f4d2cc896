"""``charrnn gradients``: how far back a model's gradients reach (vanishing gradients, measured).

Registered on the command group with ``cli.add_command(gradients)``; the numerics are in
:mod:`charrnn.diagnostics`.
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np
from sklearn.base import clone

from charrnn.cli.common import (
    library_errors,
    load_generator,
    model_option,
    read_corpus,
    resolve_model,
)
from charrnn.data.corpora import VALIDATION_FRACTION
from charrnn.diagnostics import gradient_flow, gradient_flow_summary, init_model, sparkline
from charrnn.io import atomic_write

__all__ = ["gradients", "plot_gradient_flow"]

SPARK_WIDTH = 60
CELL_ORDER = ("rnn", "lstm", "gru")
COLOURS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}


def _describe(model, state: str) -> str:
    c = model.config_
    return f"{c.cell} ({c.num_layers} x {c.hidden_size}, {state})"


def _init_params(model, cell: str, seed: int) -> dict:
    """``model``'s hyperparameters for a new model of ``cell`` (size taken from its config)."""
    params = clone(model).get_params()
    params.update(
        cell=cell,
        random_state=seed,
        warm_start=False,
        verbose=0,
        hidden_size=model.config_.hidden_size,
        num_layers=model.config_.num_layers,
    )
    return params


def _fresh_like(model, cell: str, seed: int):
    """An initialised model with ``model``'s vocabulary, size and hyperparameters."""
    # the vocabulary of a text made of the model's characters is the model's vocabulary
    return init_model("".join(model.vocab_.chars), **_init_params(model, cell, seed))


def _train_briefly(model, cell: str, text: str, seconds: float, seed: int):
    """A model like ``model`` (other cell) trained on ``text`` for ``seconds``.

    Returns the model at initialisation (the exact weights training starts from) and trained.
    """
    params = _init_params(model, cell, seed)
    initial = init_model(text, **params)
    params.update(max_time=seconds, max_iter=10**6, validation_fraction=0.0, early_stopping=False)
    est = clone(initial).set_params(**params)
    est.fit(text)
    return initial, est


def _source_text(model, text, corpus, window, seed):
    """The text to read and a description of it."""
    if text is not None and corpus is not None:
        raise click.UsageError("pass either --text or --corpus, not both")
    if text is not None:
        return text, None, "--text"
    if corpus is not None:
        c = read_corpus(corpus)
        cut = int(len(c.text) * (1.0 - VALIDATION_FRACTION))
        # windows from the held-out tail; the head is what --compare --trained trains on
        return c.text[cut:], c.text[:cut], f"the held-out tail of {c.label}"
    sample = model.sample(1, length=2 * window, random_state=seed, stop_at_end=False)[0]
    return sample, None, "text sampled from the model"


def plot_gradient_flow(curves: dict[str, np.ndarray], path: Path, title: str) -> None:
    """Norm of the gradient against lag, log y, one line per (model, layer); written atomically.

    Parameters
    ----------
    curves : dict of str to ndarray of shape (num_layers, W)
        Label -> :func:`~charrnn.diagnostics.gradient_flow` array. A label starting with a cell
        name is drawn in that cell's colour, any other in black; labels containing
        "initialised" are drawn dotted.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(
            "--plot needs matplotlib, which is not installed: pip install 'charrnn[plot]'"
        ) from None
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for label, flow in curves.items():
        # layers by line style; initial weights thin and dashed next to trained ones
        styles = [":", "-."] if "initialised" in label else ["-", "--"]
        # the compared cells in their colours, the user's own model in black
        colour = next((COLOURS[c] for c in CELL_ORDER if label.startswith(c)), "black")
        lags = np.arange(flow.shape[1])
        for k, row in enumerate(flow):
            positive = np.where(row > 0, row, np.nan)
            name = label if flow.shape[0] == 1 else f"{label}, layer {k + 1}"
            width = 1.0 if "initialised" in label else 1.8
            ax.plot(lags, positive, styles[k % 2], color=colour, label=name, linewidth=width)
    ax.set_yscale("log")
    ax.set_xlabel("lag (steps back from the scored step)")
    ax.set_ylabel("||dL / dh||")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt, dpi=120)


def _print_flows(flows: dict[str, np.ndarray]) -> None:
    positive = np.concatenate([f[f > 0] for f in flows.values()])
    lo, hi = (float(positive.min()), float(positive.max())) if positive.size else (None, None)
    window = next(iter(flows.values())).shape[1]
    lags = gradient_flow_summary(next(iter(flows.values())))["lags"]
    header = " " * 11 + "".join(f"{'lag ' + str(lag):>10}" for lag in lags) + "   <1e-3 at"
    for label, flow in flows.items():
        s = gradient_flow_summary(flow)
        click.echo(f"\n{label}")
        click.echo(header)
        for k, row in enumerate(flow):
            norms = "".join(f"{v:>10.2e}" for v in s["norms"][k])
            vanish = s["vanish_lag"][k]
            vanish_text = "never" if vanish is None else f"lag {vanish}"
            click.echo(f"  layer {k + 1:<3}{norms}   {vanish_text:>8}")
            click.echo(" " * 13 + sparkline(row, lo, hi, width=SPARK_WIDTH))
    if lo is not None:
        click.echo(
            f"\nsparklines: lag 0 .. {window - 1} left to right, log scale "
            f"{lo:.1e} (▁) .. {hi:.1e} (█), shared by all lines"
        )


@click.command("gradients")
@model_option()
@click.option(
    "--text",
    default=None,
    show_default="text sampled from the model",
    help="Text to read (at least --window characters).",
)
@click.option(
    "--corpus",
    metavar="NAME",
    default=None,
    show_default="none",
    help="Corpus name or text file; windows come from its held-out last 10%.",
)
@click.option(
    "--window",
    type=click.IntRange(2),
    default=100,
    show_default=True,
    help="Steps per window: the loss at its last step is differentiated.",
)
@click.option(
    "--windows",
    "n_windows",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Windows averaged, spread evenly over the text.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="no plot",
    help="Draw the curves into this image file (needs matplotlib).",
)
@click.option(
    "--compare",
    is_flag=True,
    default=False,
    show_default=True,
    help="Also show rnn, lstm and gru models of the model's size.",
)
@click.option(
    "--trained/--initialised",
    "trained",
    default=True,
    show_default=True,
    help="Use trained weights (--compare: train each cell for --train-time on the "
    "text), or fresh initial weights of the same architecture.",
)
@click.option(
    "--train-time",
    type=click.FloatRange(0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds of training per cell for --compare --trained.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for initial weights, sampled text and --compare training.",
)
def gradients(model, text, corpus, window, n_windows, plot, compare, trained, train_time, seed):
    """How far back gradients reach: the norm of dL/dh by lag, per layer.

    For the loss at the last step of each window, prints the norm of its gradient with respect
    to the hidden state 1, 2, 5, 10, ... steps earlier, the lag where it falls below 1e-3 of its
    value at lag 1, and a sparkline of the whole curve. Without --text or --corpus the text is
    sampled from the model itself.
    """
    path = resolve_model(model)
    model = load_generator(path)
    source, train_text, described = _source_text(model, text, corpus, window, seed)
    flows: dict[str, np.ndarray] = {}
    with library_errors():
        unknown = model.vocab_.unknown_chars(source)
        if unknown:
            click.echo(f"note: {len(unknown)} character(s) unknown to the model read as UNK")
        subject = model if trained else _fresh_like(model, model.config_.cell, seed)
        if not trained:
            state = "initialised"
        elif getattr(model, "n_chars_seen_", 0):
            state = f"trained on {model.n_chars_seen_:,} chars"
        else:
            state = "untrained"
        label = f"{path.name}: " + _describe(model, state)
        flows[label] = gradient_flow(subject, source, window, n_windows=n_windows)
        if compare:
            if trained and train_text is None and text is None:
                raise click.UsageError("--compare --trained needs --text or --corpus to train on")
            for cell in CELL_ORDER:
                if trained:
                    click.echo(f"training {cell} for {train_time:g} s ...")
                    initial, other = _train_briefly(
                        model, cell, train_text or source, train_time, seed
                    )
                    # before and after: the weights this run started from, then the trained ones
                    flows[_describe(initial, "initialised")] = gradient_flow(
                        initial, source, window, n_windows=n_windows
                    )
                    state = f"trained {train_time:g} s"
                else:
                    other = _fresh_like(model, cell, seed)
                    state = "initialised"
                flows[_describe(other, state)] = gradient_flow(
                    other, source, window, n_windows=n_windows
                )
    n_used = min(n_windows, len(source) - window + 1)
    click.echo(
        f"gradient of the loss at the last step of a {window}-step window with respect to "
        f"earlier hidden states; mean over {n_used} window(s) of {described}"
    )
    _print_flows(flows)
    if plot is not None:
        with library_errors():
            plot_gradient_flow(
                flows, plot, f"gradient flow through time (window {window}, {described})"
            )
        click.echo(f"plot written to {plot}")
    if not math.isfinite(sum(float(f.sum()) for f in flows.values())):
        click.echo("warning: some gradients are not finite (exploding?)")
