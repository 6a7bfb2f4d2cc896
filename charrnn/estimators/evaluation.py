"""A fitted generator's loss on a long text, measured as training measures validation.

``CharRNNGenerator.score`` reads each document from a fresh state. Training instead scores
its held-out tail the way char-rnn does: the text is cut into parallel streams read with
carried state (:func:`charrnn.engine.tasks.held_out_score`), which is fast on long texts, or,
past ``max_validation_chars``, a sample of evenly spread windows of it. These functions give
that measure for any text, for the tail a fit held out, and for the weights a training run
ended with, reusing what training already measured when it can. A scoring that lasts more
than a few seconds can show a progress bar (:func:`charrnn.estimators.base.evaluation_bar`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from sklearn.utils.validation import check_is_fitted

from charrnn.data.batches import split_train_validation
from charrnn.data.textfile import TextCorpus
from charrnn.engine.tasks import HeldOutScore, held_out_score
from charrnn.estimators.base import evaluation_bar
from charrnn.estimators.generator import check_documents
from charrnn.parallel import scoring_threads

if TYPE_CHECKING:
    from charrnn.estimators.generator import CharRNNGenerator

__all__ = [
    "encode_text",
    "final_validation",
    "final_validation_loss",
    "held_out_loss",
    "text_loss",
    "text_score",
]


def encode_text(gen: CharRNNGenerator, X: str | Iterable[str] | TextCorpus) -> np.ndarray:
    """``X`` as ids under the generator's vocabulary, as ``fit`` encodes its training data.

    Returns
    -------
    ndarray of int, shape (n_chars + n_docs,)
        Each document followed by the end-of-document id; memory-mapped for a TextCorpus.
    """
    check_is_fitted(gen)
    if isinstance(X, TextCorpus):
        return X.ids(gen.vocab_)
    return gen.vocab_.encode_documents(check_documents(X))


def text_score(
    gen: CharRNNGenerator,
    ids: np.ndarray,
    max_chars: int | None = None,
    progress: bool = False,
    desc: str = "scoring",
) -> HeldOutScore:
    """Loss of ``ids`` (all of it, or at most ``max_chars`` in spread windows) and its
    standard error, on all cores, with a progress bar if asked for and if it lasts.

    Parameters
    ----------
    gen : CharRNNGenerator
        Fitted.
    ids : ndarray of int, shape (n,)
        From :func:`encode_text` (or a slice of it).
    max_chars : int or None
        None scores every symbol.
    progress : bool
        Show :func:`~charrnn.estimators.base.evaluation_bar` (after a few seconds, on a
        terminal).
    """
    check_is_fitted(gen)
    n = max(len(ids) - 1, 0)
    bar = evaluation_bar(min(n, max_chars or n), desc) if progress and n > 0 else None
    try:
        with scoring_threads() as threads:
            return held_out_score(gen.params_, gen.config_, ids, max_chars, threads, bar)
    finally:
        if bar is not None:
            bar.close()


def text_loss(gen: CharRNNGenerator, ids: np.ndarray, progress: bool = False) -> float:
    """Mean loss (nats per character) of all of ``ids`` read as parallel streams with
    carried state.

    Parameters
    ----------
    gen : CharRNNGenerator
        Fitted.
    ids : ndarray of int, shape (n,)
        From :func:`encode_text` (or a slice of it).
    progress : bool
        Show a progress bar when the scoring lasts more than a few seconds.

    Returns
    -------
    float
        nan when ``ids`` holds fewer than 2 symbols.
    """
    return text_score(gen, ids, None, progress).loss


def held_out_loss(
    gen: CharRNNGenerator, ids: np.ndarray, validation_fraction: float, progress: bool = False
) -> tuple[int, float] | None:
    """The loss on the whole tail of ``ids`` that ``validation_fraction`` holds out.

    Returns
    -------
    (n_symbols, loss) or None
        The tail's length and :func:`text_loss`; None when the tail is shorter than 2 symbols
        (``validation_fraction`` 0, or a very short text).
    """
    _, val_ids = split_train_validation(ids, validation_fraction)
    if len(val_ids) < 2:
        return None
    return len(val_ids), text_loss(gen, val_ids, progress)


def final_validation(
    gen: CharRNNGenerator, X: str | Iterable[str] | TextCorpus, progress: bool = False
) -> dict | None:
    """The validation loss of the weights validation chose in a ``fit`` on ``X``.

    Training has usually scored these weights already: under early stopping they are the
    best-validation weights, otherwise those of the last evaluation (every pass end, and the
    end of the budget). Only after an interruption partway through a pass is the held-out
    part of ``X`` scored again (as training scores it: at most ``max_validation_chars``).
    After a final stretch on all the text (``refit_fraction``) the final weights have also
    learnt the held-out part; the loss returned is still that of the weights validation chose
    (``final_stretch_`` says what followed).

    Parameters
    ----------
    gen : CharRNNGenerator
        Fitted on ``X``.
    X : str, iterable of str, or TextCorpus
        The training data given to ``fit``.
    progress : bool
        Show a progress bar if the held-out text is scored again and that lasts.

    Returns
    -------
    dict or None
        ``{"loss", "stderr", "n_chars"}``: nats per character, its standard error (None when
        unknown) and the characters scored; None when the fit held nothing out
        (``validation_fraction`` 0 or a text too short for a validation tail).
    """
    check_is_fitted(gen)
    records = [r for r in gen.history_ if r.get("val_loss") is not None]
    stretched = getattr(gen, "final_stretch_", None) is not None
    interrupted = gen.stop_reason_.startswith("interrupted") and not stretched
    # an interrupted fit keeps its last weights (so that a resume continues them), which
    # validation may not have scored
    if interrupted:
        chosen = None
    elif gen.early_stopping and gen.best_validation_score_ is not None:
        best = [r for r in records if r["val_loss"] == -gen.best_validation_score_]
        if not best:  # a model file without its history
            return {"loss": -gen.best_validation_score_, "stderr": None, "n_chars": None}
        chosen = best[-1]
    elif records and gen.history_[-1].get("val_loss") is not None:
        chosen = gen.history_[-1]
    else:
        chosen = None
    if chosen is not None:
        return {
            "loss": chosen["val_loss"],
            "stderr": chosen.get("val_stderr"),
            "n_chars": chosen.get("val_chars"),
        }
    _, val_ids = split_train_validation(encode_text(gen, X), gen.validation_fraction)
    if len(val_ids) < 2:
        return None
    score = text_score(gen, val_ids, gen.max_validation_chars, progress, "validation")
    stderr = None if math.isnan(score.stderr) else score.stderr
    return {"loss": score.loss, "stderr": stderr, "n_chars": score.n_chars}


def final_validation_loss(
    gen: CharRNNGenerator, X: str | Iterable[str] | TextCorpus
) -> float | None:
    """The loss of :func:`final_validation` (nats per character), or None."""
    result = final_validation(gen, X)
    return None if result is None else result["loss"]
