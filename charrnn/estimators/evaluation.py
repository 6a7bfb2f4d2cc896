"""A fitted generator's loss on a long text, measured as training measures validation.

``CharRNNGenerator.score`` reads each document from a fresh state. Training instead scores
its held-out tail the way char-rnn does: the text is cut into parallel streams read with
carried state (:func:`charrnn.engine.tasks.stream_loss`), which is fast on long texts.
These functions give that measure for any text, for the tail a fit held out, and for the
weights a training run ended with, reusing what training already measured when it can.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from sklearn.utils.validation import check_is_fitted

from charrnn.data.batches import split_train_validation
from charrnn.data.textfile import TextCorpus
from charrnn.engine.tasks import stream_loss_on_all_cores
from charrnn.estimators.generator import check_documents

if TYPE_CHECKING:
    from charrnn.estimators.generator import CharRNNGenerator

__all__ = ["encode_text", "final_validation_loss", "held_out_loss", "text_loss"]


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


def text_loss(gen: CharRNNGenerator, ids: np.ndarray) -> float:
    """Mean loss (nats per character) of ``ids`` read as parallel streams with carried state.

    Parameters
    ----------
    gen : CharRNNGenerator
        Fitted.
    ids : ndarray of int, shape (n,)
        From :func:`encode_text` (or a slice of it).

    Returns
    -------
    float
        nan when ``ids`` holds fewer than 2 symbols.
    """
    check_is_fitted(gen)
    return stream_loss_on_all_cores(gen.params_, gen.config_, ids)


def held_out_loss(
    gen: CharRNNGenerator, ids: np.ndarray, validation_fraction: float
) -> tuple[int, float] | None:
    """The loss on the tail of ``ids`` that ``validation_fraction`` holds out.

    Returns
    -------
    (n_symbols, loss) or None
        The tail's length and :func:`text_loss`; None when the tail is shorter than 2 symbols
        (``validation_fraction`` 0, or a very short text).
    """
    _, val_ids = split_train_validation(ids, validation_fraction)
    if len(val_ids) < 2:
        return None
    return len(val_ids), text_loss(gen, val_ids)


def final_validation_loss(
    gen: CharRNNGenerator, X: str | Iterable[str] | TextCorpus
) -> float | None:
    """The validation loss of the weights a ``fit`` on ``X`` ended with.

    Training has usually scored these weights already: under early stopping they are the
    best-validation weights, otherwise those of the last evaluation (every pass end, and the
    end of the budget). Only after an interruption partway through a pass is the held-out tail
    of ``X`` scored again.

    Parameters
    ----------
    gen : CharRNNGenerator
        Fitted on ``X``.
    X : str, iterable of str, or TextCorpus
        The training data given to ``fit``.

    Returns
    -------
    float or None
        nats per character; None when the fit held nothing out (``validation_fraction`` 0 or
        a text too short for a validation tail).
    """
    check_is_fitted(gen)
    last = gen.history_[-1] if gen.history_ else None
    if gen.early_stopping and gen.best_validation_score_ is not None:
        return -gen.best_validation_score_
    interrupted = gen.stop_reason_.startswith("interrupted")
    if last is not None and last.get("val_loss") is not None and not interrupted:
        return last["val_loss"]
    held_out = held_out_loss(gen, encode_text(gen, X), gen.validation_fraction)
    return None if held_out is None else held_out[1]
