"""Variable-length texts for the classifier: input checks, length-bucketed batches, splits.

Batches are lists of sample indices; :func:`charrnn.engine.seqclf.pad_batch` turns the texts they
select into one right-padded ``(T, B)`` array. Grouping texts of similar length keeps the
padding (computed but never used) small.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

__all__ = ["bucket_batches", "check_texts", "inference_batches", "stratified_split"]

# Inference batches hold at most this many padded steps (T_max * B) and texts: enough to keep
# the GEMMs efficient, small enough that long texts do not build huge caches.
_INFER_STEPS = 1 << 13
_INFER_TEXTS = 256
# Training batches are drawn from pools of this many batches sorted by length: the pool's
# randomness varies batch composition from epoch to epoch, the sort keeps padding small.
_POOL_BATCHES = 16


def check_texts(X, name: str = "X") -> list[str]:
    """Validate classifier input: an iterable of strings, one per sample (not a single string)."""
    if isinstance(X, str | bytes | bytearray):
        raise TypeError(
            f"{name} must be an iterable of strings, one per sample, got a single "
            f"{type(X).__name__}; wrap it in a list: [{name}]"
        )
    if X is None or isinstance(X, numbers.Number) or not isinstance(X, Iterable):
        raise TypeError(f"{name} must be an iterable of strings, got {type(X).__name__}")
    if isinstance(X, np.ndarray) and X.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one string per sample), got shape {X.shape}")
    texts = list(X)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(text).__name__}")
    if not texts:
        raise ValueError(f"{name} holds no samples")
    return [str(t) for t in texts]


def bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list:
    """One epoch of batches: shuffle, sort pools of batches by length, shuffle the batch order.

    Returns a list of index arrays into ``lengths``.
    """
    order = rng.permutation(len(lengths))
    pool = batch_size * _POOL_BATCHES
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def inference_batches(lengths: np.ndarray) -> list:
    """Batches of texts sorted by length, bounded in padded steps and count."""
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        stop = start + 1
        # sorted ascending, so the last text of a batch sets its padded length
        while (
            stop < len(order)
            and stop - start < _INFER_TEXTS
            and lengths[order[stop]] * (stop + 1 - start) <= _INFER_STEPS
        ):
            stop += 1
        batches.append(order[start:stop])
        start = stop
    return batches


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator):
    """Indices (train, validation): ``round(fraction * n_c)`` of each class, at least one
    sample of every class left for training."""
    val = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_val = min(int(round(fraction * len(members))), len(members) - 1)
        val.append(members[:n_val])
    val = np.sort(np.concatenate(val))
    if val.size == 0:
        raise ValueError(
            f"validation_fraction={fraction} leaves no validation samples out of {len(y)}; "
            "raise validation_fraction, or set it to 0 to train without validation"
        )
    return np.setdiff1d(np.arange(len(y)), val), val
