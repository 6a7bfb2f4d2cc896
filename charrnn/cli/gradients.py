"""``charrnn gradients``: how far back a model's gradients reach (vanishing gradients, measured).

Two subjects: a model file read on text (``--task text``, the default), or the recall task
(``--task recall``): fresh rnn, lstm and gru models of :func:`charrnn.diagnostics.recall_generator`
read on recall documents, all on one figure, so the vanishing gradient and what the gated cells
and their gate initialisation do about it are in one picture.

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
from charrnn.diagnostics import (
    gradient_flow,
    gradient_flow_summary,
    init_model,
    recall_documents,
    recall_generator,
    recall_gradient_flow,
    sparkline,
)
from charrnn.engine.network import GATE_INITS, gate_bias
from charrnn.estimators.generator import CharRNNGenerator
from charrnn.io import atomic_write

__all__ = ["gradients", "plot_gradient_flow"]

SPARK_WIDTH = 60
CELL_ORDER = ("rnn", "lstm", "gru")
COLOURS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
# one line style per gate initialisation when --task recall compares several
GATE_STYLES = {"zeros": ":", "forget1": "--", "chrono": "-"}
RECALL_TRAIN_DOCUMENTS = 1000  # documents a --task recall --trained model trains on
RECALL_TEST_SEED = 10_000  # the held-out documents the gradient is measured on
DEFAULT_GATE_INIT = CharRNNGenerator().gate_init  # read, not repeated: the estimator's default


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


def gradient_flow_figure(
    curves: dict[str, np.ndarray],
    title: str,
    styles: dict[str, str] | None = None,
    key_lag: int | None = None,
):
    """Norm of the gradient against lag, log y, one line per (model, layer).

    Parameters
    ----------
    curves : dict of str to ndarray of shape (num_layers, W)
        Label -> :func:`~charrnn.diagnostics.gradient_flow` array. A label starting with a cell
        name is drawn in that cell's colour, any other in black; labels containing
        "initialised" are drawn thin.
    title : str
    styles : dict of str to str, optional
        Label -> matplotlib line style of its first layer. By default labels containing
        "initialised" are dotted, the others solid; a second layer is dash-dotted or dashed.
    key_lag : int, optional
        Marks this lag with a vertical line (the step that read the recall task's key).

    Returns
    -------
    matplotlib.figure.Figure
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(
            "--plot needs matplotlib, which is not installed: pip install 'charrnn[plot]'"
        ) from None
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for label, flow in curves.items():
        # layers by line style; initial weights thin and dashed next to trained ones
        first = ":" if "initialised" in label else "-"
        if styles is not None and label in styles:
            first = styles[label]
        layer_styles = [first, "-." if first in (":", "--") else "--"]
        # the compared cells in their colours, the user's own model in black
        colour = next((COLOURS[c] for c in CELL_ORDER if label.startswith(c)), "black")
        lags = np.arange(flow.shape[1])
        for k, row in enumerate(flow):
            positive = np.where(row > 0, row, np.nan)
            name = label if flow.shape[0] == 1 else f"{label}, layer {k + 1}"
            width = 1.0 if "initialised" in label else 1.8
            ax.plot(lags, positive, layer_styles[k % 2], color=colour, label=name, linewidth=width)
    if key_lag is not None:
        ax.axvline(key_lag, color="grey", linewidth=0.8, label=f"the key (lag {key_lag})")
    ax.set_yscale("log")
    ax.set_xlabel("lag (steps back from the scored step)")
    ax.set_ylabel("||dL / dh||")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_gradient_flow(curves: dict[str, np.ndarray], path: Path, title: str, **kwargs) -> None:
    """:func:`gradient_flow_figure` written to ``path`` (format from its suffix), atomically."""
    fig = gradient_flow_figure(curves, title, **kwargs)
    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png", dpi=120)


def _list_option(value: str, allowed, name: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise click.BadParameter(
            f"expected a comma-separated list of {', '.join(allowed)}, got {value!r}",
            param_hint=name,
        )
    return list(dict.fromkeys(items))  # repeats dropped, order kept


def _recall_flows(cells, gate_inits, lag, n_docs, trained, train_time, seed):
    """Gradient flow on recall documents for every (cell, gate_init): labels -> arrays, styles."""
    test = recall_documents(n_docs, lag, np.random.default_rng([RECALL_TEST_SEED, lag]))
    train = recall_documents(RECALL_TRAIN_DOCUMENTS, lag, np.random.default_rng([seed, lag]))
    flows: dict[str, np.ndarray] = {}
    styles: dict[str, str] = {}
    for cell in cells:
        # initialisations that give this cell the same biases are measured once, under one
        # name ("gru, zeros = forget1"; the rnn, which has no gates, under its own name)
        same: dict[bytes, list[str]] = {}
        for g in gate_inits:
            probe = gate_bias(cell, 4, g, np.random.default_rng(0), np.float64, t_max=10)
            same.setdefault(probe.tobytes(), []).append(g)
        for group in same.values():
            gate_init = group[0]
            name = cell if cell == "rnn" else f"{cell}, {' = '.join(group)}"
            est = recall_generator(cell, lag, gate_init=gate_init, random_state=seed)
            initial = clone(est).initialize(train)
            flows[f"{name} (initialised)"] = recall_gradient_flow(initial, test)
            if trained:
                click.echo(f"training {name} for {train_time:g} s ...")
                est.set_params(max_time=train_time, max_iter=10**6)
                est.fit(train)
                flows[f"{name} (trained {train_time:g} s)"] = recall_gradient_flow(est, test)
    if len(gate_inits) > 1:
        for label in flows:
            gate_init = next((g for g in gate_inits if f", {g}" in label), None)
            styles[label] = GATE_STYLES.get(gate_init, "-")
    return flows, styles


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


def _recall_command(
    cells, gate_inits, lag, n_docs, trained, train_time, seed, plot, model, text, corpus
):
    """``charrnn gradients --task recall``."""
    if model is not None or text is not None or corpus is not None:
        raise click.UsageError("--task recall takes no --model, --text or --corpus")
    cells = _list_option(cells, CELL_ORDER, "--cells")
    gate_inits = _list_option(gate_inits, GATE_INITS, "--gate-init")
    with library_errors():
        flows, styles = _recall_flows(cells, gate_inits, lag, n_docs, trained, train_time, seed)
    click.echo(
        f"gradient of the loss of recalling the key after the cue with respect to earlier "
        f"hidden states; mean over {n_docs} recall document(s) with {lag} dots, so the key "
        f"was read at lag {lag + 1}"
    )
    _print_flows(flows)
    if plot is not None:
        with library_errors():
            plot_gradient_flow(
                flows,
                plot,
                f"gradient flow on the recall task (lag {lag}, hidden 64, seed {seed})",
                styles=styles or None,
                key_lag=lag + 1,
            )
        click.echo(f"plot written to {plot}")


@click.command("gradients")
@model_option()
@click.option(
    "--task",
    type=click.Choice(["text", "recall"]),
    default="text",
    show_default=True,
    help="text: the model read on text. recall: fresh --cells models on the recall task "
    "(a key, --lag dots, '?', the key), no --model needed.",
)
@click.option(
    "--lag",
    type=click.IntRange(0),
    default=100,
    show_default=True,
    help="--task recall: dots between the key and the cue.",
)
@click.option(
    "--cells",
    default=",".join(CELL_ORDER),
    show_default=True,
    help="--task recall: the cells to draw, comma-separated.",
)
@click.option(
    "--gate-init",
    "gate_inits",
    default=DEFAULT_GATE_INIT,
    show_default=True,
    help=f"--task recall: gate initialisations to compare, comma-separated "
    f"({', '.join(GATE_INITS)}).",
)
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
    help="Windows averaged, spread evenly over the text (--task recall: documents).",
)
@click.option(
    "--plot",
    "--out",
    "plot",
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
    help="Seconds of training per cell for --compare --trained and --task recall --trained.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for initial weights, sampled text and --compare training.",
)
def gradients(
    model,
    task,
    lag,
    cells,
    gate_inits,
    text,
    corpus,
    window,
    n_windows,
    plot,
    compare,
    trained,
    train_time,
    seed,
):
    """How far back gradients reach: the norm of dL/dh by lag, per layer.

    For the loss at the last step of each window, prints the norm of its gradient with respect
    to the hidden state 1, 2, 5, 10, ... steps earlier, the lag where it falls below 1e-3 of its
    value at lag 1, and a sparkline of the whole curve. Without --text or --corpus the text is
    sampled from the model itself.

    With --task recall, no model is read: rnn, lstm and gru models set up for the recall task
    (one layer of 64 units, as scripts/recall_bench.py trains them) are measured on the loss of
    recalling the key after the cue, initialised or trained --train-time seconds each, e.g.
    charrnn gradients --task recall --gate-init zeros,chrono --initialised --out flow.png
    """
    if task == "recall":
        _recall_command(
            cells, gate_inits, lag, n_windows, trained, train_time, seed, plot, model, text, corpus
        )
        return
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
