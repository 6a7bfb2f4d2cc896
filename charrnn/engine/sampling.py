"""Sampling the next symbol (temperature, top-k, top-p) and batched text generation.

Every draw is an inverse-CDF lookup with one uniform number per row, so a generation run
consumes a fixed, predictable stream from the caller's ``numpy.random.Generator``: the same
generator state always gives the same text, whichever code path produced it.

The probabilities of a row are computed as ``exp((logits - max) / temperature)`` in the
logits' dtype, masked by top-k and top-p, and accumulated into a float64 CDF. Generating one
sample at a time (the common ``charrnn sample`` case) steps with :class:`Batch1Stepper`, which
runs the cells' own step arithmetic on weights arranged once and preallocated 1-D buffers: at
batch 1 a step costs its matrix-vector products plus about a microsecond per NumPy call, so it
makes as few calls per character as it can.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np

from charrnn.engine.cells import GRUCell, LSTMCell, RNNCell
from charrnn.engine.network import NetworkConfig, forward_logits, init_state, step
from charrnn.parallel.blas import one_blas_thread

# Uniform numbers are drawn in blocks of at most this many (steps x samples) values, so a long
# run needs neither one random call per step nor a huge array up front.
_UNIFORM_BLOCK = 1 << 16
# Above this size (bytes) the first layer's (V, G*H) input table is not precomputed; the
# generic path is used instead.
_MAX_TABLE_BYTES = 64 << 20


def _sampling_options(temperature, top_k, top_p) -> tuple[float, int | None, float | None]:
    """The sampling options as Python numbers, asserted to be in range.

    Assertions, not user errors: :meth:`charrnn.CharRNNGenerator.sample` checks what a user
    passes (with the rules of :mod:`charrnn.estimators.params`) and names the parameter.
    """
    assert _real(temperature) and 0.0 < temperature < np.inf, (
        f"temperature must be finite and > 0, got {temperature!r}"
    )
    assert top_k is None or (_integer(top_k) and top_k >= 1), (
        f"top_k must be an integer >= 1 or None, got {top_k!r}"
    )
    assert top_p is None or (_real(top_p) and 0.0 < top_p <= 1.0), (
        f"top_p must be in (0, 1] or None, got {top_p!r}"
    )
    return (
        float(temperature),
        None if top_k is None else int(top_k),
        None if top_p is None else float(top_p),
    )


def _real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def _integer(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool | np.bool_)


def _inverse_temperature(temperature: float, dtype) -> float | None:
    """``1 / temperature``, or None when it overflows ``dtype`` (the greedy limit)."""
    inv = 1.0 / temperature
    return None if inv > np.finfo(dtype).max else inv


def _weights(logits: np.ndarray, temperature: float, top_k, top_p) -> np.ndarray:
    """Unnormalised sampling weights of each row, shape (B, V), in the logits' dtype.

    ``exp((z - max z) / T)`` with every symbol outside the top ``k`` and outside the nucleus
    of mass ``p`` set to zero. ``logits`` is not modified.
    """
    z = np.array(logits, copy=True)
    B, V = z.shape
    top = z.argmax(axis=1)
    inv = _inverse_temperature(temperature, z.dtype)
    if inv is None:  # T -> 0: all mass on the (first) maximum
        z.fill(0.0)
        z[np.arange(B), top] = 1.0
        return z
    z -= z[np.arange(B), top][:, None]
    if inv != 1.0:
        with np.errstate(over="ignore"):  # huge 1/T: far-below-max entries go to -inf
            z *= inv
    if top_k is not None and top_k < V:
        # Any V-k of the smallest; exactly k survive even when values tie.
        drop = np.argpartition(z, V - top_k, axis=1)[:, : V - top_k]
        np.put_along_axis(z, drop, -np.inf, axis=1)
    np.exp(z, out=z)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-z, axis=1, kind="stable")
        ranked = np.take_along_axis(z, order, axis=1)
        cum = np.cumsum(ranked, axis=1, dtype=np.float64)
        # Keep a symbol while the mass ranked above it is still short of p: the smallest
        # prefix reaching p, and never empty (the first symbol has nothing above it).
        before = np.zeros_like(cum)
        before[:, 1:] = cum[:, :-1]
        ranked[before >= top_p * cum[:, -1:]] = 0.0
        np.put_along_axis(z, order, ranked, axis=1)
    return z


def _inverse_cdf(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise draws: the first index whose cumulative weight exceeds ``u`` times the total.

    weights : (B, V), non-negative, positive total per row; u : (B,) in [0, 1).
    Returns (B,) intp. Zero-weight symbols are never chosen.
    """
    cdf = np.cumsum(weights, axis=1, dtype=np.float64)
    target = u * cdf[:, -1]
    ids = np.count_nonzero(cdf <= target[:, None], axis=1)
    over = ids == cdf.shape[1]
    if over.any():  # u * total rounded up to the total: take the last symbol with weight
        ids[over] = np.count_nonzero(cdf[over] < cdf[over, -1:], axis=1)
    return ids.astype(np.intp, copy=False)


def sample_next(
    logits: np.ndarray,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> np.ndarray:
    """Draw one symbol per row from ``softmax(logits / temperature)``, optionally truncated.

    Parameters
    ----------
    logits : ndarray, shape (B, V) or (V,)
        Unnormalised log-probabilities; ``-inf`` excludes a symbol. Each row needs a finite
        maximum.
    rng : numpy.random.Generator
        Exactly ``B`` uniform numbers are drawn from it (one ``rng.random(B)`` call).
    temperature : float
        > 0 and finite. Below 1 sharpens, above 1 flattens the distribution.
    top_k : int or None
        Keep only the ``k`` most probable symbols.
    top_p : float in (0, 1] or None
        Keep the smallest set of most probable symbols whose probability reaches ``p``
        (nucleus sampling), applied after ``top_k``; at least one symbol always remains.

    Returns
    -------
    ndarray of intp, shape (B,) (or a 0-d array for 1-D ``logits``)

    Raises
    ------
    ValueError
        If a row has no finite maximum (NaN, or all ``-inf``): weights gone non-finite.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sample_next(np.array([[0.0, 5.0, 1.0]]), rng, top_k=1)
    array([1])
    """
    temperature, top_k, top_p = _sampling_options(temperature, top_k, top_p)
    assert isinstance(rng, np.random.Generator), (
        f"rng must be a Generator, got {type(rng).__name__}"
    )
    logits = np.asarray(logits)
    squeeze = logits.ndim == 1
    if squeeze:
        logits = logits[None, :]
    assert logits.ndim == 2 and logits.shape[1] > 0, (
        f"logits must be (B, V), V >= 1, got {logits.shape}"
    )
    if logits.dtype not in (np.float32, np.float64):
        logits = logits.astype(np.float64)
    if logits.shape[0] and not np.all(np.isfinite(logits.max(axis=1))):
        raise ValueError("logits must have a finite maximum (no NaN) in every row")
    weights = _weights(logits, temperature, top_k, top_p)
    ids = _inverse_cdf(weights, rng.random(logits.shape[0]))
    return ids[0] if squeeze else ids


def _aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts on a 64-byte boundary.

    OpenBLAS's matrix-vector product ran 3-4% slower on a matrix that started 16 bytes off a
    64-byte line (measured at (256, 1024) and (1024, 2048), float32, one thread), and NumPy
    only guarantees 16.
    """
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    buf = np.empty(n_bytes + 64, dtype=np.uint8)
    start = -buf.ctypes.data % 64
    return buf[start : start + n_bytes].view(dtype).reshape(shape)


def _scaled(a: np.ndarray, scale: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a * scale`` written straight into ``out`` (default: a new 64-byte-aligned array).

    The weights of a large network are copied once per :func:`generate` call, and that copy
    counts in the generation speed, so each one is written once, where it will stay.
    """
    if out is None:
        out = _aligned_empty(a.shape, a.dtype)
    return np.multiply(a, scale, out=out)


class Batch1Stepper:
    """:func:`charrnn.engine.network.step` for one sample, on pre-arranged weights and buffers.

    At batch 1 a step costs its matrix-vector products plus about a microsecond per NumPy call,
    so the layers' arithmetic is that of the cells themselves (their ``activate`` and
    ``update``, :mod:`charrnn.engine.cells`) on buffers allocated once, and the weights are
    arranged once for fewer calls per character:

    - each cell's :meth:`~charrnn.engine.cells.LSTMCell.preactivation_scale` is folded into a
      copy of the input and recurrent weights and biases (multiplying by 0.5 is exact, so this
      changes no value), instead of scaling every step's pre-activations;
    - the first layer's input projection plus bias is one table row, ``(Wx + b)[id]`` (or
      ``(embed @ Wx + b)[id]``);
    - all layers' ``h`` live in one vector so that ``[h_{k-1}, h_k]`` is a contiguous slice,
      and an upper RNN/LSTM layer does ``[h_{k-1}, h_k] @ [[Wx], [Wh]]`` as one matrix-vector
      product (the GRU's ``r`` multiplies only ``h @ Wh_n``, so its two products stay apart);
    - that vector ends in a constant 1, so the logits are ``[h_top, 1] @ [[Why], [by]]``.

    Parameters
    ----------
    params : dict of str to ndarray
        The network's weights (see :mod:`charrnn.engine.network`); copied, not kept.
    config : NetworkConfig
    state : list over layers of tuples of (1, H) arrays
        The state to start from (copied).

    Attributes
    ----------
    logits : ndarray, shape (V,)
        The buffer :meth:`advance` writes into.
    """

    def __init__(self, params: dict, config: NetworkConfig, state: list) -> None:
        cell, H, L = config.cell_class, config.hidden_size, config.num_layers
        G = cell.n_gates
        dt = np.dtype(config.dtype)
        scale = cell.preactivation_scale(H, dt)

        # 1-D buffers throughout: a ufunc mixing (1, n) and (n,) operands broadcasts, which
        # costs twice a same-shape call at this size (measured)
        # [h_0, h_1, ..., h_{L-1}, 1]: the 1 takes the output bias into the output product
        self.h = np.empty(L * H + 1, dtype=dt)
        self.h[-1] = 1.0
        self.c = np.empty(L * H, dtype=dt)  # LSTM cell states, same layout
        for k, st in enumerate(state):
            self.h[k * H : (k + 1) * H] = st[0][0]
            if cell is LSTMCell:
                self.c[k * H : (k + 1) * H] = st[1][0]
        x0 = params["l0.Wx"] if config.embedding_dim is None else params["embed"] @ params["l0.Wx"]
        self.table = _scaled(x0 + params["l0.b"], scale)  # (V, G*H)
        self.layers = []
        for k in range(L):
            hk = self.h[k * H : (k + 1) * H]
            z = np.empty(G * H, dtype=dt)
            if cell is GRUCell:
                Wh = _scaled(params[f"l{k}.Wh"], scale)
                below = self.h[(k - 1) * H : k * H] if k > 0 else None
                # Layer 0's input projection and bias are in the table; upper layers take h_{k-1}.
                Wx = _scaled(params[f"l{k}.Wx"], scale) if k > 0 else None
                b = params[f"l{k}.b"] * scale if k > 0 else None
                xw = np.empty(G * H, dtype=dt) if k > 0 else None
                rz = z[: 2 * H].reshape(2, H)  # [r, z] gate-major: the same memory at batch 1
                bhn = params[f"l{k}.bhn"]
                self.layers.append((below, Wx, b, xw, Wh, bhn, z, rz, *rz, z[2 * H :], hk))
                continue
            if k == 0:
                x_in, W, b = hk, _scaled(params["l0.Wh"], scale), None
            else:  # [h_{k-1}, h_k] @ [[Wx], [Wh]]: one product instead of two and an add
                x_in, W = self.h[(k - 1) * H : (k + 1) * H], _aligned_empty((2 * H, G * H), dt)
                _scaled(params[f"l{k}.Wx"], scale, out=W[:H])
                _scaled(params[f"l{k}.Wh"], scale, out=W[H:])
                b = params[f"l{k}.b"] * scale
            if cell is LSTMCell:
                gates = z.reshape(4, H)
                ck = self.c[k * H : (k + 1) * H]
                tmp = np.empty(H, dtype=dt)
                self.layers.append((x_in, W, b, z, gates, *gates, hk, ck, tmp))
            else:
                self.layers.append((x_in, W, b, z, hk))
        # [h_top, 1] @ [[Why], [by]]: the logits in one call
        self.Why = _aligned_empty((H + 1, config.vocab_size), dt)
        self.Why[:H] = params["Why"]
        self.Why[H] = params["by"]
        self.top = self.h[(L - 1) * H :]
        self.logits = np.empty(config.vocab_size, dtype=dt)
        self.advance = {RNNCell: self._rnn, LSTMCell: self._lstm, GRUCell: self._gru}[cell]
        """``advance(idx) -> logits``: feed symbol ``idx``, get the next logits (V,) in
        :attr:`logits` (overwritten by the next call)."""

    @staticmethod
    def supported(config: NetworkConfig) -> bool:
        """Whether the precomputed input table is small enough to build."""
        n_cols = config.cell_class.n_gates * config.hidden_size
        size = config.vocab_size * n_cols * np.dtype(config.dtype).itemsize
        return size <= _MAX_TABLE_BYTES

    def _output(self) -> np.ndarray:
        return np.dot(self.top, self.Why, out=self.logits)

    def _lstm(self, idx: int) -> np.ndarray:
        row = self.table[idx]
        dot, add, activate, update = np.dot, np.add, LSTMCell.activate, LSTMCell.update
        for x_in, W, b, z, gates, i, f, o, g, hk, ck, tmp in self.layers:
            dot(x_in, W, out=z)
            add(z, row if b is None else b, out=z)
            activate(gates, gates)
            update(i, f, o, g, ck, ck, tmp, hk, tmp)
        return self._output()

    def _gru(self, idx: int) -> np.ndarray:
        dot, add, activate, update = np.dot, np.add, GRUCell.activate, GRUCell.update
        for below, Wx, b, xw, Wh, bhn, z, rz, r, zg, hn, hk in self.layers:
            if below is None:
                xw = self.table[idx]
            else:
                dot(below, Wx, out=xw)
                add(xw, b, out=xw)
            n_rz = 2 * hk.shape[0]
            dot(hk, Wh, out=z)
            add(z[:n_rz], xw[:n_rz], out=z[:n_rz])
            activate(rz, rz)
            add(hn, bhn, out=hn)
            update(r, zg, hn, xw[n_rz:], hn, hk, hk)
        return self._output()

    def _rnn(self, idx: int) -> np.ndarray:
        row = self.table[idx]
        dot, add, activate = np.dot, np.add, RNNCell.activate
        for x_in, W, b, z, hk in self.layers:
            dot(x_in, W, out=z)
            add(z, row if b is None else b, out=z)
            activate(z, hk)
        return self._output()


def _uniform_rows(rng: np.random.Generator, length: int, n: int) -> Iterator[np.ndarray]:
    """``length`` rows of ``n`` uniforms, drawn in a few large blocks."""
    per_block = max(1, _UNIFORM_BLOCK // n)
    for start in range(0, length, per_block):
        yield from rng.random((min(per_block, length - start), n))


def _symbol_ids(ids, vocab_size: int) -> np.ndarray:
    """``ids`` as a 1-D intp array, asserted to hold symbol ids."""
    arr = np.asarray(ids)
    assert arr.ndim == 1 and (arr.size == 0 or arr.dtype.kind in "iu"), (
        "prime_ids must be a 1-D array of integer symbol ids"
    )
    assert arr.size == 0 or (arr.min() >= 0 and arr.max() < vocab_size), (
        f"prime_ids must hold ids in [0, {vocab_size})"
    )
    return arr.astype(np.intp)


def generate(
    params: dict,
    config: NetworkConfig,
    *,
    n_samples: int = 1,
    length: int = 200,
    prime_ids: np.ndarray | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    rng: np.random.Generator,
    eod_id: int = 0,
    stop_at_eod: bool = True,
) -> list[np.ndarray]:
    """Generate ``n_samples`` continuations together, as one batch.

    The prime runs through the network once (batch 1) and its final state is copied to every
    sample; without a prime, generation starts from the end-of-document symbol and a zero
    state, i.e. at the start of a new document. Then each step samples one symbol per sample
    (see :func:`sample_next`) and feeds it back.

    Parameters
    ----------
    params, config
        The network (see :mod:`charrnn.engine.network`).
    n_samples : int
        Number of independent samples, >= 1.
    length : int
        Maximum number of generated symbols per sample, >= 0.
    prime_ids : ndarray of int, shape (P,), optional
        Context to condition on, fed as given from a zero state (prepend ``eod_id`` to mark
        it as the start of a document); not part of the output. None or empty: no prime.
    temperature, top_k, top_p
        As in :func:`sample_next`.
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same samples.
    eod_id : int
        The end-of-document symbol.
    stop_at_eod : bool
        End a sample at its first ``eod_id`` (which is not included in the output).

    Returns
    -------
    list of ndarray of intp
        One 1-D array of generated ids per sample, each of length <= ``length``.

    Notes
    -----
    With ``n_samples=1`` NumPy's BLAS is limited to one thread for the duration of the call,
    unless training runs in this process share the pool; the size is restored afterwards, also
    when several threads generate at once (:func:`charrnn.parallel.blas.one_blas_thread`).
    """
    # Assertions for programming errors: CharRNNGenerator.sample checks what users pass.
    temperature, top_k, top_p = _sampling_options(temperature, top_k, top_p)
    assert isinstance(rng, np.random.Generator), (
        f"rng must be a Generator, got {type(rng).__name__}"
    )
    V = config.vocab_size
    assert _integer(n_samples) and n_samples >= 1, (
        f"n_samples must be an integer >= 1, got {n_samples!r}"
    )
    assert _integer(length) and length >= 0, f"length must be an integer >= 0, got {length!r}"
    assert _integer(eod_id) and 0 <= eod_id < V, f"eod_id must be an id < {V}, got {eod_id!r}"
    n_samples, length, eod_id = int(n_samples), int(length), int(eod_id)
    prime = None if prime_ids is None else _symbol_ids(prime_ids, V)
    sampling = (temperature, top_k, top_p)

    state = init_state(config, 1)
    if prime is None or prime.size == 0:
        logits, state = step(params, config, np.array([eod_id], dtype=np.intp), state)
    else:
        all_logits, state, _ = forward_logits(params, config, prime[:, None], state)
        logits = all_logits[-1]
    if n_samples == 1 and Batch1Stepper.supported(config):
        stepper = Batch1Stepper(params, config, state)
        # Its matrix-vector products are too small to gain much from a second BLAS thread, and
        # every call pays a thread hand-off; when the machine is busy, a worker thread that has
        # been descheduled stalls each product: 2x512 LSTM generation was measured 10x slower
        # with two BLAS threads than with one.
        with one_blas_thread():
            out = _generate_one(stepper, logits[0], length, rng, sampling, eod_id, stop_at_eod)
        return [out]
    return _generate_batch(
        params, config, logits, state, n_samples, length, rng, sampling, eod_id, stop_at_eod
    )


def _generate_batch(params, config, logits, state, n, length, rng, sampling, eod_id, stop):
    """The generic path: :func:`charrnn.engine.network.step` and :func:`_weights` on (B, V) rows.

    Rows that reach EOD are dropped from the batch; every row still owns its column of the
    uniform draws, so dropping rows never changes the other samples.
    """
    logits = np.repeat(logits, n, axis=0)
    state = [tuple(np.repeat(a, n, axis=0) for a in st) for st in state]
    out = np.empty((n, length), dtype=np.intp)
    lengths = np.full(n, length, dtype=np.intp)
    alive = np.arange(n)
    for t, u in enumerate(_uniform_rows(rng, length, n)):
        ids = _inverse_cdf(_weights(logits, *sampling), u[alive])
        out[alive, t] = ids
        if stop:
            done = ids == eod_id
            if done.any():
                lengths[alive[done]] = t
                keep = ~done
                alive, ids = alive[keep], ids[keep]
                state = [tuple(a[keep] for a in st) for st in state]
                if alive.size == 0:
                    break
        if t + 1 < length:
            logits, state = step(params, config, ids, state)
    return [out[i, : lengths[i]].copy() for i in range(n)]


def _generate_one(stepper, logits, length, rng, sampling, eod_id, stop):
    """The batch-1 path: same draws and arithmetic as :func:`_generate_batch` with n = 1."""
    temperature, top_k, top_p = sampling
    lg = np.array(logits, dtype=stepper.logits.dtype)
    inv = _inverse_temperature(temperature, lg.dtype)
    plain = inv is not None and top_k is None and top_p is None
    cdf = np.empty(lg.shape[0], dtype=np.float64)
    last = lg.shape[0]
    out: list[int] = []
    accumulate, sub, mul, exp = np.add.accumulate, np.subtract, np.multiply, np.exp
    with np.errstate(over="ignore"):
        for block_u in _uniform_rows_flat(rng, length):
            for u in block_u:
                if plain:  # _weights and _inverse_cdf, unrolled for one row
                    sub(lg, lg[lg.argmax()], out=lg)
                    if inv != 1.0:
                        mul(lg, inv, out=lg)
                    exp(lg, out=lg)
                    accumulate(lg, out=cdf, dtype=np.float64)
                    i = int(cdf.searchsorted(u * cdf[-1], side="right"))
                    if i == last:
                        i = int(np.count_nonzero(cdf < cdf[-1]))
                else:
                    i = int(_inverse_cdf(_weights(lg[None], *sampling), np.array([u]))[0])
                if stop and i == eod_id:
                    return np.array(out, dtype=np.intp)
                out.append(i)
                if len(out) < length:  # the last symbol needs no further step
                    lg = stepper.advance(i)
    return np.array(out, dtype=np.intp)


def _uniform_rows_flat(rng: np.random.Generator, length: int) -> Iterator[list[float]]:
    """The draws of :func:`_uniform_rows` with n = 1, as lists of Python floats per block."""
    for start in range(0, length, _UNIFORM_BLOCK):
        yield rng.random((min(_UNIFORM_BLOCK, length - start), 1))[:, 0].tolist()
