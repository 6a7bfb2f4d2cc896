"""Tests for charrnn.estimators.base: one training loop, so one behaviour for every estimator.

Every scenario runs on the generator, the classifier and the regressor, with the same
expectations:
divergence, interruption, the stopping rules, keep-best, and the fitted attributes that
describe a run (``n_iter_``, ``loss_curve_``, ``validation_scores_``, ``best_iteration_``).
"""

from __future__ import annotations

import math
import os
import signal
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning

from charrnn import CharRNNClassifier, CharRNNGenerator, RNNRegressor
from charrnn.engine.tasks import ClassificationTask, LanguageModelTask, RegressionTask

DOCS = [
    "the cat sat on the mat. " * 4,
    "a dog ran to the red hat. " * 4,
    "the big cat ran to a dog. " * 4,
    "on the mat sat a red dog. " * 4,
]
TEXTS = ["a cat", "the dog", "a xylophone", "x marks", "no", "six", "box", "ten"] * 6
LABELS = ["x" if "x" in t else "none" for t in TEXTS]
SEQS = np.random.default_rng(0).standard_normal((48, 6))
VALUES = SEQS[:, -2:].sum(axis=1)


def generator(**params):
    base = dict(hidden_size=8, num_layers=1, batch_size=4, seq_length=8, random_state=0)
    return CharRNNGenerator(**{**base, **params}), LanguageModelTask


def classifier(**params):
    base = dict(hidden_size=8, embedding_dim=4, batch_size=8, random_state=0)
    return CharRNNClassifier(**{**base, **params}), ClassificationTask


def regressor(**params):
    base = dict(hidden_size=8, batch_size=8, random_state=0)
    return RNNRegressor(**{**base, **params}), RegressionTask


def training_data(est) -> tuple:
    if isinstance(est, CharRNNClassifier):
        return TEXTS, LABELS
    if isinstance(est, RNNRegressor):
        return SEQS, VALUES
    return (DOCS,)


def fit(est, **kwargs):
    return est.fit(*training_data(est), **kwargs)


def partial_fit(est):
    if isinstance(est, CharRNNClassifier):
        return est.partial_fit(TEXTS, LABELS, classes=["none", "x"])
    return est.partial_fit(*training_data(est))


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function(*args, **kwargs)


MAKERS = pytest.mark.parametrize(
    "make", [generator, classifier, regressor], ids=["generator", "classifier", "regressor"]
)


def weights(est) -> dict:
    return {k: v.copy() for k, v in est.params_.items()}


def patch_steps(monkeypatch, task_cls, at_step: int, action):
    """Run ``action(args)`` instead of the ``at_step``-th (1-based) call of the task's step."""
    real = task_cls.loss_and_grads
    calls = {"n": 0}

    def patched(task, params, batch, rng, parallel):
        calls["n"] += 1
        if calls["n"] == at_step:
            return action(task, params, batch, rng, parallel, real)
        return real(task, params, batch, rng, parallel)

    monkeypatch.setattr(task_cls, "loss_and_grads", patched)
    return calls


@MAKERS
def test_every_pass_is_recorded_once_in_each_history_attribute(make):
    est, _ = make(max_iter=3, early_stopping=False, n_iter_no_change=99, validation_fraction=0.2)
    quietly(fit, est)
    assert est.n_iter_ == 3 and est.stop_reason_ == "max_iter"
    assert len(est.loss_curve_) == len(est.validation_scores_) == len(est.history_) == 3
    assert all(math.isfinite(x) for x in est.loss_curve_)
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.best_iteration_ == 1 + int(np.argmax(est.validation_scores_))
    assert est.n_chars_seen_ > 0 and not est.diverged_


@MAKERS
def test_without_validation_data_there_are_no_validation_scores(make):
    est, _ = make(max_iter=2, validation_fraction=0.0)
    quietly(fit, est)
    assert est.validation_scores_ is None
    assert est.best_validation_score_ is None and est.best_iteration_ is None
    assert len(est.loss_curve_) == est.n_iter_ == 2


@MAKERS
def test_max_iter_ending_training_warns(make):
    est, _ = make(max_iter=1, validation_fraction=0.0)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        fit(est)


@MAKERS
def test_partial_fit_is_one_unvalidated_pass(make):
    est, _ = make(validation_fraction=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # one pass is what was asked for
        partial_fit(est)
        partial_fit(est)
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2
    assert est.validation_scores_ is None


@MAKERS
def test_divergence_warns_and_keeps_the_weights_of_the_last_finite_step(make, monkeypatch):
    est, task_cls = make(max_iter=5, validation_fraction=0.0)
    real = task_cls.loss_and_grads
    seen = []

    def nan_at_third_step(task, params, batch, rng, parallel):
        seen.append({k: v.copy() for k, v in params.items()})
        loss, grads, weight, chars = real(task, params, batch, rng, parallel)
        return (math.nan if len(seen) == 3 else loss), grads, weight, chars

    monkeypatch.setattr(task_cls, "loss_and_grads", nan_at_third_step)
    with pytest.warns(ConvergenceWarning, match="diverged"):
        fit(est)
    assert est.diverged_ and est.stop_reason_ == "diverged" and len(seen) == 3
    # the weights whose loss was the last finite one: those the second step was taken at
    for k, v in seen[1].items():
        assert_array_equal(est.params_[k], v)


@MAKERS
def test_sigint_stops_after_the_step_with_a_warning_and_keeps_the_weights(make, monkeypatch):
    est, task_cls = make(max_iter=5)
    after_two = {}

    def interrupt(task, params, batch, rng, parallel, real):
        after_two.update({k: v.copy() for k, v in params.items()})
        os.kill(os.getpid(), signal.SIGINT)  # handled by fit: stop after this step
        return real(task, params, batch, rng, parallel)

    calls = patch_steps(monkeypatch, task_cls, 3, interrupt)
    with pytest.warns(ConvergenceWarning, match="interrupted"):
        fit(est)
    assert calls["n"] == 3 and est.stop_reason_ == "interrupted (SIGINT)"
    assert est.n_iter_ == 0  # no pass was completed
    assert any(not np.array_equal(est.params_[k], v) for k, v in after_two.items())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@MAKERS
def test_early_stopping_keeps_the_best_pass(make, monkeypatch):
    est, task_cls = make(max_iter=8, n_iter_no_change=2, tol=0.0, validation_fraction=0.25)
    scores = iter([0.1, 0.9, 0.5, 0.5, 0.5])
    snapshot = {}

    def scripted(task, params, parallel):
        score = next(scores)
        if score == 0.9:
            snapshot.update({k: v.copy() for k, v in est.params_.items()})
        return score

    monkeypatch.setattr(task_cls, "validation_score", scripted)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # stopping early is no failure
        fit(est)
    assert est.stop_reason_ == "early_stopping"
    assert est.validation_scores_ == [0.1, 0.9, 0.5, 0.5] and est.n_iter_ == 4
    assert est.best_iteration_ == 2 and est.best_validation_score_ == 0.9
    for k, v in snapshot.items():
        assert_array_equal(est.params_[k], v)


@MAKERS
def test_a_stalled_training_loss_stops_training_without_early_stopping(make, monkeypatch):
    est, task_cls = make(max_iter=20, n_iter_no_change=2, early_stopping=False)

    def constant_loss(task, params, batch, rng, parallel):
        _, grads, weight, chars = real(task, params, batch, rng, parallel)
        return 1.0, grads, weight, chars

    real = task_cls.loss_and_grads
    monkeypatch.setattr(task_cls, "loss_and_grads", constant_loss)
    fit(est)
    # the first pass sets the best loss; two more without improvement stop it
    assert est.stop_reason_ == "training_loss_stalled" and est.n_iter_ == 3


@MAKERS
def test_a_time_budget_counts_the_pass_it_cuts_short(make):
    est, _ = make(max_iter=1000, max_time=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a time budget is not a failure
        fit(est)
    assert est.stop_reason_ == "max_time" and est.n_iter_ == 1
    assert est.history_[-1]["partial"] is True


@MAKERS
def test_warm_start_continues_and_refuses_a_new_shape(make):
    est, _ = make(max_iter=1, validation_fraction=0.0)
    quietly(fit, est)
    first = weights(est)
    est.set_params(warm_start=True)
    quietly(fit, est)
    assert est.n_iter_ == 2
    assert any(not np.array_equal(est.params_[k], v) for k, v in first.items())
    est.set_params(hidden_size=9)
    with pytest.raises(ValueError, match="hidden_size=9 differs"):
        fit(est)


@MAKERS
def test_initialize_builds_what_fit_starts_from(make, monkeypatch):
    est, task_cls = make(max_iter=1)
    est.initialize(*training_data(est))
    assert est.n_iter_ == 0
    started = {}

    def record(task, params, batch, rng, parallel):
        started.setdefault("params", {k: v.copy() for k, v in params.items()})
        return real(task, params, batch, rng, parallel)

    real = task_cls.loss_and_grads
    monkeypatch.setattr(task_cls, "loss_and_grads", record)
    fresh, _ = make(max_iter=1)
    quietly(fit, fresh)
    for k, v in est.params_.items():
        assert_array_equal(started["params"][k], v)


@MAKERS
def test_both_estimators_share_the_parameter_rules(make):
    est, _ = make()
    for name in ("max_iter", "learning_rate", "validation_fraction", "optimizer", "verbose"):
        assert name in type(est)._parameter_constraints
    est.set_params(optimizer="lbfgs")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fit(est)


@MAKERS
def test_verbose_2_prints_a_line_per_pass(make, capsys):
    est, _ = make(max_iter=2, verbose=2, validation_fraction=0.25)
    quietly(fit, est)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pass ")]
    assert [line.split(":")[0] for line in lines] == ["pass 1", "pass 2"]
    assert all("validation" in line for line in lines)
