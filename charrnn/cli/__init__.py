"""The ``charrnn`` command line: thin Click commands over :class:`CharRNNGenerator`.

Commands: ``train`` (in :mod:`charrnn.cli.train`), ``sample``, ``evaluate``, ``info`` and
``corpora``. Commands defined in other modules are attached with ``cli.add_command``; shared
helpers (model paths, the last-trained-model pointer, error handling) are in
:mod:`charrnn.cli.common`.
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np

from charrnn import __version__
from charrnn.cli.common import (
    FiniteFloat,
    library_errors,
    load_generator,
    model_option,
    read_corpus,
    resolve_model,
)
from charrnn.cli.gradients import gradients as gradients_command
from charrnn.cli.info import describe_model, plot_history
from charrnn.cli.train import train as train_command
from charrnn.data.corpora import CORPORA, build_corpus, list_corpora

__all__ = ["cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """Character-level language models (RNN, LSTM, GRU) in pure NumPy.

    \b
    Quick start:
      charrnn train shakespeare --max-time 600   # saves models/shakespeare.npz
      charrnn sample --len 200                   # from the last trained model
    """


cli.add_command(train_command)
cli.add_command(gradients_command)


# --------------------------------------------------------------------------------------------
# sample


@cli.command()
@model_option()
@click.option(
    "--len",
    "--length",
    "length",
    type=click.IntRange(0),
    default=500,
    show_default=True,
    help="Characters to generate after the prime.",
)
@click.option("--prime", default="", show_default=True, help="Text the samples start from.")
@click.option(
    "--temperature",
    "-t",
    type=FiniteFloat(0, min_open=True),
    default=0.8,
    show_default=True,
    help="Below 1: safer, more repetitive text; above 1: more surprising text.",
)
@click.option(
    "--top-k",
    type=click.IntRange(1),
    default=None,
    show_default="off",
    help="Draw only from the K most likely characters.",
)
@click.option(
    "--top-p",
    type=FiniteFloat(0, 1, min_open=True),
    default=None,
    show_default="off",
    help="Draw only from the most likely characters holding probability P.",
)
@click.option(
    "--n",
    "n_samples",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Number of samples.",
)
@click.option(
    "--seed", type=click.IntRange(0), default=None, show_default="random", help="Random seed."
)
@click.option(
    "--stop-at-end/--no-stop-at-end",
    default=False,
    show_default=True,
    help="End a sample early where the model ends a document.",
)
def sample(model, length, prime, temperature, top_k, top_p, n_samples, seed, stop_at_end):
    """Generate text from a trained model: the prime followed by its continuation."""
    path = resolve_model(model)
    gen = load_generator(path)
    with library_errors():
        texts = gen.sample(
            n_samples,
            length,
            prime=prime,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            random_state=seed,
            stop_at_end=stop_at_end,
        )
    for i, text in enumerate(texts):
        if n_samples > 1:
            click.echo(f"{'' if i == 0 else chr(10)}----- sample {i + 1} of {n_samples} -----")
        click.echo(prime + text)


# --------------------------------------------------------------------------------------------
# evaluate


def _loss_line(label: str, n_chars: int, nats: float) -> str:
    return (
        f"{label} ({n_chars:,} characters): {nats:.4f} nats/char, "
        f"{nats / math.log(2):.4f} bits/char, perplexity {math.exp(nats):.3f}"
    )


@cli.command()
@model_option()
@click.argument("corpus_source", metavar="CORPUS_OR_PATH")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the file.")
@click.option(
    "--errors",
    type=click.Choice(["strict", "replace"]),
    default="strict",
    show_default=True,
    help="What to do with bytes the encoding cannot decode.",
)
def evaluate(model, corpus_source, encoding, errors):
    """Loss of a model on CORPUS_OR_PATH (nats and bits per character, perplexity).

    The text is read as during training (one document followed by an end symbol) and
    scored as training scores validation text. For a named corpus the validation split, the
    tail that training holds out, is reported as well.
    """
    from charrnn.data.batches import split_train_validation
    from charrnn.engine.tasks import stream_loss_on_all_cores

    path = resolve_model(model)
    gen = load_generator(path)
    corpus = read_corpus(corpus_source, encoding, errors)
    with library_errors():
        ids = gen.vocab_.encode_documents([corpus.text])
        unknown = gen.vocab_.unknown_chars(corpus.text)
        n_unknown = int(np.count_nonzero(ids == gen.vocab_.UNK_ID))
        click.echo(f"model {path} on {corpus.source} ({corpus.path})")
        whole = stream_loss_on_all_cores(gen.params_, gen.config_, ids)
        click.echo(_loss_line("whole text", len(corpus.text), whole))
        fraction = None
        if corpus.named:
            fraction = CORPORA[corpus.source].validation_fraction
            label = f"validation split (last {fraction:.0%} of the corpus)"
        elif (getattr(gen, "training_corpus_", None) or {}).get("sha256") == (
            corpus.fingerprint()["sha256"]
        ) and gen.validation_fraction > 0:
            fraction = gen.validation_fraction
            label = f"validation split (last {fraction:.0%}, held out in training)"
        if fraction:
            _, val_ids = split_train_validation(ids, fraction)
            if len(val_ids) >= 2:
                loss = stream_loss_on_all_cores(gen.params_, gen.config_, val_ids)
                click.echo(_loss_line(label, len(val_ids), loss))
    if unknown:
        shown = "".join(unknown[:40]) + (" ..." if len(unknown) > 40 else "")
        click.echo(
            f"unknown characters: {n_unknown:,} occurrences of {len(unknown)} characters the "
            f"model never saw ({shown!r}); each is scored as the unknown symbol"
        )
    else:
        click.echo("unknown characters: none")


# --------------------------------------------------------------------------------------------
# info


@cli.command()
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


# --------------------------------------------------------------------------------------------
# corpora


@cli.command()
@click.option(
    "--build",
    type=click.Choice([*sorted(CORPORA), "all"]),
    is_flag=False,
    flag_value="all",
    default=None,
    show_default="build nothing",
    help="Build the named corpus (all of them when no name is given), even if built already.",
)
def corpora(build):
    """List the named corpora: size, whether built, where they live."""
    names = sorted(CORPORA) if build == "all" else [build] if build else []
    for name in names:
        click.echo(f"Building {name!r} ...")
        with library_errors():
            build_corpus(name, force=True, progress=lambda msg: click.echo(f"  {msg}"))
    for row in list_corpora():
        size = f"{row['size_bytes'] / 1e6:,.1f} MB" if row["built"] else "not built"
        click.echo(f"{row['name']:<12} {size:>10}  {row['path']}")
        click.echo(f"{'':<12} {'':>10}  {row['description']}")
    click.echo("Any text file path works wherever a corpus name does.")


if __name__ == "__main__":  # pragma: no cover
    cli()
