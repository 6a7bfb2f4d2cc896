"""Tests for charrnn.engine.workspace: the scratch pool, and that using it never changes a
result."""

import numpy as np
import pytest

from charrnn.engine.cells import CELLS
from charrnn.engine.network import (
    NetworkConfig,
    forward,
    forward_logits,
    init_params,
    init_state,
    loss_and_grads,
    step,
)
from charrnn.engine.workspace import Workspace, scratch

CELL_NAMES = sorted(CELLS)

# --------------------------------------------------------------------------- the pool


def test_same_name_shape_dtype_returns_the_same_array():
    ws = Workspace()
    a = ws.empty("x", (3, 4), np.float32)
    assert a.shape == (3, 4) and a.dtype == np.float32
    assert ws.empty("x", (3, 4), "float32") is a
    assert ws.empty("x", [3, 4], np.dtype("float32")) is a  # shape as list, dtype as dtype
    assert ws.empty("y", (3, 4), np.float32) is not a  # names are separate buffers


def test_shape_or_dtype_change_reallocates():
    ws = Workspace()
    a = ws.empty("x", (3, 4), np.float32)
    b = ws.empty("x", (4, 3), np.float32)
    assert b is not a and b.shape == (4, 3)
    c = ws.empty("x", (4, 3), np.float64)
    assert c is not b and c.dtype == np.float64
    assert ws.empty("x", (4, 3), np.float64) is c  # the latest one is kept
    assert ws.nbytes() == c.nbytes


def test_zeros_clear_and_nbytes():
    ws = Workspace()
    a = ws.empty("x", (5,), np.float64)
    a[:] = 7.0
    z = ws.zeros("x", (5,), np.float64)
    assert z is a and not np.any(z)
    ws.empty("y", (2, 2), np.float32)
    assert ws.nbytes() == 5 * 8 + 4 * 4
    ws.clear()
    assert ws.nbytes() == 0
    assert ws.empty("x", (5,), np.float64) is not a


def test_scratch_without_a_workspace_allocates_fresh():
    a = scratch(None, "x", (2, 3), np.float32)
    b = scratch(None, "x", (2, 3), np.float32)
    assert a is not b and not np.shares_memory(a, b)
    assert a.shape == (2, 3) and a.dtype == np.float32
    ws = Workspace()
    assert scratch(ws, "x", (2, 3), np.float32) is scratch(ws, "x", (2, 3), np.float32)


# --------------------------------------------------------------------------- results unchanged


def _problem(cell, num_layers=2, embedding_dim=None, dropout=0.0, dtype="float64", t=6, b=3):
    cfg = NetworkConfig(cell, 9, 5, num_layers, embedding_dim, dropout, dtype)
    rng = np.random.default_rng(0)
    params = init_params(cfg, rng)
    inputs = rng.integers(0, 9, size=(t, b))
    targets = rng.integers(0, 9, size=(t, b))
    state = [
        tuple(rng.standard_normal(s.shape).astype(dtype) for s in st) for st in init_state(cfg, b)
    ]
    return cfg, params, inputs, targets, state


def _run(cfg, params, inputs, targets, state, ws):
    """loss_and_grads with a fixed dropout seed; results copied out of any workspace."""
    loss, grads, new_state = loss_and_grads(
        params, cfg, inputs, targets, state, rng=np.random.default_rng(3), train=True, workspace=ws
    )
    return (
        loss,
        {k: v.copy() for k, v in grads.items()},
        [tuple(s.copy() for s in st) for st in new_state],
    )


def _assert_same(a, b):
    loss_a, grads_a, state_a = a
    loss_b, grads_b, state_b = b
    assert loss_a == loss_b
    assert grads_a.keys() == grads_b.keys()
    for k in grads_a:
        np.testing.assert_array_equal(grads_a[k], grads_b[k], err_msg=k)
    for sa, sb in zip(state_a, state_b, strict=True):
        for x, y in zip(sa, sb, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("embedding_dim", [None, 4])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_loss_and_grads_same_with_and_without_workspace(cell, embedding_dim, dropout):
    cfg, params, inputs, targets, state = _problem(cell, 2, embedding_dim, dropout)
    ref = _run(cfg, params, inputs, targets, state, None)
    ws = Workspace()
    _assert_same(_run(cfg, params, inputs, targets, state, ws), ref)
    held = ws.nbytes()
    assert held > 0  # the workspace was really used
    _assert_same(_run(cfg, params, inputs, targets, state, ws), ref)  # repeated call
    assert ws.nbytes() == held  # same shapes: nothing new allocated

    # a different chunk shape through the same workspace, then back again
    cfg2, params2, inputs2, targets2, state2 = _problem(cell, 2, embedding_dim, dropout, t=4, b=5)
    ref2 = _run(cfg2, params2, inputs2, targets2, state2, None)
    _assert_same(_run(cfg2, params2, inputs2, targets2, state2, ws), ref2)
    _assert_same(_run(cfg, params, inputs, targets, state, ws), ref)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_forward_same_with_and_without_workspace(cell):
    cfg, params, inputs, _, state = _problem(cell, 2, 4, 0.0)
    top, st, _ = forward(params, cfg, inputs, state)
    ws = Workspace()
    for _ in range(2):
        top_ws, st_ws, _ = forward(params, cfg, inputs, state, workspace=ws)
        np.testing.assert_array_equal(top_ws, top)
        for a, b in zip(st_ws, st, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_carried_state_survives_the_next_call(cell):
    """A returned state is the next call's input: reused buffers must not alias it."""
    cfg, params, inputs, targets, state = _problem(cell, 2, None, 0.0)
    ws = Workspace()
    _, _, s1 = loss_and_grads(params, cfg, inputs, targets, state, workspace=ws)
    s1_copy = [tuple(s.copy() for s in st) for st in s1]
    loss_ws, _, s2_ws = loss_and_grads(params, cfg, inputs, targets, s1, workspace=ws)
    for a, b in zip(s1, s1_copy):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    loss, _, s2 = loss_and_grads(params, cfg, inputs, targets, s1_copy)
    assert loss_ws == loss
    for a, b in zip(s2_ws, s2):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- float32


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_float32_stays_float32(cell, dropout):
    cfg, params, inputs, targets, state = _problem(cell, 2, 4, dropout, dtype="float32")
    assert all(p.dtype == np.float32 for p in params.values())
    ws = Workspace()
    loss, grads, new_state = loss_and_grads(
        params, cfg, inputs, targets, state, rng=np.random.default_rng(0), workspace=ws
    )
    assert isinstance(loss, float) and np.isfinite(loss)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(s.dtype == np.float32 for st in new_state for s in st)
    top, _, _ = forward(params, cfg, inputs, state, rng=np.random.default_rng(0), train=True)
    assert top.dtype == np.float32
    logits, st, top = forward_logits(params, cfg, inputs, state)
    assert logits.dtype == np.float32 and top.dtype == np.float32
    assert all(s.dtype == np.float32 for layer in st for s in layer)
    step_logits, st = step(params, cfg, inputs[0], state)
    assert step_logits.dtype == np.float32
    assert all(s.dtype == np.float32 for layer in st for s in layer)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_float32_loss_close_to_float64(cell):
    cfg64, params, inputs, targets, state = _problem(cell, 2, None, 0.0)
    cfg32 = NetworkConfig(**{**cfg64.to_dict(), "dtype": "float32"})
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    s32 = [tuple(s.astype(np.float32) for s in st) for st in state]
    loss64, g64, _ = loss_and_grads(params, cfg64, inputs, targets, state)
    loss32, g32, _ = loss_and_grads(p32, cfg32, inputs, targets, s32, workspace=Workspace())
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-5, err_msg=k)
