"""Tests for charrnn.parallel.workers: a group's step in a worker process equals the
in-process step."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from charrnn.engine.network import NetworkConfig, init_params, init_state, loss_and_grads
from charrnn.parallel.workers import GroupWorker, WorkerError

T, B, V, H = 6, 5, 11, 7


def _problem(cell="lstm", dropout=0.0, dtype="float64"):
    config = NetworkConfig(
        cell=cell, vocab_size=V, hidden_size=H, num_layers=2, dropout=dropout, dtype=dtype
    )
    rng = np.random.default_rng(3)
    params = init_params(config, rng)
    inputs = rng.integers(0, V, size=(T, B))
    targets = rng.integers(0, V, size=(T, B))
    state = [
        tuple((0.3 * rng.standard_normal(s.shape)).astype(dtype) for s in layer)
        for layer in init_state(config, B)
    ]
    return config, params, inputs, targets, state


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_worker_step_is_the_in_process_step_bit_for_bit(cell, dtype):
    config, params, inputs, targets, state = _problem(cell, dropout=0.3, dtype=dtype)
    worker = GroupWorker(params, config, T, B)
    try:
        for seed in (7, 8):  # twice: buffers are reused, values are current
            with threadpool_limits(1, user_api="blas"):
                loss, grads, new_state = loss_and_grads(
                    params, config, inputs, targets, state, np.random.default_rng(seed), True
                )
            worker.submit(params, inputs, targets, state, True, seed)
            w_loss, w_grads, w_state = worker.result()
            assert w_loss == loss
            for name in params:
                np.testing.assert_array_equal(w_grads[name], grads[name], err_msg=name)
            for mine, theirs in zip(new_state, w_state, strict=True):
                for a, b in zip(mine, theirs, strict=True):
                    np.testing.assert_array_equal(a, b)
    finally:
        worker.close()


def test_worker_takes_the_current_weights_and_shorter_chunks():
    config, params, inputs, targets, state = _problem("gru")
    worker = GroupWorker(params, config, T, B)
    try:
        params = {k: 1.1 * v for k, v in params.items()}
        worker.submit(params, inputs[:3], targets[:3], state, False, None)
        loss, grads, _ = worker.result()
        expected = loss_and_grads(params, config, inputs[:3], targets[:3], state, train=False)
        np.testing.assert_allclose(loss, expected[0], rtol=1e-12)
        for name in params:
            np.testing.assert_allclose(grads[name], expected[1][name], rtol=1e-10, atol=1e-14)
        assert worker.matches(params, config, T, B)
        assert not worker.matches(params, config, T + 1, B)
        assert not worker.matches(params, config, T, B + 1)
    finally:
        worker.close()


def test_an_error_in_the_worker_is_raised_in_the_caller_with_its_type():
    config, params, inputs, targets, state = _problem("rnn")
    worker = GroupWorker(params, config, T, B)
    try:
        bad = inputs.copy()
        bad[0, 0] = V + 3
        worker.submit(params, bad, targets, state, False, None)
        with pytest.raises(IndexError, match="input ids"):
            worker.result()
        # the worker is still usable afterwards
        worker.submit(params, inputs, targets, state, False, None)
        assert np.isfinite(worker.result()[0])
    finally:
        worker.close()


def test_close_stops_the_process_and_leaves_no_shared_file(tmp_path):
    config, params, *_ = _problem()
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    worker = GroupWorker(params, config, T, B)
    proc = worker._proc
    assert proc.poll() is None
    after_start = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert not {f for f in after_start - before if f.startswith("charrnn-group-")}
    worker.close()
    assert proc.poll() is not None
    worker.close()  # twice is harmless


def test_a_dead_worker_is_a_worker_error():
    config, params, inputs, targets, state = _problem()
    worker = GroupWorker(params, config, T, B)
    worker._proc.kill()
    worker._proc.wait()
    with pytest.raises(WorkerError, match="worker process"):
        worker.submit(params, inputs, targets, state, False, None)
        worker.result()
    worker.close()


def test_a_script_without_a_main_guard_can_use_worker_processes(tmp_path):
    """Workers start a fresh interpreter (not multiprocessing's spawn), so the caller's
    script is not run again in them."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np
            from charrnn.engine.network import NetworkConfig, init_params, init_state
            from charrnn.parallel.groups import StreamGroups

            config = NetworkConfig(cell="gru", vocab_size=5, hidden_size=4)
            params = init_params(config, np.random.default_rng(0))
            ids = np.random.default_rng(1).integers(0, 5, size=(3, 4))
            print("top level ran")
            with StreamGroups(4, 2) as groups:
                loss, _, _ = groups.loss_and_grads(
                    params, config, ids, ids, init_state(config, 4), parallel=True
                )
                print(groups.backend, np.isfinite(loss))
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["top level ran", "processes True"]


def test_ctrl_c_does_not_stop_a_worker():
    """A terminal's Ctrl-C reaches every process of its group; the trainer decides to stop."""
    import signal
    import time

    config, params, inputs, targets, state = _problem("rnn")
    worker = GroupWorker(params, config, T, B)
    try:
        os.kill(worker._proc.pid, signal.SIGINT)
        time.sleep(0.2)
        assert worker._proc.poll() is None
        worker.submit(params, inputs, targets, state, False, None)
        assert np.isfinite(worker.result()[0])
    finally:
        worker.close()
