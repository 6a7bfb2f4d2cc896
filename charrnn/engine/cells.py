"""Recurrent cells: whole-sequence forward with a cache, backpropagation through time, one step.

Every cell works on *pre-projected* inputs: the caller computes ``xw = x @ Wx + b`` for all ``T``
steps in one GEMM (shape ``(T, B, G*H)``, ``G`` gates), so the time loop only does the recurrent
GEMM ``h @ Wh`` and the element-wise gate arithmetic. The backward pass returns ``dxw`` and the
caller turns it into ``dWx``, ``db`` and ``dx`` with one GEMM each. This keeps the cells free of
anything that is not recurrence, and puts as much arithmetic as possible outside the Python loop.

Arrays are time-major: ``(T, B, ...)``. A state is a tuple of ``(B, H)`` arrays: ``(h,)`` for the
RNN and GRU, ``(h, c)`` for the LSTM.

Fused gate layouts (columns of ``Wx``, ``Wh`` and ``b``):

- ``rnn``:  ``[a]``                 h = tanh(a)
- ``lstm``: ``[i, f, o, g]``        sigmoid gates first so one slice holds all three
- ``gru``:  ``[r, z, n]``           PyTorch's formulation: n = tanh(xw_n + r * (h @ Wh_n + bhn))

Sigmoids are computed as ``1 / (1 + exp(-x))`` and the LSTM's candidate as ``2 sigmoid(2x) - 1``,
so one ``exp`` covers every gate of a step: in this NumPy build float32 ``exp`` is twice as fast
as ``tanh`` (measured in :func:`_lstm_gates_inplace`).
"""

from __future__ import annotations

import numpy as np

from charrnn.engine.workspace import Workspace, scratch

State = tuple[np.ndarray, ...]


def _sigmoid_inplace(z: np.ndarray) -> np.ndarray:
    """Logistic function of ``z``, written back into ``z`` (call under
    ``np.errstate(over="ignore")``: ``exp`` overflows to inf for ``z`` below -88 in float32,
    and ``1 / (1 + inf)`` is the correct 0)."""
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)
    return z


def _gate_major(a: np.ndarray, n_gates: int) -> np.ndarray:
    """View of (B, n_gates*H) as (n_gates, B, H)."""
    B, G = a.shape
    return a.reshape(B, n_gates, G // n_gates).transpose(1, 0, 2)


def _lstm_gate_scale(H: int, dtype) -> np.ndarray:
    """(4H,) factors that turn the pre-activations [i, f, o, g] into the exponents of
    :func:`_lstm_gates_inplace`: -1 for the sigmoid gates, -2 for ``g``."""
    scale = np.full(4 * H, -1.0, dtype=dtype)
    scale[3 * H :] = -2.0
    return scale


def _lstm_gates_inplace(z: np.ndarray, scale: np.ndarray, H: int) -> np.ndarray:
    """Activate the LSTM gates of ``z`` (B, 4H) in place: sigmoid of [i, f, o], tanh of g.

    All four with one ``exp`` over the row, as ``sigmoid(x) = 1 / (1 + exp(-x))`` and
    ``tanh(x) = 2 sigmoid(2x) - 1``: float32 ``np.tanh`` cost 3.1 ns per element here against
    1.5 for ``exp`` and 0.15 for a multiply. Measured against one ``tanh`` with the sigmoid
    gates halved around it: a (16, 2048) block alone 102 against 192 us; a whole training step
    1-2% faster for the LSTM, 4% for the GRU (one BLAS thread, A/B in one process).
    Call under ``np.errstate(over="ignore")`` (see :func:`_sigmoid_inplace`).
    """
    z *= scale
    np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)
    g = z[:, 3 * H :]
    g *= 2.0
    g -= 1.0
    return z


def _contiguous_transpose(Wh: np.ndarray, ws: Workspace | None, key: str) -> np.ndarray:
    """``Wh.T`` copied into C order, for the per-step ``dz @ Wh.T`` of a backward loop.

    OpenBLAS multiplies by a C-ordered copy 5-22% faster than by the transposed view at the
    shapes of these loops (B = 16-64 rows, measured single-threaded), and the copy is made once
    per sequence.
    """
    out = scratch(ws, key + "WhT", Wh.T.shape, Wh.dtype)
    np.copyto(out, Wh.T)
    return out


class RNNCell:
    """The Elman cell, ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)``."""

    name = "rnn"
    n_gates = 1
    n_states = 1
    extra_params: tuple[str, ...] = ()

    @staticmethod
    def forward(
        xw: np.ndarray, state: State, p: dict, ws: Workspace | None = None, key: str = ""
    ) -> tuple[np.ndarray, State, tuple]:
        """Run the whole sequence.

        Parameters
        ----------
        xw : ndarray, shape (T, B, H)
            Input projections ``x_t @ Wx + b``.
        state : tuple of one ndarray, shape (B, H)
        p : dict
            ``{"Wh": (H, H)}``.

        Returns
        -------
        hs : ndarray, shape (T, B, H)
        state : tuple of one ndarray, shape (B, H)
        cache : tuple
        """
        T, B, H = xw.shape
        Wh = p["Wh"]
        hall = scratch(ws, key + "hall", (T + 1, B, H), xw.dtype)  # hall[t + 1] = h_t
        hall[0] = state[0]
        for t in range(T):
            np.dot(hall[t], Wh, out=hall[t + 1])
            hall[t + 1] += xw[t]
            np.tanh(hall[t + 1], out=hall[t + 1])
        return hall[1:], (hall[T].copy(),), (hall, Wh, key)

    @staticmethod
    def backward(dhs: np.ndarray, dstate: State | None, cache: tuple, ws: Workspace | None = None):
        """Backpropagate through time.

        Parameters
        ----------
        dhs : ndarray, shape (T, B, H)
            Gradient of the loss with respect to each output ``h_t`` (from above).
        dstate : tuple of (B, H) arrays or None
            Gradient with respect to the final state (from a later chunk); None means zero.
        cache : tuple from :meth:`forward`.

        Returns
        -------
        dxw : ndarray, shape (T, B, H)
        grads : dict ``{"Wh": (H, H)}``
        dstate0 : tuple of one ndarray, shape (B, H)
        """
        hall, Wh, key = cache
        T, B, H = dhs.shape
        # tanh' for every step at once, outside the loop
        dxw = scratch(ws, key + "dxw", (T, B, H), dhs.dtype)
        np.square(hall[1:], out=dxw)
        np.subtract(1.0, dxw, out=dxw)
        dh = np.zeros((B, H), dtype=dhs.dtype) if dstate is None else dstate[0].copy()
        WhT = _contiguous_transpose(Wh, ws, key)
        for t in range(T - 1, -1, -1):
            dh += dhs[t]
            dxw[t] *= dh
            np.dot(dxw[t], WhT, out=dh)
        dWh = hall[:-1].reshape(-1, H).T @ dxw.reshape(-1, H)
        return dxw, {"Wh": dWh}, (dh,)

    @staticmethod
    def step(xw: np.ndarray, state: State, p: dict) -> State:
        """One step without a cache: ``xw`` (B, H) -> new state."""
        h = state[0] @ p["Wh"]
        h += xw
        np.tanh(h, out=h)
        return (h,)


class LSTMCell:
    """Long short-term memory cell with input, forget, output gates and candidate ``g``."""

    name = "lstm"
    n_gates = 4
    n_states = 2
    extra_params: tuple[str, ...] = ()

    @staticmethod
    def forward(
        xw: np.ndarray, state: State, p: dict, ws: Workspace | None = None, key: str = ""
    ) -> tuple[np.ndarray, State, tuple]:
        """Run the whole sequence.

        Parameters
        ----------
        xw : ndarray, shape (T, B, 4H)
        state : (h0, c0), each (B, H)
        p : dict ``{"Wh": (H, 4H)}``

        Returns
        -------
        hs : ndarray, shape (T, B, H)
        state : (h_T, c_T)
        cache : tuple
        """
        T, B, G = xw.shape
        H = G // 4
        Wh = p["Wh"]
        dt = xw.dtype
        hall = scratch(ws, key + "hall", (T + 1, B, H), dt)
        call = scratch(ws, key + "call", (T + 1, B, H), dt)
        # Activated gates, gate-major: gates[t, k] is gate k of step t, (B, H) and contiguous.
        # NumPy runs a (B, H) operation on a column slice of a (B, 4H) row 2-2.5x slower than
        # on a contiguous block (measured at 16-32 rows), and all the per-gate arithmetic of
        # both passes reads these, so each step's activated (B, 4H) block is copied here once.
        gates = scratch(ws, key + "gates", (T, 4, B, H), dt)
        tanh_c = scratch(ws, key + "tanh_c", (T, B, H), dt)
        z = np.empty((B, G), dtype=dt)
        ig = np.empty((B, H), dtype=dt)
        hall[0] = state[0]
        call[0] = state[1]
        scale = _lstm_gate_scale(H, dt)
        with np.errstate(over="ignore"):
            for t in range(T):
                np.dot(hall[t], Wh, out=z)
                z += xw[t]
                _lstm_gates_inplace(z, scale, H)
                np.copyto(gates[t], _gate_major(z, 4))
                i, f, o, g = gates[t]
                np.multiply(f, call[t], out=call[t + 1])
                np.multiply(i, g, out=ig)
                call[t + 1] += ig
                np.tanh(call[t + 1], out=tanh_c[t])
                np.multiply(o, tanh_c[t], out=hall[t + 1])
        return hall[1:], (hall[T].copy(), call[T].copy()), (hall, call, gates, tanh_c, Wh, key)

    @staticmethod
    def backward(dhs: np.ndarray, dstate: State | None, cache: tuple, ws: Workspace | None = None):
        """Backpropagate through time; see :meth:`RNNCell.backward` for the shapes.

        Returns ``dxw`` (T, B, 4H), ``{"Wh": (H, 4H)}`` and ``(dh0, dc0)``.
        """
        hall, call, gates, tanh_c, Wh, key = cache
        T, B, H = dhs.shape
        dt = dhs.dtype
        dxw = scratch(ws, key + "dxw", (T, B, 4 * H), dt)
        if dstate is None:
            dh = np.zeros((B, H), dtype=dt)
            dc = np.zeros((B, H), dtype=dt)
        else:
            dh, dc = dstate[0].copy(), dstate[1].copy()
        # Per step, with z the pre-activations:
        #   dc  += dh * o * (1 - tanh(c)^2)
        #   dz_i = dc * g * i(1-i)        dz_f = dc * c_prev * f(1-f)
        #   dz_o = dh * tanh(c) * o(1-o)  dz_g = dc * i * (1-g^2)
        # The gradient-independent multipliers are formed step by step in small buffers that
        # stay in cache: precomputing them for all T at once streams several (T, B, 4H)
        # arrays through memory and was measured slower.
        m = np.empty((4, B, H), dtype=dt)  # gate-major, like the cached gates
        dc_from_h = np.empty((B, H), dtype=dt)
        WhT = _contiguous_transpose(Wh, ws, key)
        for t in range(T - 1, -1, -1):
            gt = gates[t]
            i, f, o, g = gt
            np.square(gt[:3], out=m[:3])
            np.subtract(gt[:3], m[:3], out=m[:3])  # s(1-s)
            m[0] *= g
            m[1] *= call[t]
            m[2] *= tanh_c[t]
            np.square(g, out=m[3])
            np.subtract(1.0, m[3], out=m[3])
            m[3] *= i
            np.square(tanh_c[t], out=dc_from_h)
            np.subtract(1.0, dc_from_h, out=dc_from_h)
            dc_from_h *= o

            dh += dhs[t]
            dc_from_h *= dh
            dc += dc_from_h
            dz = dxw[t]
            # i, f and g take dc, o takes dh (one call per gate: broadcasting over a gate
            # axis is several times slower in NumPy than four contiguous multiplies)
            np.multiply(dc, m[0], out=dz[:, :H])
            np.multiply(dc, m[1], out=dz[:, H : 2 * H])
            np.multiply(dh, m[2], out=dz[:, 2 * H : 3 * H])
            np.multiply(dc, m[3], out=dz[:, 3 * H :])
            dc *= f
            np.dot(dz, WhT, out=dh)
        dWh = hall[:-1].reshape(-1, H).T @ dxw.reshape(-1, 4 * H)
        return dxw, {"Wh": dWh}, (dh, dc)

    @staticmethod
    def step(xw: np.ndarray, state: State, p: dict) -> State:
        """One step without a cache: ``xw`` (B, 4H) -> ``(h, c)``."""
        h, c = state
        H = h.shape[1]
        z = h @ p["Wh"]
        z += xw
        with np.errstate(over="ignore"):
            _lstm_gates_inplace(z, _lstm_gate_scale(H, z.dtype), H)
        c = c * z[:, H : 2 * H]
        c += z[:, :H] * z[:, 3 * H :]
        h = np.tanh(c)
        h *= z[:, 2 * H : 3 * H]
        return (h, c)


class GRUCell:
    """Gated recurrent unit in PyTorch's formulation.

    ``r = s(xw_r + h Wh_r)``, ``z = s(xw_z + h Wh_z)``, ``n = tanh(xw_n + r * (h Wh_n + bhn))``,
    ``h' = (1 - z) * n + z * h``. The recurrent bias of the candidate, ``bhn``, cannot be folded
    into ``b`` because ``r`` multiplies it, so it is a parameter of its own.
    """

    name = "gru"
    n_gates = 3
    n_states = 1
    extra_params: tuple[str, ...] = ("bhn",)

    @staticmethod
    def forward(
        xw: np.ndarray, state: State, p: dict, ws: Workspace | None = None, key: str = ""
    ) -> tuple[np.ndarray, State, tuple]:
        """Run the whole sequence.

        Parameters
        ----------
        xw : ndarray, shape (T, B, 3H)
        state : (h0,), (B, H)
        p : dict ``{"Wh": (H, 3H), "bhn": (H,)}``

        Returns
        -------
        hs : ndarray, shape (T, B, H)
        state : (h_T,)
        cache : tuple
        """
        T, B, G = xw.shape
        H = G // 3
        Wh, bhn = p["Wh"], p["bhn"]
        dt = xw.dtype
        hall = scratch(ws, key + "hall", (T + 1, B, H), dt)
        # Activated gates: r and z gate-major, rz_all[t, 0] = r_t and rz_all[t, 1] = z_t, and n
        # in an array of its own, so every per-gate operation runs on a contiguous (B, H) block
        # (exp over a strided (B, 2H) view of a (B, 3H) row was measured 1.8x slower).
        rz_all = scratch(ws, key + "rz", (T, 2, B, H), dt)
        n_all = scratch(ws, key + "n", (T, B, H), dt)
        hn = scratch(ws, key + "hn", (T, B, H), dt)  # h @ Wh_n + bhn, needed for dr
        hw = np.empty((B, G), dtype=dt)
        hall[0] = state[0]
        with np.errstate(over="ignore"):
            for t in range(T):
                np.dot(hall[t], Wh, out=hw)
                rz = rz_all[t]
                # the add writes [r, z] gate-major: (B, 2H) -> (2, B, H)
                np.add(_gate_major(hw[:, : 2 * H], 2), _gate_major(xw[t, :, : 2 * H], 2), out=rz)
                _sigmoid_inplace(rz)
                np.add(hw[:, 2 * H :], bhn, out=hn[t])
                n = n_all[t]
                np.multiply(rz[0], hn[t], out=n)
                n += xw[t, :, 2 * H :]
                np.tanh(n, out=n)
                # h' = n + z * (h - n)
                h_new = hall[t + 1]
                np.subtract(hall[t], n, out=h_new)
                h_new *= rz[1]
                h_new += n
        return hall[1:], (hall[T].copy(),), (hall, rz_all, n_all, hn, Wh, key)

    @staticmethod
    def backward(dhs: np.ndarray, dstate: State | None, cache: tuple, ws: Workspace | None = None):
        """Backpropagate through time; see :meth:`RNNCell.backward` for the shapes.

        Returns ``dxw`` (T, B, 3H), ``{"Wh": (H, 3H), "bhn": (H,)}`` and ``(dh0,)``.
        """
        hall, rz, n, hn, Wh, key = cache
        T, B, H = dhs.shape
        dt = dhs.dtype
        r, z = rz[:, 0], rz[:, 1]
        # Multipliers independent of the incoming gradient, for all T at once:
        #   dn_pre = dh * (1-z)(1-n^2)          dz_pre = dh * (h_prev - n) z(1-z)
        #   dr_pre = dn_pre * hn r(1-r)         dhn    = dn_pre * r
        one_minus_z = scratch(ws, key + "one_minus_z", z.shape, dt)
        np.subtract(1.0, z, out=one_minus_z)
        a_n = scratch(ws, key + "a_n", n.shape, dt)
        np.square(n, out=a_n)
        np.subtract(1.0, a_n, out=a_n)
        a_n *= one_minus_z
        a_z = scratch(ws, key + "a_z", z.shape, dt)
        np.subtract(hall[:-1], n, out=a_z)
        a_z *= z
        a_z *= one_minus_z
        a_r = scratch(ws, key + "a_r", r.shape, dt)
        np.square(r, out=a_r)
        np.subtract(r, a_r, out=a_r)
        a_r *= hn

        dxw = scratch(ws, key + "dxw", (T, B, 3 * H), dt)
        dhw = scratch(ws, key + "dhw", (T, B, 3 * H), dt)  # grad of h @ Wh (+ bhn): [r, z, n]
        dh = np.zeros((B, H), dtype=dhs.dtype) if dstate is None else dstate[0].copy()
        rec = np.empty((B, H), dtype=dhs.dtype)
        WhT = _contiguous_transpose(Wh, ws, key)
        for t in range(T - 1, -1, -1):
            dh += dhs[t]
            dn_pre = dxw[t, :, 2 * H :]
            np.multiply(dh, a_n[t], out=dn_pre)
            np.multiply(dh, a_z[t], out=dhw[t, :, H : 2 * H])
            np.multiply(dn_pre, a_r[t], out=dhw[t, :, :H])
            np.multiply(dn_pre, r[t], out=dhw[t, :, 2 * H :])
            np.dot(dhw[t], WhT, out=rec)
            dh *= z[t]
            dh += rec
        dxw[..., : 2 * H] = dhw[..., : 2 * H]
        dWh = hall[:-1].reshape(-1, H).T @ dhw.reshape(-1, 3 * H)
        dbhn = dhw[..., 2 * H :].sum(axis=(0, 1))
        return dxw, {"Wh": dWh, "bhn": dbhn}, (dh,)

    @staticmethod
    def step(xw: np.ndarray, state: State, p: dict) -> State:
        """One step without a cache: ``xw`` (B, 3H) -> ``(h,)``."""
        h = state[0]
        H = h.shape[1]
        hw = h @ p["Wh"]
        rz = hw[:, : 2 * H]
        rz += xw[:, : 2 * H]
        with np.errstate(over="ignore"):
            _sigmoid_inplace(rz)
        n = hw[:, 2 * H :]
        n += p["bhn"]
        n *= rz[:, :H]
        n += xw[:, 2 * H :]
        np.tanh(n, out=n)
        h_new = h - n
        h_new *= rz[:, H:]
        h_new += n
        return (h_new,)


CELLS: dict[str, type] = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
