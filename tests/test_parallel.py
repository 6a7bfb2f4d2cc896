"""Tests for charrnn.parallel.groups: a step split into groups of streams equals the unsplit
step."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from charrnn.engine.network import NetworkConfig, init_params, init_state, loss_and_grads
from charrnn.parallel.groups import StreamGroups, plan_groups

T, B, V, H = 5, 7, 9, 6


def _problem(cell, num_layers=2, embedding_dim=None, dropout=0.0, seed=0):
    config = NetworkConfig(
        cell=cell,
        vocab_size=V,
        hidden_size=H,
        num_layers=num_layers,
        embedding_dim=embedding_dim,
        dropout=dropout,
        dtype="float64",
    )
    rng = np.random.default_rng(seed)
    params = init_params(config, rng)
    inputs = rng.integers(0, V, size=(T, B))
    targets = rng.integers(0, V, size=(T, B))
    state = [
        tuple(0.3 * rng.standard_normal(s.shape) for s in layer) for layer in init_state(config, B)
    ]
    return config, params, inputs, targets, state


def _same(a, b, **tol):
    loss_a, grads_a, state_a = a
    loss_b, grads_b, state_b = b
    np.testing.assert_allclose(loss_a, loss_b, **tol)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        np.testing.assert_allclose(grads_a[name], grads_b[name], err_msg=name, **tol)
    for layer_a, layer_b in zip(state_a, state_b, strict=True):
        for x, y in zip(layer_a, layer_b, strict=True):
            np.testing.assert_allclose(x, y, **tol)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("embedding_dim", [None, 4])
@pytest.mark.parametrize("n_groups", [2, 3])
@pytest.mark.parametrize("mode", ["sequence", "threads", "processes"])
def test_groups_give_the_unsplit_loss_gradients_and_state(cell, embedding_dim, n_groups, mode):
    config, params, inputs, targets, state = _problem(cell, embedding_dim=embedding_dim)
    whole = loss_and_grads(params, config, inputs, targets, state)
    with (
        StreamGroups(B, n_groups, processes=mode == "processes") as groups,
        threadpool_limits(1, user_api="blas"),
    ):
        split = groups.loss_and_grads(
            params, config, inputs, targets, state, parallel=mode != "sequence"
        )
        assert groups.backend == ("processes" if mode == "processes" else "threads")
    _same(whole, split, rtol=1e-12, atol=1e-14)


def test_one_group_is_the_plain_step_bit_for_bit():
    config, params, inputs, targets, state = _problem("gru")
    whole = loss_and_grads(params, config, inputs, targets, state)
    split = StreamGroups(B, 1).loss_and_grads(params, config, inputs, targets, state)
    _same(whole, split, rtol=0, atol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("processes", [False, True])
def test_parallel_and_sequential_runs_agree_bit_for_bit_with_dropout(cell, processes):
    config, params, inputs, targets, state = _problem(cell, dropout=0.4)
    results = []
    for parallel in (False, True, True):
        with (
            StreamGroups(B, 2, processes=processes) as groups,
            threadpool_limits(1, user_api="blas"),
        ):
            rng = np.random.default_rng(42)
            results.append(
                groups.loss_and_grads(
                    params, config, inputs, targets, state, rng, train=True, parallel=parallel
                )
            )
    _same(results[0], results[1], rtol=0, atol=0)
    _same(results[1], results[2], rtol=0, atol=0)
    # dropout is on: the loss differs from the evaluation-mode loss
    plain = loss_and_grads(params, config, inputs, targets, state, train=False)
    assert abs(plain[0] - results[0][0]) > 1e-6


@pytest.mark.parametrize("processes", [False, True])
def test_repeated_calls_reuse_buffers_but_return_current_values(processes):
    config, params, inputs, targets, state = _problem("lstm", num_layers=1)
    groups = StreamGroups(B, 2, processes=processes)
    first = groups.loss_and_grads(params, config, inputs, targets, state, parallel=True)
    first_grads = {k: v.copy() for k, v in first[1].items()}
    other = inputs[::-1].copy()
    groups.loss_and_grads(params, config, other, targets, state, parallel=True)
    again = groups.loss_and_grads(params, config, inputs, targets, state, parallel=True)
    groups.close()
    for name, g in first_grads.items():
        np.testing.assert_array_equal(g, again[1][name])


def test_group_sizes_cover_the_batch():
    groups = StreamGroups(7, 3)
    sizes = [s.stop - s.start for s in groups.slices]
    assert sum(sizes) == 7 and max(sizes) - min(sizes) <= 1
    assert groups.slices[0].start == 0 and groups.slices[-1].stop == 7
    np.testing.assert_allclose(sum(groups.weights), 1.0)


@pytest.mark.parametrize(
    "batch, cores, expected",
    [(64, 2, 2), (32, 2, 2), (31, 2, 1), (8, 4, 1), (64, 8, 4), (64, 1, 1)],
)
def test_plan_gives_each_core_a_group_of_at_least_16_streams(batch, cores, expected):
    assert plan_groups(batch, cores) == expected


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_groups"):
        StreamGroups(4, 5)
    config, params, inputs, targets, state = _problem("rnn")
    with pytest.raises(ValueError, match="streams"):
        StreamGroups(B + 1, 2).loss_and_grads(params, config, inputs, targets, state)


def test_a_dead_worker_process_hands_over_to_threads_with_the_same_numbers():
    config, params, inputs, targets, state = _problem("gru")
    with StreamGroups(B, 2) as groups, threadpool_limits(1, user_api="blas"):
        first = groups.loss_and_grads(params, config, inputs, targets, state, parallel=True)
        first = (first[0], {k: v.copy() for k, v in first[1].items()}, first[2])
        assert groups.backend == "processes"
        groups._workers[0]._proc.kill()
        groups._workers[0]._proc.wait()
        again = groups.loss_and_grads(params, config, inputs, targets, state, parallel=True)
        assert groups.backend == "threads"
    _same(first, again, rtol=0, atol=0)


def test_workers_restart_for_a_longer_chunk():
    config, params, inputs, targets, state = _problem("rnn")
    with StreamGroups(B, 2) as groups, threadpool_limits(1, user_api="blas"):
        groups.loss_and_grads(params, config, inputs[:2], targets[:2], state, parallel=True)
        short_worker = groups._workers[0]
        split = groups.loss_and_grads(params, config, inputs, targets, state, parallel=True)
        assert groups._workers[0] is not short_worker
    _same(loss_and_grads(params, config, inputs, targets, state), split, rtol=1e-12, atol=1e-14)
