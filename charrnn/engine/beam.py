"""Beam search over symbols: the most likely continuations of a prime, not random ones.

:func:`beam_search` keeps the ``beam_width`` most likely unfinished continuations, grows each by
every allowed symbol with :func:`charrnn.engine.network.step` (the cells' own ``step``, batched
over the beam) and sets aside those that end. Two uses:

- **the next word** (:meth:`charrnn.CharRNNGenerator.complete`): continuations grow by word
  characters and end at any boundary symbol (space, punctuation, end of document); the
  probability of ending is the sum over the boundary symbols, so a word is found once, not once
  per boundary, and its probability is the model's probability of the word's characters
  followed by a boundary;
- **the most likely text** (``CharRNNGenerator.sample(beam_width=...)``): continuations grow by
  any symbol, end at the end-of-document symbol or after ``max_steps`` symbols.

Scores are total log-probabilities (nats, float64) from the model's own softmax: nothing is
renormalised over the allowed symbols. Adding a symbol never raises a score, so a continuation
already below the ``n_best``-th finished one is dropped, and the search stops once none is left.
The search is exact when ``beam_width`` is at least the number of continuations alive at every
step (a small vocabulary and few steps); otherwise it is the usual approximation.
"""

from __future__ import annotations

import numpy as np

from charrnn.engine.network import NetworkConfig, forward_logits, init_state, log_softmax, step

__all__ = ["beam_search"]


def _log_sum(logp: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``log(sum(exp(logp[:, mask])))`` per row, ``-inf`` where every masked entry is."""
    sel = logp[:, mask]  # (B, m)
    top = sel.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = top[:, 0] + np.log(np.exp(sel - top).sum(axis=1))
    return np.where(np.isfinite(top[:, 0]), out, -np.inf)


def beam_search(
    params: dict,
    config: NetworkConfig,
    prime_ids: np.ndarray,
    *,
    extend: np.ndarray,
    end: np.ndarray | None = None,
    beam_width: int = 8,
    n_best: int = 1,
    max_steps: int = 30,
    end_at_max: bool = True,
    min_steps: int = 0,
    forced_ids: np.ndarray | None = None,
) -> list[tuple[np.ndarray, float]]:
    """The ``n_best`` most likely continuations of ``prime_ids`` found with a beam.

    Parameters
    ----------
    params, config
        The network (see :mod:`charrnn.engine.network`).
    prime_ids : ndarray of int, shape (P,), P >= 1
        Read first from a zero state (start it with the end-of-document symbol to read it as
        the start of a document).
    extend : ndarray of bool, shape (V,)
        The symbols a continuation may grow by.
    end : ndarray of bool, shape (V,), or None
        The symbols that end a continuation (not part of it). Ending adds the log of the
        summed probability of these symbols. None: only ``max_steps`` ends one.
    beam_width : int >= 1
        Unfinished continuations kept after each step.
    n_best : int >= 1
        Continuations returned (fewer when fewer end).
    max_steps : int >= 0
        Symbols a continuation may grow by at most.
    end_at_max : bool
        A continuation of ``max_steps`` symbols ends there (with no end factor); when False it
        is dropped.
    min_steps : int >= 0
        A continuation may end by an ``end`` symbol only once it holds this many symbols.
    forced_ids : ndarray of int, shape (F,), optional
        Symbols every continuation starts with: their log-probabilities count in every score,
        but they are not part of the returned continuations.

    Returns
    -------
    list of (ndarray of intp, float)
        ``(continuation ids, total log-probability)``, best first; ties keep the order in
        which the continuations were found.
    """
    V = config.vocab_size
    prime = np.asarray(prime_ids, dtype=np.intp)
    forced = np.zeros(0, np.intp) if forced_ids is None else np.asarray(forced_ids, np.intp)
    extend = np.asarray(extend, dtype=bool)
    assert prime.ndim == 1 and prime.size >= 1, "prime_ids must be a non-empty 1-D array"
    assert extend.shape == (V,), f"extend must be a (V,) mask, V = {V}"
    assert end is None or (np.shape(end) == (V,) and np.any(end)), (
        f"end must be a (V,) mask with a True entry, or None; V = {V}"
    )
    assert beam_width >= 1 and n_best >= 1 and max_steps >= 0 and min_steps >= 0

    logits, state, _ = forward_logits(params, config, prime[:, None], init_state(config, 1))
    logits = logits[-1]  # (1, V)
    scores = np.zeros(1)  # (B,) float64 total log-probabilities
    for f in forced:
        scores += log_softmax(logits.astype(np.float64))[:, f]
        logits, state = step(params, config, np.array([f]), state)
    seqs = np.zeros((1, 0), dtype=np.intp)  # (B, t)
    finished: list[tuple[float, np.ndarray]] = []

    def needs_logits(t: int) -> bool:  # whether step t reads the distributions
        return t < max_steps or (end is not None and t >= min_steps)

    for t in range(max_steps + 1):
        logp = log_softmax(logits.astype(np.float64)) if needs_logits(t) else None  # (B, V)
        if end is not None and t >= min_steps:
            ends = scores + _log_sum(logp, end)
            finished += [(float(ends[b]), seqs[b]) for b in np.flatnonzero(np.isfinite(ends))]
        if t == max_steps:
            if end_at_max:
                finished += [(float(s), q) for s, q in zip(scores, seqs)]
            break
        # the n_best-th finished score: a continuation below it can never be returned
        bound = -np.inf
        if len(finished) >= n_best:
            bound = np.partition([s for s, _ in finished], -n_best)[-n_best]
        cand = np.where(extend, logp, -np.inf)
        cand += scores[:, None]
        flat = cand.ravel()  # (B * V,)
        alive = np.flatnonzero(flat > bound)
        if alive.size == 0:
            break
        alive = alive[np.argsort(-flat[alive], kind="stable")[:beam_width]]
        parent, sym = np.divmod(alive, V)
        seqs = np.concatenate([seqs[parent], sym[:, None]], axis=1)
        scores = flat[alive]
        state = [tuple(a[parent] for a in st) for st in state]
        if needs_logits(t + 1):
            logits, state = step(params, config, sym, state)
    order = sorted(range(len(finished)), key=lambda i: -finished[i][0])  # stable
    return [(finished[i][1].copy(), finished[i][0]) for i in order[:n_best]]
