"""``charrnn corpora``: list the named corpora and build them."""

from __future__ import annotations

import click

from charrnn.cli.common import library_errors
from charrnn.data.corpora import CORPORA, build_corpus, list_corpora

__all__ = ["corpora"]


@click.command()
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
