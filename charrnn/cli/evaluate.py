"""``charrnn evaluate``: a model's loss on a corpus, and on its held-out tail where known."""

from __future__ import annotations

import math

import click
import numpy as np

from charrnn.cli.common import (
    encoding_options,
    library_errors,
    load_generator,
    model_option,
    read_corpus,
    resolve_model,
)
from charrnn.data.corpora import CORPORA
from charrnn.data.corpus import CorpusText, fingerprint_mismatch
from charrnn.estimators.evaluation import encode_text, held_out_loss, text_loss

__all__ = ["evaluate"]


def _loss_line(label: str, n_chars: int, nats: float) -> str:
    return (
        f"{label} ({n_chars:,} characters): {nats:.4f} nats/char, "
        f"{nats / math.log(2):.4f} bits/char, perplexity {math.exp(nats):.3f}"
    )


def _trained_on(gen, corpus: CorpusText) -> bool:
    """Whether ``gen`` recorded ``corpus`` as its training text."""
    recorded = getattr(gen, "training_corpus_", None)
    return isinstance(recorded, dict) and not fingerprint_mismatch(recorded, corpus.fingerprint())


@click.command()
@model_option()
@click.argument("corpus_source", metavar="CORPUS_OR_PATH")
@encoding_options
def evaluate(model, corpus_source, encoding, errors):
    """Loss of a model on CORPUS_OR_PATH (nats and bits per character, perplexity).

    The text is read as during training (one document followed by an end symbol) and
    scored as training scores validation text. For a named corpus the validation split, the
    tail that training holds out, is reported as well.
    """
    path = resolve_model(model)
    gen = load_generator(path)
    corpus = read_corpus(corpus_source, encoding, errors)
    with library_errors():
        ids = encode_text(gen, corpus.text)
        unknown = gen.vocab_.unknown_chars(corpus.text)
        n_unknown = int(np.count_nonzero(ids == gen.vocab_.UNK_ID))
        click.echo(f"model {path} on {corpus.source} ({corpus.path})")
        whole = text_loss(gen, ids, progress=True)
        click.echo(_loss_line("whole text", corpus.n_chars, whole))
        fraction = None
        if corpus.named:
            fraction = CORPORA[corpus.source].validation_fraction
            label = f"validation split (last {fraction:.0%} of the corpus)"
        elif gen.validation_fraction > 0 and _trained_on(gen, corpus):
            fraction = gen.validation_fraction
            label = f"validation split (last {fraction:.0%}, held out in training)"
            if getattr(gen, "final_stretch_", None) is not None:
                # the final stretch trained on it: its loss no longer measures unseen text
                label = f"validation split (last {fraction:.0%}, held out, then trained on)"
        held_out = held_out_loss(gen, ids, fraction, progress=True) if fraction else None
        if held_out is not None:
            click.echo(_loss_line(label, *held_out))
    if unknown:
        shown = "".join(unknown[:40]) + (" ..." if len(unknown) > 40 else "")
        click.echo(
            f"unknown characters: {n_unknown:,} occurrences of {len(unknown)} characters the "
            f"model never saw ({shown!r}); each is scored as the unknown symbol"
        )
    else:
        click.echo("unknown characters: none")
