"""Inside a language model reading a text: its states and predictions at every character.

:func:`trace_text` runs a text through :func:`charrnn.engine.network.forward` -- the same
forward pass training and scoring use -- and keeps what scoring throws away: every layer's state
after each character (for the LSTM the cell state too, read from the cell's cache with its
``sequence_states``) and the distribution of the character that comes next. The activation page
(:mod:`charrnn.report.activations`) is drawn from these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.engine.network import NetworkConfig, forward, init_state, log_softmax, output_logits

__all__ = ["TextTrace", "trace_text"]

# Steps per forward call: bounds the caches held at once ((T, 4H) gates per layer for the LSTM)
# without making a long text pay a Python round trip per character.
_CHUNK = 512


@dataclass(frozen=True)
class TextTrace:
    """What a model computed at each of a text's ``n`` characters.

    Attributes
    ----------
    ids : ndarray of intp, shape (n,)
        The text's symbol ids.
    surprise : ndarray of float64, shape (n,)
        ``-log p(character i | the characters before it)`` in nats, the text read from the start
        of a document (as :meth:`charrnn.CharRNNGenerator.score_samples` reads it).
    next_log_proba : ndarray of float64, shape (n, V)
        Row ``i``: log-probabilities of the symbol after character ``i`` (row ``n - 1`` is the
        prediction after the whole text, where the end-of-document symbol may come).
    hidden : ndarray, shape (L, n, H)
        Every layer's hidden state ``h`` after reading character ``i`` (the model's dtype).
    cell : ndarray of shape (L, n, H), or None
        The LSTM's cell states ``c``, likewise; None for cells without one.
    """

    ids: np.ndarray
    surprise: np.ndarray
    next_log_proba: np.ndarray
    hidden: np.ndarray
    cell: np.ndarray | None


def trace_text(params: dict, config: NetworkConfig, ids: np.ndarray, eod_id: int) -> TextTrace:
    """Run ``[eod_id] + ids`` through the network from a zero state and keep every step.

    Parameters
    ----------
    params, config
        The network (see :mod:`charrnn.engine.network`).
    ids : ndarray of int, shape (n,), n >= 1
        The text, without an end-of-document symbol.
    eod_id : int
        The end-of-document symbol the text is read after (the start of a document).

    Returns
    -------
    TextTrace
    """
    ids = np.asarray(ids, dtype=np.intp)
    assert ids.ndim == 1 and ids.size >= 1, "ids must be a non-empty 1-D array"
    inputs = np.concatenate(([eod_id], ids))  # (n + 1,)
    n, T = ids.size, ids.size + 1
    L, H, V = config.num_layers, config.hidden_size, config.vocab_size
    n_states = config.cell_class.n_states
    # states[s, k, t]: state s of layer k after reading inputs[t]
    states = np.empty((n_states, L, T, H), dtype=config.dtype)
    log_proba = np.empty((T, V), dtype=np.float64)  # row t: after reading inputs[t]
    state = init_state(config, 1)
    for t0 in range(0, T, _CHUNK):
        sl = slice(t0, min(T, t0 + _CHUNK))
        # no workspace: each call's caches are fresh arrays, read before the next call
        top, state, caches = forward(params, config, inputs[sl, None], state)
        log_proba[sl] = log_softmax(output_logits(params, top[:, 0]).astype(np.float64))
        for k, (_, cache, _) in enumerate(caches):
            for s, seq in enumerate(config.cell_class.sequence_states(cache)):
                states[s, k, sl] = seq[:, 0]
    surprise = -log_proba[np.arange(n), ids]  # character i was predicted after inputs[i]
    return TextTrace(
        ids=ids,
        surprise=surprise,
        next_log_proba=log_proba[1:],
        hidden=np.ascontiguousarray(states[0, :, 1:]),
        cell=np.ascontiguousarray(states[1, :, 1:]) if n_states > 1 else None,
    )
