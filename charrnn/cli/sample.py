"""``charrnn sample``: text from a trained model, printed after its prime."""

from __future__ import annotations

import click
from click.core import ParameterSource

from charrnn.cli.common import library_errors, load_generator, model_option, resolve_model
from charrnn.cli.options import FiniteFloat

__all__ = ["sample"]


@click.command()
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
@click.option(
    "--beam-width",
    type=click.IntRange(1),
    default=None,
    show_default="off: random text",
    help="Print the most likely continuation, found by a beam search keeping this many "
    "candidates (with --n, the N most likely), instead of random text.",
)
@click.pass_context
def sample(
    ctx, model, length, prime, temperature, top_k, top_p, n_samples, seed, stop_at_end, beam_width
):
    """Generate text from a trained model: the prime followed by its continuation."""
    path = resolve_model(model)
    gen = load_generator(path)
    if beam_width is not None:
        if ctx.get_parameter_source("temperature") is not ParameterSource.DEFAULT:
            raise click.UsageError("--beam-width finds the most likely text: drop --temperature")
        if top_k is not None or top_p is not None:
            raise click.UsageError("--beam-width finds the most likely text: drop --top-k/--top-p")
        temperature = 1.0  # the beam ranks by the model's own probabilities
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
            beam_width=beam_width,
        )
    for i, text in enumerate(texts):
        if n_samples > 1:
            click.echo(f"{'' if i == 0 else chr(10)}----- sample {i + 1} of {n_samples} -----")
        click.echo(prime + text)
