"""Seeing vanishing gradients: gradient flow through time, and the delayed-recall task.

Gradient flow
    For the loss at the last step of a window of text, :func:`gradient_flow` measures how strongly
    that loss depends on each earlier hidden state: the L2 norm of ``dL_T / dh_{T-lag}`` for every
    layer and every lag. In a vanilla RNN the norm typically shrinks geometrically with the lag
    (each step multiplies the gradient by ``diag(1 - h^2) Wh^T``); the additive cell update of the
    LSTM and the interpolating update of the GRU let it survive much longer.

Recall task
    :func:`make_recall_task` writes sequences ``key, LAG fillers, cue, key``; predicting the
    character after the cue needs the key remembered across ``LAG + 1`` steps.
    :func:`recall_documents` and :func:`recall_generator` set it up as documents for the public
    estimator; ``scripts/recall_bench.py`` trains the three cells on it and ``charrnn
    gradients --task recall`` plots their gradient flow.

Conventions: lag 0 is the last step of the window (the step whose output is scored), lag 1 the
step before it, and so on; arrays indexed by lag have column ``j`` = lag ``j``. Layers are
numbered from 0 (the one reading the characters) in arrays and from 1 in printed text.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence

import numpy as np

from charrnn.data.vocab import CharVocab
from charrnn.engine import network

__all__ = [
    "STANDARD_LAGS",
    "gradient_flow",
    "gradient_flow_summary",
    "hidden_gradients",
    "init_model",
    "make_recall_task",
    "recall_accuracy",
    "recall_documents",
    "recall_generator",
    "recall_gradient_flow",
    "recall_gradient_ratio",
    "recall_stream_accuracy",
    "recall_text",
    "sparkline",
    "standard_lags",
]

RECALL_KEYS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BLOCKS = "▁▂▃▄▅▆▇█"


# --------------------------------------------------------------------------------------------
# Gradients with respect to hidden states


def _as_float64(params: dict, config: network.NetworkConfig):
    """Float64 copies: a float32 gradient that decays over 100 steps underflows to exact zeros."""
    config64 = dataclasses.replace(config, dtype="float64", dropout=0.0)
    return {k: v.astype(np.float64) for k, v in params.items()}, config64


def hidden_gradients(
    params: dict, config: network.NetworkConfig, inputs: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """Gradient of each sequence's last-step loss with respect to every hidden state.

    The network reads ``inputs`` from a zero state (no dropout) and is scored only at the last
    step, with cross-entropy against ``targets``. The result is the total derivative
    ``dL_b / dh^{(l)}_t``: every path from ``h^{(l)}_t`` to the loss counts, through later steps of
    the same layer and through the layers above. For the LSTM the cell state ``c_t`` is held
    fixed when ``h_t`` moves (the memory path through later cell states still counts, since
    ``h_t`` drives the gates of step ``t + 1``).

    Runs in O(T): each layer is run one step at a time through the cell's own ``forward`` and
    ``backward`` (chunks of length 1, chained through the state gradient), so the gradient that
    backpropagation carries from step ``t + 1`` to step ``t`` is read off between the calls
    instead of being hidden inside one whole-sequence loop.

    Parameters
    ----------
    params : dict of str to ndarray
        Network weights (any float dtype; computed in float64).
    config : NetworkConfig
    inputs : ndarray of int, shape (T, B)
        ``B`` independent windows, time-major.
    targets : ndarray of int, shape (B,)
        The symbol each window should predict after its last input.

    Returns
    -------
    ndarray of float64, shape (num_layers, T, B, H)
        ``out[l, t, b]`` is ``dL_b / dh^{(l)}_t``. Windows do not interact, so row ``b`` is the
        gradient of window ``b``'s own loss.
    """
    inputs = np.asarray(inputs)
    targets = np.asarray(targets).reshape(-1)
    if inputs.ndim != 2 or not np.issubdtype(inputs.dtype, np.integer):
        raise ValueError(f"inputs must be a 2-D integer array (T, B), got {inputs.shape}")
    if targets.shape != (inputs.shape[1],):
        raise ValueError(f"targets must have shape ({inputs.shape[1]},), got {targets.shape}")
    params, config = _as_float64(params, config)
    cell = config.cell_class
    T, B = inputs.shape
    L, H = config.num_layers, config.hidden_size
    inputs = inputs.astype(np.intp)

    # Forward, one step per call so each step keeps a cache of its own.
    xw, _ = network.input_projection(params, config, inputs)  # the network's own layer-0 input
    caches: list[list] = []
    hs = np.empty(0)  # the previous layer's outputs, (T, B, H)
    for k in range(L):
        if k > 0:
            xw = hs @ params[f"l{k}.Wx"] + params[f"l{k}.b"]
        p = network.layer_params(params, config, k)
        state = network.init_state(config, B)[k]
        hs = np.empty((T, B, H))
        layer_caches = []
        for t in range(T):
            h_t, state, cache = cell.forward(xw[t : t + 1], state, p)
            hs[t] = h_t[0]
            layer_caches.append(cache)
        caches.append(layer_caches)

    # Softmax cross-entropy at the last step only: dL/dlogits = softmax - onehot(target).
    logits = hs[-1] @ params["Why"] + params["by"]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(B), targets] -= 1.0

    out = np.zeros((L, T, B, H))
    dhs = np.zeros((T, B, H))  # gradient arriving from above (the dense layer or layer k + 1)
    dhs[-1] = probs @ params["Why"].T
    for k in range(L - 1, -1, -1):
        dxw = None
        dstate = None  # gradient with respect to the state after step t, from step t + 1
        for t in range(T - 1, -1, -1):
            out[k, t] = dhs[t] if dstate is None else dhs[t] + dstate[0]
            dxw_t, _, dstate = cell.backward(dhs[t : t + 1], dstate, caches[k][t])
            if dxw is None:
                dxw = np.empty((T,) + dxw_t.shape[1:])
            dxw[t] = dxw_t[0]
        if k > 0:
            dhs = dxw @ params[f"l{k}.Wx"].T  # into the outputs of layer k - 1
    return out


def _window_starts(n_ids: int, window: int, position, n_windows: int) -> np.ndarray:
    max_start = n_ids - window - 1
    if max_start < 0:
        raise ValueError(
            f"text is too short for window={window}: it needs at least {window} characters, "
            f"got {n_ids - 1}"
        )
    if position is None:
        # evenly spaced, the last window ending at the end of the text (repeats dropped)
        first = 0 if n_windows > 1 else max_start
        return np.unique(np.linspace(first, max_start, n_windows).round().astype(np.intp))
    pos = np.atleast_1d(np.asarray(position))
    if pos.ndim != 1 or not np.issubdtype(pos.dtype, np.integer):
        raise ValueError(f"position must be an int, a sequence of ints or None, got {position!r}")
    if pos.min() < 0 or pos.max() > max_start:
        raise ValueError(
            f"position must be in [0, {max_start}] for window={window} on this text, "
            f"got {position!r}"
        )
    return pos.astype(np.intp)


def _check_model(model):
    if not all(hasattr(model, a) for a in ("params_", "config_", "vocab_")):
        raise TypeError(
            "model must be a fitted CharRNNGenerator (or one made by init_model), "
            f"got {type(model).__name__} without params_/config_/vocab_"
        )


def gradient_flow(
    model, text: str, window: int = 100, position=None, n_windows: int = 1
) -> np.ndarray:
    """How the last-step loss of a window depends on earlier hidden states, per layer and lag.

    The text is read as a document (``[end-of-document] + text``); a window is ``window``
    consecutive input symbols, read from a zero state, scored on the symbol after its last input.

    Parameters
    ----------
    model : CharRNNGenerator
        Fitted, or freshly initialised by :func:`init_model`.
    text : str
        At least ``window`` characters.
    window : int
        Steps per window ``W``.
    position : int, sequence of int or None
        Start of each window, as an index into ``[end-of-document] + encode(text)``. None takes
        ``n_windows`` evenly spaced windows, the last one ending at the end of the text.
    n_windows : int
        Windows to average over when ``position`` is None.

    Returns
    -------
    ndarray of float64, shape (num_layers, W)
        ``flow[l, j]`` = norm of ``dL / dh^{(l)}`` at lag ``j`` (lag 0 = the last step), the mean
        over windows of the per-window L2 norms.
    """
    _check_model(model)
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    for name, value in (("window", window), ("n_windows", n_windows)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    ids = np.concatenate(([CharVocab.EOD_ID], model.vocab_.encode(text))).astype(np.intp)
    starts = _window_starts(len(ids), window, position, n_windows)
    offsets = np.arange(window)
    inputs = ids[starts[None, :] + offsets[:, None]]  # (W, n)
    targets = ids[starts + window]
    grads = hidden_gradients(model.params_, model.config_, inputs, targets)
    norms = np.linalg.norm(grads, axis=-1).mean(axis=-1)  # (L, W) in time order
    return norms[:, ::-1].copy()  # lag order: column j = lag j


def init_model(
    text: str,
    cell: str = "lstm",
    hidden_size: int = 128,
    num_layers: int = 1,
    random_state=None,
    **params,
):
    """An untrained CharRNNGenerator, initialised exactly as ``fit(text)`` would initialise it.

    Parameters
    ----------
    text : str
        Builds the vocabulary.
    cell, hidden_size, num_layers, random_state, **params
        Passed to :class:`~charrnn.estimators.generator.CharRNNGenerator`.

    Returns
    -------
    CharRNNGenerator
        With ``vocab_``, ``config_`` and freshly initialised ``params_``; can be fitted later.
    """
    from charrnn.estimators.generator import CharRNNGenerator

    model = CharRNNGenerator(
        cell=cell,
        hidden_size=hidden_size,
        num_layers=num_layers,
        random_state=random_state,
        **params,
    )
    # The estimator owns initialisation; reusing it keeps "initialised" identical to the start
    # of fit (same generator draws) rather than a look-alike that could drift from it.
    return model.initialize(text)


# --------------------------------------------------------------------------------------------
# Summaries and text rendering


def standard_lags(window: int) -> list[int]:
    """Lags 1, 2, 5, 10, 20, 50, 100, 200, 500, ... below ``window``."""
    lags, scale = [], 1
    while scale < window:
        lags.extend(m * scale for m in (1, 2, 5) if m * scale < window)
        scale *= 10
    return lags


STANDARD_LAGS = tuple(standard_lags(10**6))


def gradient_flow_summary(flow: np.ndarray, threshold: float = 1e-3) -> dict:
    """The numbers worth printing from a :func:`gradient_flow` array.

    Parameters
    ----------
    flow : ndarray, shape (num_layers, W)
        Norms by lag (column j = lag j).
    threshold : float
        Relative level for ``vanish_lag``.

    Returns
    -------
    dict
        ``lags``: the standard lags below ``W``; ``norms``: per layer, the norms at those lags;
        ``vanish_lag``: per layer, the first lag >= 1 whose norm is below ``threshold`` times the
        norm at lag 1 (None if none within the window); ``threshold``.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 2 or flow.shape[1] < 2:
        raise ValueError(f"flow must have shape (num_layers, window >= 2), got {flow.shape}")
    lags = standard_lags(flow.shape[1])
    vanish = []
    for row in flow:
        below = np.flatnonzero(row[1:] < threshold * row[1]) + 1
        vanish.append(int(below[0]) if below.size else None)
    return {
        "lags": lags,
        "norms": [[float(row[lag]) for lag in lags] for row in flow],
        "vanish_lag": vanish,
        "threshold": threshold,
    }


def sparkline(values, lo: float | None = None, hi: float | None = None, width=None) -> str:
    """One text line of block characters, height proportional to ``log10(value)``.

    Parameters
    ----------
    values : array-like of float, shape (n,)
    lo, hi : float, optional
        Values mapped to the lowest and highest block; default the smallest and largest positive
        values given. Pass the same pair to several lines to make them comparable.
    width : int, optional
        Resample to at most this many characters (evenly spaced picks).

    Returns
    -------
    str
        Zero, negative or non-finite values are shown as spaces.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if width is not None and v.size > width:
        v = v[np.linspace(0, v.size - 1, width).round().astype(np.intp)]
    ok = np.isfinite(v) & (v > 0)
    if not ok.any():
        return " " * v.size
    logs = np.full(v.shape, np.nan)
    logs[ok] = np.log10(v[ok])
    a = math.log10(lo) if lo else float(np.nanmin(logs))
    b = math.log10(hi) if hi else float(np.nanmax(logs))
    if b > a:
        level = np.clip(np.round((logs - a) / (b - a) * (len(_BLOCKS) - 1)), 0, len(_BLOCKS) - 1)
    else:  # one distinct value: a full bar
        level = np.full(v.shape, len(_BLOCKS) - 1)
    return "".join(_BLOCKS[int(x)] if good else " " for x, good in zip(level, ok))


# --------------------------------------------------------------------------------------------
# The delayed-recall task


def make_recall_task(
    n_sequences: int,
    lag: int,
    n_keys: int = 8,
    rng=None,
    *,
    fillers: str = ".-",
    cue: str = "?",
) -> list[str]:
    """Sequences ``key + LAG random fillers + cue + key``, e.g. ``"C.-..-?C"`` for lag 5.

    The key is one of the first ``n_keys`` capital letters; fillers are drawn uniformly from
    ``fillers``. The cue marks where the key is due, so the task tests memory and not counting.
    No newline is appended: the estimator separates documents with its end-of-document symbol.

    Parameters
    ----------
    n_sequences : int
    lag : int
        Filler characters between the key and the cue (the key is read ``lag + 1`` steps before
        the cue).
    n_keys : int, 2..26
    rng : numpy Generator, int or None
        The same seed gives the same sequences.
    fillers : str
        Filler alphabet; must not share characters with the keys or the cue.
    cue : str
        One character.

    Returns
    -------
    list of str, each ``lag + 3`` characters long
    """
    for name, value, low in (("n_sequences", n_sequences, 0), ("lag", lag, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(n_keys, numbers.Integral) or not 2 <= n_keys <= len(RECALL_KEYS):
        raise ValueError(f"n_keys must be an integer in [2, {len(RECALL_KEYS)}], got {n_keys!r}")
    keys = RECALL_KEYS[:n_keys]
    if not isinstance(cue, str) or len(cue) != 1:
        raise ValueError(f"cue must be a single character, got {cue!r}")
    if not fillers or set(fillers) & (set(keys) | {cue}):
        raise ValueError(
            f"fillers must be non-empty and share no character with the keys "
            f"{keys!r} or the cue {cue!r}, got {fillers!r}"
        )
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    key_idx = rng.integers(0, n_keys, size=n_sequences)
    filler_idx = rng.integers(0, len(fillers), size=(n_sequences, lag))
    # Build all sequences as one code-point array, then cut the decoded string: no per-char loop.
    key_cp = np.array([ord(c) for c in keys], dtype=np.uint32)[key_idx]
    table = np.array([ord(c) for c in fillers], dtype=np.uint32)
    codes = np.empty((n_sequences, lag + 3), dtype=np.uint32)
    codes[:, 0] = key_cp
    codes[:, 1 : lag + 1] = table[filler_idx]
    codes[:, lag + 1] = ord(cue)
    codes[:, lag + 2] = key_cp
    flat = codes.astype("<u4").tobytes().decode("utf-32-le")
    n = lag + 3
    return [flat[i * n : (i + 1) * n] for i in range(n_sequences)]


def recall_text(sequences: Sequence[str]) -> str:
    """The training text for the recall task: the sequences as one stream, one per line."""
    return "".join(s + "\n" for s in sequences)


def recall_accuracy(model, sequences: Sequence[str], n_context: int = 2) -> float:
    """Fraction of sequences whose last character is the model's top prediction after the rest.

    Each query is a sequence without its last character, preceded by the ``n_context``
    sequences before it in the list (cyclically), each ending with a newline, as in
    :func:`recall_text`. The context matters: a model trained on one continuous stream never
    starts a sequence from the zero state, and one that times the recall by counting steps can
    be off by one when it does. For :func:`make_recall_task` sequences this is the accuracy of
    recalling the key after the cue, with the previous keys as distractors.

    Returns
    -------
    float in [0, 1]
    """
    if not sequences:
        raise ValueError("sequences is empty")
    if isinstance(n_context, bool) or not isinstance(n_context, numbers.Integral) or n_context < 0:
        raise ValueError(f"n_context must be an integer >= 0, got {n_context!r}")
    n = len(sequences)
    queries = [
        recall_text([sequences[(i - j) % n] for j in range(n_context, 0, -1)]) + s[:-1]
        for i, s in enumerate(sequences)
    ]
    predicted = model.predict(queries)
    return float(np.mean(predicted == np.array([s[-1] for s in sequences])))


def recall_stream_accuracy(model, sequences: Sequence[str], n_streams: int = 8) -> float:
    """Share of recalls right when the sequences are read as one stream with carried state.

    The sequences are joined as documents (each followed by the end-of-document symbol, as
    ``fit`` joins them), cut into ``n_streams`` parallel streams read from the zero state with
    the state carried from one document to the next (no reset at the end-of-document symbol),
    and every prediction made right after a cue ``?`` is compared with the character that
    follows it. Unlike ``predict``, which starts every document from the zero state, a document
    here starts from the state the previous one left (only the first document of each stream
    starts from zero). That is how training read the documents before it reset the state at
    every document start (:func:`charrnn.data.batches.document_resets`); with the resets, a
    model trained on documents has only ever seen ``predict``'s start, and this measures how
    it copes with a state it was not trained from.

    Parameters
    ----------
    model : CharRNNGenerator
        Fitted.
    sequences : sequence of str
        :func:`recall_documents` (or :func:`make_recall_task` sequences with cue ``?``), at
        least ``n_streams``; the last ``len(sequences) % n_streams`` are not read.
    n_streams : int
        Parallel streams ``B``; each reads ``len(sequences) // B`` consecutive sequences, so
        all have the same length ``T`` and run as one ``(T, B)`` batch.

    Returns
    -------
    float in [0, 1]
    """
    _check_model(model)
    if len(sequences) < n_streams:
        raise ValueError(f"need at least n_streams={n_streams} sequences, got {len(sequences)}")
    per = len(sequences) // n_streams
    streams = [
        model.vocab_.encode_documents(sequences[i * per : (i + 1) * per]) for i in range(n_streams)
    ]
    ids = np.stack(streams, axis=1).astype(np.intp)  # (T, n_streams): equal lengths
    logits, _, _ = network.forward_logits(
        model.params_, model.config_, ids[:-1], network.init_state(model.config_, n_streams)
    )
    cue = model.vocab_.encode("?")[0]
    at_cue = ids[:-1] == cue
    return float(np.mean(logits.argmax(axis=-1)[at_cue] == ids[1:][at_cue]))


def recall_gradient_flow(model, sequences: Sequence[str]) -> np.ndarray:
    """Gradient norm by lag for the loss of predicting each sequence's last character.

    Each sequence (all the same length) is read as a document, ``[end-of-document] + seq[:-1]``
    from the zero state, and scored on its last character; for a :func:`make_recall_task`
    sequence that is the key after the cue.

    Parameters
    ----------
    model : CharRNNGenerator
        Fitted, or initialised by :func:`init_model`.
    sequences : sequence of str, all of length ``n``

    Returns
    -------
    ndarray of float64, shape (num_layers, n)
        ``flow[l, j]`` = mean over sequences of ``||dL / dh^{(l)}||`` at lag ``j`` (lag 0 reads
        the cue; lag ``n - 2`` reads the key, lag ``n - 1`` the end-of-document symbol).
    """
    _check_model(model)
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        raise ValueError("sequences must all have the same length")
    ids = np.stack(
        [np.concatenate(([CharVocab.EOD_ID], model.vocab_.encode(s))) for s in sequences], axis=1
    ).astype(np.intp)  # (n + 1, B): [EOD, key, fillers..., cue, key]
    grads = hidden_gradients(model.params_, model.config_, ids[:-1], ids[-1])
    norms = np.linalg.norm(grads, axis=-1).mean(axis=-1)  # (L, n) in time order
    return norms[:, ::-1].copy()


def recall_gradient_ratio(model, sequences: Sequence[str]) -> float:
    """How much of the recall loss's gradient reaches the step that read the key.

    For sequences ``key + fillers + cue + key`` (all the same length), the top layer's
    :func:`recall_gradient_flow` at the key step (lag ``LAG + 1``) divided by its value at
    lag 1.
    """
    flow = recall_gradient_flow(model, sequences)[-1]
    return float(flow[-2] / flow[1])


# The recall task of issue 18, as a learner would set it up with the public estimator: four
# keys, dots as fillers, one document per sequence, every BPTT chunk long enough for four
# documents, so most recalls lie inside one chunk.
RECALL_N_KEYS = 4
RECALL_FILLERS = "."


def recall_documents(n_documents: int, lag: int, rng=None) -> list[str]:
    """``n_documents`` recall documents: a key out of four, ``lag`` dots, ``?``, the key.

    The settings of :func:`recall_generator` and ``scripts/recall_bench.py``; see
    :func:`make_recall_task`.
    """
    return make_recall_task(n_documents, lag, RECALL_N_KEYS, rng, fillers=RECALL_FILLERS)


def recall_generator(cell: str, lag: int, **params):
    """A CharRNNGenerator set up for the recall task at ``lag``; ``params`` override.

    One layer of 64 units, ``seq_length = 4 * (lag + 2)``, batches of 32, Adam at 1e-2, no
    validation and no stopping rule (``max_iter`` passes are the budget), every other
    parameter (``gate_init`` among them) at its default.

    Returns
    -------
    CharRNNGenerator
        Unfitted.
    """
    from charrnn.estimators.generator import CharRNNGenerator

    if isinstance(lag, bool) or not isinstance(lag, numbers.Integral) or lag < 0:
        raise ValueError(f"lag must be an integer >= 0, got {lag!r}")
    settings = {
        "cell": cell,
        "hidden_size": 64,
        "num_layers": 1,
        "seq_length": 4 * (int(lag) + 2),
        "batch_size": 32,
        "learning_rate": 1e-2,
        "validation_fraction": 0.0,
        "early_stopping": False,
        # no stopping rule: the loss plateaus for many passes before the recall is found
        "n_iter_no_change": 10**9,
    }
    return CharRNNGenerator(**{**settings, **params})
