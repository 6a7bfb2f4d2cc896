"""Tests for charrnn.engine.training: exact resume, interrupts, divergence, stream_loss, BLAS
sharing.

Issue 6's promise is tested end to end through the estimator: a run stopped part-way, saved,
loaded and resumed must end with the weights of the same run left alone.
"""

import json
import math
import os
import signal
import threading

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_info

from charrnn import CharRNNGenerator, load
from charrnn.engine import network, training
from charrnn.engine.network import NetworkConfig
from charrnn.engine.optim import LRSchedule, make_optimizer
from charrnn.engine.tasks import LanguageModelTask, stream_loss, stream_loss_on_all_cores
from charrnn.engine.training import StopFlag, Trainer, graceful_interrupts
from charrnn.parallel import ParallelSteps
from charrnn.parallel.groups import StreamGroups

DOCS = [
    "the cat sat on the mat. " * 3,
    "a dog ran to the red hat. " * 3,
    "the big cat ran to a dog. " * 3,
    "on the mat sat a red dog. " * 3,
]

# dropout makes the generator state matter, warmup_cosine the schedule position, and early
# stopping with validation the best-so-far bookkeeping
RESUMABLE = dict(
    cell="lstm",
    hidden_size=12,
    num_layers=2,
    seq_length=8,
    batch_size=4,
    learning_rate=1e-2,
    max_iter=3,
    dropout=0.3,
    lr_schedule="warmup_cosine",
    validation_fraction=0.2,
    early_stopping=True,
    n_iter_no_change=5,
    random_state=3,
)


def tiny(**params) -> CharRNNGenerator:
    base = dict(cell="gru", hidden_size=16, num_layers=1, seq_length=8, batch_size=4)
    base.update(max_iter=2, validation_fraction=0, random_state=0)
    base.update(params)
    return CharRNNGenerator(**base)


def _stop_at(step: int, flag: StopFlag):
    """An on_step callback that asks the run to stop once ``step`` steps are done."""

    def on_step(est, trainer, loss, grad_norm, lr):
        if trainer.progress.step == step:
            flag.requested = True

    return on_step


def _copy(params):
    return {k: v.copy() for k, v in params.items()}


def _all_finite(params):
    return all(np.all(np.isfinite(v)) for v in params.values())


# ----------------------------------------------------------------------------- exact resume
@pytest.fixture(scope="module", params=["float64", "float32"])
def left_alone(request):
    est = CharRNNGenerator(**RESUMABLE, dtype=request.param).fit(DOCS)
    assert est.n_iter_ == 3 and est.history_[0]["step"] > 6
    return est


@pytest.mark.parametrize("where", ["mid-first-pass", "end-of-pass", "mid-last-pass"])
def test_interrupted_saved_loaded_resumed_run_ends_like_the_run_left_alone(
    left_alone, tmp_path, where
):
    steps_per_pass = left_alone.history_[0]["step"]
    stop = {
        "mid-first-pass": steps_per_pass // 2,
        "end-of-pass": steps_per_pass,
        "mid-last-pass": 2 * steps_per_pass + 3,
    }[where]
    kw = dict(RESUMABLE, dtype=left_alone.dtype)
    flag = StopFlag()
    stopped = CharRNNGenerator(**kw)
    with pytest.warns(ConvergenceWarning, match="interrupted"):
        stopped.fit(DOCS, on_step=_stop_at(stop, flag), stop_flag=flag)
    assert stopped.stop_reason_.startswith("interrupted")
    assert stopped.n_iter_ == (stop - 1) // steps_per_pass  # a pass closes after its last step
    path = tmp_path / "stopped.npz"
    stopped.save(path)

    resumed = load(path).fit(DOCS, resume=True)

    assert resumed.stop_reason_ == left_alone.stop_reason_ == "max_iter"
    assert resumed.n_iter_ == left_alone.n_iter_
    assert resumed.n_chars_seen_ == left_alone.n_chars_seen_
    for name, value in left_alone.params_.items():
        assert resumed.params_[name].dtype == value.dtype
        assert_allclose(resumed.params_[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
    assert_allclose(resumed.loss_curve_, left_alone.loss_curve_, rtol=1e-6)
    assert_allclose(resumed.validation_scores_, left_alone.validation_scores_, rtol=1e-6)
    assert_allclose(resumed.best_validation_score_, left_alone.best_validation_score_, rtol=1e-6)


def test_resume_in_memory_without_saving(left_alone):
    kw = dict(RESUMABLE, dtype=left_alone.dtype)
    flag = StopFlag()
    est = CharRNNGenerator(**kw)
    with pytest.warns(ConvergenceWarning):
        est.fit(DOCS, on_step=_stop_at(5, flag), stop_flag=flag)
    est.fit(DOCS, resume=True)
    for name, value in left_alone.params_.items():
        assert_allclose(est.params_[name], value, rtol=1e-6, atol=1e-7, err_msg=name)


def test_resume_on_a_new_estimator_is_an_ordinary_fit():
    a = tiny().fit(DOCS)
    b = tiny().fit(DOCS, resume=True)
    for name in a.params_:
        assert_array_equal(a.params_[name], b.params_[name])


def test_without_resume_a_stopped_model_starts_over():
    flag = StopFlag()
    est = tiny()
    with pytest.warns(ConvergenceWarning):
        est.fit(DOCS, on_step=_stop_at(3, flag), stop_flag=flag)
    est.fit(DOCS)
    fresh = tiny().fit(DOCS)
    assert est.n_iter_ == fresh.n_iter_ == 2
    for name in fresh.params_:
        assert_array_equal(est.params_[name], fresh.params_[name])


def test_on_epoch_returning_true_stops_after_that_pass():
    est = tiny(max_iter=5).fit(DOCS, on_epoch=lambda est, record: record["epoch"] == 2)
    assert est.n_iter_ == 2
    assert est.stop_reason_ == "stopped by callback"


# ----------------------------------------------------------------------------- signals
def _send_at(step: int, signum, times: int, seen: dict):
    def on_step(est, trainer, loss, grad_norm, lr):
        seen["steps"] = trainer.progress.step
        if trainer.progress.step == step:
            seen["params"] = _copy(est.params_)
            for _ in range(times):
                os.kill(os.getpid(), signum)

    return on_step


@pytest.mark.parametrize("times", [1, 2], ids=["once", "twice"])
def test_sigint_during_fit_stops_at_the_next_step_and_keeps_the_weights(times):
    seen = {}
    before = signal.getsignal(signal.SIGINT)
    est = tiny(max_iter=3)
    # once: the handler sets the stop flag, checked right after this step; twice: the second
    # Ctrl-C raises KeyboardInterrupt at once, which fit also turns into a warning
    with pytest.warns(ConvergenceWarning, match="interrupted"):
        est.fit(DOCS, on_step=_send_at(4, signal.SIGINT, times, seen))
    assert seen["steps"] == 4  # no step after the signal
    assert est.stop_reason_ == ("interrupted (SIGINT)" if times == 1 else "interrupted")
    for name, value in seen["params"].items():
        assert_array_equal(est.params_[name], value)
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_during_fit_stops_like_sigint(monkeypatch):
    received = []

    def fallback(signum, frame):  # runs only if fit failed to install its own handler
        received.append(signum)
        raise RuntimeError("SIGTERM reached the test's handler, not fit's")

    previous = signal.signal(signal.SIGTERM, fallback)
    try:
        seen = {}
        est = tiny(max_iter=3)
        with pytest.warns(ConvergenceWarning, match="interrupted"):
            est.fit(DOCS, on_step=_send_at(2, signal.SIGTERM, 1, seen))
        assert est.stop_reason_ == "interrupted (SIGTERM)"
        assert seen["steps"] == 2
        assert signal.getsignal(signal.SIGTERM) is fallback
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == []


def test_fit_in_a_worker_thread_installs_no_signal_handlers():
    before = signal.getsignal(signal.SIGINT)
    result = {}

    def work():
        try:
            result["est"] = tiny(max_iter=1).fit(DOCS)
        except Exception as exc:  # surfaced below
            result["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert "error" not in result
    assert result["est"].n_iter_ == 1
    assert signal.getsignal(signal.SIGINT) is before


def test_graceful_interrupts_restores_previous_handlers():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    flag = StopFlag()
    with graceful_interrupts(flag):
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.requested and flag.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


# ----------------------------------------------------------------------------- divergence
def test_huge_learning_rate_diverges_with_a_warning_and_finite_weights(tmp_path):
    est = tiny(cell="rnn", learning_rate=1e38, lr_schedule="constant", max_iter=3)
    with np.errstate(all="ignore"), pytest.warns(ConvergenceWarning, match="learning_rate"):
        est.fit(DOCS)
    assert est.diverged_ is True
    assert est.stop_reason_ == "diverged"
    assert _all_finite(est.params_)
    est.save(tmp_path / "m.npz")  # the kept weights are finite, so they may be saved
    assert _all_finite(load(tmp_path / "m.npz").params_)
    est.params_["Why"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.save(tmp_path / "m.npz")


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_divergence_keeps_the_weights_of_the_last_finite_step(monkeypatch, what):
    real = network.loss_and_grads
    weights_seen = []

    def failing_at_step_5(params, *args, **kwargs):
        weights_seen.append(_copy(params))
        loss, grads, state = real(params, *args, **kwargs)
        if len(weights_seen) == 6:
            if what == "loss":
                loss = math.nan
            else:
                grads["by"][0] = np.inf
        return loss, grads, state

    monkeypatch.setattr(network, "loss_and_grads", failing_at_step_5)
    est = tiny(max_iter=3)
    with pytest.warns(ConvergenceWarning, match="diverged at step 5"):
        est.fit(DOCS)
    assert est.diverged_ is True
    # steps 0..4 were finite; the weights kept are those step 4 computed its loss on
    for name, value in weights_seen[4].items():
        assert_array_equal(est.params_[name], value)


def test_divergence_at_the_first_step_keeps_the_initial_weights(monkeypatch):
    real = network.loss_and_grads
    first = {}

    def nan_loss(params, *args, **kwargs):
        first.setdefault("params", _copy(params))
        return (math.nan, *real(params, *args, **kwargs)[1:])

    monkeypatch.setattr(network, "loss_and_grads", nan_loss)
    est = tiny()
    with pytest.warns(ConvergenceWarning, match="learning_rate"):
        est.fit(DOCS)
    for name, value in first["params"].items():
        assert_array_equal(est.params_[name], value)


# ----------------------------------------------------------------------------- stream_loss
@pytest.fixture(scope="module")
def net():
    config = NetworkConfig(cell="lstm", vocab_size=7, hidden_size=5, num_layers=2, dtype="float64")
    return network.init_params(config, np.random.default_rng(0)), config


def _one_stream_nll(params, config, stream):
    """Summed negative log-likelihood of ``stream[1:]`` given its past, batch 1, one call;
    the state restarts from zero at every end-of-document id (0), as in training."""
    inputs = stream[:-1, None]
    logits, _, _ = network.forward_logits(
        params, config, inputs, network.init_state(config, 1), resets=inputs == 0
    )
    logp = network.log_softmax(logits[:, 0])
    return -logp[np.arange(len(stream) - 1), stream[1:]].sum()


# (text length, n_streams, streams used): a text long enough gets every stream asked for
@pytest.mark.parametrize("n, n_streams, B", [(2, 128, 1), (300, 1, 1), (1200, 1, 1), (1200, 3, 3)])
@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_stream_loss_equals_a_direct_computation(net, n, n_streams, B, n_threads):
    params, config = net
    ids = np.random.default_rng(1).integers(0, config.vocab_size, n).astype(np.uint8)
    got = stream_loss(params, config, ids, n_streams=n_streams, n_threads=n_threads)
    # stream_loss cuts the text into B equal streams of L predictions, each read from a
    # fresh state, and drops the remainder; recompute that one stream at a time
    L = (n - 1) // B
    total = sum(_one_stream_nll(params, config, ids[b * L : (b + 1) * L + 1]) for b in range(B))
    assert_allclose(got, total / (B * L), rtol=1e-10)


def test_stream_loss_on_all_cores_is_stream_loss(net):
    params, config = net
    ids = np.random.default_rng(3).integers(0, config.vocab_size, 5000).astype(np.uint8)
    assert_allclose(
        stream_loss_on_all_cores(params, config, ids, n_streams=8),
        stream_loss(params, config, ids, n_streams=8),
        rtol=1e-10,
    )


def test_stream_loss_of_fewer_than_two_symbols_is_nan(net):
    params, config = net
    assert math.isnan(stream_loss(params, config, np.array([3], dtype=np.uint8)))
    assert math.isnan(stream_loss(params, config, np.array([], dtype=np.uint8)))


# ----------------------------------------------------------------------------- Trainer state
def _trainer(params, config, ids, rng):
    task = LanguageModelTask(config, ids[:600], ids[600:], batch_size=4, seq_length=8)
    return Trainer(
        params,
        task,
        optimizer=make_optimizer("adam", params, 1e-2),
        learning_rate=1e-2,
        schedule=LRSchedule("warmup_cosine"),
        rng=rng,
    )


def test_trainer_state_round_trip_continues_bit_exactly():
    config = NetworkConfig(cell="gru", vocab_size=9, hidden_size=6, dropout=0.25, dtype="float64")
    ids = np.random.default_rng(2).integers(0, 9, 700).astype(np.uint8)
    ref_params = network.init_params(config, np.random.default_rng(0))
    part_params = _copy(ref_params)
    ref = _trainer(ref_params, config, ids, np.random.default_rng(5))
    ref.run(max_epochs=2, early_stopping=True)

    first = _trainer(part_params, config, ids, np.random.default_rng(5))
    flag = StopFlag()
    stop_at_23 = _stop_at(23, flag)
    first.run(
        max_epochs=2,
        early_stopping=True,
        stop_flag=flag,
        on_step=lambda trainer, *rest: stop_at_23(None, trainer, *rest),
    )
    assert first.progress.step == 23 and first.progress.stop_reason.startswith("interrupted")
    header = json.loads(json.dumps(first.state_header()))  # it must survive JSON
    arrays = {k: v.copy() for k, v in first.state_arrays().items()}

    params = _copy(part_params)
    second = _trainer(params, config, ids, np.random.default_rng(999))
    second.load_state(header, arrays)
    second.run(max_epochs=2, early_stopping=True)
    assert second.progress.step == ref.progress.step
    for name in ref_params:
        assert_array_equal(params[name], ref_params[name])


def _learning_rates(monkeypatch, max_time: float, seconds_per_clock_read: float) -> list:
    """The learning rate of every step of a 2-pass run on a clock that ticks at every read."""
    clock = {"t": 0.0}

    def fake_clock():
        clock["t"] += seconds_per_clock_read
        return clock["t"]

    monkeypatch.setattr(training.time, "perf_counter", fake_clock)
    config = NetworkConfig(cell="gru", vocab_size=9, hidden_size=6)
    ids = np.random.default_rng(2).integers(0, 9, 700).astype(np.uint8)
    trainer = _trainer(network.init_params(config, np.random.default_rng(0)), config, ids, None)
    trainer.tune_blas = False
    rates = []
    trainer.run(max_epochs=2, max_time=max_time, on_step=lambda t, loss, g, lr: rates.append(lr))
    return rates


def test_a_time_budget_that_does_not_bind_leaves_the_schedule_to_the_step_count(monkeypatch):
    """Start-up time on a busy machine must not move the learning rate: runs repeat exactly."""
    slow = _learning_rates(monkeypatch, max_time=1e6, seconds_per_clock_read=3.0)
    total = len(slow)
    schedule = LRSchedule("warmup_cosine")
    assert slow == [1e-2 * schedule.factor(step / total) for step in range(total)]
    assert slow[0] == 1e-2 * schedule.factor(0.0)


def test_a_time_budget_that_binds_drives_the_schedule(monkeypatch):
    rates = _learning_rates(monkeypatch, max_time=20.0, seconds_per_clock_read=1.0)
    schedule = LRSchedule("warmup_cosine")
    # the run stops at the budget, well before its 2 passes, with the rate decayed to its floor
    assert len(rates) < 36
    assert rates[-1] < 1e-2 * schedule.factor(len(rates) / 36)
    assert rates[-1] == pytest.approx(1e-2 * schedule.final_factor, rel=0.1)


class _AlwaysParallel:
    """A BlasTuner stand-in that runs every step as parallel groups of streams."""

    parallel = True
    settled = True

    def before_step(self):
        pass

    def after_step(self):
        pass

    def restore(self):
        pass

    def release(self):
        pass


@pytest.mark.parametrize("processes", [False, True])
def test_training_on_stream_groups_is_the_same_in_parallel_and_in_sequence(monkeypatch, processes):
    """The split into groups fixes the numbers; running them in threads or processes does not."""
    config = NetworkConfig(cell="lstm", vocab_size=9, hidden_size=6, dropout=0.25, dtype="float64")
    ids = np.random.default_rng(2).integers(0, 9, 700).astype(np.uint8)
    start = network.init_params(config, np.random.default_rng(0))
    trained, opened = {}, []

    for parallel in (False, True):

        class TwoGroups(ParallelSteps):
            """Four streams in two groups (too few to split on their own), run as asked."""

            in_parallel = parallel

            def __init__(self, batch_size, tune=True):
                super().__init__(batch_size, parallel=True, tune=False)
                self.groups = StreamGroups(4, 2, processes=processes)
                opened.append(self)

            def start(self):
                super().start()
                self.tuner = _AlwaysParallel() if self.in_parallel else None
                return self

        monkeypatch.setattr(training, "ParallelSteps", TwoGroups)
        params = _copy(start)
        _trainer(params, config, ids, np.random.default_rng(5)).run(max_epochs=2)
        # the worker threads and processes are stopped after the run
        groups = opened[-1].groups
        assert groups._pool is None and groups._workers == []
        trained[parallel] = params
    for name in start:
        assert_array_equal(trained[False][name], trained[True][name])
    assert any(not np.array_equal(trained[True][n], start[n]) for n in start)


# ----------------------------------------------------------------------------- BLAS threads
def _blas_threads() -> int:
    return max(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas")


def test_overlapping_fits_in_threads_share_the_blas_threads():
    base = _blas_threads()
    if base < 2:
        pytest.skip("BLAS runs a single thread here; there is nothing to divide")
    barrier = threading.Barrier(2, timeout=60)
    seen = {0: [], 1: []}

    def fit(i):
        def on_step(est, trainer, loss, grad_norm, lr):
            if trainer.progress.step == 1:
                barrier.wait()  # both runs are inside fit from here ...
            seen[i].append(_blas_threads())
            if trainer.progress.step == 3:
                barrier.wait()  # ... to here

        tiny(max_iter=1, random_state=i).fit(DOCS, on_step=on_step)

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert seen[i][:3] == [max(1, base // 2)] * 3
    assert _blas_threads() == base


def test_a_lone_fit_gives_the_blas_threads_back():
    base = _blas_threads()
    seen = []
    tiny(max_iter=1).fit(DOCS, on_step=lambda *args: seen.append(_blas_threads()))
    # a lone fit only ever uses one thread or the whole pool (charrnn.parallel.blas.BlasTuner) ...
    assert seen and set(seen) <= {1, base}
    # ... and leaves the pool as it found it
    assert _blas_threads() == base
