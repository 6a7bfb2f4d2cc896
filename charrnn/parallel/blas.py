"""BLAS threads for training: shared between overlapping runs, tuned to the machine's load.

OpenBLAS's worker threads wait by spinning. On an idle machine two threads make the
recurrent GEMMs faster; on a machine whose cores are busy with other processes the same
threads wait for each other and a training step was measured 5 to 20 times slower than with
one thread. :class:`BlasTuner` therefore times a few steps with one thread, with the full
pool and (when the batch is split into groups of streams, :mod:`charrnn.parallel.groups`) with
the groups running in parallel, one BLAS thread each, now and then during training, and keeps
whichever is fastest. :class:`charrnn.parallel.ParallelSteps` is what a training loop uses.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import numpy  # noqa: F401  (loads the BLAS library that threadpoolctl finds and resizes)


class _SharedBlas:
    """Bookkeeping of the training runs that overlap in time in this process."""

    lock = threading.Lock()
    runs = 0
    # BLAS threads when the first of the current runs began: taken then, not when a second
    # run arrives, because by then the first run's BlasTuner may have cut the pool to one
    # thread (and, with another run going, it may not put it back itself)
    base: int | None = None
    # the pool's size before an active scoring_threads() cut it to one thread
    scoring_base: int | None = None


def _set_blas_threads(n: int | None) -> int | None:
    """Set the BLAS thread pools to ``n`` threads (None: leave them); returns the old size.

    Callers hold ``_SharedBlas.lock``. threadpoolctl lets only one "controlling" thread resize
    OpenBLAS's process-wide pool and silently ignores the others; the lock already serialises
    every resize made here, so that claim is released after each one.
    """
    import threadpoolctl

    ctl = threadpoolctl.ThreadpoolController().select(user_api="blas")
    sizes = [lib["num_threads"] for lib in ctl.info()]
    if n is not None and sizes:
        ctl.limit(limits=n, user_api="blas")
        clear = getattr(
            getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None
        )
        if clear is not None:
            clear(force=True)
    return max(sizes, default=None)


@contextmanager
def shared_blas_threads():
    """Divide the BLAS threads among training runs that overlap in one process.

    Process-based workers (joblib's default loky backend, Dask's worker processes) start
    with a per-worker BLAS limit set by their launcher (joblib: ``cpu_count // n_jobs``), and
    a lone run keeps whatever it finds. Runs in threads of one process (joblib's threading
    backend, a Dask ``LocalCluster(processes=False)``) share one process-wide BLAS pool: while
    ``n`` of them run, it is cut to ``max(1, base // n)`` threads, where ``base`` is the pool's
    size when the first of them began; back to ``base`` when one is left, and when the last
    one ends.
    """
    with _SharedBlas.lock:
        _SharedBlas.runs += 1
        if _SharedBlas.runs == 1:
            current = _set_blas_threads(None)
            scoring = _SharedBlas.scoring_base
            _SharedBlas.base = scoring if scoring is not None else current
        elif _SharedBlas.base is not None:
            _set_blas_threads(max(1, _SharedBlas.base // _SharedBlas.runs))
    try:
        yield
    finally:
        with _SharedBlas.lock:
            _SharedBlas.runs -= 1
            n, base = _SharedBlas.runs, _SharedBlas.base
            if base is not None:
                _set_blas_threads(max(1, base // max(n, 1)))
            if n == 0:
                _SharedBlas.base = None


PARALLEL = "parallel"  # the mode "stream groups in parallel threads, one BLAS thread each"


def blas_pool_size() -> int:
    """Threads in the process's BLAS pool now (1 when no BLAS library is found)."""
    with _SharedBlas.lock:
        return _set_blas_threads(None) or 1


@contextmanager
def scoring_threads():
    """Threads for scoring independent sequences: the BLAS pool's size, with BLAS cut to one
    thread per call meanwhile (restored on exit).

    Yields 1 and leaves BLAS alone when the pool has one thread (a joblib/loky worker, a user
    limit) or when training runs in this process share the pool (:func:`shared_blas_threads`).
    """
    with _SharedBlas.lock:
        base = _set_blas_threads(None) or 1
        # one scoring at a time cuts the pool; a concurrent one finds it cut and leaves it
        use = base > 1 and _SharedBlas.runs == 0 and _SharedBlas.scoring_base is None
        if use:
            _SharedBlas.scoring_base = base
            _set_blas_threads(1)
    try:
        yield base if use else 1
    finally:
        if use:
            with _SharedBlas.lock:
                _SharedBlas.scoring_base = None
                # a fit that began meanwhile took `base` as its pool and gives it back itself
                if _SharedBlas.runs == 0:
                    _set_blas_threads(base)


class BlasTuner:
    """Pick the fastest way to run training steps on this machine now, by timing each.

    The modes are ``1`` (one BLAS thread), ``max_threads`` (the full pool) and, with
    ``parallel=True``, :data:`PARALLEL` (the caller runs its groups of streams in parallel,
    in worker processes or threads, while BLAS uses one thread each). First after ``warmup``
    steps and then now and then it runs one untimed step in each mode and times ``probe``
    more, then keeps the fastest until the next probe. The next probe comes ``interval`` steps
    later when the probe changed the mode (or was the first), and after twice the last gap (up
    to ``8 * interval``) when it confirmed the last probe's choice: at a fixed
    ``interval = 300`` a probe's steps in the slower modes cost about 1% of a long run, and a
    machine whose load holds needs few probes.
    It does nothing when the pool has one thread or when other training runs in this process
    share the pool (:func:`shared_blas_threads` already divides it then).

    Parameters
    ----------
    warmup, probe, interval : int
        Steps before the first probe, steps timed per mode, shortest gap between probes.
    clock : callable, optional
        Seconds as a float (``time.perf_counter``); tests pass a fake one.
    parallel : bool
        Whether the caller can run a step as parallel groups of streams.

    Attributes
    ----------
    mode : int or str
        The mode in use; ``parallel`` is True when it is :data:`PARALLEL`.
    """

    def __init__(
        self,
        warmup: int = 3,
        probe: int = 3,
        interval: int = 300,
        clock=None,
        parallel: bool = False,
    ) -> None:
        self.warmup, self.probe, self.interval = warmup, probe, interval
        self._clock = clock or time.perf_counter
        with _SharedBlas.lock:
            self.max_threads = _set_blas_threads(None) or 1
            self.enabled = self.max_threads > 1 and _SharedBlas.runs <= 1
        self.threads = self.max_threads
        self.mode: int | str = self.max_threads
        self.modes: list[int | str] = [1, self.max_threads] + ([PARALLEL] if parallel else [])
        self._plan: list[tuple[int | str, bool]] = []  # (mode, timed?) of the probe's steps
        self._times: dict[int | str, list[float]] = {}
        self._t0 = 0.0
        self._steps = 0
        self._next_probe = warmup
        self._gap = interval  # steps from the end of one probe to the next
        # the mode the last probe chose; None before the first, whose result confirms nothing
        # (the pool as found is a default, not a measurement)
        self._chosen: int | str | None = None

    def before_step(self) -> None:
        """Call before a training step."""
        if not self.enabled:
            return
        if not self._plan and self._steps >= self._next_probe:
            # The first step in each mode pays for the switch (resizing the BLAS pool, starting
            # the group threads) and is not timed.
            self._plan = [(m, k > 0) for m in self.modes for k in range(self.probe + 1)]
            self._times = {m: [] for m in self.modes}
        self._use(self._plan[0][0] if self._plan else self.mode)
        self._t0 = self._clock()

    def after_step(self) -> None:
        """Call after the step (timing it when it was a probe)."""
        if not self.enabled:
            return
        self._steps += 1
        if not self._plan:
            return
        mode, timed = self._plan.pop(0)
        if timed:
            self._times[mode].append(self._clock() - self._t0)
        if not self._plan:
            best = min(self._times, key=lambda n: sorted(self._times[n])[len(self._times[n]) // 2])
            self._use(best)
            if best == self._chosen:
                self._gap = min(2 * self._gap, 8 * self.interval)
            else:
                self._gap = self.interval
            self._chosen = best
            self._next_probe = self._steps + self._gap

    @property
    def settled(self) -> bool:
        """Whether the first probe is over (always True when the tuner is disabled)."""
        return not self.enabled or (self._steps > self.warmup and not self._plan)

    @property
    def parallel(self) -> bool:
        """Whether the step about to run should run its groups of streams in parallel."""
        return self.mode == PARALLEL

    def _use(self, mode: int | str) -> None:
        n = 1 if mode == PARALLEL else mode
        self.mode = mode
        if n != self.threads:
            with _SharedBlas.lock:
                if _SharedBlas.runs <= 1:
                    _set_blas_threads(n)
                    self.threads = n

    def release(self) -> None:
        """Give the pool back its full size between steps; the next step returns to the mode."""
        if self.enabled:
            mode = self.mode
            self._use(self.max_threads)
            self.mode = mode

    def restore(self) -> None:
        """Give the pool back its full size for good."""
        if self.enabled:
            self._use(self.max_threads)
