"""``charrnn info``: a model's settings, size and training history, printed or drawn."""

from __future__ import annotations

import math
from pathlib import Path

import click
from tqdm import tqdm

from charrnn.cli.common import library_errors, load_generator, model_option, resolve_model
from charrnn.engine import network
from charrnn.estimators.generator import CharRNNGenerator
from charrnn.io import atomic_write

__all__ = ["describe_model", "history_table", "info", "plot_history"]

_LN2 = math.log(2)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def history_table(history: list[dict]) -> str:
    """The training history, one row per evaluation (``+`` marks a stop partway through a pass).

    Parameters
    ----------
    history : list of dict
        ``CharRNNGenerator.history_``.
    """
    head = (
        f"{'pass':>5} {'train loss':>10} {'val loss':>9} {'chars seen':>14} {'time':>9} "
        f"{'grad norm mean':>14} {'max':>8}"
    )
    rows = [head]
    for rec in history:
        label = f"{rec['epoch']}{'+' if rec.get('partial') else ''}"
        rows.append(
            f"{label:>5} {_fmt(rec.get('train_loss'), '.4f'):>10} "
            f"{_fmt(rec.get('val_loss'), '.4f'):>9} {rec.get('chars_seen', 0):>14,} "
            f"{tqdm.format_interval(rec.get('elapsed') or 0):>9} "
            f"{_fmt(rec.get('grad_norm_mean'), '.3f'):>14} "
            f"{_fmt(rec.get('grad_norm_max'), '.3f'):>8}"
        )
    if any(rec.get("partial") for rec in history):
        rows.append("(n+ : stopped partway through the pass after pass n)")
    return "\n".join(rows)


def describe_model(gen: CharRNNGenerator, path: Path) -> str:
    """A few lines of text about a loaded model (``charrnn info``)."""
    cfg = gen.config_
    inputs = "one-hot input" if cfg.embedding_dim is None else f"embedding {cfg.embedding_dim}"
    chars = "".join(gen.vocab_.chars)
    lines = [
        f"model: {path}",
        f"network: {cfg.cell}, {cfg.num_layers} layer(s) x {cfg.hidden_size} units, {inputs}, "
        f"dropout {cfg.dropout:g}, {cfg.dtype}",
        f"parameter count: {network.n_parameters(gen.params_):,}",
        f"vocabulary: {gen.vocab_.size} symbols ({len(gen.vocab_.chars)} characters + "
        f"end-of-document + unknown): {chars[:60]!r}{' ...' if len(chars) > 60 else ''}",
    ]
    corpus = getattr(gen, "training_corpus_", None)
    if isinstance(corpus, dict):
        lines.append(f"training text: {corpus.get('source')} ({corpus.get('n_chars', 0):,} chars)")
    lines.append("parameters:")
    params = gen.get_params()
    width = max(len(k) for k in params)
    lines += [f"  {k:<{width}} = {v!r}" for k, v in sorted(params.items())]
    state = gen.training_progress_
    elapsed = state["elapsed"] if state else (gen.history_[-1]["elapsed"] if gen.history_ else 0)
    lines.append(
        f"training: {gen.n_iter_} complete pass(es), {gen.n_chars_seen_:,} characters seen, "
        f"{tqdm.format_interval(elapsed)}; stopped: {gen.stop_reason_ or 'unknown'}"
        + ("; diverged" if gen.diverged_ else "")
        + ("; training state saved (`charrnn train ... --resume` continues)" if state else "")
    )
    best = gen.best_validation_score_
    if best is not None:
        loss = -best
        lines.append(
            f"best validation loss: {loss:.4f} nats/char ({loss / _LN2:.4f} bits/char, "
            f"perplexity {math.exp(min(loss, 700.0)):.3f})"  # exp overflows past ~709
        )
    else:
        lines.append("best validation loss: none (no validation)")
    if gen.history_:
        lines += ["history:", history_table(gen.history_)]
    return "\n".join(lines)


def plot_history(gen: CharRNNGenerator, path: str | Path) -> None:
    """Draw the loss curves and gradient norms against characters seen into an image file.

    The format follows the file's suffix (png, pdf, svg, ...). The file is written atomically.

    Raises
    ------
    ValueError
        If matplotlib is missing, the suffix names no image format, or there is no history.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(
            "--plot needs matplotlib, which is not installed: pip install 'charrnn[plot]'"
        ) from None
    path = Path(path)
    history = gen.history_
    if not history:
        raise ValueError("the model has no training history to plot")
    fig = Figure(figsize=(8, 6), layout="constrained")
    formats = fig.canvas.get_supported_filetypes()
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in formats:
        raise ValueError(
            f"cannot tell the image format of {str(path)!r} from its suffix; use one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    x = [r["chars_seen"] for r in history]
    ax_loss, ax_grad = fig.subplots(2, 1, sharex=True)
    ax_loss.plot(x, [r["train_loss"] for r in history], "o-", label="training")
    val = [(xi, r["val_loss"]) for xi, r in zip(x, history) if r["val_loss"] is not None]
    if val:
        ax_loss.plot(*zip(*val), "s-", label="validation")
    ax_loss.set_ylabel("loss (nats/char)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    for key, style in (("grad_norm_mean", "o-"), ("grad_norm_max", "^--")):
        pts = [(xi, r[key]) for xi, r in zip(x, history) if r.get(key) is not None]
        if pts:
            ax_grad.plot(*zip(*pts), style, label=key.replace("grad_norm_", ""))
    if gen.clip_norm is not None:
        ax_grad.axhline(gen.clip_norm, color="grey", linestyle=":", label="clip norm")
    ax_grad.set_yscale("log")
    ax_grad.set_ylabel("gradient norm (before clipping)")
    ax_grad.set_xlabel("characters seen")
    ax_grad.legend()
    ax_grad.grid(alpha=0.3)
    fig.suptitle(f"{gen.config_.cell}, {gen.config_.num_layers} x {gen.config_.hidden_size}")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt)


@click.command()
@model_option()
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="no plot",
    help="Draw the loss curves and gradient norms to this image file (needs matplotlib).",
)
def info(model, plot):
    """Describe a model: parameters, vocabulary, training history, best validation loss."""
    path = resolve_model(model)
    gen = load_generator(path)
    if plot is not None:  # first, so that a bad --plot fails before anything is printed
        with library_errors():
            plot_history(gen, plot)
    click.echo(describe_model(gen, path))
    if plot is not None:
        click.echo(f"plot written to {plot}")
