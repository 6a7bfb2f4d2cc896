"""``charrnn fill``: the ways to fill a template's blanks, ranked by the model."""

from __future__ import annotations

import math

import click

from charrnn.cli.common import library_errors, load_generator, model_option, resolve_model

__all__ = ["fill"]


def _options(ctx, param, values):
    """``--candidates film,book`` -> ``["film", "book"]``, one list per use of the option."""
    return [value.split(",") for value in values]


@click.command()
@model_option()
@click.argument("template")
@click.option(
    "--candidates",
    "-c",
    multiple=True,
    required=True,
    callback=_options,
    metavar="A,B,...",
    help="The options for one blank, comma-separated; repeat once per blank, in order.",
)
@click.option(
    "--top",
    type=click.IntRange(1),
    default=None,
    show_default="all",
    help="Show only the best N filled texts.",
)
def fill(model, template, candidates, top):
    """Fill the blanks (___) of TEMPLATE with every combination of candidates, best first.

    Each filled text is scored by the model as a whole document, so the words after a blank
    count as much as those before it. Scores are log-likelihoods in nats; the share is each
    text's probability relative to all the filled texts.

    \b
    Example:
      charrnn fill "I love this ___. It's so ___." -c film,book -c good,bad
    """
    path = resolve_model(model)
    gen = load_generator(path)
    with library_errors():
        ranked = gen.fill(template, candidates)
    best = ranked[0][1]
    total = sum(math.exp(score - best) for _, score in ranked)
    shown = ranked if top is None else ranked[:top]
    width = max(len(text) for text, _ in shown)
    for rank, (text, score) in enumerate(shown, 1):
        share = math.exp(score - best) / total
        click.echo(f"{rank:>2}. {text:<{width}}  {score:10.3f} nats  {share:6.1%}")
