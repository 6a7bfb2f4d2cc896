"""``charrnn evaluate``: a model's loss on a corpus, and on its held-out tail where known."""

from __future__ import annotations

import math

import click
import numpy as np

from charrnn.cli.common import (
    library_errors,
    load_generator,
    model_option,
    read_corpus,
    resolve_model,
)
from charrnn.data.corpora import CORPORA

__all__ = ["evaluate"]


def _loss_line(label: str, n_chars: int, nats: float) -> str:
    return (
        f"{label} ({n_chars:,} characters): {nats:.4f} nats/char, "
        f"{nats / math.log(2):.4f} bits/char, perplexity {math.exp(nats):.3f}"
    )


@click.command()
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
    from charrnn.engine.training import stream_loss_on_all_cores

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
