"""Helpers shared by the ``charrnn`` commands: errors, model paths, corpus reading.

Kept apart from :mod:`charrnn.cli` so that commands living in other modules (``train``, and
later ones such as ``gradients``) can use them without importing each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import click

from charrnn.data.corpora import CORPORA, build_corpus, read_text, resolve_corpus
from charrnn.data.textfile import TextCorpus
from charrnn.data.vocab import CharVocab
from charrnn.estimators.generator import CharRNNGenerator
from charrnn.io import atomic_write

__all__ = [
    "DEBUG_ENV",
    "MODELS_ENV",
    "Corpus",
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


class Corpus:
    """A corpus read for a command: its label, file, text and a fingerprint of the text.

    The text is either held as a string (``text``) or, for a big file, left on disk and read
    in blocks through a :class:`~charrnn.data.textfile.TextCorpus` (``stream``; ``text`` is None).
    ``data``, ``n_chars``, ``n_distinct``, ``ids`` and ``fingerprint`` work for both.

    Attributes
    ----------
    source : str
        What the user typed: a corpus name or a path.
    label : str
        The corpus name, or the file's stem (used for the default model name).
    named : bool
        True for a named corpus (``shakespeare``, ``python``).
    path : Path
    text : str or None
    stream : TextCorpus or None
    """

    def __init__(
        self, source: str, path: Path, text: str | None, stream: TextCorpus | None = None
    ) -> None:
        if (text is None) == (stream is None):
            raise ValueError("Corpus needs exactly one of text and stream")
        self.source = source
        self.named = source in CORPORA
        self.label = source if self.named else path.stem
        self.path = path
        self.text = text
        self.stream = stream

    @property
    def data(self) -> str | TextCorpus:
        """What ``CharRNNGenerator.fit`` is given: the string or the TextCorpus."""
        return self.text if self.stream is None else self.stream

    @property
    def n_chars(self) -> int:
        return len(self.data)

    @property
    def n_distinct(self) -> int:
        """Number of distinct characters in the text."""
        if self.stream is None:
            return len(set(self.text))
        return len(self.stream.vocab().chars)

    def ids(self, vocab: CharVocab):
        """The text's ids under ``vocab`` with a final end-of-document id, shape (n_chars + 1,).

        A memory-mapped cache for a streamed corpus, an in-memory array otherwise.
        """
        if self.stream is None:
            return vocab.encode_documents([self.text])
        return self.stream.ids(vocab)

    def fingerprint(self) -> dict:
        """What a model records about its training text, to check a ``--resume``.

        A streamed corpus gives the same values as its text held in memory would.
        """
        if self.stream is not None:
            digest = self.stream.sha256
        else:
            digest = hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()
        return {"source": self.source, "n_chars": self.n_chars, "sha256": digest}


def read_corpus(
    source: str,
    encoding: str = "utf-8",
    errors: str = "strict",
    stream_over: int | None = None,
) -> Corpus:
    """Resolve a corpus name or path (building a named corpus on first use) and read it.

    A file of more than ``stream_over`` bytes is not read into memory: it is scanned once in
    blocks (vocabulary, length, hash) and left to a :class:`~charrnn.data.textfile.TextCorpus`,
    which trains from an id cache written next to it. None reads every file whole.
    """
    if source in CORPORA and not CORPORA[source].path.is_file():
        click.echo(f"Building the {source!r} corpus (first use) into {CORPORA[source].path} ...")
        with library_errors():
            build_corpus(source, progress=lambda msg: click.echo(f"  {msg}"))
    with library_errors():
        path = resolve_corpus(source, build=False)
        size = path.stat().st_size
        if stream_over is not None and size > stream_over:
            click.echo(
                f"{path} is large ({size / 1e6:,.0f} MB): reading it in blocks; training "
                "reads it from a memory-mapped id cache"
            )
            stream = TextCorpus(path, encoding=encoding, errors=errors)
            len(stream)  # the scan pass, here so a decoding error is reported before training
            return Corpus(source, path, None, stream)
        text = read_text(path, encoding=encoding, errors=errors)
    return Corpus(source, path, text)
