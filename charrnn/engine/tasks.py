"""Training tasks: what one optimiser step computes, for each kind of model.

The one training loop (:class:`charrnn.engine.training.Trainer`) knows nothing of text,
labels or hidden state; it asks a task for the batches of a pass, the loss and gradients of a
batch, and a validation score. A task is any object with the attributes and methods of
:class:`TrainingTask`; this module holds the two the estimators use:

:class:`LanguageModelTask`
    Truncated BPTT over one long text cut into parallel streams (char-rnn's scheme), the
    hidden state carried from one chunk to the next, the streams split into groups that run
    on all cores (:mod:`charrnn.parallel`). Validation: mean log-likelihood per character.
:class:`ClassificationTask`
    Texts of any lengths in length-bucketed, right-padded batches, reshuffled every pass.
    Validation: accuracy.
:class:`RegressionTask`
    Float sequences of one length with real-valued targets, in batches reshuffled every pass.
    Validation: the coefficient of determination R².

Every score is "higher is better", so early stopping reads them all the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Protocol

import numpy as np

from charrnn.data import textbatch
from charrnn.data.batches import BPTTBatches, ScoringWindows, document_resets, scoring_windows
from charrnn.engine import network, seqclf
from charrnn.parallel import ParallelSteps, group_slices, scoring_threads

__all__ = [
    "ClassificationTask",
    "HeldOutScore",
    "LanguageModelTask",
    "RegressionTask",
    "SequenceTask",
    "TrainingTask",
    "held_out_score",
    "stream_loss",
    "stream_loss_on_all_cores",
    "window_nll",
]


class TrainingTask(Protocol):
    """What :class:`~charrnn.engine.training.Trainer` needs from a model and its data."""

    #: optimiser steps in one full pass over the training data
    steps_per_pass: int
    #: independent streams in a batch that a step may split over cores (1: never split)
    n_streams: int
    #: True when there is validation data (:meth:`validation_score` returns a number)
    has_validation: bool

    def batches(self, start: int, rng: np.random.Generator) -> Iterator[tuple[int, object]]:
        """Yield ``(k, batch)`` for steps ``k = start ..`` of the current pass."""

    def loss_and_grads(self, params, batch, rng, parallel: bool) -> tuple[float, dict, int, int]:
        """``(mean loss, gradients, weight, characters read)`` of one batch; ``weight`` is the
        batch's share in the mean training loss of a pass (its number of items)."""

    def commit_step(self) -> None:
        """The step was applied: keep what it carries over (e.g. the hidden state)."""

    def validation_score(self, params, steps: ParallelSteps) -> float:
        """The validation score of ``params`` (higher is better); nan without validation."""

    def record_fields(self, score: float | None) -> dict:
        """Extra fields for a history record (e.g. the score as a loss)."""

    def state_arrays(self) -> dict[str, np.ndarray]:
        """What an exact resume needs beyond the weights and the loop's counters."""

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_arrays`."""

    def close(self) -> None:
        """Release worker processes or other resources."""


# -- language model ---------------------------------------------------------------------------
class HeldOutScore(NamedTuple):
    """A language model's loss on held-out text, from :func:`held_out_score`.

    Attributes
    ----------
    loss : float
        Mean negative log-likelihood per scored symbol (nats); nan when nothing was scored.
    stderr : float
        Standard error of ``loss``: the standard deviation of the windows' mean losses
        (``ddof=1``) over the square root of their number, the windows being equally long;
        nan for fewer than two windows. For a sample it treats the evenly spread windows as
        a simple random sample of the text's windows (no finite-population correction).
    n_chars : int
        Symbols scored.
    n_windows : int
    whole : bool
        Whether every symbol of the text was scored (else a sample of windows was).
    """

    loss: float
    stderr: float
    n_chars: int
    n_windows: int
    whole: bool


def window_nll(
    params: dict,
    config: network.NetworkConfig,
    windows: ScoringWindows,
    n_threads: int = 1,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Summed negative log-likelihood of each window, read side by side from a zero state.

    A window that crosses an end-of-document symbol restarts from the zero state there, as
    training does (:func:`charrnn.data.batches.document_resets`).

    Parameters
    ----------
    windows : ScoringWindows
        ``inputs`` and ``targets`` of shape (B, L); the first ``context`` positions of each
        row are read but not scored.
    n_threads : int
        Score groups of windows in this many threads (they are independent, so the groups
        never wait for each other). The caller limits BLAS to one thread per call first; the
        result agrees with ``n_threads=1`` up to floating-point rounding.
    progress : callable(int) or None
        Called with the number of symbols just scored, after every 256 steps of a group (from
        the group's thread).

    Returns
    -------
    ndarray of float64, shape (B,)
        nats, summed over each window's scored positions.
    """
    B, L = windows.inputs.shape
    sums = np.zeros(B, dtype=np.float64)
    if B == 0:
        return sums
    groups = group_slices(B, max(1, min(int(n_threads), B)))

    def score(lo: int, hi: int) -> None:
        state = network.init_state(config, hi - lo)
        T = 256
        for start in range(0, L, T):
            stop = min(L, start + T)
            inp = np.ascontiguousarray(windows.inputs[lo:hi, start:stop].T)  # (t, b)
            tgt = np.ascontiguousarray(windows.targets[lo:hi, start:stop].T)  # (t, b)
            logits, state, _ = network.forward_logits(
                params, config, inp, state, document_resets(inp)
            )
            skip = max(0, windows.context - start)  # context positions of this chunk
            if skip >= stop - start:
                continue
            logp = network.log_softmax(logits[skip:])  # (t', b, V)
            picked = np.take_along_axis(logp, tgt[skip:, :, None], axis=-1)[..., 0]  # (t', b)
            sums[lo:hi] -= picked.sum(axis=0, dtype=np.float64)
            if progress is not None:
                progress(picked.size)

    if len(groups) == 1:
        score(0, B)
    else:
        with ThreadPoolExecutor(len(groups) - 1) as pool:
            futures = [pool.submit(score, g.start, g.stop) for g in groups[1:]]
            score(groups[0].start, groups[0].stop)
            for f in futures:
                f.result()
    return sums


def held_out_score(
    params: dict,
    config: network.NetworkConfig,
    ids: np.ndarray,
    max_chars: int | None = None,
    n_threads: int = 1,
    progress: Callable[[int], None] | None = None,
) -> HeldOutScore:
    """The loss of ``ids`` and its standard error, over all of it or a bounded sample.

    The windows are :func:`charrnn.data.batches.scoring_windows`: the whole text as parallel
    streams with carried state when it has at most ``max_chars`` predictions, else evenly
    spread windows of 512 scored symbols (after 64 of context) that add up to ``max_chars``.
    The cost of one evaluation is so bounded by ``max_chars``, whatever the text's length.

    Parameters
    ----------
    ids : ndarray of int, shape (N,)
    max_chars : int or None
        None scores every symbol.
    n_threads, progress
        As :func:`window_nll`.
    """
    windows = scoring_windows(ids, max_chars)
    B = windows.inputs.shape[0]
    if B == 0:
        return HeldOutScore(math.nan, math.nan, 0, 0, True)
    sums = window_nll(params, config, windows, n_threads, progress)
    per_window = windows.n_scored // B
    means = sums / per_window  # (B,)
    stderr = float(np.std(means, ddof=1) / math.sqrt(B)) if B > 1 else math.nan
    loss = float(sums.sum() / windows.n_scored)
    return HeldOutScore(loss, stderr, windows.n_scored, B, windows.whole)


def stream_loss(
    params: dict,
    config: network.NetworkConfig,
    ids: np.ndarray,
    n_streams: int = 128,
    n_threads: int = 1,
) -> float:
    """Mean negative log-likelihood per character of ``ids`` read as parallel streams.

    The validation measure of char-rnn: the text is cut into ``n_streams`` contiguous streams
    read side by side with carried state, so a long text is scored with batched GEMMs
    (:func:`window_nll` over the streams).

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
    inputs = np.asarray(ids[: B * L], dtype=np.intp).reshape(B, L)
    targets = np.asarray(ids[1 : B * L + 1], dtype=np.intp).reshape(B, L)
    sums = window_nll(params, config, ScoringWindows(inputs, targets, 0, True), n_threads)
    return float(sums.sum() / (B * L))


def stream_loss_on_all_cores(
    params: dict, config: network.NetworkConfig, ids: np.ndarray, n_streams: int = 128
) -> float:
    """:func:`stream_loss` with one group of streams per thread of the BLAS pool, BLAS limited
    to one thread meanwhile (:func:`charrnn.parallel.scoring_threads`, which honours the off
    switch; on two idle cores
    this halved the time of a validation pass)."""
    with scoring_threads() as threads:
        return stream_loss(params, config, ids, n_streams, n_threads=threads)


class LanguageModelTask:
    """Next-character prediction by truncated BPTT over one integer text.

    The hidden state is carried from one chunk to the next and restarts from zero at every
    document start (:func:`charrnn.data.batches.document_resets`), in the forward and the
    backward pass, so that training sees every document from the state ``predict``, ``score``
    and ``sample`` start it from. A text of one document trains exactly as with no resets.

    Parameters
    ----------
    config : NetworkConfig
    train_ids, val_ids : ndarray of int, shape (N,) and (M,)
        ``val_ids`` may be empty (no validation). Either may be an ``np.memmap``.
    batch_size, seq_length : int
        Parallel streams and steps per truncated-BPTT chunk.
    max_validation_chars : int or None
        Validation scores at most this many symbols of ``val_ids`` (:func:`held_out_score`:
        evenly spread windows, the same ones every time); None scores all of them.

    Attributes
    ----------
    validation_progress : callable(total) -> callable(int), or None
        When set, every validation calls it with the number of symbols it will score and
        reports each scored piece to what it returns (how an estimator shows a progress bar;
        the returned object may have a ``close`` method, called at the end).
    last_validation : HeldOutScore or None
        The last validation's details (standard error, symbols scored).
    """

    def __init__(
        self,
        config,
        train_ids,
        val_ids,
        *,
        batch_size: int,
        seq_length: int,
        max_validation_chars: int | None = None,
    ):
        self.config = config
        self.batches_ = BPTTBatches(train_ids, batch_size, seq_length)
        self.val_ids = val_ids
        self.max_validation_chars = max_validation_chars
        self.steps_per_pass = self.batches_.n_chunks
        # the streams of a batch are independent: ParallelSteps splits them into one group
        # per core, fixed for the whole run (see charrnn.parallel)
        self.n_streams = batch_size
        self.has_validation = len(val_ids) >= 2
        self.state = network.init_state(config, batch_size)
        self._next_state = self.state
        self.validation_progress = None
        self.last_validation: HeldOutScore | None = None

    def batches(self, start, rng):
        for k, inputs, targets in self.batches_.iter_from(start):
            yield k, (inputs, targets)

    def loss_and_grads(self, params, batch, rng, steps):
        inputs, targets = batch
        loss, grads, self._next_state = steps.loss_and_grads(
            params,
            self.config,
            inputs,
            targets,
            self.state,
            rng,
            train=True,
            resets=document_resets(inputs),
        )
        chars = self.batches_.chars_per_chunk
        return loss, grads, chars, chars

    def commit_step(self):
        self.state = self._next_state

    def validation_score(self, params, steps):
        if not self.has_validation:
            return math.nan
        # groups of streams in parallel when the steps run that way (BLAS is on one thread then)
        threads = steps.validation_threads
        bar = None
        if self.validation_progress is not None:
            total = min(len(self.val_ids) - 1, self.max_validation_chars or len(self.val_ids))
            bar = self.validation_progress(total)
        try:
            result = held_out_score(
                params, self.config, self.val_ids, self.max_validation_chars, threads, bar
            )
        finally:
            if bar is not None and hasattr(bar, "close"):
                bar.close()
        self.last_validation = result
        return -result.loss

    def record_fields(self, score):
        v = self.last_validation
        if score is None or v is None:
            return {"val_loss": None, "val_stderr": None, "val_chars": None}
        stderr = None if math.isnan(v.stderr) else v.stderr
        return {"val_loss": -score, "val_stderr": stderr, "val_chars": v.n_chars}

    def state_arrays(self):
        return {
            f"hidden/{k}.{j}": a for k, layer in enumerate(self.state) for j, a in enumerate(layer)
        }

    def load_state_arrays(self, arrays):
        hidden = [
            tuple(arrays.get(f"hidden/{k}.{j}") for j in range(len(layer)))
            for k, layer in enumerate(self.state)
        ]
        shape = self.state[0][0].shape
        # a checkpoint written with another batch size starts from a zero state
        if all(a is not None and a.shape == shape for lay in hidden for a in lay):
            self.state = [tuple(a.astype(self.config.dtype) for a in lay) for lay in hidden]

    def close(self):
        pass


# -- whole sequences with one target each ----------------------------------------------------
class SequenceTask:
    """What the classification and the regression task share: samples split by index into
    training and validation, a new batch order every pass, no state carried between steps.

    Subclasses set ``steps_per_pass`` and implement :meth:`pass_order` (the batches of a new
    pass), :meth:`loss_and_grads`, :meth:`validation_score` and :meth:`record_fields`.

    Parameters
    ----------
    config : SeqClfConfig
    train, val : ndarray of int
        Sample indices for training and validation (``val`` may be empty).
    batch_size : int
    """

    n_streams = 1  # a batch's samples are one GEMM's rows; the step is never split

    def __init__(self, config, train, val, batch_size: int):
        self.config = config
        self.train = np.asarray(train, dtype=np.intp)
        self.val = np.asarray(val, dtype=np.intp)
        self.batch_size = int(batch_size)
        self.steps_per_pass = math.ceil(len(self.train) / self.batch_size)
        self.has_validation = len(self.val) > 0
        self._order: list | None = None

    def pass_order(self, rng: np.random.Generator) -> list:
        """The batches (arrays of sample indices) of a new pass, drawn from ``rng``."""
        raise NotImplementedError

    def batches(self, start, rng):
        if start == 0 or self._order is None:
            # a new pass: a new order, drawn from the training generator
            self._order = self.pass_order(rng)
        for k in range(start, len(self._order)):
            yield k, self._order[k]

    def commit_step(self):
        pass

    def state_arrays(self):
        return {}

    def load_state_arrays(self, arrays):
        pass

    def close(self):
        pass


class ClassificationTask(SequenceTask):
    """Texts with class labels in length-bucketed batches, reshuffled every pass.

    Parameters
    ----------
    config : SeqClfConfig
    seqs : list of ndarray of int
        Every text's ids, the training and the validation texts together.
    targets : ndarray of int, shape (n_texts,)
        Class index of each text.
    train, val : ndarray of int
        Indices into ``seqs`` for training and validation (``val`` may be empty).
    batch_size : int
    predict_logits : callable(params, seqs) -> ndarray (n, n_classes)
        How the estimator computes logits (for the validation accuracy).
    """

    def __init__(self, config, seqs, targets, train, val, *, batch_size, predict_logits):
        super().__init__(config, train, val, batch_size)
        self.seqs = seqs
        self.targets = targets
        self.predict_logits = predict_logits
        self.lengths = np.fromiter((len(s) for s in seqs), dtype=np.intp, count=len(seqs))

    def pass_order(self, rng):
        buckets = textbatch.bucket_batches(self.lengths[self.train], self.batch_size, rng)
        return [self.train[b] for b in buckets]

    def loss_and_grads(self, params, batch, rng, steps):
        steps.begin_step()
        ids, lens = seqclf.pad_batch([self.seqs[i] for i in batch])
        loss, grads = seqclf.loss_and_grads(
            params, self.config, ids, lens, self.targets[batch], rng
        )
        return loss, grads, len(batch), int(lens.sum())

    def validation_score(self, params, steps):
        if not self.has_validation:
            return math.nan
        logits = self.predict_logits(params, [self.seqs[i] for i in self.val])
        return float(np.mean(logits.argmax(axis=1) == self.targets[self.val]))

    def record_fields(self, score):
        return {"val_accuracy": score}


class RegressionTask(SequenceTask):
    """Float sequences with real-valued targets, in random batches reshuffled every pass.

    The sequences all have ``T`` steps, so a batch is a plain slice: no padding, no buckets.

    Parameters
    ----------
    config : SeqClfConfig
        With ``input_size`` set and ``loss="squared_error"``.
    X : ndarray, shape (n, T, F)
        Every sequence, training and validation together, in ``config.dtype``.
    y : ndarray, shape (n, C)
        Targets, in ``config.dtype``.
    train, val : ndarray of int
        Indices into ``X`` for training and validation (``val`` may be empty).
    batch_size : int
    predict : callable(params, X) -> ndarray (n, C)
        How the estimator computes outputs (for the validation score).
    """

    def __init__(self, config, X, y, train, val, *, batch_size, predict):
        super().__init__(config, train, val, batch_size)
        self.X = X
        self.y = y
        self.predict = predict

    def pass_order(self, rng):
        order = self.train[rng.permutation(len(self.train))]
        return [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]

    def loss_and_grads(self, params, batch, rng, steps):
        steps.begin_step()
        x = np.ascontiguousarray(self.X[batch].transpose(1, 0, 2))  # (T, B, F)
        lengths = np.full(len(batch), x.shape[0], dtype=np.intp)
        loss, grads = seqclf.loss_and_grads(params, self.config, x, lengths, self.y[batch], rng)
        return loss, grads, len(batch), x.shape[0] * len(batch)

    def validation_score(self, params, steps):
        if not self.has_validation:
            return math.nan
        return r2_score(self.y[self.val], self.predict(params, self.X[self.val]))

    def record_fields(self, score):
        return {"val_r2": score}


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The coefficient of determination, averaged uniformly over the outputs.

    As ``sklearn.metrics.r2_score`` (the engine does not import scikit-learn): an output
    whose true values are constant scores 1 when predicted exactly, else 0.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n, C)
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    residual = np.square(y_true - y_pred).sum(axis=0)
    total = np.square(y_true - y_true.mean(axis=0)).sum(axis=0)
    exact = residual == 0
    scores = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), 0.0)
    scores[exact] = 1.0
    return float(scores.mean())
