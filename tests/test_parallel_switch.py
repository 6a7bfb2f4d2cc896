"""Tests for charrnn.parallel's facade: ParallelSteps, scoring_threads and the off switch."""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import charrnn.parallel as par
from charrnn.engine.network import NetworkConfig, init_params, init_state, loss_and_grads
from charrnn.engine.optim import Adam, clip_grad_norm
from charrnn.parallel.blas import PARALLEL

B, T, V = 32, 6, 11  # 32 streams: two groups of 16 when the switch is on


def _blas_threads():
    sizes = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    return max(sizes, default=None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("", True), ("1", True), ("on", True), ("0", False), (" False ", False)],
)
def test_the_environment_variable_switches_parallel_work(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(par.ENVIRONMENT_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(par.ENVIRONMENT_VARIABLE, value)
    assert par.parallel_enabled() is expected
    assert par.parallel_enabled(True) is True and par.parallel_enabled(False) is False


def test_a_bad_environment_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(par.ENVIRONMENT_VARIABLE, "maybe")
    with pytest.raises(ValueError, match="CHARRNN_PARALLEL.*'maybe'"):
        par.ParallelSteps(B)


def _train(steps_factory, n_steps=6, dropout=0.2):
    """A few truncated-BPTT steps the way the trainer takes them; returns losses and weights."""
    config = NetworkConfig("lstm", V, 8, 2, dropout=dropout, dtype="float64")
    rng = np.random.default_rng(0)
    params = init_params(config, rng)
    data = rng.integers(0, V, size=(n_steps, T + 1, B))
    state = init_state(config, B)
    opt = Adam(params, 0.01)
    losses = []
    with steps_factory() as steps:
        for chunk in data:
            loss, grads, state = steps.loss_and_grads(
                params, config, chunk[:-1], chunk[1:], state, rng
            )
            clip_grad_norm(grads, 1.0)
            opt.step(grads)
            steps.step_done()
            losses.append(loss)
    return losses, params


class _PlainSteps:
    """The single-process step written out: network.loss_and_grads, nothing else."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def loss_and_grads(self, *args):
        return loss_and_grads(*args)

    def step_done(self):
        pass


def test_switched_off_training_runs_plainly_in_one_process(monkeypatch):
    def no_worker(*args, **kwargs):
        raise AssertionError("a worker process was started")

    monkeypatch.setattr("charrnn.parallel.groups.GroupWorker", no_worker)
    monkeypatch.setenv(par.ENVIRONMENT_VARIABLE, "0")
    threads_before = threading.active_count()
    seen = []

    class Watched(par.ParallelSteps):
        def step_done(self):
            seen.append((threading.active_count(), _blas_threads()))
            super().step_done()

    with threadpool_limits(limits=2, user_api="blas"):
        pool = _blas_threads()
        off = _train(lambda: Watched(B))
        assert _blas_threads() == pool
    assert Watched(B).n_groups == 1 and Watched(B).tuner is None
    # no thread started, the BLAS pool left as found at every step
    assert seen == [(threads_before, pool)] * len(seen) and seen
    plain = _train(_PlainSteps)
    np.testing.assert_array_equal(off[0], plain[0])
    for name in off[1]:
        np.testing.assert_array_equal(off[1][name], plain[1][name])


class _AlwaysParallel:
    """A BlasTuner stand-in that runs every step as parallel groups."""

    parallel, mode, settled = True, PARALLEL, True

    def before_step(self):
        pass

    after_step = restore = release = before_step


def test_switched_on_training_gives_the_same_numbers_within_rounding(monkeypatch):
    # without dropout: with it, each group draws its own masks (see StreamGroups)
    monkeypatch.setattr(par, "blas_pool_size", lambda: 2)  # two groups whatever the machine
    backends = []

    class InWorkers(par.ParallelSteps):
        def start(self):
            super().start()
            self.tuner = _AlwaysParallel()
            return self

        def step_done(self):
            backends.append(self.groups.backend)

    on = _train(lambda: InWorkers(B, parallel=True), dropout=0.0)
    assert backends and set(backends) <= {"processes", "threads"}
    off = _train(lambda: par.ParallelSteps(B, parallel=False), dropout=0.0)
    np.testing.assert_allclose(on[0], off[0], rtol=1e-12)
    for name in on[1]:
        np.testing.assert_allclose(on[1][name], off[1][name], rtol=1e-10, atol=1e-12)


def test_scoring_threads_switched_off_leave_blas_alone():
    with threadpool_limits(limits=2, user_api="blas"):
        pool = _blas_threads()
        with par.scoring_threads(parallel=False) as threads:
            assert threads == 1 and _blas_threads() == pool


def test_the_switch_reaches_the_estimators_training_loop(monkeypatch):
    from charrnn import CharRNNGenerator

    def no_worker(*args, **kwargs):
        raise AssertionError("a worker process was started")

    monkeypatch.setattr("charrnn.parallel.groups.GroupWorker", no_worker)
    monkeypatch.setattr(par, "blas_pool_size", lambda: 2)  # 64 streams: two groups when on
    monkeypatch.setenv(par.ENVIRONMENT_VARIABLE, "0")
    opened = []

    class Watched(par.ParallelSteps):
        def start(self):
            opened.append(self)
            return super().start()

    monkeypatch.setattr("charrnn.engine.training.ParallelSteps", Watched)
    text = "the cat sat on the mat. " * 400
    gen = CharRNNGenerator(
        hidden_size=8, num_layers=1, batch_size=64, seq_length=8, max_iter=1, random_state=0
    )
    gen.fit(text)
    assert opened and all(s.n_groups == 1 and s.tuner is None for s in opened)
    assert np.isfinite(gen.loss_curve_).all()
    monkeypatch.setenv(par.ENVIRONMENT_VARIABLE, "1")
    assert Watched(64).n_groups == 2  # the same run switched on would split its streams
