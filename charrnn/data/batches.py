"""Train/validation splits and truncated-BPTT batches over a 1-D array of symbol ids.

Batches follow char-rnn: the text is cut into ``batch_size`` equal, contiguous streams that are
read side by side, ``seq_length`` characters at a time. Column ``b`` of chunk ``k + 1`` continues
exactly where column ``b`` of chunk ``k`` stopped, so the recurrent state left by one chunk is
the right initial state for the next -- except where a stream starts a new document: there the
state restarts from zero (:func:`document_resets`), so that training reads every document from
the state that ``predict``, ``score`` and ``sample`` read it from. Everything here is slicing and
reshaping of views, so an ``np.memmap`` corpus is only read one chunk at a time.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from charrnn.data.vocab import CharVocab

__all__ = [
    "BPTTBatches",
    "ScoringWindows",
    "document_resets",
    "scoring_windows",
    "split_sizes",
    "split_train_validation",
]


def _check_ids(ids: np.ndarray) -> np.ndarray:
    if not isinstance(ids, np.ndarray):
        ids = np.asarray(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise TypeError(f"ids must be a 1-D integer array, got {ids.ndim}-D array of {ids.dtype}")
    return ids


def document_resets(inputs: np.ndarray, eod_id: int = CharVocab.EOD_ID) -> np.ndarray | None:
    """Where the streams of a chunk start a document from the zero state; None if nowhere.

    Documents are joined by the end-of-document symbol (``CharVocab.encode_documents``), and
    the estimators read a document as that symbol followed by its text, from the zero state
    (``predict``, ``score``, ``sample``). So the state entering every step whose input is the
    end-of-document symbol is zero: the step that reads it predicts the next document's first
    character from where every document starts. A text of one document (its only
    end-of-document symbol is its last id, never an input) has no reset anywhere.

    Parameters
    ----------
    inputs : ndarray of int, shape (T, B)
        A chunk's input ids (:meth:`BPTTBatches.__getitem__`, or scoring windows transposed).
    eod_id : int
        The end-of-document id.

    Returns
    -------
    ndarray of bool, shape (T, B), or None
        ``resets[t, b]``: stream ``b`` enters step ``t`` from the zero state. None when no
        input is ``eod_id``, so that a chunk without a boundary costs the network nothing.
    """
    resets = inputs == eod_id
    return resets if resets.any() else None


def split_sizes(n: int, validation_fraction: float) -> tuple[int, int]:
    """How :func:`split_train_validation` divides ``n`` ids: ``(n_train, n_val)``.

    ``n_val = round(n * validation_fraction)``, but never all of the text, so a fraction
    below 1 always leaves some training data. For checking lengths before any text is encoded.

    Raises
    ------
    TypeError, ValueError
        If ``validation_fraction`` is not a number in [0, 1).
    """
    if isinstance(validation_fraction, bool) or not isinstance(
        validation_fraction, int | float | np.integer | np.floating
    ):
        raise TypeError(f"validation_fraction must be a number, got {validation_fraction!r}")
    frac = float(validation_fraction)
    if not (math.isfinite(frac) and 0.0 <= frac < 1.0):
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    n_val = min(round(n * frac), max(n - 1, 0))
    return n - n_val, n_val


def split_train_validation(
    ids: np.ndarray, validation_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Split off the last ``validation_fraction`` of the text for validation.

    A contiguous tail (rather than random characters or chunks) keeps validation text unseen
    as a whole, as char-rnn does, and costs no copy.

    Parameters
    ----------
    ids : ndarray of shape (n,)
        Encoded text; an ``np.memmap`` stays unread.
    validation_fraction : float
        In [0, 1). ``0`` gives an empty validation array.

    Returns
    -------
    train_ids : ndarray of shape (n - n_val,)
        View of the head of ``ids``.
    val_ids : ndarray of shape (n_val,)
        View of the tail of ``ids``, ``n_val = round(n * validation_fraction)``, never all of it
        (:func:`split_sizes`).
    """
    ids = _check_ids(ids)
    n_train, _ = split_sizes(len(ids), validation_fraction)
    return ids[:n_train], ids[n_train:]


class ScoringWindows(NamedTuple):
    """Pieces of a text to score side by side, from :func:`scoring_windows`.

    Attributes
    ----------
    inputs, targets : ndarray of shape (B, L)
        Row ``b`` is window ``b``; ``targets[b, t]`` is the symbol after ``inputs[b, t]``.
    context : int
        Leading positions of every row that are read (to warm up the state) but not scored.
    whole : bool
        True when the scored positions cover the whole text (it was no longer than the bound).
    """

    inputs: np.ndarray
    targets: np.ndarray
    context: int
    whole: bool

    @property
    def n_scored(self) -> int:
        """Symbols scored: ``B * (L - context)``."""
        B, L = self.inputs.shape
        return B * (L - self.context)


# A sampled window: WINDOW_CONTEXT characters that warm up the state from zero, then
# WINDOW_LENGTH scored ones. Zero state costs a GRU 2x256 on Shakespeare about its first few dozen
# characters; 64 of context keeps that out of the score for an eighth more work.
WINDOW_LENGTH = 512
WINDOW_CONTEXT = 64
# Streams of the whole-text reading: at most this many, each at least MIN_STREAM characters.
MAX_STREAMS = 128
MIN_STREAM = 256


def scoring_windows(ids: np.ndarray, max_chars: int | None = None) -> ScoringWindows:
    """The windows a held-out text is scored on: all of it, or an evenly spread sample.

    A text of at most ``max_chars + 1`` symbols (or any text when ``max_chars`` is None) is
    cut into ``B = min(128, n // 256)`` equal contiguous streams, every prediction scored
    (char-rnn's validation reading; a tail of fewer than ``B`` symbols is left out). A longer
    text gives ``ceil(max_chars / 512)`` windows of 512 scored symbols, each read after the 64
    symbols before it, at evenly spaced places from the first symbol that has 64 before it to
    the end: a systematic sample, the same for the same text and bound, so that scores from
    one evaluation to the next are paired (the same windows every time).

    Parameters
    ----------
    ids : ndarray of int, shape (n,)
        May be an ``np.memmap``: only the windows are read.
    max_chars : int or None
        The most symbols to score; None scores all of them.

    Returns
    -------
    ScoringWindows
        Copies of the windows (``intp``); ``inputs`` is empty (shape ``(0, 0)``) when ``ids``
        has fewer than 2 symbols.
    """
    ids = _check_ids(ids)
    n = len(ids) - 1  # predictions
    if n < 1:
        empty = np.zeros((0, 0), dtype=np.intp)
        return ScoringWindows(empty, empty, 0, True)
    if max_chars is not None:
        max_chars = _positive_int("max_chars", max_chars)
    if max_chars is None or n <= max_chars or n < WINDOW_CONTEXT + WINDOW_LENGTH:
        B = max(1, min(MAX_STREAMS, n // MIN_STREAM))
        L = n // B
        inputs = np.asarray(ids[: B * L], dtype=np.intp).reshape(B, L)
        targets = np.asarray(ids[1 : B * L + 1], dtype=np.intp).reshape(B, L)
        return ScoringWindows(inputs, targets, 0, True)
    n_windows = math.ceil(max_chars / WINDOW_LENGTH)
    span = WINDOW_CONTEXT + WINDOW_LENGTH
    # window starts (context included) from 0 to the last that fits, evenly spaced
    last = n - span
    starts = np.round(np.linspace(0, last, n_windows)).astype(np.intp)  # (B,)
    rows = starts[:, None] + np.arange(span + 1)  # (B, span + 1)
    text = np.asarray(ids[rows], dtype=np.intp)  # fancy indexing copies only the windows
    return ScoringWindows(text[:, :-1], text[:, 1:], WINDOW_CONTEXT, False)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


class BPTTBatches:
    """Chunks of ``seq_length`` steps over ``batch_size`` parallel streams (char-rnn's scheme).

    With ``L = (len(ids) - 1) // batch_size``, stream ``b`` is ``ids[b*L : (b+1)*L + 1]``
    (the one-character overlap supplies the last target). Chunk ``k`` holds, for every stream,
    inputs ``stream[k*T : (k+1)*T]`` and targets ``stream[k*T + 1 : (k+1)*T + 1]``. Only full
    chunks are produced; the tail of each stream that does not fill one is unused.

    Parameters
    ----------
    ids : ndarray of shape (n,)
        Encoded text, any integer dtype; may be an ``np.memmap``.
    batch_size : int
        Number of parallel streams ``B``.
    seq_length : int
        Time steps per chunk ``T`` (the truncated-BPTT length).

    Attributes
    ----------
    batch_size, seq_length : int
    stream_length : int
        ``L``, input characters per stream.
    n_chunks : int
        ``L // T``, the number of chunks (``len(self)``).
    chars_per_chunk : int
        ``B * T``, predicted characters per chunk.

    Raises
    ------
    ValueError
        If the text is shorter than one chunk (``batch_size * seq_length + 1`` characters).

    Examples
    --------
    >>> batches = BPTTBatches(np.arange(21), batch_size=2, seq_length=3)
    >>> inputs, targets = batches[0]
    >>> inputs.T.tolist(), targets.T.tolist()
    ([[0, 1, 2], [10, 11, 12]], [[1, 2, 3], [11, 12, 13]])
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int) -> None:
        ids = _check_ids(ids)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.seq_length = _positive_int("seq_length", seq_length)
        n, B, T = len(ids), self.batch_size, self.seq_length
        self.stream_length = max(n - 1, 0) // B
        self.n_chunks = self.stream_length // T
        if self.n_chunks == 0:
            raise ValueError(
                f"the text ({n} characters) is shorter than one training chunk "
                f"(batch_size*seq_length+1 = {B}*{T}+1 = {B * T + 1} characters); "
                "use a smaller batch_size or seq_length"
            )
        self.chars_per_chunk = B * T
        L = self.stream_length
        # Row b of each view is stream b; targets are the same streams one character later.
        # Reshaping a 1-D slice is always a view, even for a strided or memory-mapped array.
        self._inputs = ids[: B * L].reshape(B, L)  # (B, L)
        self._targets = ids[1 : B * L + 1].reshape(B, L)  # (B, L)

    def __len__(self) -> int:
        return self.n_chunks

    def __repr__(self) -> str:
        return (
            f"BPTTBatches(batch_size={self.batch_size}, seq_length={self.seq_length}, "
            f"n_chunks={self.n_chunks})"
        )

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``k`` (negative counts from the end).

        Returns
        -------
        inputs : ndarray of shape (T, B), dtype intp
        targets : ndarray of shape (T, B), dtype intp
            ``targets[t, b]`` is the character after ``inputs[t, b]`` in stream ``b``.
        """
        k = operator.index(k)
        if k < 0:
            k += self.n_chunks
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk index {k} out of range for {self.n_chunks} chunks")
        cols = slice(k * self.seq_length, (k + 1) * self.seq_length)
        # Time-major C-contiguous copies: the network reads one (B,) row per step.
        inputs = np.array(self._inputs[:, cols].T, dtype=np.intp, order="C")
        targets = np.array(self._targets[:, cols].T, dtype=np.intp, order="C")
        return inputs, targets

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for k in range(self.n_chunks):
            yield self[k]

    def iter_from(self, start: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(k, inputs, targets)`` for ``k = start .. n_chunks - 1``.

        Used to resume an epoch part-way; ``start == n_chunks`` yields nothing.
        """
        start = operator.index(start)
        if not 0 <= start <= self.n_chunks:
            raise ValueError(f"start must be in [0, {self.n_chunks}], got {start}")
        for k in range(start, self.n_chunks):
            yield (k, *self[k])
