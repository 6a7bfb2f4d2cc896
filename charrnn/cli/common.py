"""Helpers shared by the ``charrnn`` commands: errors, model paths, corpus reading.

Kept apart from :mod:`charrnn.cli` so that the command modules can share them without
importing each other or the group.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import click

from charrnn.data.corpora import CORPORA, build_corpus
from charrnn.data.corpus import CorpusText, open_corpus
from charrnn.estimators.generator import CharRNNGenerator
from charrnn.io import atomic_write

__all__ = [
    "encoding_options",
    "DEBUG_ENV",
    "MODELS_ENV",
    "last_model_file",
    "library_errors",
    "load_generator",
    "model_option",
    "models_dir",
    "read_corpus",
    "remember_model",
    "resolve_model",
]

MODELS_ENV = "CHARRNN_MODELS_DIR"
DEBUG_ENV = "CHARRNN_DEBUG"


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


@contextlib.contextmanager
def library_errors() -> Iterator[None]:
    """Turn the library's user errors into one-line Click errors (exit code 1, no traceback).

    ``ValueError`` and ``TypeError`` are how charrnn reports bad input; ``OSError`` covers files
    the system refuses to read or write; ``RuntimeError`` a failed corpus download. Set
    ``CHARRNN_DEBUG=1`` to see the traceback instead.
    """
    try:
        yield
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            raise click.ClickException(f"{exc.filename}: {exc.strerror}") from None
        raise click.ClickException(_one_line(exc)) from None


# --------------------------------------------------------------------------------------------
# Where models live and which one was trained last


def models_dir() -> Path:
    """``$CHARRNN_MODELS_DIR`` or ``models`` in the working directory."""
    return Path(os.environ.get(MODELS_ENV) or "models").expanduser()


def last_model_file() -> Path:
    """The small text file naming the most recently trained model."""
    return models_dir() / "LAST"


def remember_model(path: Path) -> None:
    """Record ``path`` as the most recently trained model (atomically; failures are ignored).

    A path inside the working directory is stored relative to it, so a repository that is
    moved keeps working; any other path is stored absolute.
    """
    target = Path(os.path.abspath(path))
    cwd = Path.cwd()
    stored = target.relative_to(cwd) if target.is_relative_to(cwd) else target
    state = last_model_file()
    # The pointer is a convenience: failing to write it must not fail a finished training run.
    with contextlib.suppress(OSError):
        state.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(state, "w") as f:
            f.write(f"{stored}\n")


def resolve_model(model: Path | None) -> Path:
    """The model a command should use: ``--model`` if given, else the last trained one."""
    if model is not None:
        return model
    state = last_model_file()
    try:
        recorded = state.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        recorded = ""
    if not recorded:
        raise click.UsageError(
            f"no --model given and no trained model recorded in {state}; "
            "train one with `charrnn train CORPUS` or pass --model PATH"
        )
    path = Path(recorded)
    if not path.is_file():
        raise click.UsageError(
            f"the last trained model, {path} (recorded in {state}), no longer exists; "
            "pass --model PATH"
        )
    return path


def model_option(help_text: str = "Model file (.npz).", **kwargs):
    """The ``--model`` option of commands that read a model; defaults to the last trained one."""
    return click.option(
        "--model",
        "-m",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        show_default="the last trained model, named in models/LAST",
        help=help_text,
        **kwargs,
    )


def encoding_options(f):
    """``--encoding`` and ``--errors``: how a command decodes a text file it reads."""
    f = click.option(
        "--errors",
        type=click.Choice(["strict", "replace"]),
        default="strict",
        show_default=True,
        help="What to do with bytes the encoding cannot decode.",
    )(f)
    return click.option(
        "--encoding", default="utf-8", show_default=True, help="Text encoding of the file."
    )(f)


def load_generator(path: Path) -> CharRNNGenerator:
    """Load a generator model, with one-line errors for unreadable or foreign files."""
    from charrnn.io import load

    with library_errors():
        est = load(path)
    if not isinstance(est, CharRNNGenerator):
        raise click.ClickException(
            f"{path} holds a {type(est).__name__}, not a text generator (CharRNNGenerator)"
        )
    return est


# --------------------------------------------------------------------------------------------
# Corpora


def read_corpus(
    source: str,
    encoding: str = "utf-8",
    errors: str = "strict",
    stream_over: int | None = None,
) -> CorpusText:
    """:func:`charrnn.data.corpus.open_corpus`, saying what it does and with one-line errors.

    A named corpus not built yet is built first, with its progress shown. A file of more
    than ``stream_over`` bytes is announced, then scanned once (vocabulary, length, hash) so
    that a decoding error is reported before training starts.
    """
    if source in CORPORA and not CORPORA[source].path.is_file():
        click.echo(f"Building the {source!r} corpus (first use) into {CORPORA[source].path} ...")
        with library_errors():
            build_corpus(source, progress=lambda msg: click.echo(f"  {msg}"))
    with library_errors():
        corpus = open_corpus(source, encoding, errors, stream_over=stream_over, build=False)
        if corpus.stream is not None:
            size = corpus.path.stat().st_size
            click.echo(
                f"{corpus.path} is large ({size / 1e6:,.0f} MB): reading it in blocks; training "
                "reads it from a memory-mapped id cache"
            )
            corpus.n_chars  # noqa: B018 -- the scan pass, so a decoding error comes now
    return corpus
