"""Tests for charrnn.engine.averaging (WeightAverage)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from charrnn.engine.averaging import WeightAverage


def weight_sequence(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)} for _ in range(n)]


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 0.998])
def test_average_is_the_normalised_exponentially_weighted_mean(momentum):
    seq = weight_sequence(7)
    avg = WeightAverage(seq[0], momentum)
    for t, params in enumerate(seq, start=1):
        avg.update(params)
        weights = np.array([momentum ** (t - k) for k in range(1, t + 1)])
        weights /= weights.sum()
        got = avg.averaged()
        for name in ("W", "b"):
            expected = sum(w * p[name] for w, p in zip(weights, seq[:t]))
            assert_allclose(got[name], expected, rtol=1e-12, atol=1e-12)
    assert avg.steps == len(seq)


def test_momentum_zero_is_the_latest_weights_and_constant_weights_stay_put():
    seq = weight_sequence(3)
    latest = WeightAverage(seq[0], 0.0)
    for params in seq:
        latest.update(params)
    assert_array_equal(latest.averaged()["W"], seq[-1]["W"])
    # the bias correction: a constant is averaged to itself from the first step on
    const = {"W": np.full((2, 2), 3.0, dtype=np.float32)}
    avg = WeightAverage(const, 0.999)
    avg.update(const)
    assert_allclose(avg.averaged()["W"], 3.0, rtol=1e-6)
    assert avg.averaged()["W"].dtype == np.float32


def test_update_leaves_the_weights_alone_and_copy_into_writes_in_place():
    seq = weight_sequence(2)
    before = {k: v.copy() for k, v in seq[1].items()}
    avg = WeightAverage(seq[0], 0.9)
    avg.update(seq[0])
    avg.update(seq[1])
    for k in before:
        assert_array_equal(seq[1][k], before[k])
    out = {k: np.zeros_like(v) for k, v in seq[0].items()}
    target = out["W"]
    avg.copy_into(out)
    assert out["W"] is target
    assert_array_equal(out["W"], avg.averaged()["W"])


def test_state_dict_round_trip_continues_exactly():
    seq = weight_sequence(6)
    a = WeightAverage(seq[0], 0.8)
    for params in seq[:3]:
        a.update(params)
    b = WeightAverage.from_state_dict(seq[0], a.state_dict())
    assert b.momentum == 0.8
    for params in seq[3:]:
        a.update(params)
        b.update(params)
    assert b.steps == a.steps == 6
    for k in ("W", "b"):
        assert_array_equal(a.averaged()[k], b.averaged()[k])


def test_bad_input_is_reported():
    params = weight_sequence(1)[0]
    for momentum in (-0.1, 1.0):
        with pytest.raises(ValueError, match="momentum"):
            WeightAverage(params, momentum)
    avg = WeightAverage(params, 0.9)
    with pytest.raises(ValueError, match="no steps"):
        avg.averaged()
    state = avg.state_dict()
    del state["sum/W"]
    with pytest.raises(ValueError, match="'W'"):
        avg.load_state_dict(state)
    with pytest.raises(ValueError, match="steps"):
        avg.load_state_dict({"sum/W": params["W"], "sum/b": params["b"]})
    with pytest.raises(ValueError, match="momentum"):
        WeightAverage.from_state_dict(params, {"sum/W": params["W"], "sum/b": params["b"]})
