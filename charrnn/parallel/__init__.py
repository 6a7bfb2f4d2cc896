"""Worker processes and BLAS threads for training, behind one interface with an off switch.

A training loop needs three things from this package, and imports only these names:

- :class:`ParallelSteps`, which computes each step's loss and gradients the fastest way the
  machine allows now: the batch's streams split into one group per core
  (:mod:`charrnn.parallel.groups`), the groups run in worker processes
  (:mod:`charrnn.parallel.workers`) or one after another, and the BLAS pool resized between
  one thread and all of them (:mod:`charrnn.parallel.blas`), whichever a timing picks;
- :func:`scoring_threads`, the threads to score independent validation streams with;
- :func:`group_slices`, to cut those streams into groups.

**The off switch.** ``CHARRNN_PARALLEL=0`` in the environment, or ``parallel=False`` passed to
:class:`ParallelSteps` and :func:`scoring_threads`, gives plain single-process training: each
step is one :func:`charrnn.engine.network.loss_and_grads` call in the calling thread, no
worker process or thread is started, and the BLAS pool is left as it was found (set it with
``OPENBLAS_NUM_THREADS`` or threadpoolctl). With the switch on, a batch split into groups
gives the unsplit gradient up to floating-point rounding, so both ways train to the same
numbers within rounding; a batch of fewer than 32 streams is never split and gives the same
numbers bit for bit.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

from charrnn.engine.network import NetworkConfig
from charrnn.parallel import blas
from charrnn.parallel.blas import BlasTuner, blas_pool_size, shared_blas_threads
from charrnn.parallel.groups import StreamGroups, group_slices, plan_groups

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "ParallelSteps",
    "group_slices",
    "parallel_enabled",
    "planned_groups",
    "scoring_threads",
]

ENVIRONMENT_VARIABLE = "CHARRNN_PARALLEL"
"""Name of the environment variable of the off switch: ``0`` turns parallel training off."""

_OFF = ("0", "false", "no", "off")
_ON = ("", "1", "true", "yes", "on")


def parallel_enabled(parallel: bool | None = None) -> bool:
    """Whether training may use worker processes and resize the BLAS pool.

    Parameters
    ----------
    parallel : bool or None
        An explicit choice, returned as is; None reads :data:`ENVIRONMENT_VARIABLE` (unset or
        empty means on).

    Raises
    ------
    ValueError
        If the environment variable holds anything but 0/1, true/false, yes/no or on/off.
    """
    if parallel is not None:
        return bool(parallel)
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    raise ValueError(
        f"environment variable {ENVIRONMENT_VARIABLE} must be 0 or 1 (or false/true, no/yes, "
        f"off/on), got {os.environ[ENVIRONMENT_VARIABLE]!r}"
    )


@contextmanager
def scoring_threads(parallel: bool | None = None):
    """Threads to score independent sequences with, BLAS cut to one thread per call meanwhile.

    :func:`charrnn.parallel.blas.scoring_threads` when parallel work is enabled (see
    :func:`parallel_enabled`); otherwise yields 1 and leaves BLAS alone.
    """
    if not parallel_enabled(parallel):
        yield 1
        return
    with blas.scoring_threads() as threads:
        yield threads


def planned_groups(batch_size: int, parallel: bool | None = None) -> int:
    """How many stream groups :class:`ParallelSteps` splits ``batch_size`` streams into.

    One when parallel work is off (:func:`parallel_enabled`), else one per core of the BLAS
    pool as :func:`~charrnn.parallel.groups.plan_groups` allows. What memory estimates count.
    """
    return plan_groups(batch_size, blas_pool_size()) if parallel_enabled(parallel) else 1


class ParallelSteps:
    """The loss and gradients of training steps, run in parallel where it pays -- or plainly.

    Use it as a context manager around a training loop (or call :meth:`start` and
    :meth:`close`): while it is open, overlapping runs in this process share the BLAS pool
    (:func:`~charrnn.parallel.blas.shared_blas_threads`); at the end worker processes stop and
    the pool gets its size back. Each step is :meth:`loss_and_grads`, then the caller's update
    of the weights, then :meth:`step_done`, so that the timing of the ways of running a step
    (:class:`~charrnn.parallel.blas.BlasTuner`) covers the whole step.

    Parameters
    ----------
    batch_size : int
        Streams ``B`` of every chunk passed in.
    parallel : bool or None
        False: the off switch (see the module docstring). None: :func:`parallel_enabled`.
    tune : bool
        Time one BLAS thread, the full pool and parallel groups now and then, and keep the
        fastest; False leaves the pool as found and runs the groups one after another.

    Attributes
    ----------
    enabled : bool
        Whether parallel work is switched on.
    groups : StreamGroups
        The split of the batch's streams (one group when switched off), fixed for the run.
    tuner : BlasTuner or None
        Set while open, when ``enabled`` and ``tune``.

    Examples
    --------
    >>> with ParallelSteps(batch_size=32) as steps:  # doctest: +SKIP
    ...     loss, grads, state = steps.loss_and_grads(params, config, x, y, state, rng)
    ...     optimizer.step(grads)
    ...     steps.step_done()
    """

    def __init__(self, batch_size: int, parallel: bool | None = None, tune: bool = True) -> None:
        self.enabled = parallel_enabled(parallel)
        n_groups = planned_groups(batch_size, self.enabled)
        self.groups = StreamGroups(batch_size, n_groups)
        self.tune = tune
        self.tuner: BlasTuner | None = None
        self._sharing = None  # the open shared_blas_threads() context

    @property
    def n_groups(self) -> int:
        """Groups the batch's streams are split into."""
        return self.groups.n_groups

    @property
    def parallel_now(self) -> bool:
        """Whether the next step runs its groups in parallel (BLAS on one thread each)."""
        return self.tuner is not None and self.tuner.parallel

    @property
    def validation_threads(self) -> int:
        """Threads to score validation streams with between steps: one per group while steps
        run as parallel groups (BLAS is on one thread then), else 1."""
        return self.n_groups if self.parallel_now else 1

    @property
    def settled(self) -> bool:
        """Whether the first timing of the ways of running a step is over."""
        return self.tuner is None or self.tuner.settled

    def start(self) -> ParallelSteps:
        """Open: share the BLAS pool with overlapping runs and start timing (when enabled)."""
        if self.enabled and self._sharing is None:
            self._sharing = shared_blas_threads()
            self._sharing.__enter__()
            if self.tune:
                self.tuner = BlasTuner(parallel=self.n_groups > 1)
        return self

    def close(self) -> None:
        """Stop the worker processes and threads and give the BLAS pool its size back."""
        try:
            if self.tuner is not None:
                self.tuner.restore()
            self.groups.close()
        finally:
            self.tuner = None
            sharing, self._sharing = self._sharing, None
            if sharing is not None:
                sharing.__exit__(None, None, None)

    def __enter__(self) -> ParallelSteps:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def loss_and_grads(
        self,
        params: dict,
        config: NetworkConfig,
        inputs: np.ndarray,
        targets: np.ndarray,
        state: list,
        rng: np.random.Generator | None = None,
        train: bool = True,
        resets: np.ndarray | None = None,
    ):
        """Mean cross-entropy per character, gradients and new state of one chunk.

        As :func:`charrnn.engine.network.loss_and_grads` computes them for the whole batch (see
        :meth:`charrnn.parallel.groups.StreamGroups.loss_and_grads` for the shapes); the
        gradients are valid until the next call.
        """
        self.begin_step()
        return self.groups.loss_and_grads(
            params, config, inputs, targets, state, rng, train, self.parallel_now, resets
        )

    def begin_step(self) -> None:
        """Call before a step computed outside :meth:`loss_and_grads` (a model whose batches
        are not streams): starts the step's timing, so the BLAS pool is still tuned for it."""
        if self.tuner is not None:
            self.tuner.before_step()

    def step_done(self) -> None:
        """Call once the step's update is applied: ends the step's timing."""
        if self.tuner is not None:
            self.tuner.after_step()

    def release(self) -> None:
        """Give the BLAS pool its full size until the next step (e.g. for other work)."""
        if self.tuner is not None:
            self.tuner.release()
