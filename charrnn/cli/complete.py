"""``charrnn complete``: the most likely next words after a prefix, with their probabilities."""

from __future__ import annotations

import click

from charrnn.cli.common import library_errors, load_generator, model_option, resolve_model

__all__ = ["complete"]


@click.command()
@model_option()
@click.argument("prefix")
@click.option(
    "--top-k",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Number of words to list.",
)
@click.option(
    "--max-chars",
    type=click.IntRange(1),
    default=30,
    show_default=True,
    help="Longest word searched for.",
)
@click.option(
    "--beam-width",
    type=click.IntRange(1),
    default=None,
    show_default="max(8 x top-k, 64)",
    help="Unfinished words kept at each character of the beam search.",
)
def complete(model, prefix, top_k, max_chars, beam_width):
    """The most likely next words after PREFIX, best first.

    A word is letters, digits, apostrophes and hyphens up to a space, other punctuation or the
    end of the document; its probability is the model's for its characters and the boundary
    after it. When PREFIX does not end in a space the word is taken to start after one, and
    that space's probability counts in the word's.
    """
    path = resolve_model(model)
    gen = load_generator(path)
    with library_errors():
        words = gen.complete(prefix, top_k=top_k, max_chars=max_chars, beam_width=beam_width)
    if not words:
        click.echo(f"no word of at most {max_chars} characters found after {prefix!r}")
        return
    width = max(len(word) for word, _ in words)
    for rank, (word, p) in enumerate(words, 1):
        click.echo(f"{rank:>2}. {word:<{width}}  {p:.4f}")
