"""The base every charrnn estimator stands on: shared parameters, their rules, one fit loop.

:class:`RecurrentEstimator` holds what the generator and the classifier (and every later
estimator) share: the table of parameter rules (:data:`SHARED_PARAMETERS`) that ``fit``
checks and ``charrnn train`` builds its options from, and the one ``_fit(incremental=...)``
behind ``fit``, ``partial_fit`` and ``warm_start``: the pass and time budget, validation,
early stopping and keep-best, the divergence guard, Ctrl-C/SIGTERM, the progress bar, and
the fitted attributes that describe a run. It drives :class:`charrnn.engine.training.Trainer`
over a :mod:`training task <charrnn.engine.tasks>` that the subclass makes.

A subclass supplies only what differs (see the abstract methods below): how ``X``/``y``
are checked, how a new model is built from them, which training task they become, and what
``predict``/``score`` mean.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from charrnn.engine.cells import CELLS
from charrnn.engine.memory import MemoryEstimate, estimate_for
from charrnn.engine.network import DTYPES, GATE_INITS, NetworkConfig
from charrnn.engine.optim import OPTIMIZERS, SCHEDULES, LRSchedule, make_optimizer
from charrnn.engine.training import DivergedError, StopFlag, Trainer, graceful_interrupts
from charrnn.estimators.memory import check_training_memory
from charrnn.estimators.params import (
    Boolean,
    Custom,
    Integer,
    Options,
    Param,
    RandomState,
    Real,
    as_generator,
    options,
    validate_params,
)
from charrnn.parallel import ParallelSteps, planned_groups

__all__ = [
    "EVALUATION_BAR_DELAY",
    "SHARED_PARAMETERS",
    "RecurrentEstimator",
    "check_saved_history",
    "evaluation_bar",
]

# An evaluation shows a progress bar once it has lasted this many seconds (shorter ones
# stay silent: a bar that flashes for a second says nothing).
EVALUATION_BAR_DELAY = 2.0


class _EvaluationBar:
    """tqdm counting scored characters; called with each piece's count (from any thread)."""

    def __init__(self, total: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="char",
            unit_scale=True,
            delay=EVALUATION_BAR_DELAY,
            disable=None,
            leave=False,
            dynamic_ncols=True,
        )

    def __call__(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def evaluation_bar(total: int, desc: str = "validation") -> _EvaluationBar:
    """A progress bar for scoring ``total`` characters, shown once it has lasted
    :data:`EVALUATION_BAR_DELAY` seconds (and only on a terminal).

    Returns a callable taking the count of characters just scored, with a ``close`` method:
    what :func:`charrnn.engine.tasks.held_out_score` and ``CharRNNGenerator.fit``'s
    ``evaluation_progress`` take.
    """
    return _EvaluationBar(total, desc)


def _check_verbose(name, value):
    # scikit-learn's estimators take verbose=True as 1
    if isinstance(value, bool | np.bool_):
        return
    Integer(0).check(name, value)


# The parameters every estimator has, with what each accepts. An estimator's own table is
# ``{**SHARED_PARAMETERS, ...}``; its defaults live in its ``__init__`` signature.
SHARED_PARAMETERS: dict[str, Param] = {
    "cell": Param(Options(options(CELLS)), "Recurrent cell."),
    "hidden_size": Param(Integer(1), "Units per recurrent layer."),
    "num_layers": Param(Integer(1), "Stacked recurrent layers."),
    "embedding_dim": Param(
        Integer(1, none_ok=True),
        "Size of a learned character embedding; None feeds one-hot vectors.",
    ),
    "dropout": Param(Real(0.0, 1.0, high_open=True), "Dropout on each recurrent layer's output."),
    "gate_init": Param(
        Options(GATE_INITS),
        "Initial gate biases: zeros; forget1 (LSTM forget gate 1); chrono (keep gates spread "
        "over the longest dependency trained on: memory for LSTM and GRU).",
    ),
    "batch_size": Param(Integer(1), "Sequences per training step."),
    "learning_rate": Param(Real(0.0, low_open=True), "Peak learning rate."),
    "optimizer": Param(Options(options(OPTIMIZERS)), "Update rule (as in torch.optim)."),
    "beta_1": Param(
        Real(0.0, 1.0, high_open=True),
        "Adam's and AdamW's decay of the gradient average (momentum); unused by the others.",
    ),
    "beta_2": Param(
        Real(0.0, 1.0, high_open=True),
        "Adam's and AdamW's decay of the squared-gradient average; unused by the others.",
    ),
    "weight_decay": Param(
        Real(0.0, none_ok=True),
        "Weight decay: an L2 penalty in the gradient, or decoupled for adamw; "
        "None keeps the optimiser's default.",
    ),
    "clip_norm": Param(
        Real(0.0, low_open=True, none_ok=True),
        "Clip the global gradient norm to this; None turns clipping off.",
    ),
    "lr_schedule": Param(Options(SCHEDULES), "Learning-rate schedule over the budget."),
    "max_iter": Param(Integer(1), "Passes over the training data."),
    "max_time": Param(
        Real(0.0, low_open=True, none_ok=True),
        "Training time budget in seconds; None means no limit.",
    ),
    "validation_fraction": Param(
        Real(0.0, 1.0, high_open=True),
        "Share of the training data held out for validation; 0 turns validation off.",
    ),
    "early_stopping": Param(
        Boolean(), "Stop when validation stops improving and keep the best weights."
    ),
    "n_iter_no_change": Param(Integer(1), "Passes without improvement before stopping."),
    "tol": Param(Real(0.0), "Smallest improvement that counts."),
    "warm_start": Param(Boolean(), "fit continues from the current weights."),
    "dtype": Param(Options(DTYPES), "Float precision."),
    "random_state": Param(RandomState(), "Random seed (initial weights, dropout, batches)."),
    "verbose": Param(
        Custom(_check_verbose, "an integer >= 0 or a bool", none_ok=False),
        "0 silent, 1 a progress bar, 2 also a line per pass.",
    ),
}


# What may end the validated part of a fit before its final stretch on all the data (an
# interruption, a divergence or a callback's stop ends the fit there).
FINAL_STRETCH_AFTER = ("max_iter", "max_time", "early_stopping", "training_loss_stalled")

# The fitted attributes every estimator has (saved with a model file).
FITTED_HISTORY = (
    "n_iter_",
    "n_chars_seen_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "best_iteration_",
    "history_",
    "stop_reason_",
    "diverged_",
)


def _real(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _real_list(x) -> bool:
    return isinstance(x, list) and all(v is None or _real(v) for v in x)


def config_is_lm(config) -> bool:
    """Whether ``config`` is the language model's (trained on parallel stream groups)."""
    return isinstance(config, NetworkConfig)


# What each saved fitted attribute may hold (None is allowed where a run may lack it).
_FITTED_RULES = {
    "n_iter_": (_count, "an integer >= 0"),
    "n_chars_seen_": (_count, "an integer >= 0"),
    "loss_curve_": (lambda v: v is None or _real_list(v), "a list of numbers"),
    "validation_scores_": (lambda v: v is None or _real_list(v), "None or a list of numbers"),
    "best_validation_score_": (lambda v: v is None or _real(v), "None or a number"),
    "best_iteration_": (lambda v: v is None or _count(v), "None or an integer >= 0"),
    "stop_reason_": (lambda v: v is None or isinstance(v, str), "a string"),
    "diverged_": (lambda v: v is None or isinstance(v, bool), "a bool"),
}
_REQUIRED_COUNTS = ("n_iter_", "n_chars_seen_")
# The fields of a history record that are numbers (or None): what `charrnn info` prints.
_RECORD_NUMBERS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_score",
    "chars_seen",
    "elapsed",
    "grad_norm_mean",
    "grad_norm_max",
)


def check_saved_history(fitted) -> None:
    """Raise ValueError unless ``fitted`` (a model file's saved fitted attributes) is well formed.

    Parameters
    ----------
    fitted : dict
        ``{name: value}`` for the names of :data:`FITTED_HISTORY`, as read from JSON.
    """
    if not isinstance(fitted, dict):
        raise ValueError(f"has fitted attributes that are not a dict ({type(fitted).__name__})")
    for name in _REQUIRED_COUNTS:
        # what every estimator reports (charrnn info, n_iter_ for warm starts) has no default
        if name not in fitted:
            raise ValueError(f"has no fitted attribute {name}")
    for name, (ok, what) in _FITTED_RULES.items():
        if name in fitted and not ok(fitted[name]):
            raise ValueError(f"has fitted attribute {name}={fitted[name]!r:.60}; expected {what}")
    history = fitted.get("history_")
    if history is None:
        return
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise ValueError("has a training history that is not a list of records")
    for rec in history:
        if "epoch" not in rec:
            raise ValueError("has a history record without its pass number ('epoch')")
        for key in _RECORD_NUMBERS:
            if rec.get(key) is not None and not _real(rec[key]):
                raise ValueError(f"has a history record with {key}={rec[key]!r:.40}")


# Shared docstring text: what every estimator's training does, in numpydoc form.
TRAINING_NOTES = """
    Training (the same for every charrnn estimator): ``fit`` runs up to ``max_iter`` passes
    over the training data, or until ``max_time`` seconds have been spent, whichever comes
    first; the learning-rate schedule spans that budget. ``validation_fraction`` of the data
    is held out and scored after every pass (``validation_scores_``). With
    ``early_stopping`` and validation data, training stops after ``n_iter_no_change``
    passes that did not beat the best score by ``tol``, and ends holding the weights of the
    best pass (``best_iteration_``); otherwise it stops after ``n_iter_no_change`` passes
    whose training loss did not fall by ``tol`` (scikit-learn's rule), with the last
    weights. A ``ConvergenceWarning`` is issued when ``max_iter`` ends training before
    either rule does, when the loss stops being finite (training stops there, keeping the
    weights of the last finite step, or the best pass's; ``diverged_`` is True) and when
    Ctrl-C or SIGTERM interrupts it (training stops between two steps and keeps the weights
    trained so far). ``partial_fit`` runs one pass over all it is given, at the constant
    ``learning_rate``, without validation or stopping rules; ``warm_start=True`` makes
    ``fit`` continue from the current weights.
"""


class RecurrentEstimator(BaseEstimator):
    """Base of charrnn's estimators: shared parameters, their rules and the one fit loop.

    Subclasses set ``_parameter_constraints`` to ``{**SHARED_PARAMETERS, <their own>}`` and
    implement the hooks below (``_check_training_data``, ``_initialise_model``,
    ``_check_warm_start``, ``_make_task``); everything else about training is here.
    """

    _parameter_constraints: dict[str, Param] = SHARED_PARAMETERS
    #: parameters that fix the network's shape; ``warm_start`` and ``partial_fit`` refuse a
    #: change of any of them (they are attributes of ``config_`` with the same name)
    _shape_parameters: tuple[str, ...] = (
        "cell",
        "hidden_size",
        "num_layers",
        "embedding_dim",
        "dtype",
    )

    def __init__(self, **shared):
        # Every parameter of SHARED_PARAMETERS, stored as it is given (scikit-learn's rule:
        # no checks here; fit checks). A subclass's __init__ names them in its signature, with
        # its own defaults, and passes them on.
        for name in SHARED_PARAMETERS:
            setattr(self, name, shared[name])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True  # texts, not numeric arrays
        tags.input_tags.two_d_array = False
        tags.non_deterministic = False  # random_state fixes every result
        return tags

    @classmethod
    def parameter_rules(cls) -> dict[str, Param]:
        """The table of what each constructor parameter accepts: name -> :class:`Param`.

        ``fit`` checks it; ``charrnn train`` builds its options from it.
        """
        return dict(cls._parameter_constraints)

    def _validate_params(self) -> None:
        """Check every parameter against the class's table (ValueError/TypeError naming it)."""
        validate_params(self, self._parameter_constraints)

    def _rng(self) -> np.random.Generator:
        """A Generator from ``random_state`` (the same object when it is one)."""
        return as_generator(self.random_state)

    # -- hooks a subclass implements --------------------------------------------------------
    def _check_training_data(self, X, y, **kwargs):
        """Validate ``X`` (and ``y``) and return them in the form the other hooks take."""
        raise NotImplementedError

    def _initialise_model(self, data, rng: np.random.Generator) -> None:
        """Build a new model for ``data``: ``params_``, ``config_`` and what predicting needs."""
        raise NotImplementedError

    def _training_shape(self, data) -> tuple[object, int, dict[str, int]]:
        """The network ``fit(data)`` trains, built without allocating it, and its batch's sizes.

        Returns ``(config, steps, sizes)``: a ``NetworkConfig`` or ``SeqClfConfig``, the time
        steps of one training sequence, and the parameters and data sizes that set the memory
        a run needs, named for the user (hidden_size, num_layers, batch_size, seq_length, ...).
        """
        raise NotImplementedError

    def _check_warm_start(self, data) -> None:
        """Raise ValueError if ``data`` cannot continue the fitted model (e.g. unseen labels)."""

    def _make_task(self, data, *, validation: bool, rng: np.random.Generator):
        """The :class:`~charrnn.engine.tasks.TrainingTask` for ``data``; ``validation`` False
        means every sample trains (``partial_fit``)."""
        raise NotImplementedError

    def _check_resume(self, data) -> None:
        """Raise ValueError unless ``data`` is what the interrupted ``fit`` was training on."""

    def _record_training_data(self, data) -> None:
        """Remember what identifies the data a ``fit`` trains on (for a later resume)."""

    def _optimizer_options(self) -> dict:
        """The optimiser's settings the parameters give, beyond the learning rate: weight
        decay unless None (the optimiser's default), and the betas for Adam and AdamW."""
        options = {} if self.weight_decay is None else {"weight_decay": self.weight_decay}
        if self.optimizer in ("adam", "adamw"):
            options.update(beta1=self.beta_1, beta2=self.beta_2)
        return options

    def _make_average(self):
        """A :class:`~charrnn.engine.averaging.WeightAverage` to keep during training, or None."""
        return None

    def _after_training(self, trainer: Trainer) -> None:
        """Called once training has stopped, before the final weights are settled."""

    def _memory_estimate(self, data) -> tuple[MemoryEstimate, dict[str, int]]:
        config, steps, sizes = self._training_shape(data)
        keep_best = bool(self.early_stopping) and self.validation_fraction > 0
        estimate = estimate_for(
            config,
            batch_size=int(sizes["batch_size"]),
            steps=int(steps),
            optimizer_slots=len(OPTIMIZERS[self.optimizer].slots),
            keep_best=keep_best,
            n_groups=planned_groups(int(sizes["batch_size"])) if config_is_lm(config) else 1,
        )
        return estimate, sizes

    def check_memory(self, X, y=None) -> MemoryEstimate:
        """Estimate the memory ``fit(X, y)`` needs; raise if the machine does not have it.

        ``fit`` runs the same check before allocating anything. The estimate counts weights,
        gradients, optimiser state, the best-weights copy, the activations of one batch and
        the parallel workers' copies (:mod:`charrnn.engine.memory`).

        Returns
        -------
        MemoryEstimate
            Bytes by part; ``.total`` is the sum.

        Raises
        ------
        InsufficientMemoryError
            A ``ValueError`` naming the parameters, the estimate and the available memory.
        """
        self._validate_params()
        estimate, sizes = self._memory_estimate(self._check_training_data(X, y))
        check_training_memory(estimate, sizes, type(self).__name__)
        return estimate

    def _final_stretch_share(self) -> float:
        """Share of the training spent at its end on all the data, held-out part included.

        0 (the default) keeps the held-out data out of training altogether; see
        :meth:`_fit`.
        """
        return 0.0

    def initialize(self, X, y=None):
        """Build the model that ``fit`` would start from, without training it. Returns self.

        The vocabulary (and classes) come from ``X`` (and ``y``), the weights are drawn from
        ``random_state`` exactly as ``fit`` draws them, and ``n_iter_`` is 0. Useful to look
        at an untrained network (e.g. its gradient flow); ``fit`` with ``warm_start=True``
        or ``partial_fit`` then trains it.
        """
        self._validate_params()
        data = self._check_training_data(X, y)
        rng = self._rng()
        self._initialise_model(data, rng)
        self._reset_history(rng)
        return self

    # -- the one training loop --------------------------------------------------------------
    def _fit(
        self,
        X,
        y=None,
        *,
        incremental: bool = False,
        resume: bool = False,
        on_epoch=None,
        on_step=None,
        stop_flag: StopFlag | None = None,
        **data_kwargs,
    ):
        """Train: a new model, or (``incremental``, ``warm_start``, ``resume``) continue one.

        ``resume`` continues an interrupted ``fit`` exactly where it stopped: optimiser
        state, schedule position, pass and step, the task's carried state and the random
        generator.

        With a final-stretch share ``f > 0`` (:meth:`_final_stretch_share`) and held-out
        data, training has two parts that share one learning-rate schedule. The validated
        part trains on the training split with validation, early stopping and keep-best,
        over the first ``1 - f`` of the schedule and of ``max_time``. The final stretch then
        continues from its weights (the best pass's under early stopping), with the same
        optimiser, on all the data, held-out part included, over the schedule's last ``f``
        (its lowest rates), for ``f / (1 - f)`` times the validated part's chosen length in
        steps and at most the time left; ``final_stretch_`` describes it. Validation so
        chooses the length and the weights, and the final model has learnt from everything.

        ``on_epoch(estimator, record)`` and ``on_step(estimator, trainer, loss,
        grad_norm, lr)`` are called after every pass and step; either may return True to
        stop. Returns self.
        """
        self._validate_params()
        data = self._check_training_data(X, y, **data_kwargs)
        # before any weight or batch is allocated: a configuration the machine cannot hold is
        # refused with the sizes that make it too large, not a MemoryError halfway through
        check_training_memory(*self._memory_estimate(data), type(self).__name__)
        fitted = hasattr(self, "params_")
        resuming = bool(resume) and getattr(self, "_training_state", None) is not None
        continuing = fitted and (resuming or incremental or self.warm_start)
        if continuing:
            self._check_shape_unchanged()
            self._check_warm_start(data)
        else:
            rng = self._rng()
            self._initialise_model(data, rng)
            self._reset_history(rng)
        if resuming:
            self._check_resume(data)
        elif not incremental:
            self._record_training_data(data)
        if not incremental:
            self.final_stretch_ = None
        task = self._make_task(data, validation=not incremental, rng=self._train_rng)
        trainer = Trainer(
            self.params_,
            task,
            optimizer=make_optimizer(
                self.optimizer, self.params_, self.learning_rate, **self._optimizer_options()
            ),
            learning_rate=self.learning_rate,
            clip_norm=self.clip_norm,
            schedule=LRSchedule("constant" if incremental else self.lr_schedule),
            rng=self._train_rng,
            average=self._make_average(),
        )
        if resuming:
            trainer.load_state(*self._training_state)
        elif continuing and self._optim_state is not None:
            # another optimiser than last time: its state starts afresh
            with contextlib.suppress(ValueError):
                trainer.optimizer.load_state_dict(self._optim_state)
        if continuing:
            # a loaded state brings back the settings it was saved with; the parameters win
            trainer.optimizer.set_hyperparameters(**self._optimizer_options())
        share = 0.0 if incremental or not task.has_validation else self._final_stretch_share()
        # both parts share one way of running steps: worker processes and BLAS timing cost
        # seconds to start, a large part of a short final stretch
        steps = ParallelSteps(task.n_streams, tune=trainer.tune_blas) if share > 0 else None
        with steps if steps is not None else contextlib.nullcontext():
            self._run_trainer(
                trainer,
                resuming,
                1 if incremental else self.max_iter,
                incremental,
                on_epoch,
                on_step,
                stop_flag,
                share,
                steps,
            )
            if share > 0 and self.stop_reason_ in FINAL_STRETCH_AFTER:
                self._final_stretch(data, trainer, share, on_step, stop_flag, steps)
        return self

    def _final_stretch(
        self, data, first: Trainer, share: float, on_step, stop_flag, steps=None
    ) -> None:
        """Train on all the data, held-out part included, over the schedule's last ``share``.

        ``first`` is the validated part's trainer, its weights settled (the best pass's under
        early stopping). The stretch lasts ``share / (1 - share)`` times the steps that
        chose those weights, and at most the rest of ``max_time``; its optimiser is
        ``first``'s, state included. An interruption ends it with the weights trained so far
        (``final_stretch_["stop_reason"]`` says so; ``stop_reason_`` stays the validated
        part's); a divergence puts back the weights it started from.
        """
        p = first.progress
        chosen = p.step
        if self.early_stopping and first.best_params is not None:
            # the weights are the best pass's: its record holds the steps taken up to it
            best = [r for r in self.history_ if r["val_score"] == p.best_score]
            if best:
                chosen = best[-1]["step"]
        n_steps = max(1, math.ceil(share / (1.0 - share) * chosen))
        time_left = None
        if self.max_time is not None:
            time_left = max(self.max_time - p.elapsed, 1e-9)
        task = self._make_task(data, validation=False, rng=self._train_rng)
        trainer = Trainer(
            self.params_,
            task,
            optimizer=first.optimizer,
            learning_rate=self.learning_rate,
            clip_norm=self.clip_norm,
            schedule=first.schedule,
            rng=self._train_rng,
            average=first.average,
        )
        start = {k: v.copy() for k, v in self.params_.items()}
        flag = stop_flag if stop_flag is not None else StopFlag()

        def step_done(tr, loss, gnorm, lr):
            return on_step is not None and on_step(self, tr, loss, gnorm, lr)

        try:
            with graceful_interrupts(flag):
                trainer.run(
                    max_epochs=2**31,
                    max_time=time_left,
                    max_steps=n_steps,
                    schedule_span=(1.0 - share, 1.0),
                    steps=steps,
                    n_iter_no_change=2**31,
                    stop_flag=flag,
                    on_step=step_done,
                )
        except DivergedError as exc:
            for name, value in start.items():
                np.copyto(self.params_[name], value)
            trainer.progress.stop_reason = "diverged"
            warnings.warn(
                f"{exc} The final stretch on all the data was undone; the weights are those "
                "validation chose.",
                ConvergenceWarning,
                stacklevel=4,
            )
        except KeyboardInterrupt:
            trainer.progress.stop_reason = "interrupted"
        q = trainer.progress
        losses = [r["train_loss"] for r in q.history]
        self.n_chars_seen_ += q.chars_seen
        # the budget counts the stretch: a resume (with a larger budget) continues the
        # validated part from its own state, then stretches again
        p.elapsed += q.elapsed
        self.final_stretch_ = {
            "share": share,
            "steps": q.step,
            "planned_steps": n_steps,
            "chars_seen": q.chars_seen,
            "seconds": q.elapsed,
            "train_loss": losses[-1] if losses else None,
            "stop_reason": q.stop_reason,
        }
        self._keep_training_state(first)

    def _run_trainer(
        self,
        trainer,
        resuming,
        epochs,
        incremental,
        on_epoch,
        on_step,
        stop_flag,
        share=0.0,
        steps=None,
    ) -> None:
        """Run ``trainer`` with the progress bar and interrupt handling; settle the outcome.

        ``share`` is the final stretch's: this run then has the first ``1 - share`` of the
        schedule and of ``max_time``.
        """
        run = {
            "consumed": 0,
            "chars_base": self.n_chars_seen_ - trainer.progress.chars_seen,
            # a resumed run's first record may complete a pass that max_time cut short
            "continues": trainer.progress.epoch + 1 if resuming else None,
        }
        bar = self._progress_bar(epochs * trainer.steps_per_pass)
        flag = stop_flag if stop_flag is not None else StopFlag()
        early = bool(self.early_stopping) and not incremental
        self.diverged_ = False

        def step_done(tr, loss, gnorm, lr):
            if bar is not None:
                bar.update(1)
                if tr.progress.step % 10 == 0:
                    rate = tr.progress.chars_seen / max(tr.progress.elapsed, 1e-9)
                    bar.set_postfix(loss=f"{loss:.3f}", chars_s=f"{rate:,.0f}", refresh=False)
            return on_step is not None and on_step(self, tr, loss, gnorm, lr)

        def pass_done(tr, record):
            self._absorb(tr, run)
            self._keep_training_state(tr)
            if self.verbose and int(self.verbose) >= 2:
                from tqdm.auto import tqdm

                tqdm.write(self._describe_record(record))
            return on_epoch is not None and on_epoch(self, record)

        try:
            with graceful_interrupts(flag):
                trainer.run(
                    max_epochs=epochs,
                    max_time=None
                    if incremental or self.max_time is None
                    else self.max_time * (1.0 - share),
                    schedule_span=(0.0, 1.0 - share),
                    steps=steps,
                    early_stopping=early,
                    n_iter_no_change=self.n_iter_no_change if not incremental else 2**31,
                    tol=self.tol,
                    stop_flag=flag,
                    on_step=step_done,
                    on_epoch=pass_done,
                )
        except DivergedError as exc:
            self.diverged_ = True
            trainer.progress.stop_reason = "diverged"
            warnings.warn(str(exc), ConvergenceWarning, stacklevel=4)
        except KeyboardInterrupt:
            trainer.progress.stop_reason = "interrupted"
        finally:
            if bar is not None:
                bar.close()
        self.stop_reason_ = trainer.progress.stop_reason
        self._absorb(trainer, run)
        self._keep_training_state(trainer)
        interrupted = self.stop_reason_.startswith("interrupted")
        if early and not interrupted:
            # an interrupted run keeps its last weights, so that a resume continues from them
            trainer.restore_best()
        self._after_training(trainer)
        if interrupted:
            warnings.warn(
                "Training interrupted; the weights trained so far are kept "
                "(fit(..., resume=True) or `charrnn train --resume` continues).",
                ConvergenceWarning,
                stacklevel=4,
            )
        elif self.stop_reason_ == "max_iter" and not incremental:
            warnings.warn(
                f"{type(self).__name__} stopped after max_iter={self.max_iter} passes before "
                "its stopping rule was met; raise max_iter (or max_time) for a better fit",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _reset_history(self, rng: np.random.Generator) -> None:
        """Fresh training attributes for a new model."""
        self._train_rng = np.random.default_rng(rng.integers(2**63))
        self._optim_state = None
        self._training_state = None
        self.n_iter_ = 0
        self.n_chars_seen_ = 0
        self.loss_curve_ = []
        self.validation_scores_ = None
        self.best_validation_score_ = None
        self.best_iteration_ = None
        self.history_ = []
        self.stop_reason_ = ""
        self.diverged_ = False
        self.final_stretch_ = None

    def _check_shape_unchanged(self) -> None:
        for name in self._shape_parameters:
            current = getattr(self.config_, name)
            if getattr(self, name) != current:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} differs from the fitted model's {current!r}; "
                    "set warm_start=False to train a new model"
                )

    def _keep_training_state(self, trainer: Trainer) -> None:
        """Remember what an exact resume and a later warm start need."""
        self._optim_state = trainer.optimizer.state_dict()
        self._training_state = (trainer.state_header(), trainer.state_arrays())

    def _absorb(self, trainer: Trainer, run: dict) -> None:
        """Copy the trainer's new history records and counters into the fitted attributes."""
        p = trainer.progress
        new = p.history[run["consumed"] :]
        run["consumed"] = len(p.history)
        previous = self.history_[-1] if self.history_ else None
        self.history_.extend(new)
        for rec in new:
            # A pass cut short by max_time and completed after a resume is one iteration:
            # its complete record (whose loss covers the whole pass) replaces the partial one.
            last, previous = previous, rec
            same_pass = (
                run["continues"] == rec["pass"]
                and last is not None
                and last["partial"]
                and last.get("pass", rec["pass"]) == rec["pass"]
            )
            run["continues"] = None
            if same_pass:
                self.loss_curve_[-1] = rec["train_loss"]
            else:
                self.n_iter_ += 1
                self.loss_curve_.append(rec["train_loss"])
            score = rec["val_score"]
            if score is None:
                continue
            if self.validation_scores_ is None:
                self.validation_scores_ = []
            if same_pass and last["val_score"] is not None:
                self.validation_scores_[-1] = score
            else:
                self.validation_scores_.append(score)
            if self.best_validation_score_ is None or score > self.best_validation_score_:
                self.best_validation_score_ = score
                self.best_iteration_ = self.n_iter_
        self.n_chars_seen_ = run["chars_base"] + p.chars_seen

    def _describe_record(self, record: dict) -> str:
        """One line about a pass, for ``verbose=2``."""
        text = f"pass {self.n_iter_}: training loss {record['train_loss']:.4f}"
        if record["val_score"] is not None:
            text += f", validation score {record['val_score']:.4f}"
        return text

    def _progress_bar(self, total: int):
        if not self.verbose:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="step", disable=None, dynamic_ncols=True, leave=True)

    @property
    def training_progress_(self) -> dict | None:
        """Where the last ``fit`` stopped, or None when there is nothing to resume.

        A dict with ``epoch`` (complete passes), ``chunk`` (next step of the current pass),
        ``step`` (optimiser steps), ``elapsed`` (seconds of training) and ``chars_seen``:
        what ``fit(..., resume=True)`` continues from.
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        state = getattr(self, "_training_state", None)
        if state is None:
            return None
        keys = ("epoch", "chunk", "step", "elapsed", "chars_seen")
        return {k: state[0][k] for k in keys}
