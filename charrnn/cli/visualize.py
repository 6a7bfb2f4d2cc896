"""``charrnn visualize``: one HTML page showing what a model computes along a text."""

from __future__ import annotations

from pathlib import Path

import click

from charrnn.cli.common import (
    encoding_options,
    library_errors,
    load_generator,
    model_option,
    resolve_model,
)
from charrnn.report.activations import DEFAULT_MAX_CHARS, write_activation_page

__all__ = ["visualize"]


@click.command()
@model_option()
@click.option(
    "--text",
    "text_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Text file the model reads.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("activations.html"),
    show_default=True,
    help="HTML file to write.",
)
@click.option(
    "--max-chars",
    type=click.IntRange(1),
    default=DEFAULT_MAX_CHARS,
    show_default=True,
    help="Show at most this many characters (the start of the text); longer pages get slow.",
)
@encoding_options
def visualize(model, text_file, out, max_chars, encoding, errors):
    """Write a self-contained HTML page of the model reading a text.

    The text is coloured by the model's surprise at each character or by any hidden unit's
    activation (pick a layer, the state, for an LSTM the cell state too, and a unit); units
    are listed by how closely they follow the text's quotes, brackets, position in the line
    and newlines. Hover over a character for the five most likely next characters.
    """
    path = resolve_model(model)
    gen = load_generator(path)
    try:
        text = text_file.read_text(encoding=encoding, errors=errors)
    except LookupError:
        raise click.BadParameter(
            f"unknown encoding {encoding!r}", param_hint="--encoding"
        ) from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{text_file} is not valid {encoding} ({exc.reason} at byte {exc.start}); "
            "pass --encoding or --errors replace"
        ) from None
    with library_errors():
        summary = write_activation_page(gen, text, out, max_chars=max_chars, title=text_file.name)
    if summary.message:
        click.echo(
            f"note: {text_file} has {summary.total_chars:,} characters; the page shows the "
            f"first {summary.shown_chars:,} (--max-chars {max_chars})"
        )
    click.echo(f"wrote {summary.path} ({summary.shown_chars:,} characters of {text_file.name})")
