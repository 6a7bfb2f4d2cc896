"""BLAS thread tuning: the fastest of one thread, the full pool and parallel groups is kept."""

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from charrnn.parallel.blas import PARALLEL, BlasTuner, scoring_threads, shared_blas_threads


def _threads():
    return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


class FakeClock:
    """Each step 'takes' cost[threads] seconds."""

    def __init__(self, cost):
        self.cost, self.now = cost, 0.0

    def __call__(self):
        return self.now

    def run(self, tuner, steps):
        used = []
        for _ in range(steps):
            tuner.before_step()
            used.append(_threads())
            self.now += self.cost[_threads()]
            tuner.after_step()
        return used


@pytest.fixture
def two_threads():
    with threadpool_limits(limits=2, user_api="blas"):
        if _threads() != 2:
            pytest.skip("BLAS pool cannot be set to 2 threads here")
        yield


@pytest.mark.parametrize("faster", [1, 2])
def test_tuner_keeps_the_faster_setting(two_threads, faster):
    slower = 3 - faster
    clock = FakeClock({faster: 1.0, slower: 5.0})
    tuner = BlasTuner(warmup=2, probe=2, interval=50, clock=clock)
    used = clock.run(tuner, 20)
    assert used[:2] == [2, 2]  # warm-up on the pool as found
    assert used[2:8] == [1, 1, 1, 2, 2, 2]  # the probe: one untimed step, then two timed
    assert set(used[8:]) == {faster}
    tuner.restore()
    assert _threads() == 2


def test_tuner_probes_again_and_follows_a_change_of_load(two_threads):
    clock = FakeClock({1: 1.0, 2: 5.0})
    tuner = BlasTuner(warmup=0, probe=1, interval=5, clock=clock)
    assert set(clock.run(tuner, 6)[4:]) == {1}
    clock.cost = {1: 5.0, 2: 1.0}  # the other processes have finished
    used = clock.run(tuner, 12)
    assert used[-1] == 2


@pytest.mark.parametrize("fastest", [1, 2, PARALLEL])
def test_tuner_with_parallel_groups_keeps_the_fastest_mode(two_threads, fastest):
    cost = {1: 3.0, 2: 4.0, PARALLEL: 5.0}
    cost[fastest] = 1.0
    tuner = BlasTuner(warmup=1, probe=2, interval=50, clock=None, parallel=True)
    now = [0.0]
    tuner._clock = lambda: now[0]
    modes, threads = [], []
    for _ in range(15):
        tuner.before_step()
        modes.append(tuner.mode)
        threads.append(_threads())
        now[0] += cost[tuner.mode]
        tuner.after_step()
    assert modes[1:10] == [1, 1, 1, 2, 2, 2, PARALLEL, PARALLEL, PARALLEL]
    assert set(modes[10:]) == {fastest}
    # parallel groups run with one BLAS thread each
    assert all(t == 1 for m, t in zip(modes, threads) if m == PARALLEL)
    assert tuner.parallel == (fastest == PARALLEL)
    tuner.restore()
    assert _threads() == 2 and not tuner.parallel


def test_the_first_step_after_a_switch_is_not_timed(two_threads):
    # the first step in each mode is slow (threads waking up); the steady steps decide
    tuner = BlasTuner(warmup=0, probe=2, interval=50, clock=None, parallel=True)
    now = [0.0]
    tuner._clock = lambda: now[0]
    steady = {1: 3.0, 2: 2.0, PARALLEL: 1.0}
    previous = None
    for _ in range(12):
        tuner.before_step()
        switched = tuner.mode != previous
        previous = tuner.mode
        now[0] += steady[tuner.mode] + (10.0 if switched and tuner.mode == PARALLEL else 0.0)
        tuner.after_step()
    assert tuner.mode == PARALLEL
    tuner.restore()


def test_tuner_does_nothing_with_one_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        tuner = BlasTuner(warmup=0, probe=1, interval=1)
        assert not tuner.enabled
        tuner.before_step()
        tuner.after_step()
        assert _threads() == 1


def test_scoring_threads_use_the_pool_with_one_blas_thread_each(two_threads):
    with scoring_threads() as threads:
        assert threads == 2 and _threads() == 1
    assert _threads() == 2


def test_scoring_threads_leave_blas_alone_while_training_shares_it(two_threads):
    with shared_blas_threads(), scoring_threads() as threads:
        assert threads == 1 and _threads() == 2
    with threadpool_limits(limits=1, user_api="blas"), scoring_threads() as threads:
        assert threads == 1


def test_probes_thin_out_while_the_mode_holds_and_come_back_after_a_change(two_threads):
    clock = FakeClock({1: 1.0, 2: 5.0})
    tuner = BlasTuner(warmup=0, probe=1, interval=5, clock=clock)
    used = clock.run(tuner, 200)
    # each probe runs 2 steps on the pool (untimed + timed) while 1 thread is the mode
    probe_starts = [i for i in range(1, len(used)) if used[i] == 2 and used[i - 1] == 1]
    gaps = [b - a for a, b in zip(probe_starts, probe_starts[1:])]
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]  # the gaps grow...
    assert max(gaps) <= 8 * 5 + 4  # ...up to 8 intervals (plus the probe's own steps)
    clock.cost = {1: 5.0, 2: 1.0}
    used = clock.run(tuner, 8 * 5 + 8)
    assert "2" * 8 in "".join(map(str, used))  # the next probe still notices the change
    tuner.restore()
    assert _threads() == 2


def test_the_first_probe_confirms_nothing_so_the_second_comes_one_interval_later(two_threads):
    # the pool as found (2 threads) is the fastest: the first probe keeps it, but that was a
    # default, not a choice, so one noisy first probe must not buy itself a doubled gap
    clock = FakeClock({1: 5.0, 2: 1.0})
    tuner = BlasTuner(warmup=0, probe=1, interval=5, clock=clock)
    used = clock.run(tuner, 30)
    assert used[:4] == [1, 1, 2, 2]  # the first probe: untimed + timed in each mode
    second_probe = used.index(1, 4)
    assert second_probe == 4 + 5
    third_probe = used.index(1, second_probe + 2)
    assert third_probe == second_probe + 4 + 10  # confirmed the first's choice: gap doubles
    tuner.restore()


def test_overlapping_runs_give_back_the_pool_a_tuner_had_cut(two_threads):
    """The first run's tuner cuts the pool to one thread, a second run begins: when both end,
    the pool is back at the size it had before either began."""
    first, second = shared_blas_threads(), shared_blas_threads()
    first.__enter__()
    tuner = BlasTuner(warmup=0, probe=1, interval=5, clock=FakeClock({1: 1.0, 2: 5.0}))
    tuner._use(1)  # what the first run's tuner does when one thread is faster
    assert _threads() == 1
    second.__enter__()
    assert _threads() == 1  # two runs: 2 // 2 threads each
    first.__exit__(None, None, None)
    assert _threads() == 2  # one run left: the whole pool as before the first began
    second.__exit__(None, None, None)
    assert _threads() == 2


def test_a_fit_that_begins_while_scoring_gives_back_the_whole_pool(two_threads):
    """Scoring cuts the pool to one thread; a fit beginning meanwhile must not take that
    cut for the pool's size, or the pool stays at one thread after both end."""
    scoring, run = scoring_threads(), shared_blas_threads()
    assert scoring.__enter__() == 2
    assert _threads() == 1
    run.__enter__()
    scoring.__exit__(None, None, None)
    run.__exit__(None, None, None)
    assert _threads() == 2
