"""The truncated-BPTT training loop, free of scikit-learn and of files.

:class:`Trainer` owns everything a run needs to continue exactly where it stopped -- weights,
optimiser state, learning-rate schedule position, epoch and chunk, the carried hidden state and
the dropout generator -- and can export all of it as plain arrays plus a JSON-able dict
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from charrnn.data.batches import BPTTBatches
from charrnn.engine import network
from charrnn.engine.optim import LRSchedule, clip_grad_norm, make_optimizer
from charrnn.parallel.blas import BlasTuner, blas_pool_size, scoring_threads, shared_blas_threads
from charrnn.parallel.groups import StreamGroups, group_slices, plan_groups


@dataclass
class Progress:
    """Where a run is; all of it is saved with a checkpoint."""

    epoch: int = 0  # completed passes over the training text
    chunk: int = 0  # next chunk of the current pass
    step: int = 0  # optimiser steps taken
    elapsed: float = 0.0  # seconds of training so far (across resumes)
    chars_seen: int = 0
    best_val_loss: float = math.inf
    evals_without_improvement: int = 0
    epoch_loss_sum: float = 0.0  # running sums of the current pass
    epoch_chunks: int = 0
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


def stream_loss(
    params: dict,
    config: network.NetworkConfig,
    ids: np.ndarray,
    n_streams: int = 128,
    n_threads: int = 1,
) -> float:
    """Mean negative log-likelihood per character of ``ids`` read as parallel streams.

    The validation measure of char-rnn: the text is cut into ``n_streams`` contiguous streams
    read side by side with carried state, so a long text is scored with batched GEMMs.

    Parameters
    ----------
    ids : ndarray of int, shape (N,)
    n_streams : int
        Streams (fewer for short texts: at least 256 characters each).
    n_threads : int
        Score groups of streams in this many threads (the streams are independent, so the
        groups never wait for each other). The caller limits BLAS to one thread per call
        first; the result agrees with ``n_threads=1`` up to floating-point rounding.

    Returns
    -------
    float
        nats per character, or nan when ``ids`` has fewer than 2 symbols.
    """
    n = len(ids) - 1
    if n < 1:
        return math.nan
    B = max(1, min(n_streams, n // 256))
    L = n // B
    streams = np.asarray(ids[: B * L + 1])
    inputs_all = streams[:-1].reshape(B, L)
    targets_all = np.asarray(ids[1 : B * L + 1]).reshape(B, L)
    groups = group_slices(B, max(1, min(int(n_threads), B)))

    def nll_sum(lo: int, hi: int) -> float:
        state = network.init_state(config, hi - lo)
        total, T = 0.0, 256
        for start in range(0, L, T):
            inp = np.ascontiguousarray(inputs_all[lo:hi, start : start + T].T, dtype=np.intp)
            tgt = np.ascontiguousarray(targets_all[lo:hi, start : start + T].T, dtype=np.intp)
            logits, state, _ = network.forward_logits(params, config, inp, state)
            logp = network.log_softmax(logits)
            picked = np.take_along_axis(logp, tgt[..., None], axis=-1)
            total -= float(picked.sum(dtype=np.float64))
        return total

    if len(groups) == 1:
        total = nll_sum(0, B)
    else:
        with ThreadPoolExecutor(len(groups) - 1) as pool:
            futures = [pool.submit(nll_sum, g.start, g.stop) for g in groups[1:]]
            total = nll_sum(groups[0].start, groups[0].stop) + sum(f.result() for f in futures)
    return total / (B * L)


def stream_loss_on_all_cores(
    params: dict, config: network.NetworkConfig, ids: np.ndarray, n_streams: int = 128
) -> float:
    """:func:`stream_loss` with one group of streams per thread of the BLAS pool, BLAS limited
    to one thread meanwhile (:func:`charrnn.parallel.blas.scoring_threads`; on two idle cores this
    halved the time of a validation pass)."""
    with scoring_threads() as threads:
        return stream_loss(params, config, ids, n_streams, n_threads=threads)


class Trainer:
    """Runs truncated BPTT over one integer text.

    Parameters
    ----------
    params : dict of str to ndarray
        Updated in place.
    config : NetworkConfig
    train_ids, val_ids : ndarray of int, shape (N,) and (M,)
        ``val_ids`` may be empty (no validation).
    batch_size, seq_length : int
    optimizer : str
        A name of :data:`charrnn.engine.optim.OPTIMIZERS`.
    learning_rate : float
    weight_decay : float or None
        None keeps the optimiser's own default (0; 0.01 for ``"adamw"``).
    clip_norm : float or None
    schedule : LRSchedule
    rng : numpy.random.Generator
        Dropout masks.
    """

    def __init__(
        self,
        params,
        config,
        train_ids,
        val_ids,
        *,
        batch_size,
        seq_length,
        optimizer="adam",
        learning_rate=2e-3,
        weight_decay=None,
        clip_norm=5.0,
        schedule=None,
        rng,
    ):
        self.params = params
        self.config = config
        self.batches = BPTTBatches(train_ids, batch_size, seq_length)
        self.val_ids = val_ids
        decay = {} if weight_decay is None else {"weight_decay": weight_decay}
        self.optimizer = make_optimizer(optimizer, params, learning_rate, **decay)
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm
        self.schedule = schedule or LRSchedule("constant")
        self.rng = rng
        self.state = network.init_state(config, batch_size)
        self.progress = Progress()
        # the batch's streams split into one group per core, fixed for the whole run so that
        # results do not depend on how the groups were run (see charrnn.parallel.groups)
        self.groups = StreamGroups(batch_size, plan_groups(batch_size, blas_pool_size()))
        self.best_params: dict | None = None
        # time 1 BLAS thread, the full pool and parallel groups now and then (charrnn.parallel.blas)
        self.tune_blas = True
        self.blas: BlasTuner | None = None
        # the weights of the last step whose loss and gradient were finite (divergence undo)
        self._last_good = {k: np.empty_like(v) for k, v in params.items()}
        self._have_last_good = False

    @property
    def steps_per_pass(self) -> int:
        """Optimiser steps in one full pass over the training data."""
        return self.batches.n_chunks

    @property
    def chars_per_step(self) -> int:
        """Training characters (targets) consumed by one optimiser step."""
        return self.batches.chars_per_chunk

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
            "best_val_loss": None if math.isinf(p.best_val_loss) else p.best_val_loss,
            "evals_without_improvement": p.evals_without_improvement,
            "epoch_loss_sum": p.epoch_loss_sum,
            "epoch_chunks": p.epoch_chunks,
            "rng": self.rng.bit_generator.state,
            "schedule": self.schedule.to_dict(),
        }

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Arrays of the training state: optimiser buffers, carried hidden state, best weights."""
        arrays = {f"optim/{k}": v for k, v in self.optimizer.state_dict().items()}
        for k, layer in enumerate(self.state):
            for j, a in enumerate(layer):
                arrays[f"hidden/{k}.{j}"] = a
        if self.best_params is not None:
            arrays.update({f"best/{k}": v for k, v in self.best_params.items()})
        return arrays

    def load_state(self, header: dict, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_header` and :meth:`state_arrays` exported."""
        p = self.progress
        p.epoch, p.chunk, p.step = header["epoch"], header["chunk"], header["step"]
        p.elapsed, p.chars_seen = header["elapsed"], header["chars_seen"]
        bv = header.get("best_val_loss")
        p.best_val_loss = math.inf if bv is None else bv
        p.evals_without_improvement = header["evals_without_improvement"]
        p.epoch_loss_sum = header["epoch_loss_sum"]
        p.epoch_chunks = header["epoch_chunks"]
        self.rng.bit_generator.state = header["rng"]
        self.optimizer.load_state_dict(
            {k[len("optim/") :]: v for k, v in arrays.items() if k.startswith("optim/")}
        )
        hidden = [
            tuple(arrays.get(f"hidden/{k}.{j}") for j in range(len(layer)))
            for k, layer in enumerate(self.state)
        ]
        shape = self.state[0][0].shape
        if all(a is not None and a.shape == shape for lay in hidden for a in lay):
            self.state = [tuple(a.astype(self.config.dtype) for a in lay) for lay in hidden]
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
    ) -> Progress:
        """Train until ``max_epochs`` passes, ``max_time`` seconds, early stopping or a stop flag.

        ``on_step(trainer, loss, grad_norm, lr)`` is called after every step and
        ``on_epoch(trainer, record)`` after every pass; either may return True to stop. Raises
        :class:`DivergedError` (weights put back to those of the last step whose loss and
        gradient were finite) when training diverges. Runs overlapping in time share the
        process's BLAS threads (:func:`shared_blas_threads`).
        """
        with shared_blas_threads():
            self.blas = BlasTuner(parallel=self.groups.n_groups > 1) if self.tune_blas else None
            try:
                return self._loop(
                    max_epochs,
                    max_time,
                    early_stopping,
                    n_iter_no_change,
                    tol,
                    stop_flag,
                    on_step,
                    on_epoch,
                    total_epochs_for_schedule,
                )
            finally:
                if self.blas is not None:
                    self.blas.restore()
                self.groups.close()

    def _loop(
        self,
        max_epochs,
        max_time,
        early_stopping,
        n_iter_no_change,
        tol,
        stop_flag,
        on_step,
        on_epoch,
        total_epochs_for_schedule,
    ) -> Progress:
        p = self.progress
        n_chunks = self.batches.n_chunks
        sched_epochs = total_epochs_for_schedule or max_epochs
        total_steps = max(1, sched_epochs * n_chunks)
        flag = stop_flag or StopFlag()
        t_start = time.perf_counter() - p.elapsed
        grad_norms: list[float] = []
        while p.epoch < max_epochs:
            for k, inputs, targets in self.batches.iter_from(p.chunk):
                if max_time is not None:
                    # The time spent on the steps already taken, not the clock now: a step
                    # whose number puts the schedule further along than the time does gets
                    # the same learning rate in every run (the first one 0 s, not the few
                    # microseconds of start-up a busy machine stretches), so a run whose time
                    # budget does not bind repeats exactly and resumes exactly.
                    progress = max(p.step / total_steps, p.elapsed / max_time)
                else:
                    progress = p.step / total_steps
                lr = self.learning_rate * self.schedule.factor(progress)
                if self.blas is not None:
                    self.blas.before_step()
                loss, grads, new_state = self.groups.loss_and_grads(
                    self.params,
                    self.config,
                    inputs,
                    targets,
                    self.state,
                    self.rng,
                    train=True,
                    parallel=self.blas is not None and self.blas.parallel,
                )
                gnorm = clip_grad_norm(grads, self.clip_norm)
                if not (math.isfinite(loss) and math.isfinite(gnorm)):
                    # the last update may already have made the weights inf or useless
                    if self._have_last_good:
                        for name, good in self._last_good.items():
                            np.copyto(self.params[name], good)
                    raise DivergedError(
                        f"training diverged at step {p.step} (loss {loss}, gradient norm "
                        f"{gnorm}); the weights are those of the last finite step. Try a "
                        f"smaller learning_rate (e.g. {self.learning_rate / 3:.2g}) or clip_norm."
                    )
                for name, value in self.params.items():
                    np.copyto(self._last_good[name], value)
                self._have_last_good = True
                self.optimizer.step(grads, lr)
                if self.blas is not None:
                    self.blas.after_step()
                self.state = new_state
                p.step += 1
                p.chunk = k + 1
                p.chars_seen += self.batches.chars_per_chunk
                p.epoch_loss_sum += loss
                p.epoch_chunks += 1
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
                    self._end_of_budget(grad_norms, early_stopping)
                    return p
            # a full pass is done
            record = self._close_epoch(grad_norms, early_stopping, tol)
            grad_norms = []
            p.elapsed = time.perf_counter() - t_start
            if on_epoch is not None and on_epoch(self, record):
                p.stop_reason = "stopped by callback"
                return p
            if early_stopping and p.evals_without_improvement >= n_iter_no_change:
                p.stop_reason = "early_stopping"
                return p
            if flag.requested:
                p.stop_reason = f"interrupted ({flag.signal_name or 'stop requested'})"
                return p
        p.stop_reason = p.stop_reason or "max_iter"
        return p

    def _evaluate(self, early_stopping: bool, tol: float) -> float:
        p = self.progress
        if len(self.val_ids) < 2:
            return math.nan
        # groups of streams in parallel when the step runs that way (BLAS is on one thread then)
        parallel = self.blas is not None and self.blas.parallel
        val = stream_loss(
            self.params,
            self.config,
            self.val_ids,
            n_threads=self.groups.n_groups if parallel else 1,
        )
        if val < p.best_val_loss - tol:
            p.best_val_loss = val
            p.evals_without_improvement = 0
            if early_stopping:
                self.best_params = {k: v.copy() for k, v in self.params.items()}
        else:
            p.evals_without_improvement += 1
            if val < p.best_val_loss:
                p.best_val_loss = val
        return val

    def _record(self, grad_norms, val_loss, partial):
        p = self.progress
        record = {
            "epoch": p.epoch + (0 if partial else 1),
            "partial": partial,
            "train_loss": p.epoch_loss_sum / max(1, p.epoch_chunks),
            "val_loss": None if math.isnan(val_loss) else val_loss,
            "chars_seen": p.chars_seen,
            "elapsed": p.elapsed,
            "step": p.step,
            "grad_norm_mean": float(np.mean(grad_norms)) if grad_norms else None,
            "grad_norm_max": float(np.max(grad_norms)) if grad_norms else None,
        }
        p.history.append(record)
        return record

    def _close_epoch(self, grad_norms, early_stopping, tol):
        val = self._evaluate(early_stopping, tol)
        record = self._record(grad_norms, val, partial=False)
        p = self.progress
        p.epoch += 1
        p.chunk = 0
        p.epoch_loss_sum = 0.0
        p.epoch_chunks = 0
        return record

    def _end_of_budget(self, grad_norms, early_stopping):
        val = self._evaluate(early_stopping, 0.0)
        self._record(grad_norms, val, partial=True)

    def restore_best(self) -> None:
        """Copy the best-validation weights (if any) back into ``params`` in place."""
        if self.best_params is None:
            return
        for k, v in self.best_params.items():
            self.params[k][...] = v
