"""Recurrent cells: whole-sequence forward with a cache, backpropagation through time, one step.

Every cell works on *pre-projected* inputs: the caller computes ``xw = x @ Wx + b`` for all ``T``
steps in one GEMM (shape ``(T, B, G*H)``, ``G`` gates), so the time loop only does the recurrent
GEMM ``h @ Wh`` and the element-wise gate arithmetic. The backward pass returns ``dxw`` and the
caller turns it into ``dWx``, ``db`` and ``dx`` with one GEMM each. This keeps the cells free of
anything that is not recurrence, and puts as much arithmetic as possible outside the Python loop.

Arrays are time-major: ``(T, B, ...)``. A state is a tuple of ``(B, H)`` arrays: ``(h,)`` for the
RNN and GRU, ``(h, c)`` for the LSTM.

A sequence may restart from the zero state part-way (:class:`Resets`, a new document in a stream
of documents): the state entering a reset step is zero for the reset streams, in the forward
pass and in the backward pass (no gradient crosses the reset). Without resets (``None``) the
loops do exactly what they did before resets existed.

Fused gate layouts (columns of ``Wx``, ``Wh`` and ``b``):

- ``rnn``:  ``[a]``                 h = tanh(a)
- ``lstm``: ``[i, f, o, g]``        sigmoid gates first so one slice holds all three
- ``gru``:  ``[r, z, n]``           PyTorch's formulation: n = tanh(xw_n + r * (h @ Wh_n + bhn))

Every sigmoid is computed as ``0.5 + 0.5 tanh(x / 2)``: the callers multiply the pre-activations
by the cell's :meth:`~LSTMCell.preactivation_scale` (0.5 on the sigmoid gates' columns, 1
elsewhere; exact in binary floating point), so that one ``tanh`` call activates every gate of a
step. With NumPy 2.4's vectorised float32 ``tanh`` this was measured faster than the
``1 / (1 + exp(-x))`` form at every shape charrnn uses: 56 against 87 us for an LSTM's
(64, 1024) gate block, 5.0 against 6.2 us for a batch-1 step's (1, 1024) (one BLAS thread).

Each cell's arithmetic of one time step lives in one place, its ``activate``/``update``
static methods (and :meth:`LSTMCell.backward_step` for a step of BPTT), which work on arrays
of any leading shape and write into buffers the caller owns: the sequence loops below, the
allocating :meth:`~LSTMCell.step` that :func:`charrnn.engine.network.step` uses, and the
batch-1 generation loop of :mod:`charrnn.engine.sampling` (which folds the scale into its
copy of the weights once) all run the same code.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from charrnn.engine.workspace import Workspace, scratch

State = tuple[np.ndarray, ...]


class Resets(NamedTuple):
    """The places where a sequence's state restarts from zero, from :func:`reset_points`.

    Attributes
    ----------
    steps : dict of int to ndarray of int
        ``steps[t]`` are the streams (indices into B) whose state entering step ``t`` is zero;
        only steps with at least one reset are keys.
    t, b : ndarray of int, shape (N,)
        Every reset as a (step, stream) pair, for the one-GEMM correction of ``dWh``.
    """

    steps: dict[int, np.ndarray]
    t: np.ndarray
    b: np.ndarray


NO_RESETS = Resets({}, np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))


def reset_points(mask: np.ndarray | None) -> Resets | None:
    """The :class:`Resets` of a boolean mask, or None when it has no reset.

    Parameters
    ----------
    mask : ndarray of bool, shape (T, B), or None
        ``mask[t, b]``: the state entering step ``t`` of stream ``b`` is zero.
    """
    if mask is None:
        return None
    t, b = np.nonzero(mask)
    if len(t) == 0:
        return None
    steps = {int(step): b[t == step] for step in np.unique(t)}
    return Resets(steps, t, b)


def _zero_rows(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A copy of the (B, H) state ``a`` with ``rows`` zero: the state a reset stream enters with."""
    out = a.copy()
    out[rows] = 0.0
    return out


def _without_reset_rows(
    dW: np.ndarray, prev: np.ndarray, dpre: np.ndarray, resets: Resets | None
) -> None:
    """Take the reset rows' terms out of ``dW = prev[:-1]^T dpre``, in place.

    The recurrent-weight gradient is computed for all steps in one GEMM from the cached states,
    where a reset step holds the state the stream had before the reset; those (step, stream)
    terms belong to a zero state, so they are subtracted again (one GEMM over the N resets).

    Parameters
    ----------
    dW : ndarray, shape (H, G*H)
    prev : ndarray, shape (T + 1, B, H)
        ``prev[t]`` is the cached state before step ``t``.
    dpre : ndarray, shape (T, B, G*H)
        Gradient with respect to ``h_{t-1} @ Wh`` at each step.
    resets : Resets or None
    """
    if resets is not None:
        dW -= prev[resets.t, resets.b].T @ dpre[resets.t, resets.b]


def gate_major(a: np.ndarray, n_gates: int) -> np.ndarray:
    """View of a fused (B, n_gates*H) block as (n_gates, B, H): ``gate_major(a, 4)[k]`` is gate k.

    With B == 1 every gate of the view is contiguous; otherwise its rows are strided.
    """
    B, G = a.shape
    return a.reshape(B, n_gates, G // n_gates).transpose(1, 0, 2)


def _sigmoid_scale(H: int, n_sigmoid: int, n_gates: int, dtype) -> np.ndarray:
    """(n_gates*H,) factors: 0.5 on the first ``n_sigmoid`` gates' columns, 1 on the others."""
    scale = np.ones(n_gates * H, dtype=dtype)
    scale[: n_sigmoid * H] = 0.5
    return scale


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
    #: (T, B, H)-sized scratch arrays that forward caches and backward writes: states, dxw
    #: (what charrnn.engine.memory counts; tests/test_memory.py checks it against a workspace)
    scratch_per_unit = 2
    #: index of the gate whose opening keeps the old state (None: no such gate); its bias is
    #: what ``gate_init`` sets (:func:`charrnn.engine.network.gate_bias`)
    keep_gate: int | None = None
    #: index of the gate that writes new input into the state, when it is not tied to the
    #: keep gate (chrono initialisation sets its bias to minus the keep gate's)
    write_gate: int | None = None

    @staticmethod
    def preactivation_scale(H: int, dtype) -> np.ndarray:
        """(H,) ones: the RNN has no sigmoid gate (see the module docstring)."""
        return np.ones(H, dtype=dtype)

    @staticmethod
    def activate(a: np.ndarray, h: np.ndarray) -> np.ndarray:
        """``h = tanh(a)``: pre-activations ``a`` (..., H) into ``h`` (..., H; may be ``a``)."""
        return np.tanh(a, out=h)

    @staticmethod
    def forward(
        xw: np.ndarray,
        state: State,
        p: dict,
        ws: Workspace | None = None,
        key: str = "",
        resets: Resets | None = None,
    ) -> tuple[np.ndarray, State, tuple]:
        """Run the whole sequence.

        Parameters
        ----------
        xw : ndarray, shape (T, B, H)
            Input projections ``x_t @ Wx + b``.
        state : tuple of one ndarray, shape (B, H)
        p : dict
            ``{"Wh": (H, H)}``.
        ws, key : Workspace and its key prefix, optional
            Where the scratch arrays live.
        resets : Resets or None
            Steps whose entering state is zero for some streams (:func:`reset_points`).

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
        starts = (resets or NO_RESETS).steps
        for t in range(T):
            np.dot(hall[t], Wh, out=hall[t + 1])
            rows = starts.get(t)
            if rows is not None:  # a zero state's rows of h @ Wh are zero
                hall[t + 1][rows] = 0.0
            hall[t + 1] += xw[t]
            RNNCell.activate(hall[t + 1], hall[t + 1])
        return hall[1:], (hall[T].copy(),), (hall, Wh, key, resets)

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
        hall, Wh, key, resets = cache
        T, B, H = dhs.shape
        # tanh' for every step at once, outside the loop
        dxw = scratch(ws, key + "dxw", (T, B, H), dhs.dtype)
        np.square(hall[1:], out=dxw)
        np.subtract(1.0, dxw, out=dxw)
        dh = np.zeros((B, H), dtype=dhs.dtype) if dstate is None else dstate[0].copy()
        WhT = _contiguous_transpose(Wh, ws, key)
        starts = (resets or NO_RESETS).steps
        for t in range(T - 1, -1, -1):
            dh += dhs[t]
            dxw[t] *= dh
            np.dot(dxw[t], WhT, out=dh)
            rows = starts.get(t)
            if rows is not None:  # no gradient crosses a reset
                dh[rows] = 0.0
        dWh = hall[:-1].reshape(-1, H).T @ dxw.reshape(-1, H)
        _without_reset_rows(dWh, hall, dxw, resets)
        return dxw, {"Wh": dWh}, (dh,)

    @staticmethod
    def sequence_states(cache: tuple) -> State:
        """The state after every step of the :meth:`forward` that made ``cache``: ``(hs,)``,
        (T, B, H) views into the cache (valid while the cache is)."""
        return (cache[0][1:],)

    @staticmethod
    def step(xw: np.ndarray, state: State, p: dict) -> State:
        """One step without a cache: ``xw`` (B, H) -> new state ``(h,)``, newly allocated."""
        h = state[0] @ p["Wh"]
        h += xw
        return (RNNCell.activate(h, h),)


class LSTMCell:
    """Long short-term memory cell with input, forget, output gates and candidate ``g``.

    ``c_t = f * c_{t-1} + i * g`` and ``h_t = o * tanh(c_t)``, with ``i, f, o`` sigmoids and
    ``g`` a tanh of the fused pre-activations ``[i, f, o, g]``.
    """

    name = "lstm"
    n_gates = 4
    n_states = 2
    extra_params: tuple[str, ...] = ()
    #: (T, B, H)-sized scratch: hidden and cell states, four gates, tanh(c), four dxw
    scratch_per_unit = 11
    keep_gate: int | None = 1  # f: c_t = f * c_{t-1} + i * g
    write_gate: int | None = 0  # i

    @staticmethod
    def preactivation_scale(H: int, dtype) -> np.ndarray:
        """(4H,) factors for the fused pre-activations: 0.5 on ``[i, f, o]``, 1 on ``g``."""
        return _sigmoid_scale(H, 3, 4, dtype)

    @staticmethod
    def activate(pre: np.ndarray, gates: np.ndarray) -> np.ndarray:
        """Gate values from scaled pre-activations.

        Parameters
        ----------
        pre : ndarray, shape (4, ..., H)
            Gate-major pre-activations (see :func:`gate_major`) already multiplied by
            :meth:`preactivation_scale`.
        gates : ndarray, shape (4, ..., H)
            Receives ``[i, f, o, g]``; may be ``pre`` itself.

        Returns
        -------
        gates
        """
        np.tanh(pre, out=gates)
        sig = gates[:3]  # sigmoid(x) = 0.5 + 0.5 tanh(x / 2)
        sig *= 0.5
        sig += 0.5
        return gates

    @staticmethod
    def update(
        i: np.ndarray,
        f: np.ndarray,
        o: np.ndarray,
        g: np.ndarray,
        c_prev: np.ndarray,
        c: np.ndarray,
        tanh_c: np.ndarray,
        h: np.ndarray,
        tmp: np.ndarray,
    ) -> None:
        """The new state from the gates: ``c = f * c_prev + i * g``, ``h = o * tanh(c)``.

        The gates come one array each rather than as one (4, ..., H) block so that a caller
        stepping through fixed buffers makes their views once: at batch 1 unpacking the block
        costs as much as one of the multiplies.

        Parameters
        ----------
        i, f, o, g : ndarray, shape (..., H)
            The gates from :meth:`activate`.
        c_prev : ndarray, shape (..., H)
        c, tanh_c, h : ndarray, shape (..., H)
            Receive the new cell state, its tanh and the new hidden state. ``c`` may be
            ``c_prev`` and ``tanh_c`` may be ``tmp`` (updating a state in place).
        tmp : ndarray, shape (..., H)
            Scratch.
        """
        np.multiply(f, c_prev, out=c)
        np.multiply(i, g, out=tmp)
        c += tmp
        np.tanh(c, out=tanh_c)
        np.multiply(o, tanh_c, out=h)

    @staticmethod
    def backward_step(
        gates: np.ndarray,
        c_prev: np.ndarray,
        tanh_c: np.ndarray,
        dh: np.ndarray,
        dc: np.ndarray,
        dz: np.ndarray,
        m: np.ndarray,
        tmp: np.ndarray,
    ) -> None:
        """One step of backpropagation through the gates (everything but ``dz @ Wh.T``).

        Parameters
        ----------
        gates : ndarray, shape (4, B, H)
            The step's ``[i, f, o, g]``.
        c_prev, tanh_c : ndarray, shape (B, H)
            ``c_{t-1}`` and ``tanh(c_t)``.
        dh : ndarray, shape (B, H)
            Gradient with respect to ``h_t``, from above and from step ``t + 1``.
        dc : ndarray, shape (B, H)
            In: gradient with respect to ``c_t`` from step ``t + 1``. Out: with respect to
            ``c_{t-1}`` through the forget gate (the part that does not pass through ``h``).
        dz : ndarray, shape (B, 4H)
            Receives the gradient with respect to the (unscaled) pre-activations.
        m : ndarray, shape (4, B, H)
        tmp : ndarray, shape (B, H)
            Scratch.
        """
        # With z the pre-activations:
        #   dc  += dh * o * (1 - tanh(c)^2)
        #   dz_i = dc * g * i(1-i)        dz_f = dc * c_prev * f(1-f)
        #   dz_o = dh * tanh(c) * o(1-o)  dz_g = dc * i * (1-g^2)
        # The gradient-independent multipliers are formed step by step in small buffers that
        # stay in cache: precomputing them for all T at once streams several (T, B, 4H)
        # arrays through memory and was measured slower.
        H = gates.shape[-1]
        i, f, o, g = gates
        np.square(gates[:3], out=m[:3])
        np.subtract(gates[:3], m[:3], out=m[:3])  # s(1-s)
        m[0] *= g
        m[1] *= c_prev
        m[2] *= tanh_c
        np.square(g, out=m[3])
        np.subtract(1.0, m[3], out=m[3])
        m[3] *= i
        np.square(tanh_c, out=tmp)
        np.subtract(1.0, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        # i, f and g take dc, o takes dh (one call per gate: broadcasting over a gate axis is
        # several times slower in NumPy than four contiguous multiplies)
        np.multiply(dc, m[0], out=dz[:, :H])
        np.multiply(dc, m[1], out=dz[:, H : 2 * H])
        np.multiply(dh, m[2], out=dz[:, 2 * H : 3 * H])
        np.multiply(dc, m[3], out=dz[:, 3 * H :])
        dc *= f

    @staticmethod
    def forward(
        xw: np.ndarray,
        state: State,
        p: dict,
        ws: Workspace | None = None,
        key: str = "",
        resets: Resets | None = None,
    ) -> tuple[np.ndarray, State, tuple]:
        """Run the whole sequence.

        Parameters
        ----------
        xw : ndarray, shape (T, B, 4H)
        state : (h0, c0), each (B, H)
        p : dict ``{"Wh": (H, 4H)}``
        ws, key, resets
            As :meth:`RNNCell.forward`.

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
        # both passes reads these, so the tanh of each step writes them gate-major (reading
        # the (B, 4H) block strided costs no more than a contiguous tanh and a copy).
        gates = scratch(ws, key + "gates", (T, 4, B, H), dt)
        tanh_c = scratch(ws, key + "tanh_c", (T, B, H), dt)
        z = np.empty((B, G), dtype=dt)
        pre = gate_major(z, 4)
        ig = np.empty((B, H), dtype=dt)
        hall[0] = state[0]
        call[0] = state[1]
        scale = LSTMCell.preactivation_scale(H, dt)
        starts = (resets or NO_RESETS).steps
        for t in range(T):
            np.dot(hall[t], Wh, out=z)
            c_prev = call[t]
            rows = starts.get(t)
            if rows is not None:  # the reset streams enter with h = c = 0
                z[rows] = 0.0
                c_prev = _zero_rows(c_prev, rows)
            z += xw[t]
            z *= scale
            LSTMCell.activate(pre, gates[t])
            LSTMCell.update(*gates[t], c_prev, call[t + 1], tanh_c[t], hall[t + 1], ig)
        cache = (hall, call, gates, tanh_c, Wh, key, resets)
        return hall[1:], (hall[T].copy(), call[T].copy()), cache

    @staticmethod
    def backward(dhs: np.ndarray, dstate: State | None, cache: tuple, ws: Workspace | None = None):
        """Backpropagate through time; see :meth:`RNNCell.backward` for the shapes.

        Returns ``dxw`` (T, B, 4H), ``{"Wh": (H, 4H)}`` and ``(dh0, dc0)``.
        """
        hall, call, gates, tanh_c, Wh, key, resets = cache
        T, B, H = dhs.shape
        dt = dhs.dtype
        dxw = scratch(ws, key + "dxw", (T, B, 4 * H), dt)
        if dstate is None:
            dh = np.zeros((B, H), dtype=dt)
            dc = np.zeros((B, H), dtype=dt)
        else:
            dh, dc = dstate[0].copy(), dstate[1].copy()
        m = np.empty((4, B, H), dtype=dt)  # gate-major, like the cached gates
        tmp = np.empty((B, H), dtype=dt)
        WhT = _contiguous_transpose(Wh, ws, key)
        starts = (resets or NO_RESETS).steps
        for t in range(T - 1, -1, -1):
            dh += dhs[t]
            rows = starts.get(t)
            c_prev = call[t] if rows is None else _zero_rows(call[t], rows)
            LSTMCell.backward_step(gates[t], c_prev, tanh_c[t], dh, dc, dxw[t], m, tmp)
            np.dot(dxw[t], WhT, out=dh)
            if rows is not None:  # no gradient crosses a reset
                dh[rows] = 0.0
                dc[rows] = 0.0
        dWh = hall[:-1].reshape(-1, H).T @ dxw.reshape(-1, 4 * H)
        _without_reset_rows(dWh, hall, dxw, resets)
        return dxw, {"Wh": dWh}, (dh, dc)

    @staticmethod
    def sequence_states(cache: tuple) -> State:
        """The state after every step of the :meth:`forward` that made ``cache``: ``(hs, cs)``,
        each (T, B, H), views into the cache (valid while the cache is)."""
        return (cache[0][1:], cache[1][1:])

    @staticmethod
    def step(xw: np.ndarray, state: State, p: dict) -> State:
        """One step without a cache: ``xw`` (B, 4H) -> ``(h, c)``, newly allocated."""
        h, c = state
        B, H = h.shape
        z = h @ p["Wh"]
        z += xw
        z *= LSTMCell.preactivation_scale(H, z.dtype)
        gates = LSTMCell.activate(gate_major(z, 4), np.empty((4, B, H), dtype=z.dtype))
        c_new, h_new, tmp = np.empty_like(c), np.empty_like(h), np.empty_like(h)
        LSTMCell.update(*gates, c, c_new, tmp, h_new, tmp)
        return (h_new, c_new)


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
    #: (T, B, H)-sized scratch: states, r and z, n, h @ Wh_n, four backward temporaries, three
    #: dxw and three dhw
    scratch_per_unit = 15
    keep_gate: int | None = 1  # z: h' = (1 - z) * n + z * h, so z -> 1 keeps h
    write_gate: int | None = None  # writing is 1 - z, tied to the keep gate

    @staticmethod
    def preactivation_scale(H: int, dtype) -> np.ndarray:
        """(3H,) factors for the fused pre-activations: 0.5 on ``[r, z]``, 1 on ``n``."""
        return _sigmoid_scale(H, 2, 3, dtype)

    @staticmethod
    def activate(pre: np.ndarray, rz: np.ndarray) -> np.ndarray:
        """The sigmoid gates ``[r, z]`` from scaled pre-activations.

        Parameters
        ----------
        pre : ndarray, shape (2, ..., H)
            Gate-major ``[r, z]`` pre-activations ``xw + h @ Wh`` times 0.5
            (:meth:`preactivation_scale`).
        rz : ndarray, shape (2, ..., H)
            Receives ``[r, z]``; may be ``pre`` itself.

        Returns
        -------
        rz
        """
        np.tanh(pre, out=rz)  # sigmoid(x) = 0.5 + 0.5 tanh(x / 2)
        rz *= 0.5
        rz += 0.5
        return rz

    @staticmethod
    def update(
        r: np.ndarray,
        z: np.ndarray,
        hn: np.ndarray,
        xw_n: np.ndarray,
        n: np.ndarray,
        h_prev: np.ndarray,
        h: np.ndarray,
    ) -> None:
        """The candidate and the new state: ``n = tanh(xw_n + r * hn)``, ``h = n + z (h_prev - n)``.

        Parameters
        ----------
        r, z : ndarray, shape (..., H)
            The gates from :meth:`activate`.
        hn : ndarray, shape (..., H)
            ``h_prev @ Wh_n + bhn``.
        xw_n : ndarray, shape (..., H)
            The candidate's input projection.
        n, h : ndarray, shape (..., H)
            Receive the candidate and the new state; ``n`` may be ``hn`` and ``h`` may be
            ``h_prev`` (updating a state in place).
        h_prev : ndarray, shape (..., H)
        """
        np.multiply(r, hn, out=n)
        n += xw_n
        np.tanh(n, out=n)
        np.subtract(h_prev, n, out=h)  # h' = n + z * (h - n)
        h *= z
        h += n

    @staticmethod
    def forward(
        xw: np.ndarray,
        state: State,
        p: dict,
        ws: Workspace | None = None,
        key: str = "",
        resets: Resets | None = None,
    ) -> tuple[np.ndarray, State, tuple]:
        """Run the whole sequence.

        Parameters
        ----------
        xw : ndarray, shape (T, B, 3H)
        state : (h0,), (B, H)
        p : dict ``{"Wh": (H, 3H), "bhn": (H,)}``
        ws, key, resets
            As :meth:`RNNCell.forward`.

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
        # (element-wise work on a strided (B, 2H) view of a (B, 3H) row was measured 1.8x slower).
        rz_all = scratch(ws, key + "rz", (T, 2, B, H), dt)
        n_all = scratch(ws, key + "n", (T, B, H), dt)
        hn = scratch(ws, key + "hn", (T, B, H), dt)  # h @ Wh_n + bhn, needed for dr
        hw = np.empty((B, G), dtype=dt)
        hw_rz = gate_major(hw[:, : 2 * H], 2)
        hall[0] = state[0]
        starts = (resets or NO_RESETS).steps
        for t in range(T):
            np.dot(hall[t], Wh, out=hw)
            h_prev = hall[t]
            rows = starts.get(t)
            if rows is not None:  # the reset streams enter with h = 0
                hw[rows] = 0.0
                h_prev = _zero_rows(h_prev, rows)
            rz = rz_all[t]
            # the add writes [r, z] gate-major: (B, 2H) -> (2, B, H)
            np.add(hw_rz, gate_major(xw[t, :, : 2 * H], 2), out=rz)
            rz *= 0.5  # preactivation_scale of r and z
            GRUCell.activate(rz, rz)
            np.add(hw[:, 2 * H :], bhn, out=hn[t])
            GRUCell.update(rz[0], rz[1], hn[t], xw[t, :, 2 * H :], n_all[t], h_prev, hall[t + 1])
        return hall[1:], (hall[T].copy(),), (hall, rz_all, n_all, hn, Wh, key, resets)

    @staticmethod
    def backward(dhs: np.ndarray, dstate: State | None, cache: tuple, ws: Workspace | None = None):
        """Backpropagate through time; see :meth:`RNNCell.backward` for the shapes.

        Returns ``dxw`` (T, B, 3H), ``{"Wh": (H, 3H), "bhn": (H,)}`` and ``(dh0,)``.
        """
        hall, rz, n, hn, Wh, key, resets = cache
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
        if resets is not None:  # a reset step's h_prev is zero
            t_, b_ = resets.t, resets.b
            a_z[t_, b_] = -n[t_, b_] * z[t_, b_] * one_minus_z[t_, b_]
        a_r = scratch(ws, key + "a_r", r.shape, dt)
        np.square(r, out=a_r)
        np.subtract(r, a_r, out=a_r)
        a_r *= hn

        dxw = scratch(ws, key + "dxw", (T, B, 3 * H), dt)
        dhw = scratch(ws, key + "dhw", (T, B, 3 * H), dt)  # grad of h @ Wh (+ bhn): [r, z, n]
        dh = np.zeros((B, H), dtype=dhs.dtype) if dstate is None else dstate[0].copy()
        rec = np.empty((B, H), dtype=dhs.dtype)
        WhT = _contiguous_transpose(Wh, ws, key)
        starts = (resets or NO_RESETS).steps
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
            rows = starts.get(t)
            if rows is not None:  # no gradient crosses a reset
                dh[rows] = 0.0
        dxw[..., : 2 * H] = dhw[..., : 2 * H]
        dWh = hall[:-1].reshape(-1, H).T @ dhw.reshape(-1, 3 * H)
        _without_reset_rows(dWh, hall, dhw, resets)
        dbhn = dhw[..., 2 * H :].sum(axis=(0, 1))
        return dxw, {"Wh": dWh, "bhn": dbhn}, (dh,)

    @staticmethod
    def sequence_states(cache: tuple) -> State:
        """The state after every step of the :meth:`forward` that made ``cache``: ``(hs,)``,
        (T, B, H) views into the cache (valid while the cache is)."""
        return (cache[0][1:],)

    @staticmethod
    def step(xw: np.ndarray, state: State, p: dict) -> State:
        """One step without a cache: ``xw`` (B, 3H) -> ``(h,)``, newly allocated."""
        h = state[0]
        H = h.shape[1]
        hw = h @ p["Wh"]
        rz = np.add(gate_major(hw[:, : 2 * H], 2), gate_major(xw[:, : 2 * H], 2))
        rz *= 0.5  # preactivation_scale of r and z
        GRUCell.activate(rz, rz)
        hn = hw[:, 2 * H :]
        hn += p["bhn"]
        h_new = np.empty_like(h)
        GRUCell.update(rz[0], rz[1], hn, xw[:, 2 * H :], hn, h, h_new)
        return (h_new,)


CELLS: dict[str, type] = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
