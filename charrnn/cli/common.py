"""Helpers shared by the ``charrnn`` commands: errors, options, model paths, corpus reading.

Kept apart from :mod:`charrnn.cli` so that commands living in other modules (``train``, and
later ones such as ``gradients``) can use them without importing each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import os
from collections.abc import Iterator
from pathlib import Path

import click

from charrnn.data.corpora import CORPORA, build_corpus, read_text, resolve_corpus
from charrnn.data.textfile import TextCorpus
from charrnn.data.vocab import CharVocab
from charrnn.engine import network
from charrnn.engine.cells import CELLS
from charrnn.engine.optim import OPTIMIZERS, SCHEDULES
from charrnn.estimators.generator import CharRNNGenerator
from charrnn.io import atomic_write

__all__ = [
    "DEBUG_ENV",
    "MODELS_ENV",
    "ZERO_IS_NONE",
    "Corpus",
    "FiniteFloat",
    "estimator_default",
    "hyperparameter_options",
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


# Where `charrnn train` deliberately differs from the estimator: a bare `charrnn train` (and so
# `make train`) must finish within 15 minutes, corpus build and final evaluation included.
TRAIN_DEFAULTS = {"max_time": 780.0}


def estimator_default(name: str):
    """The default of a CharRNNGenerator parameter, read from its signature so it cannot drift."""
    return inspect.signature(CharRNNGenerator).parameters[name].default


def train_default(name: str):
    """The default of ``charrnn train``'s option for estimator parameter ``name``."""
    return TRAIN_DEFAULTS.get(name, estimator_default(name))


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
# Options


# Options where 0 stands for None ("off"), since a command line has no None.
ZERO_IS_NONE = ("embedding_dim", "clip_norm", "max_time")


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and infinity (which compare false with any bound)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


def _hyper(name: str, *decls: str, type, help: str, none_means: str | None = None):
    """An option for estimator parameter ``name``, its default read from the estimator."""
    default = train_default(name)
    shown = none_means if default is None and none_means else True
    return click.option(*decls, name, type=type, default=default, show_default=shown, help=help)


def hyperparameter_options(f):
    """Add one option per CharRNNGenerator parameter to a command, with the estimator's defaults.

    Each option's value reaches the command under the parameter's own name (``--seed`` as
    ``random_state``). ``verbose`` and ``warm_start`` have no option: the command line shows
    its own progress, and continuing a model is ``--resume``.
    """
    options = [
        _hyper("cell", "--cell", type=click.Choice(sorted(CELLS)), help="Recurrent cell."),
        _hyper("hidden_size", "--hidden-size", type=click.IntRange(1), help="Units per layer."),
        _hyper("num_layers", "--num-layers", type=click.IntRange(1), help="Recurrent layers."),
        _hyper(
            "embedding_dim",
            "--embedding-dim",
            type=click.IntRange(0),
            help="Size of a learned character embedding; 0 feeds one-hot vectors.",
            none_means="0 = one-hot",
        ),
        _hyper(
            "dropout",
            "--dropout",
            type=FiniteFloat(0, 1, max_open=True),
            help="Dropout on each layer's output.",
        ),
        _hyper(
            "seq_length",
            "--seq-length",
            type=click.IntRange(1),
            help="Characters per truncated-BPTT chunk.",
        ),
        _hyper(
            "batch_size",
            "--batch-size",
            type=click.IntRange(1),
            help="Parallel streams over the text.",
        ),
        _hyper(
            "learning_rate",
            "--learning-rate",
            "--lr",
            type=FiniteFloat(0, min_open=True),
            help="Peak learning rate.",
        ),
        _hyper(
            "optimizer", "--optimizer", type=click.Choice(sorted(OPTIMIZERS)), help="Optimiser."
        ),
        _hyper(
            "weight_decay",
            "--weight-decay",
            type=FiniteFloat(0),
            help="Weight decay: an L2 penalty in the gradient, or decoupled for adamw.",
            none_means="the optimiser's: 0, adamw 0.01",
        ),
        _hyper(
            "clip_norm",
            "--clip-norm",
            type=FiniteFloat(0),
            help="Clip the global gradient norm to this; 0 turns clipping off.",
        ),
        _hyper(
            "max_iter",
            "--max-iter",
            type=click.IntRange(1),
            help="Passes over the training text (in total, counting passes before a --resume).",
        ),
        _hyper(
            "max_time",
            "--max-time",
            type=FiniteFloat(0),
            help="Training time budget in seconds, in total across --resume; 0 means no limit. "
            "The learning-rate schedule spans whichever of --max-iter and --max-time ends first.",
            none_means="0 = no limit",
        ),
        _hyper(
            "validation_fraction",
            "--validation-fraction",
            type=FiniteFloat(0, 1, max_open=True),
            help="Tail of the text held out for validation; 0 turns validation off.",
        ),
        _hyper(
            "early_stopping",
            "--early-stopping/--no-early-stopping",
            type=bool,
            help="Stop when validation stops improving and keep the best weights.",
        ),
        _hyper(
            "n_iter_no_change",
            "--n-iter-no-change",
            type=click.IntRange(1),
            help="Passes without validation improvement before early stopping.",
        ),
        _hyper("tol", "--tol", type=FiniteFloat(0), help="Smallest validation improvement."),
        _hyper(
            "lr_schedule",
            "--lr-schedule",
            type=click.Choice(SCHEDULES),
            help="Learning-rate schedule over the budget.",
        ),
        _hyper("dtype", "--dtype", type=click.Choice(network.DTYPES), help="Float precision."),
        _hyper(
            "random_state",
            "--seed",
            type=click.IntRange(0),
            help="Random seed (initial weights, dropout, the printed samples).",
            none_means="random",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


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
