"""The one training loop, free of scikit-learn and of files.

:class:`Trainer` runs passes over a :class:`~charrnn.engine.tasks.TrainingTask` (which says
what a batch is and how to score the model) with the time and pass budget, the learning-rate
schedule, gradient clipping, the divergence guard, validation, early stopping and keep-best
that every estimator shares. It owns everything a run needs to continue exactly where it
stopped -- weights, optimiser state, schedule position, pass and step, the task's carried state
and the dropout generator -- and exports all of it as plain arrays plus a JSON-able dict
(:meth:`Trainer.state_arrays`, :meth:`Trainer.state_header`) for a checkpoint.

Stopping is cooperative: ``SIGINT``/``SIGTERM`` during :meth:`Trainer.run` set a flag that the
loop checks after each optimiser step, so a run always stops between steps with consistent
weights and optimiser state (a second Ctrl-C interrupts at once).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from charrnn.engine.averaging import WeightAverage
from charrnn.engine.optim import LRSchedule, Optimizer, clip_grad_norm
from charrnn.engine.tasks import TrainingTask
from charrnn.parallel import ParallelSteps

__all__ = ["DivergedError", "Progress", "StopFlag", "Trainer", "graceful_interrupts"]


@dataclass
class Progress:
    """Where a run is; all of it is saved with a checkpoint."""

    epoch: int = 0  # completed passes over the training data
    chunk: int = 0  # next step of the current pass
    step: int = 0  # optimiser steps taken
    elapsed: float = 0.0  # seconds of training so far (across resumes)
    chars_seen: int = 0
    best_score: float = -math.inf  # best validation score (higher is better)
    evals_without_improvement: int = 0
    best_train_loss: float = math.inf  # for stopping on a stalled training loss
    passes_without_improvement: int = 0
    epoch_loss_sum: float = 0.0  # running sums of the current pass
    epoch_weight: float = 0.0
    history: list = field(default_factory=list)
    stop_reason: str = ""


class StopFlag:
    """Set by a signal handler; checked by the loop between steps."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""


@contextmanager
def graceful_interrupts(flag: StopFlag):
    """Turn the first SIGINT/SIGTERM into a stop request; a second SIGINT interrupts at once.

    Only installs handlers in the main thread (signal handlers cannot be set elsewhere, e.g.
    inside joblib workers' threads); elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.requested = True
        flag.signal_name = signal.Signals(signum).name

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in old:
            signal.signal(s, handler)
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class DivergedError(RuntimeError):
    """Raised inside the loop when the loss or the gradient stops being finite."""


class Trainer:
    """Runs passes of optimiser steps over a training task.

    Parameters
    ----------
    params : dict of str to ndarray
        Updated in place.
    task : TrainingTask
        Batches, loss and gradients, validation score (:mod:`charrnn.engine.tasks`).
    optimizer : Optimizer
        Built on ``params`` (:func:`charrnn.engine.optim.make_optimizer`).
    learning_rate : float
        Peak learning rate; the schedule scales it.
    clip_norm : float or None
    schedule : LRSchedule
    rng : numpy.random.Generator
        Dropout masks and the task's batch order.
    average : WeightAverage or None
        An exponential moving average of the weights, updated after every step; when given,
        validation scores, and so early stopping and keep-best, use the average.

    Attributes
    ----------
    progress : Progress
    best_params : dict or None
        With early stopping, the weights of the best validation score so far.
    """

    def __init__(
        self,
        params: dict,
        task: TrainingTask,
        *,
        optimizer: Optimizer,
        learning_rate: float,
        clip_norm: float | None = 5.0,
        schedule: LRSchedule | None = None,
        rng: np.random.Generator,
        average: WeightAverage | None = None,
    ):
        self.params = params
        self.task = task
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm
        self.schedule = schedule or LRSchedule("constant")
        self.rng = rng
        self.average = average
        self.progress = Progress()
        self.best_params: dict | None = None
        self.best_average: dict | None = None
        # the step budget of the current run() (None: passes and time only)
        self.max_steps: int | None = None
        # time 1 BLAS thread, the full pool and parallel groups now and then (charrnn.parallel)
        self.tune_blas = True
        # how each step uses the cores, open while run() runs (charrnn.parallel)
        self.steps: ParallelSteps | None = None
        # the weights of the last step whose loss and gradient were finite (divergence undo)
        self._last_good = {k: np.empty_like(v) for k, v in params.items()}
        self._have_last_good = False

    @property
    def steps_per_pass(self) -> int:
        """Optimiser steps in one full pass over the training data."""
        return self.task.steps_per_pass

    @property
    def chars_per_step(self) -> float:
        """Training characters read per optimiser step (the mean so far for uneven batches)."""
        p = self.progress
        return p.chars_seen / p.step if p.step else 0.0

    # -- checkpoint support -------------------------------------------------------------------
    def state_header(self) -> dict:
        """JSON-able part of the training state."""
        p = self.progress
        return {
            "epoch": p.epoch,
            "chunk": p.chunk,
            "step": p.step,
            "elapsed": p.elapsed,
            "chars_seen": p.chars_seen,
            "best_score": None if math.isinf(p.best_score) else p.best_score,
            "evals_without_improvement": p.evals_without_improvement,
            "best_train_loss": None if math.isinf(p.best_train_loss) else p.best_train_loss,
            "passes_without_improvement": p.passes_without_improvement,
            "epoch_loss_sum": p.epoch_loss_sum,
            "epoch_weight": p.epoch_weight,
            "rng": self.rng.bit_generator.state,
            "schedule": self.schedule.to_dict(),
        }

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Arrays of the training state: optimiser buffers, the task's state, best weights."""
        arrays = {f"optim/{k}": v for k, v in self.optimizer.state_dict().items()}
        arrays.update(self.task.state_arrays())
        if self.best_params is not None:
            arrays.update({f"best/{k}": v for k, v in self.best_params.items()})
        return arrays

    @staticmethod
    def state_header_problems(header) -> list[str]:
        """What is wrong with ``header`` as :meth:`state_header` output (empty when nothing is).

        A model file's training state is checked with this when it is read, so that a
        corrupt one is refused then rather than when a resume starts. Headers of charrnn 0.1.0
        (``best_val_loss``, ``epoch_chunks``) pass.
        """
        if not isinstance(header, dict):
            return [f"training state is not a dict ({type(header).__name__})"]

        def count(v):
            return isinstance(v, int) and not isinstance(v, bool) and v >= 0

        def real(v):
            return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

        rules = {
            "epoch": count,
            "chunk": count,
            "step": count,
            "chars_seen": count,
            "evals_without_improvement": count,
            "elapsed": lambda v: real(v) and v >= 0,
            "epoch_loss_sum": real,
            "rng": lambda v: isinstance(v, dict),
            "schedule": lambda v: isinstance(v, dict),
        }
        optional = {
            "best_score": lambda v: v is None or real(v),
            "best_val_loss": lambda v: v is None or real(v),
            "best_train_loss": lambda v: v is None or real(v),
            "passes_without_improvement": count,
            "epoch_weight": lambda v: real(v) and v >= 0,
            "epoch_chunks": count,
        }
        problems = [f"training state lacks {k!r}" for k in rules if k not in header]
        if "epoch_weight" not in header and "epoch_chunks" not in header:
            problems.append("training state lacks 'epoch_weight'")
        for key, ok in (rules | optional).items():
            if key in header and not ok(header[key]):
                problems.append(f"training state has {key}={header[key]!r:.60}")
        return problems

    def load_state(self, header: dict, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_header` and :meth:`state_arrays` exported.

        Headers written before the shared loop (charrnn 0.1.0) named the best score
        ``best_val_loss`` (a loss, lower is better) and counted the pass's chunks instead of
        its weight; both are read.
        """
        p = self.progress
        p.epoch, p.chunk, p.step = header["epoch"], header["chunk"], header["step"]
        p.elapsed, p.chars_seen = header["elapsed"], header["chars_seen"]
        if "best_score" in header:
            best = header["best_score"]
        else:
            best = None if header.get("best_val_loss") is None else -header["best_val_loss"]
        p.best_score = -math.inf if best is None else best
        p.evals_without_improvement = header["evals_without_improvement"]
        bl = header.get("best_train_loss")
        p.best_train_loss = math.inf if bl is None else bl
        p.passes_without_improvement = header.get("passes_without_improvement", 0)
        p.epoch_loss_sum = header["epoch_loss_sum"]
        if "epoch_weight" in header:
            p.epoch_weight = header["epoch_weight"]
        else:  # 0.1.0 summed one loss per chunk
            p.epoch_weight = header["epoch_chunks"]
        self.rng.bit_generator.state = header["rng"]
        self.optimizer.load_state_dict(
            {k[len("optim/") :]: v for k, v in arrays.items() if k.startswith("optim/")}
        )
        self.task.load_state_arrays(arrays)
        best = {k[len("best/") :]: v for k, v in arrays.items() if k.startswith("best/")}
        self.best_params = best or None

    # -- the loop -----------------------------------------------------------------------------
    def run(
        self,
        *,
        max_epochs: int,
        max_time: float | None = None,
        early_stopping: bool = False,
        n_iter_no_change: int = 3,
        tol: float = 1e-4,
        stop_flag: StopFlag | None = None,
        on_step: Callable | None = None,
        on_epoch: Callable | None = None,
        total_epochs_for_schedule: int | None = None,
        max_steps: int | None = None,
        schedule_span: tuple[float, float] = (0.0, 1.0),
        steps: ParallelSteps | None = None,
    ) -> Progress:
        """Train until ``max_epochs`` passes, ``max_time`` seconds, a stopping rule or a flag.

        The stopping rule: with ``early_stopping`` and validation data, stop after
        ``n_iter_no_change`` passes whose validation score did not beat the best by ``tol``;
        otherwise, after ``n_iter_no_change`` passes whose training loss did not fall below
        the best by ``tol`` (scikit-learn's MLP rule). ``on_step(trainer, loss, grad_norm,
        lr)`` is called after every step and ``on_epoch(trainer, record)`` after every pass;
        either may return True to stop. Raises :class:`DivergedError` (weights put back to
        those of the last step whose loss and gradient were finite) when training diverges.
        Runs overlapping in time share the process's BLAS threads.

        ``max_steps`` ends the run after that many optimiser steps of this run (stop reason
        ``"max_steps"``, the pass cut short recorded as by ``max_time``). ``schedule_span``
        ``(start, end)`` maps this run's progress (the larger of its share of the steps and of
        ``max_time``) onto that stretch of the learning-rate schedule, so that two runs can
        share one schedule (:meth:`RecurrentEstimator._fit`'s final stretch on all the text).
        ``steps``, an open :class:`~charrnn.parallel.ParallelSteps` for the task's streams,
        lets such runs share their worker processes and BLAS timing (which cost seconds to
        start); the caller closes it. By default each run opens and closes its own.
        """
        self.max_steps = max_steps
        own = steps is None
        self.steps = ParallelSteps(self.task.n_streams, tune=self.tune_blas) if own else steps
        with self.steps if own else nullcontext():
            try:
                return self._loop(
                    max_epochs,
                    max_time,
                    early_stopping and self.task.has_validation,
                    n_iter_no_change,
                    tol,
                    stop_flag or StopFlag(),
                    on_step,
                    on_epoch,
                    total_epochs_for_schedule or max_epochs,
                    max_steps,
                    schedule_span,
                )
            finally:
                self.task.close()

    def _loop(
        self,
        max_epochs,
        max_time,
        early,
        n_no_change,
        tol,
        flag,
        on_step,
        on_epoch,
        sched_epochs,
        max_steps,
        span,
    ) -> Progress:
        p = self.progress
        total_steps = max(1, sched_epochs * self.task.steps_per_pass)
        if max_steps is not None:
            total_steps = max(1, min(total_steps, max_steps))
        first_step = p.step
        span_start, span_width = span[0], span[1] - span[0]
        t_start = time.perf_counter() - p.elapsed
        grad_norms: list[float] = []
        while p.epoch < max_epochs:
            for k, batch in self.task.batches(p.chunk, self.rng):
                # The time spent on the steps already taken, not the clock now: a step whose
                # number puts the schedule further along than the time does gets the same
                # learning rate in every run (the first one 0 s, not the few microseconds of
                # start-up a busy machine stretches), so a run whose time budget does not bind
                # repeats exactly and resumes exactly.
                share = (p.step - first_step) / total_steps if max_steps else p.step / total_steps
                if max_time is not None:
                    share = max(share, p.elapsed / max_time)
                if span_width != 1.0 or span_start != 0.0:
                    share = span_start + span_width * min(share, 1.0)
                lr = self.learning_rate * self.schedule.factor(share)
                gnorm, loss = self._step(batch, lr, p)
                p.chunk = k + 1
                p.elapsed = time.perf_counter() - t_start
                grad_norms.append(gnorm)
                stop = on_step is not None and on_step(self, loss, gnorm, lr)
                if flag.requested:
                    p.stop_reason = f"interrupted ({flag.signal_name or 'stop requested'})"
                    return p
                if stop:
                    p.stop_reason = "stopped by callback"
                    return p
                if max_time is not None and p.elapsed >= max_time:
                    p.stop_reason = "max_time"
                    self._close_pass(grad_norms, early, tol, partial=True)
                    return p
                if max_steps is not None and p.step - first_step >= max_steps:
                    p.stop_reason = "max_steps"
                    self._close_pass(grad_norms, early, tol, partial=True)
                    return p
            # a full pass is done
            record = self._close_pass(grad_norms, early, tol, partial=False)
            grad_norms = []
            p.elapsed = time.perf_counter() - t_start
            if on_epoch is not None and on_epoch(self, record):
                p.stop_reason = "stopped by callback"
                return p
            stalled = p.evals_without_improvement if early else p.passes_without_improvement
            if stalled >= n_no_change:
                p.stop_reason = "early_stopping" if early else "training_loss_stalled"
                return p
            if flag.requested:
                p.stop_reason = f"interrupted ({flag.signal_name or 'stop requested'})"
                return p
        p.stop_reason = p.stop_reason or "max_iter"
        return p

    def _step(self, batch, lr: float, p: Progress) -> tuple[float, float]:
        """One optimiser step on ``batch``; returns (gradient norm before clipping, loss)."""
        loss, grads, weight, chars = self.task.loss_and_grads(
            self.params, batch, self.rng, self.steps
        )
        gnorm = clip_grad_norm(grads, self.clip_norm)
        if not (math.isfinite(loss) and math.isfinite(gnorm)):
            # the last update may already have made the weights inf or useless
            if self._have_last_good:
                for name, good in self._last_good.items():
                    np.copyto(self.params[name], good)
            raise DivergedError(
                f"training diverged at step {p.step} (loss {loss}, gradient norm {gnorm}); "
                "the weights are those of the last finite step. Try a smaller learning_rate "
                f"(e.g. {self.learning_rate / 3:.2g}) or clip_norm."
            )
        for name, value in self.params.items():
            np.copyto(self._last_good[name], value)
        self._have_last_good = True
        self.optimizer.step(grads, lr)
        if self.average is not None:
            self.average.update(self.params)
        self.steps.step_done()
        self.task.commit_step()
        p.step += 1
        p.chars_seen += chars
        p.epoch_loss_sum += loss * weight
        p.epoch_weight += weight
        return gnorm, loss

    def eval_params(self) -> dict:
        """The weights that are scored: the average when there is one."""
        if self.average is None or self.average.steps == 0:
            return self.params
        return self.average.averaged()

    def _close_pass(self, grad_norms, early: bool, tol: float, partial: bool) -> dict:
        """Score the pass, update the stopping counters and keep-best, record it."""
        p = self.progress
        train_loss = p.epoch_loss_sum / p.epoch_weight if p.epoch_weight else math.nan
        score = self.task.validation_score(self.eval_params(), self.steps)
        score = None if math.isnan(score) else score
        if score is not None:
            if score > p.best_score + tol:
                p.evals_without_improvement = 0
            else:
                p.evals_without_improvement += 1
            if score > p.best_score:
                p.best_score = score
                if early:
                    self.best_params = {k: v.copy() for k, v in self.params.items()}
                    if self.average is not None:
                        self.best_average = self.average.state_dict()
        if not partial:
            # a pass cut short is not compared: its loss covers part of the data
            if train_loss > p.best_train_loss - tol:
                p.passes_without_improvement += 1
            else:
                p.passes_without_improvement = 0
            p.best_train_loss = min(p.best_train_loss, train_loss)
        record = {
            "epoch": p.epoch + (0 if partial else 1),  # passes completed
            # the pass this record is about (1-based): a pass cut short by max_time and
            # completed after a resume gives two records with the same number
            "pass": p.epoch + 1,
            "partial": partial,
            "train_loss": train_loss,
            "val_score": score,
            **self.task.record_fields(score),
            "chars_seen": p.chars_seen,
            "elapsed": p.elapsed,
            "step": p.step,
            "grad_norm_mean": float(np.mean(grad_norms)) if grad_norms else None,
            "grad_norm_max": float(np.max(grad_norms)) if grad_norms else None,
        }
        p.history.append(record)
        if not partial:
            p.epoch += 1
            p.chunk = 0
            p.epoch_loss_sum = 0.0
            p.epoch_weight = 0.0
        return record

    def restore_best(self) -> bool:
        """Copy the best-validation weights (if any) back into ``params`` in place.

        Returns True when there were best weights to restore.
        """
        if self.best_params is None:
            return False
        for k, v in self.best_params.items():
            self.params[k][...] = v
        if self.average is not None and self.best_average is not None:
            self.average.load_state_dict(self.best_average)
        return True
