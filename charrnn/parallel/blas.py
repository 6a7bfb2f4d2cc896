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
    """Bookkeeping of everything in this process that resizes the BLAS pool.

    Every resize made here happens under :attr:`lock`: training runs that overlap in time
    (:func:`shared_blas_threads`), and one-thread sections (:func:`one_blas_thread`,
    :func:`scoring_threads`), which cut the pool to one thread while they run and give it back
    when the last of them ends.
    """

    lock = threading.Lock()
    runs = 0
    # BLAS threads when the first of the current runs began: taken then, not when a second
    # run arrives, because by then the first run's BlasTuner may have cut the pool to one
    # thread (and, with another run going, it may not put it back itself)
    base: int | None = None
    # one-thread sections open now, and the pool's size before the first of them cut it
    cuts = 0
    cut_base: int | None = None
    # threadpoolctl's controller of the BLAS libraries and its clear_controlling_thread,
    # built on first use
    controller = None
    clear = None


def _set_blas_threads(n: int | None) -> int | None:
    """Set the BLAS thread pools to ``n`` threads (None: leave them); returns the old size.

    Callers hold ``_SharedBlas.lock``. threadpoolctl lets only one "controlling" thread resize
    OpenBLAS's process-wide pool and silently ignores the others (a ``threadpool_limits``
    block open in another thread makes that thread the controller); the lock already
    serialises every resize made here, so the claim is released before and after each one.
    The controller of the loaded libraries is built once: scanning them costs about 0.5 ms,
    and a batch-1 generation resizes the pool twice.
    """
    if _SharedBlas.controller is None:
        import threadpoolctl

        _SharedBlas.controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
        _SharedBlas.clear = getattr(
            getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None
        )
    ctl, clear = _SharedBlas.controller, _SharedBlas.clear
    sizes = [lib["num_threads"] for lib in ctl.info()]
    if n is not None and sizes:
        if clear is not None:
            clear(force=True)
        ctl.limit(limits=n, user_api="blas")
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
    size when the first of them began (before any one-thread section cut it); back to ``base``
    when one is left, and when the last one ends.
    """
    with _SharedBlas.lock:
        _SharedBlas.runs += 1
        if _SharedBlas.runs == 1:
            current = _set_blas_threads(None)
            cut = _SharedBlas.cut_base
            _SharedBlas.base = cut if _SharedBlas.cuts and cut is not None else current
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


def _enter_one_thread_section() -> tuple[bool, bool]:
    """Under the lock: open a one-thread section unless training runs share the pool.

    Returns ``(entered, first)``: whether the section counts (and must be left), and whether
    it is the only one open (the others began earlier and have not ended).
    """
    if _SharedBlas.runs:
        return False, False
    first = _SharedBlas.cuts == 0
    if first:
        _SharedBlas.cut_base = _set_blas_threads(1)
    _SharedBlas.cuts += 1
    return True, first


def _leave_one_thread_section() -> None:
    """Under the lock: close a section; the last one gives the pool its size back."""
    _SharedBlas.cuts -= 1
    if _SharedBlas.cuts == 0:
        base, _SharedBlas.cut_base = _SharedBlas.cut_base, None
        # a fit that began meanwhile took `base` as its pool and gives it back itself
        if _SharedBlas.runs == 0 and base is not None:
            _set_blas_threads(base)


@contextmanager
def one_blas_thread():
    """Limit the BLAS pool to one thread while the block runs (a batch-1 loop, say).

    Thread-safe: sections that overlap in time, in any threads, cut the pool once and the last
    one to end restores the size it had before the first began, so two threads sampling at
    once never leave it at the wrong size. While training runs share the pool
    (:func:`shared_blas_threads`) it is theirs and is left alone. The pool is process-wide:
    other Python threads doing BLAS work get one thread too until the section ends.
    """
    with _SharedBlas.lock:
        entered, _ = _enter_one_thread_section()
    try:
        yield
    finally:
        if entered:
            with _SharedBlas.lock:
                _leave_one_thread_section()


PARALLEL = "parallel"  # the mode "stream groups in parallel threads, one BLAS thread each"


def blas_pool_size() -> int:
    """Threads in the process's BLAS pool now (1 when no BLAS library is found)."""
    with _SharedBlas.lock:
        return _set_blas_threads(None) or 1


@contextmanager
def scoring_threads():
    """Threads for scoring independent sequences: the BLAS pool's size, with BLAS cut to one
    thread per call meanwhile (restored on exit, as :func:`one_blas_thread` does).

    Yields 1 and leaves BLAS alone when the pool has one thread (a joblib/loky worker, a user
    limit) or when training runs in this process share the pool (:func:`shared_blas_threads`);
    yields 1 as well when another one-thread section is open (its work uses the other cores).
    """
    with _SharedBlas.lock:
        pool = _set_blas_threads(None) or 1
        entered, first = _enter_one_thread_section() if pool > 1 else (False, False)
    try:
        yield pool if first else 1
    finally:
        if entered:
            with _SharedBlas.lock:
                _leave_one_thread_section()


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
