"""The ``charrnn`` command line: thin Click commands over charrnn's library.

This module only builds the command group and registers the commands; each command lives in
its own module (``charrnn.cli.train``, ``.sample``, ``.evaluate``, ``.info``, ``.corpora``,
``.gradients``, ``.forecast``, ``.complete``, ``.fill``, ``.visualize``), the helpers they
share in :mod:`charrnn.cli.common` and the options built from the estimators' parameter tables
in :mod:`charrnn.cli.options`.
"""

from __future__ import annotations

import click

from charrnn import __version__

# Imported under other names: `from charrnn.cli.train import train` would shadow the
# submodule `charrnn.cli.train` with the command object.
from charrnn.cli.complete import complete as complete_command
from charrnn.cli.corpora import corpora as corpora_command
from charrnn.cli.evaluate import evaluate as evaluate_command
from charrnn.cli.fill import fill as fill_command
from charrnn.cli.forecast import forecast as forecast_command
from charrnn.cli.gradients import gradients as gradients_command
from charrnn.cli.info import info as info_command
from charrnn.cli.sample import sample as sample_command
from charrnn.cli.train import train as train_command
from charrnn.cli.visualize import visualize as visualize_command

__all__ = ["cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """Character-level language models (RNN, LSTM, GRU) in pure NumPy.

    \b
    Quick start:
      charrnn train shakespeare --max-time 600   # saves models/shakespeare.npz
      charrnn sample --len 200                   # from the last trained model
      charrnn complete "The cat sat on the"      # the most likely next words
      charrnn visualize --text FILE              # an HTML page of the hidden units
      charrnn forecast co2                       # the next season of a series
    """


cli.add_command(train_command)
cli.add_command(sample_command)
cli.add_command(evaluate_command)
cli.add_command(info_command)
cli.add_command(corpora_command)
cli.add_command(gradients_command)
cli.add_command(forecast_command)
cli.add_command(complete_command)
cli.add_command(fill_command)
cli.add_command(visualize_command)


if __name__ == "__main__":  # pragma: no cover
    cli()
