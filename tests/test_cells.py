"""Tests for charrnn.engine.cells: BPTT gradients by finite differences, gate layouts,
one-step path."""

import numpy as np
import pytest

from charrnn.engine.cells import CELLS, GRUCell, LSTMCell, RNNCell

CELL_NAMES = sorted(CELLS)
T, B, H = 6, 3, 5

# --------------------------------------------------------------------------- helpers


def _numeric_grad(f, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Gradient of the scalar ``f()`` with respect to every element of ``x`` (perturbed in place).

    Fourth-order central difference (Richardson extrapolation of two step sizes): its truncation
    error is O(h^4), so a fairly large ``h`` keeps the float64 round-off small as well.
    """
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: x must be contiguous
    assert np.shares_memory(flat, x)
    for i in range(flat.size):
        old = flat[i]
        vals = []
        for d in (h, -h, 2 * h, -2 * h):
            flat[i] = old + d
            vals.append(f())
        flat[i] = old
        gflat[i] = (8.0 * (vals[0] - vals[1]) - (vals[2] - vals[3])) / (12.0 * h)
    return grad


def _max_rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Largest element-wise ``|a - n| / (|a| + |n|)``.

    The denominator is floored at 1e-6: the finite difference itself has an absolute round-off
    error of about 1e-12, so for smaller gradients this still demands |a - n| < 1e-12.
    """
    denom = np.maximum(np.abs(analytic) + np.abs(numeric), 1e-6)
    return float(np.max(np.abs(analytic - numeric) / denom))


def _problem(name: str, seed: int = 0, dtype=np.float64):
    """Random pre-projected inputs, parameters, initial state and upstream gradients."""
    cell = CELLS[name]
    rng = np.random.default_rng(seed)
    G = cell.n_gates * H
    xw = rng.standard_normal((T, B, G)).astype(dtype)
    p = {"Wh": (0.5 * rng.standard_normal((H, G))).astype(dtype)}
    for extra in cell.extra_params:
        p[extra] = (0.5 * rng.standard_normal(H)).astype(dtype)
    state = tuple((0.5 * rng.standard_normal((B, H))).astype(dtype) for _ in range(cell.n_states))
    dhs = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(cell.n_states))
    return cell, xw, p, state, dhs, dstate


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _reference_forward(name: str, xw, p, state):
    """Plain, loop-per-step implementation of each cell written from its documented equations."""
    h = state[0]
    c = state[1] if name == "lstm" else None
    hs = []
    for t in range(xw.shape[0]):
        a = xw[t] + h @ p["Wh"]
        if name == "rnn":
            h = np.tanh(a)
        elif name == "lstm":
            i, f, o, g = np.split(a, 4, axis=1)  # documented layout [i, f, o, g]
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:  # gru, [r, z, n], PyTorch formulation with a separate recurrent n-bias
            hw = h @ p["Wh"]
            r = _sigmoid(xw[t, :, :H] + hw[:, :H])
            z = _sigmoid(xw[t, :, H : 2 * H] + hw[:, H : 2 * H])
            n = np.tanh(xw[t, :, 2 * H :] + r * (hw[:, 2 * H :] + p["bhn"]))
            h = (1.0 - z) * n + z * h
        hs.append(h)
    final = (h, c) if name == "lstm" else (h,)
    return np.stack(hs), final


# --------------------------------------------------------------------------- registry


def test_registry_names_and_shapes():
    assert list(CELLS) == ["rnn", "lstm", "gru"]
    assert (CELLS["rnn"], CELLS["lstm"], CELLS["gru"]) == (RNNCell, LSTMCell, GRUCell)
    for name, cell in CELLS.items():
        assert cell.name == name
    assert (RNNCell.n_gates, LSTMCell.n_gates, GRUCell.n_gates) == (1, 4, 3)
    assert (RNNCell.n_states, LSTMCell.n_states, GRUCell.n_states) == (1, 2, 1)
    assert GRUCell.extra_params == ("bhn",)
    assert RNNCell.extra_params == LSTMCell.extra_params == ()


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("name", CELL_NAMES)
def test_forward_matches_reference_equations(name):
    cell, xw, p, state, _, _ = _problem(name, seed=1)
    hs, final, _ = cell.forward(xw, state, p)
    ref_hs, ref_final = _reference_forward(name, xw, p, state)
    assert hs.shape == (T, B, H)
    np.testing.assert_allclose(hs, ref_hs, rtol=0, atol=1e-12)
    assert len(final) == cell.n_states
    for got, want in zip(final, ref_final):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(final[0], hs[-1])


@pytest.mark.parametrize("name", CELL_NAMES)
def test_forward_and_backward_leave_their_inputs_alone(name):
    cell, xw, p, state, dhs, dstate = _problem(name, seed=2)
    before = [a.copy() for a in (xw, *p.values(), *state, dhs, *dstate)]
    _, final, cache = cell.forward(xw, state, p)
    cell.backward(dhs, dstate, cache)
    after = [xw, *p.values(), *state, dhs, *dstate]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # the returned state is not a view into the cache (a later chunk may overwrite that)
    buffers = [c for c in cache if isinstance(c, np.ndarray)]
    for s in final:
        assert not any(np.shares_memory(s, buf) for buf in buffers)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_step_matches_forward_one_step_at_a_time(name):
    cell, xw, p, state, _, _ = _problem(name, seed=3)
    hs, final, _ = cell.forward(xw, state, p)
    st = state
    state_copy = [s.copy() for s in state]
    for t in range(T):
        st = cell.step(xw[t].copy(), st, p)
        np.testing.assert_allclose(st[0], hs[t], rtol=0, atol=1e-12)
    for got, want in zip(st, final):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    for a, b in zip(state, state_copy):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_float32_in_float32_out(name):
    cell, xw, p, state, dhs, dstate = _problem(name, seed=4, dtype=np.float32)
    hs, final, cache = cell.forward(xw, state, p)
    dxw, grads, dstate0 = cell.backward(dhs, dstate, cache)
    outs = [hs, *final, dxw, *grads.values(), *dstate0, *cell.step(xw[0], state, p)]
    assert all(a.dtype == np.float32 for a in outs)


# --------------------------------------------------------------------------- backward


@pytest.mark.parametrize("name", CELL_NAMES)
def test_backward_gradient_check(name):
    """Every element of dxw, dWh (dbhn) and dstate0 against central differences in float64.

    The scalar is ``sum(hs * dhs) + sum(final_state * dstate)`` with random ``dhs`` and
    ``dstate``, so both the per-step and the carried-state gradient paths are exercised.
    """
    cell, xw, p, state, dhs, dstate = _problem(name, seed=5)
    state = tuple(s.copy() for s in state)  # perturbed in place below

    def objective() -> float:
        hs, final, _ = cell.forward(xw, state, p)
        return float(np.sum(hs * dhs) + sum(np.sum(s * d) for s, d in zip(final, dstate)))

    _, _, cache = cell.forward(xw, state, p)
    dxw, grads, dstate0 = cell.backward(dhs, dstate, cache)
    assert set(grads) == {"Wh", *cell.extra_params}
    assert len(dstate0) == cell.n_states

    checks = {"xw": (dxw, xw)}
    checks.update({k: (grads[k], p[k]) for k in p})
    checks.update({f"state{i}": (dstate0[i], state[i]) for i in range(cell.n_states)})
    for key, (analytic, x) in checks.items():
        assert analytic.shape == x.shape, key
        numeric = _numeric_grad(objective, x)
        assert np.any(numeric != 0.0), key
        err = _max_rel_error(analytic, numeric)
        assert err < 1e-6, f"{name} {key}: relative error {err:.2e}"


@pytest.mark.parametrize("name", CELL_NAMES)
def test_backward_none_dstate_means_zero(name):
    cell, xw, p, state, dhs, _ = _problem(name, seed=6)
    _, _, cache = cell.forward(xw, state, p)
    zeros = tuple(np.zeros((B, H)) for _ in range(cell.n_states))
    dxw, grads, dstate0 = cell.backward(dhs, None, cache)
    # copy: the results of the second call may reuse the same scratch arrays
    first = [dxw.copy(), *(g.copy() for g in grads.values()), *(d.copy() for d in dstate0)]
    dxw, grads, dstate0 = cell.backward(dhs, zeros, cache)
    second = [dxw, *grads.values(), *dstate0]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    # and the passed-in dstate is not used as a buffer
    assert all(not np.any(z) for z in zeros)


# --------------------------------------------------------------------------- step kernels


@pytest.mark.parametrize("name", CELL_NAMES)
def test_step_kernels_on_vectors_with_the_scale_in_the_weights(name):
    """The per-step arithmetic as the batch-1 sampler runs it: 1-D buffers updated in place,
    ``preactivation_scale`` folded into the weights once. Same numbers as ``step``."""
    cell, xw, p, state, _, _ = _problem(name, seed=7)
    scale = cell.preactivation_scale(H, xw.dtype)
    assert set(np.unique(scale)) <= {0.5, 1.0}  # powers of two: folding them in is exact
    Wh = p["Wh"] * scale
    h = state[0][0].copy()
    c = state[1][0].copy() if name == "lstm" else None
    z, tmp = np.empty(cell.n_gates * H), np.empty(H)
    st = tuple(s[:1] for s in state)
    for t in range(T):
        np.dot(h, Wh, out=z)
        if name == "gru":
            z[: 2 * H] += xw[t, 0, : 2 * H] * scale[: 2 * H]
            rz = z[: 2 * H].reshape(2, H)
            cell.activate(rz, rz)
            z[2 * H :] += p["bhn"]
            cell.update(rz[0], rz[1], z[2 * H :], xw[t, 0, 2 * H :], z[2 * H :], h, h)
        else:
            z += xw[t, 0] * scale
            if name == "rnn":
                cell.activate(z, h)
            else:
                gates = cell.activate(z.reshape(4, H), z.reshape(4, H))
                cell.update(*gates, c, c, tmp, h, tmp)
        st = cell.step(xw[t, :1], st, p)
        np.testing.assert_allclose(h, st[0][0], rtol=0, atol=1e-14)
        if c is not None:
            np.testing.assert_allclose(c, st[1][0], rtol=0, atol=1e-14)


def test_lstm_backward_step_is_one_step_of_backward():
    cell, xw, p, state, dhs, _ = _problem("lstm", seed=8)
    _, _, cache = cell.forward(xw, state, p)
    call, gates, tanh_c = (a.copy() for a in cache[1:4])
    dxw, _, (dh0, dc0) = cell.backward(dhs, None, cache)
    dh, dc = np.zeros((B, H)), np.zeros((B, H))
    dz, m, tmp = np.empty((B, 4 * H)), np.empty((4, B, H)), np.empty((B, H))
    for t in range(T - 1, -1, -1):
        dh += dhs[t]
        LSTMCell.backward_step(gates[t], call[t], tanh_c[t], dh, dc, dz, m, tmp)
        np.testing.assert_allclose(dz, dxw[t], rtol=0, atol=1e-14)
        dh = dz @ p["Wh"].T
    np.testing.assert_allclose(dh, dh0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(dc, dc0, rtol=0, atol=1e-14)
