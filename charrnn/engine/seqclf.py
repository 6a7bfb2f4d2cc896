"""Sequence network: input -> (bi)directional recurrent layers -> pooling -> dense head.

The classifier's network, and the regressor's: symbol ids enter through an embedding (or
one-hot rows), float vectors (``input_size`` set) through the first layer's input weights
directly; the head is scored by softmax cross-entropy over classes or by squared error over
real values (``loss``). Everything between is the same code.

Texts of different lengths share a batch by right-padding (with the end-of-document id); the
cells never see a mask. That is exact, not an approximation, because of two facts:

* A forward-direction state at step ``t`` depends only on steps ``<= t``, so padding after a
  text's end cannot change any of its states before the end.
* The backward direction reads every text reversed *within its own length* (a per-column gather,
  :func:`reverse_index`), so its padding also comes after the text, never before it.

Pooling then reads only valid steps ("last": the forward state at ``len - 1`` and the backward
state after reading the whole text backwards; "mean" / "max": over ``t < len``), and in the
backward pass padded steps receive exactly zero gradient. A text classified inside a padded batch
therefore gets the probabilities it gets alone.

Parameter names and shapes (``V`` vocabulary, ``E`` embedding, ``H`` hidden, ``G`` cell gates,
``K`` directions (1 or 2), ``C`` classes):

==================  ============  ==============================================================
key                 shape         meaning
==================  ============  ==============================================================
embed               (V, E)        input embedding (only when ``embedding_dim`` is set)
l{k}.{d}.Wx         (D, G*H)      layer ``k``, direction ``d`` in {fwd, bwd}; D = E, V, F
                                  (``input_size``, float input) or K*H
l{k}.{d}.Wh         (H, G*H)      recurrent weights
l{k}.{d}.b          (G*H,)        bias
l{k}.{d}.bhn        (H,)          GRU only: recurrent bias of the candidate
lm.{d}.W            (H, V)        auxiliary language model of direction ``d`` (only when
                                  ``aux_lm_weight`` > 0): the next character from each forward
                                  state, the previous one from each backward state
lm.{d}.b            (V,)          its bias
Wout                (K*H, C)      output weights on the pooled features (C classes or outputs)
bout                (C,)          output bias
Wskip               (S, C)        linear path from the whole float input to the outputs (only
                                  when ``skip_size`` S = T*F > 0)
==================  ============  ==============================================================

With ``skip_size`` > 0 (float input of a fixed ``T`` steps) the outputs also get a linear map
of the whole input sequence, flattened step-major, added to the head's: the autoregressive
component of LSTNet (Lai et al. 2018, "Modeling long- and short-term temporal patterns with
deep neural networks"). A window of a series then needs the recurrent layers only for what a
linear model of its lags misses; ``Wskip`` starts at zero.

With ``aux_lm_weight`` > 0 the training loss adds, with that weight, the mean cross-entropy of
predicting every character of a text from the top layer's state next to it (the forward
direction reads up to the character before, the backward one from the character after): a
language-modelling task on the same texts, without any more labels, that asks the recurrent
states to describe the text rather than to memorise what singles out each training text
(Rei 2017, "Semi-supervised multitask learning for sequence labeling"). Predictions do not use
these heads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from charrnn.engine.cells import CELLS
from charrnn.engine.network import (
    DTYPES,
    config_values,
    gate_bias,
    glorot,
    is_real,
    log_softmax,
    orthogonal,
    scatter_rows,
)

POOLINGS = ("last", "mean", "max")
#: how the head's outputs are scored: class logits by softmax cross-entropy, real values by
#: half the mean squared error (scikit-learn's MLPRegressor's loss)
LOSSES = ("cross_entropy", "squared_error")
DIRECTIONS = ("fwd", "bwd")


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


# Ids whose input vector starts at zero: padding/empty text and characters unseen in training.
_NEUTRAL_IDS = (0, 1)


@dataclass(frozen=True)
class SeqClfConfig:
    """The shape of a sequence network.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
    vocab_size : int
        Number of input symbols ``V``; unused (0) with ``input_size``.
    n_classes : int
        Number of outputs ``C``: classes (>= 2) with ``loss="cross_entropy"``, real values
        (>= 1) with ``loss="squared_error"``.
    hidden_size : int
        Units per direction per layer ``H``.
    num_layers : int
    embedding_dim : int or None
        Size of a learned input embedding; None feeds one-hot vectors.
    bidirectional : bool
        Add a backward-reading recurrent pass to every layer and concatenate the two.
    pooling : {"last", "mean", "max"}
        How the top layer's states become one feature vector per text.
    dropout : float
        Inverted-dropout probability between layers and on the pooled features.
    dtype : {"float32", "float64"}
    aux_lm_weight : float
        Weight of the auxiliary language-modelling loss (module docstring); 0 leaves it out.
    input_size : int or None
        None: the input is symbol ids. An int ``F``: the input is float vectors of ``F``
        features per step, fed to the first layer's ``Wx`` (no embedding).
    loss : {"cross_entropy", "squared_error"}
        What the head's outputs are and how they are scored (:data:`LOSSES`).
    skip_size : int
        Length ``S = T * F`` of the flattened float input that a linear path maps straight to
        the outputs (module docstring); 0 leaves it out. Needs ``input_size``, and every
        sequence then has exactly ``T`` steps.
    """

    cell: str
    vocab_size: int
    n_classes: int
    hidden_size: int
    num_layers: int = 1
    embedding_dim: int | None = None
    bidirectional: bool = False
    pooling: str = "last"
    dropout: float = 0.0
    dtype: str = "float32"
    aux_lm_weight: float = 0.0
    input_size: int | None = None
    loss: str = "cross_entropy"
    skip_size: int = 0

    def __post_init__(self):
        # Assertions for programming errors: the estimators check what users pass against
        # their parameter tables (charrnn.estimators.params) before building a config; a
        # model file's config is checked with field_problems before it gets here.
        problems = self.field_problems(asdict(self))
        assert not problems, "; ".join(problems)

    @classmethod
    def field_problems(cls, values: Mapping) -> list[str]:
        """What is wrong with ``values`` as this class's fields (empty when nothing is).

        As :meth:`charrnn.engine.network.NetworkConfig.field_problems`: asserted by
        ``__post_init__``, called by :mod:`charrnn.io` on a model file's header.
        """
        problems, v = config_values(cls, values)
        if v is None:
            return problems
        if not (isinstance(v["loss"], str) and v["loss"] in LOSSES):
            return [*problems, f"loss must be one of {LOSSES}, got {v['loss']!r}"]
        float_input = v["input_size"] is not None
        lows = (
            ("vocab_size", 0 if float_input else 1),
            ("n_classes", 2 if v["loss"] == "cross_entropy" else 1),
            ("hidden_size", 1),
            ("num_layers", 1),
        )
        if float_input:
            lows += (("input_size", 1),)
        for name, low in lows:
            value = v[name]
            if not (_is_int(value) and value >= low):
                problems.append(f"{name} must be an integer >= {low}, got {value!r}")
        if not (
            v["embedding_dim"] is None or (_is_int(v["embedding_dim"]) and v["embedding_dim"] >= 1)
        ):
            problems.append(
                f"embedding_dim must be a positive integer or None, got {v['embedding_dim']!r}"
            )
        if not isinstance(v["bidirectional"], bool | np.bool_):
            problems.append(f"bidirectional must be a bool, got {v['bidirectional']!r}")
        if not (isinstance(v["pooling"], str) and v["pooling"] in POOLINGS):
            problems.append(f"pooling must be one of {POOLINGS}, got {v['pooling']!r}")
        if not (is_real(v["dropout"]) and 0.0 <= v["dropout"] < 1.0):
            problems.append(f"dropout must be in [0, 1), got {v['dropout']!r}")
        if not (isinstance(v["dtype"], str) and v["dtype"] in DTYPES):
            problems.append(f"dtype must be one of {DTYPES}, got {v['dtype']!r}")
        aux = v["aux_lm_weight"]
        if not (is_real(aux) and 0.0 <= aux < np.inf):
            problems.append(f"aux_lm_weight must be >= 0, got {aux!r}")
        # both are about symbols: an embedding table, a next-symbol prediction
        elif float_input and (v["embedding_dim"] is not None or aux):
            problems.append("float input (input_size) takes no embedding_dim or aux_lm_weight")
        skip = v["skip_size"]
        if not (_is_int(skip) and skip >= 0):
            problems.append(f"skip_size must be an integer >= 0, got {skip!r}")
        elif skip and not (
            float_input and _is_int(v["input_size"]) and v["input_size"] >= 1
            and skip % v["input_size"] == 0
        ):  # fmt: skip
            problems.append("skip_size needs float input (input_size) and must be a multiple of it")
        return problems

    @property
    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS if self.bidirectional else DIRECTIONS[:1]

    @property
    def feature_size(self) -> int:
        """Length of the pooled feature vector, ``K * H``."""
        return len(self.directions) * self.hidden_size

    def to_dict(self) -> dict:
        return asdict(self)


def param_shapes(config: SeqClfConfig) -> dict[str, tuple[int, ...]]:
    """The name and shape of every parameter :func:`init_params` makes, without allocating."""
    V, H, G = config.vocab_size, config.hidden_size, CELLS[config.cell].n_gates
    shapes: dict[str, tuple[int, ...]] = {}
    if config.embedding_dim is not None:
        shapes["embed"] = (V, config.embedding_dim)
    for k in range(config.num_layers):
        d_in = config.feature_size if k > 0 else (config.input_size or config.embedding_dim or V)
        for d in config.directions:
            shapes |= {f"l{k}.{d}.Wx": (d_in, G * H), f"l{k}.{d}.Wh": (H, G * H)}
            shapes[f"l{k}.{d}.b"] = (G * H,)
            if config.cell == "gru":
                shapes[f"l{k}.{d}.bhn"] = (H,)
    if config.aux_lm_weight > 0:
        for d in config.directions:
            shapes |= {f"lm.{d}.W": (H, V), f"lm.{d}.b": (V,)}
    shapes |= {"Wout": (config.feature_size, config.n_classes), "bout": (config.n_classes,)}
    if config.skip_size:
        shapes["Wskip"] = (config.skip_size, config.n_classes)
    return shapes


def init_params(
    config: SeqClfConfig,
    rng: np.random.Generator,
    gate_init: str = "forget1",
    t_max: int | None = None,
) -> dict[str, np.ndarray]:
    """Initialise parameters (shapes in the module docstring).

    As in :func:`charrnn.engine.network.init_params`: Glorot input and output weights, orthogonal
    recurrent blocks, gate biases from :func:`charrnn.engine.network.gate_bias` (``gate_init``,
    ``t_max``; drawn after every weight, one layer and direction after the other), other biases
    zero. The input vectors of the padding and unknown symbols start at zero, so a character
    never seen in training enters the network as a neutral input (its vector gets no gradient
    and stays zero).
    """
    dt = np.dtype(config.dtype)
    V, H, G = config.vocab_size, config.hidden_size, CELLS[config.cell].n_gates
    neutral = [i for i in _NEUTRAL_IDS if i < V and config.input_size is None]
    params: dict[str, np.ndarray] = {}
    if config.embedding_dim is not None:
        params["embed"] = rng.standard_normal((V, config.embedding_dim)).astype(dt)
        params["embed"][neutral] = 0.0
    for k in range(config.num_layers):
        d_in = config.feature_size if k > 0 else (config.input_size or config.embedding_dim or V)
        for d in config.directions:
            Wx = glorot(rng, d_in, G * H, dt)
            if k == 0 and config.embedding_dim is None:
                Wx[neutral] = 0.0  # one-hot rows play the embedding's role
            params[f"l{k}.{d}.Wx"] = Wx
            params[f"l{k}.{d}.Wh"] = np.concatenate([orthogonal(rng, H, dt) for _ in range(G)], 1)
            params[f"l{k}.{d}.b"] = np.empty(G * H, dtype=dt)  # filled below
            if config.cell == "gru":
                params[f"l{k}.{d}.bhn"] = np.zeros(H, dtype=dt)
    if config.aux_lm_weight > 0:
        for d in config.directions:
            params[f"lm.{d}.W"] = glorot(rng, H, V, dt)
            params[f"lm.{d}.b"] = np.zeros(V, dtype=dt)
    params["Wout"] = glorot(rng, config.feature_size, config.n_classes, dt)
    params["bout"] = np.zeros(config.n_classes, dtype=dt)
    if config.skip_size:
        params["Wskip"] = np.zeros((config.skip_size, config.n_classes), dtype=dt)
    for k in range(config.num_layers):
        for d in config.directions:
            params[f"l{k}.{d}.b"][:] = gate_bias(config.cell, H, gate_init, rng, dt, t_max)
    return params


def _flat_input(ids: np.ndarray, config: SeqClfConfig) -> np.ndarray:
    """(T, B, F) float input -> (B, T*F), step-major: what the linear skip path reads."""
    T, B, F = ids.shape
    assert config.skip_size == T * F, (
        f"the linear skip path reads {config.skip_size} values per sequence, got {T} x {F}"
    )
    return ids.transpose(1, 0, 2).reshape(B, T * F)


def pad_batch(seqs: list[np.ndarray], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id sequences into one time-major batch.

    Parameters
    ----------
    seqs : list of B 1-D int arrays, each of length >= 1

    Returns
    -------
    ids : ndarray of intp, shape (T, B)
        ``T`` is the longest length; steps past a sequence's end hold ``pad_id``.
    lengths : ndarray of intp, shape (B,)
    """
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.intp, count=len(seqs))
    # the classifier reads an empty text as one end-of-document symbol
    assert lengths.size and lengths.min() >= 1, "every sequence in a batch needs a symbol"
    T = int(lengths.max())
    batch_major = np.full((len(seqs), T), pad_id, dtype=np.intp)
    # Row-major boolean assignment fills each row's valid prefix in order.
    batch_major[np.arange(T) < lengths[:, None]] = np.concatenate(seqs)
    return np.ascontiguousarray(batch_major.T), lengths


def reverse_index(lengths: np.ndarray, T: int) -> np.ndarray:
    """Gather index that reverses each column within its own length.

    ``idx[t, b] = lengths[b] - 1 - t`` for ``t < lengths[b]`` and ``t`` otherwise, so padding
    stays at the end. It is its own inverse: gathering twice restores the original order, and
    the gradient of the gather is the same gather.

    Returns
    -------
    ndarray of intp, shape (T, B)
    """
    t = np.arange(T)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def _gather_time(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``out[t, b] = x[idx[t, b], b]`` for x of shape (T, B) or (T, B, D)."""
    if x.ndim == 2:
        return np.take_along_axis(x, idx, axis=0)
    return np.take_along_axis(x, idx[:, :, None], axis=0)


def _cell_params(params: dict, config: SeqClfConfig, prefix: str) -> dict:
    p = {"Wh": params[prefix + "Wh"]}
    for name in CELLS[config.cell].extra_params:
        p[name] = params[prefix + name]
    return p


def _dropout_mask(rng, shape, keep: float, dtype) -> np.ndarray:
    mask = rng.random(shape) < keep
    return mask.astype(dtype) / np.asarray(keep, dtype=dtype)


def forward(
    params: dict,
    config: SeqClfConfig,
    ids: np.ndarray,
    lengths: np.ndarray,
    rng: np.random.Generator | None = None,
    train: bool = False,
):
    """Logits for a padded batch.

    Parameters
    ----------
    ids : ndarray of int, shape (T, B), or of float, shape (T, B, F)
        Right-padded symbol ids (see :func:`pad_batch`), or with ``config.input_size`` float
        input vectors.
    lengths : ndarray of int, shape (B,)
        Valid steps per column, each in [1, T].
    rng : Generator, required when ``train`` and dropout > 0
    train : bool
        Apply dropout.

    Returns
    -------
    logits : ndarray, shape (B, C)
    cache : tuple
        Everything :func:`backward` needs; ``cache[-2]`` holds the top layer's states, shape
        (T, B, K*H), and ``cache[-1]`` the pooled features, shape (B, K*H).
    """
    cell = CELLS[config.cell]
    T, B = ids.shape[:2]
    H = config.hidden_size
    lengths = np.asarray(lengths, dtype=np.intp)
    use_dropout = train and config.dropout > 0.0
    assert rng is not None or not use_dropout, "rng is required for dropout in training mode"
    keep = 1.0 - config.dropout
    ridx = reverse_index(lengths, T) if config.bidirectional else None
    layers = []
    out = None
    for k in range(config.num_layers):
        parts, dir_caches = [], []
        for d in config.directions:
            pre = f"l{k}.{d}."
            Wx, b = params[pre + "Wx"], params[pre + "b"]
            if k == 0:
                x_ids = ids if d == "fwd" else _gather_time(ids, ridx)
                if config.input_size is not None:
                    x = x_ids  # (T, B, F) float input
                elif config.embedding_dim is None:
                    x = x_ids
                    xw = Wx[x_ids]  # one-hot @ Wx is a row gather
                else:
                    x = params["embed"][x_ids]  # (T, B, E)
            else:
                x = out if d == "fwd" else _gather_time(out, ridx)
            if x.ndim == 3:
                # one (T*B, D) @ (D, G*H) GEMM; a 3-D @ 2-D matmul would loop over T
                xw = (x.reshape(T * B, -1) @ Wx).reshape(T, B, -1)
            xw += b
            state = tuple(np.zeros((B, H), dtype=Wx.dtype) for _ in range(cell.n_states))
            hs, _, cell_cache = cell.forward(xw, state, _cell_params(params, config, pre))
            parts.append(hs if d == "fwd" else _gather_time(hs, ridx))
            dir_caches.append((x, cell_cache))
        out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)  # (T, B, K*H)
        mask = None
        if use_dropout and k < config.num_layers - 1:
            mask = _dropout_mask(rng, out.shape, keep, out.dtype)
            out = out * mask
        layers.append((dir_caches, mask))

    pooled, pool_cache = _pool(out, lengths, config.pooling, H, config.bidirectional)
    pmask = None
    if use_dropout:
        pmask = _dropout_mask(rng, pooled.shape, keep, pooled.dtype)
        pooled = pooled * pmask
    logits = pooled @ params["Wout"]
    logits += params["bout"]
    if config.skip_size:
        logits += _flat_input(ids, config) @ params["Wskip"]
    return logits, (ids, lengths, ridx, layers, pool_cache, pmask, out, pooled)


def _pool(out: np.ndarray, lengths: np.ndarray, pooling: str, H: int, bidirectional: bool):
    """Pool (T, B, K*H) top-layer states over each column's valid steps -> (B, K*H)."""
    T, B, F = out.shape
    cols = np.arange(B)
    if pooling == "last":
        pooled = out[lengths - 1, cols].copy()
        if bidirectional:
            # The backward pass ends at the text's first character, i.e. step 0.
            pooled[:, H:] = out[0, :, H:]
        return pooled, (out.shape, lengths)
    valid = np.arange(T)[:, None] < lengths[None, :]  # (T, B)
    if pooling == "mean":
        pooled = np.where(valid[:, :, None], out, 0).sum(axis=0)
        pooled /= lengths[:, None].astype(out.dtype)
        return pooled, (out.shape, lengths, valid)
    masked = np.where(valid[:, :, None], out, -np.inf)
    argmax = masked.argmax(axis=0)  # (B, F): the step that supplies each feature
    pooled = np.take_along_axis(out, argmax[None], axis=0)[0]
    return pooled, (out.shape, argmax)


def _pool_backward(dpooled: np.ndarray, pooling: str, cache, H: int, bidirectional: bool):
    """Gradient of :func:`_pool`: (B, K*H) -> (T, B, K*H), zero at padded steps."""
    shape = cache[0]
    dout = np.zeros(shape, dtype=dpooled.dtype)
    if pooling == "last":
        lengths = cache[1]
        cols = np.arange(shape[1])
        dout[lengths - 1, cols, :H] = dpooled[:, :H]
        if bidirectional:
            dout[0, :, H:] += dpooled[:, H:]
        return dout
    if pooling == "mean":
        lengths, valid = cache[1], cache[2]
        scaled = dpooled / lengths[:, None].astype(dpooled.dtype)
        np.multiply(valid[:, :, None], scaled[None], out=dout)
        return dout
    np.put_along_axis(dout, cache[1][None], dpooled[None], axis=0)
    return dout


def backward(
    params: dict,
    config: SeqClfConfig,
    dlogits: np.ndarray,
    cache,
    dtop: np.ndarray | None = None,
) -> dict:
    """Gradients of every parameter given the gradient of the logits.

    Parameters
    ----------
    dlogits : ndarray, shape (B, C)
    cache : from :func:`forward`
    dtop : ndarray, shape (T, B, K*H), optional
        A further gradient with respect to the top layer's states (the auxiliary language
        model's, :func:`aux_lm_loss`).

    Returns
    -------
    grads : dict of str to ndarray
        Keys and shapes as ``params``, but for the auxiliary ``lm.*`` heads, whose gradients
        :func:`aux_lm_loss` gives.
    """
    cell = CELLS[config.cell]
    ids, lengths, ridx, layers, pool_cache, pmask, _, pooled = cache
    T, B = ids.shape[:2]
    H = config.hidden_size
    grads: dict[str, np.ndarray] = {"Wout": pooled.T @ dlogits, "bout": dlogits.sum(axis=0)}
    if config.skip_size:
        grads["Wskip"] = _flat_input(ids, config).T @ dlogits
    dpooled = dlogits @ params["Wout"].T
    if pmask is not None:
        dpooled *= pmask
    dout = _pool_backward(dpooled, config.pooling, pool_cache, H, config.bidirectional)
    if dtop is not None:
        dout += dtop
    for k in range(config.num_layers - 1, -1, -1):
        dir_caches, mask = layers[k]
        if mask is not None:
            dout *= mask
        dx_total = None
        for j, d in enumerate(config.directions):
            pre = f"l{k}.{d}."
            x, cell_cache = dir_caches[j]
            dhs = np.ascontiguousarray(dout[..., j * H : (j + 1) * H])
            if d == "bwd":
                dhs = _gather_time(dhs, ridx)  # the gather is its own inverse
            dxw, g, _ = cell.backward(dhs, None, cell_cache)
            grads[pre + "Wh"] = g["Wh"]
            for name in cell.extra_params:
                grads[pre + name] = g[name]
            dxw2 = dxw.reshape(T * B, -1)
            grads[pre + "b"] = dxw2.sum(axis=0)
            Wx = params[pre + "Wx"]
            if k == 0 and config.embedding_dim is None and config.input_size is None:
                grads[pre + "Wx"] = scatter_rows(x.reshape(-1), dxw2, Wx.shape[0])
                continue
            grads[pre + "Wx"] = x.reshape(T * B, -1).T @ dxw2
            if k == 0 and config.input_size is not None:
                continue  # nothing is trained below float input
            dx = (dxw2 @ Wx.T).reshape(T, B, -1)
            if k == 0:
                x_ids = ids if d == "fwd" else _gather_time(ids, ridx)
                n_symbols = params["embed"].shape[0]
                g_embed = scatter_rows(x_ids.reshape(-1), dx.reshape(T * B, -1), n_symbols)
                grads["embed"] = g_embed if "embed" not in grads else grads["embed"] + g_embed
                continue
            if d == "bwd":
                dx = _gather_time(dx, ridx)
            dx_total = dx if dx_total is None else dx_total + dx
        dout = dx_total
    return {name: grads[name] for name in params if name in grads}


def loss_and_grads(
    params: dict,
    config: SeqClfConfig,
    ids: np.ndarray,
    lengths: np.ndarray,
    targets: np.ndarray,
    rng: np.random.Generator | None = None,
    train: bool = True,
):
    """The batch's loss (``config.loss``) and the gradient of every parameter.

    Parameters
    ----------
    ids : ndarray of int, shape (T, B), or of float, shape (T, B, F) (``input_size``)
    lengths : ndarray of int, shape (B,)
    targets : ndarray of int, shape (B,), or of float, shape (B, C)
        Class indices in [0, C) (cross-entropy), or target values (squared error).
    rng : Generator for dropout masks.
    train : bool
        Apply dropout.

    Returns
    -------
    loss : float
        Cross-entropy: mean negative log-likelihood per text, nats, plus the weighted
        auxiliary language-modelling loss when ``config.aux_lm_weight`` > 0
        (:func:`aux_lm_loss`). Squared error: half the mean over the batch and the outputs
        of ``(output - target) ** 2``.
    grads : dict of str to ndarray
    """
    logits, cache = forward(params, config, ids, lengths, rng, train)
    B = logits.shape[0]
    if config.loss == "squared_error":
        diff = logits - targets
        loss = 0.5 * float(np.mean(np.square(diff, dtype=np.float64)))
        diff /= diff.size  # d loss / d output
        return loss, backward(params, config, diff, cache)
    logp = log_softmax(logits)
    rows = np.arange(B)
    loss = float(-np.mean(logp[rows, targets], dtype=np.float64))
    dlogits = np.exp(logp)
    dlogits[rows, targets] -= 1.0
    dlogits /= B
    if config.aux_lm_weight == 0 or ids.shape[0] < 2:
        return loss, backward(params, config, dlogits, cache)
    aux_loss, dtop, head_grads = aux_lm_loss(params, config, ids, cache[1], cache[-2])
    grads = backward(params, config, dlogits, cache, dtop)
    grads.update(head_grads)
    return loss + aux_loss, {name: grads[name] for name in params}


def aux_lm_loss(params: dict, config: SeqClfConfig, ids, lengths, top):
    """The auxiliary language-modelling loss (weighted) and its gradients.

    The forward state at step ``t`` predicts character ``t + 1`` and the backward state at
    ``t`` (having read the text from its end down to ``t``) character ``t - 1``; the mean is
    over these positions inside the texts, both directions together, so padding is ignored.

    Parameters
    ----------
    ids : ndarray of int, shape (T, B), T >= 2
    lengths : ndarray of int, shape (B,)
    top : ndarray, shape (T, B, K*H)
        The top layer's states, both directions in text order (``forward``'s ``cache[-2]``).

    Returns
    -------
    loss : float
        ``aux_lm_weight`` times the mean cross-entropy, nats.
    dtop : ndarray, shape (T, B, K*H)
    grads : dict
        Gradients of the ``lm.*`` heads.
    """
    T, B = ids.shape
    H = config.hidden_size
    weight = config.aux_lm_weight
    valid = np.arange(T - 1)[:, None] + 1 < lengths[None, :]  # (T-1, B): a next character
    v = valid.reshape(-1)
    scale = weight / (len(config.directions) * max(int(v.sum()), 1))
    rows = np.arange(v.size)
    loss = 0.0
    dtop = np.zeros_like(top)
    grads = {}
    for j, d in enumerate(config.directions):
        cols = slice(j * H, (j + 1) * H)
        # (states, the characters they predict, where their gradient goes)
        if d == "fwd":
            h, target, steps = top[:-1, :, cols], ids[1:], slice(0, T - 1)
        else:
            h, target, steps = top[1:, :, cols], ids[:-1], slice(1, T)
        h = np.ascontiguousarray(h).reshape(-1, H)
        W = params[f"lm.{d}.W"]
        logp = log_softmax(h @ W + params[f"lm.{d}.b"])
        t = target.reshape(-1)
        loss += float(-(logp[rows, t] * v).sum() * scale)
        dlogits = np.exp(logp)
        dlogits[rows, t] -= 1.0
        dlogits *= (v * scale)[:, None]
        grads[f"lm.{d}.W"] = h.T @ dlogits
        grads[f"lm.{d}.b"] = dlogits.sum(axis=0)
        dtop[steps, :, cols] += (dlogits @ W.T).reshape(T - 1, B, H)
    return loss, dtop, grads


def n_parameters(params: dict) -> int:
    """Total number of scalar parameters."""
    return int(sum(p.size for p in params.values()))
