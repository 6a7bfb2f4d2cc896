"""Tests for charrnn.estimators.classifier (CharRNNClassifier), charrnn.engine.seqclf and
charrnn.data.textbatch."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from charrnn.data import textbatch
from charrnn.data.vocab import CharVocab
from charrnn.engine import seqclf, training
from charrnn.engine.optim import Adam, LRSchedule
from charrnn.engine.tasks import ClassificationTask
from charrnn.estimators.classifier import CharRNNClassifier, load_classifier

ALPHABET = list("abcdefghijklmnopqrstuvw ")
TINY = dict(hidden_size=8, embedding_dim=4, batch_size=16, max_iter=2, random_state=0)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # The networks here are tiny; BLAS threads only add overhead (and noise on a busy machine).
    with threadpool_limits(1, user_api="blas"):
        yield


def contains_x(n: int, seed: int = 0):
    """Random texts of 3-30 letters; label "x" when an "x" was planted, else "none"."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        text = list(rng.choice(ALPHABET, size=int(rng.integers(3, 31))))
        if i % 2:
            text[int(rng.integers(len(text)))] = "x"
        X.append("".join(text))
        y.append("x" if i % 2 else "none")
    return X, y


def fit_quietly(clf, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


@pytest.fixture(scope="module")
def fitted():
    X, y = contains_x(120)
    return fit_quietly(CharRNNClassifier(**TINY), X, y), X, y


# -- numerics: gradient checks and padding invariance ----------------------------------------


def reference_aux_lm_loss(params, config, ids, lengths, top) -> float:
    """The auxiliary language-modelling loss, one character at a time: the forward state at
    ``t`` predicts character ``t + 1``, the backward state at ``t + 1`` character ``t``."""
    if config.aux_lm_weight == 0:
        return 0.0
    H = config.hidden_size
    terms = []
    for b, n in enumerate(lengths):
        for t in range(n - 1):
            fwd = top[t, b, :H] @ params["lm.fwd.W"] + params["lm.fwd.b"]
            terms.append(-seqclf.log_softmax(fwd)[ids[t + 1, b]])
            if config.bidirectional:
                bwd = top[t + 1, b, H:] @ params["lm.bwd.W"] + params["lm.bwd.b"]
                terms.append(-seqclf.log_softmax(bwd)[ids[t, b]])
    return config.aux_lm_weight * float(np.mean(terms)) if terms else 0.0


def numerical_gradient_error(config, seqs, targets, dropout_seed=None) -> float:
    """Largest relative error, over parameters, of the analytic gradient against central
    differences of the loss (float64), ``|num - ana| / (|num| + |ana|)`` in the L2 norm."""
    rng = np.random.default_rng(0)
    params = seqclf.init_params(config, rng)
    for p in params.values():  # move off the special initial values (zeros, orthogonal)
        p += 0.5 * rng.standard_normal(p.shape)
    ids, lengths = seqclf.pad_batch(seqs)
    rows = np.arange(len(seqs))

    def drng():  # the same dropout masks on every call
        return None if dropout_seed is None else np.random.default_rng(dropout_seed)

    def loss() -> float:
        logits, cache = seqclf.forward(params, config, ids, lengths, drng(), train=True)
        aux = reference_aux_lm_loss(params, config, ids, lengths, cache[-2])
        return -float(np.mean(seqclf.log_softmax(logits)[rows, targets])) + aux

    _, grads = seqclf.loss_and_grads(params, config, ids, lengths, targets, drng(), train=True)
    worst = 0.0
    eps = 1e-5
    for name, p in params.items():
        num = np.empty_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = loss()
            p[i] = old - eps
            down = loss()
            p[i] = old
            num[i] = (up - down) / (2 * eps)
        denom = max(np.linalg.norm(num) + np.linalg.norm(grads[name]), 1e-12)
        worst = max(worst, np.linalg.norm(num - grads[name]) / denom)
    return worst


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("num_layers,embedding_dim", [(1, None), (2, 2)])
def test_gradients_match_central_differences(
    cell, bidirectional, pooling, num_layers, embedding_dim
):
    rng = np.random.default_rng(1)
    # lengths 4, 2, 1 in one padded batch; ids include EOD and UNK
    seqs = [rng.integers(0, 5, n) for n in (4, 2, 1)]
    config = seqclf.SeqClfConfig(
        cell=cell,
        vocab_size=5,
        n_classes=3,
        hidden_size=2,
        num_layers=num_layers,
        embedding_dim=embedding_dim,
        bidirectional=bidirectional,
        pooling=pooling,
        dtype="float64",
    )
    assert numerical_gradient_error(config, seqs, np.array([0, 2, 1])) < 1e-6


def test_gradients_with_dropout():
    config = seqclf.SeqClfConfig(
        "gru", 6, 2, 3, num_layers=2, embedding_dim=3, bidirectional=True, pooling="mean",
        dropout=0.3, dtype="float64",
    )  # fmt: skip
    seqs = [np.array([2, 3, 4]), np.array([5]), np.array([1, 2, 3, 4, 5])]
    assert numerical_gradient_error(config, seqs, np.array([0, 1, 1]), dropout_seed=7) < 1e-6


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers,embedding_dim,dropout", [(1, None, 0.0), (2, 2, 0.3)])
def test_gradients_with_the_auxiliary_language_model(
    cell, bidirectional, num_layers, embedding_dim, dropout
):
    rng = np.random.default_rng(4)
    seqs = [rng.integers(0, 5, n) for n in (4, 1, 3)]  # a 1-character text predicts nothing
    config = seqclf.SeqClfConfig(
        cell, 5, 3, 2, num_layers=num_layers, embedding_dim=embedding_dim,
        bidirectional=bidirectional, pooling="mean", dropout=dropout, dtype="float64",
        aux_lm_weight=0.7,
    )  # fmt: skip
    error = numerical_gradient_error(config, seqs, np.array([0, 2, 1]), dropout_seed=5)
    assert error < 1e-6


@pytest.mark.parametrize("bidirectional", [False, True])
def test_auxiliary_loss_is_added_to_the_classification_loss(bidirectional):
    config = seqclf.SeqClfConfig(
        "gru", 6, 2, 3, embedding_dim=2, bidirectional=bidirectional, pooling="mean",
        dtype="float64", aux_lm_weight=0.7,
    )  # fmt: skip
    rng = np.random.default_rng(2)
    params = seqclf.init_params(config, rng)
    assert {k for k in params if k.startswith("lm.")} == {
        f"lm.{d}.{w}" for d in config.directions for w in "Wb"
    }
    ids, lengths = seqclf.pad_batch([rng.integers(0, 6, n) for n in (5, 2, 1, 4)])
    y = np.array([0, 1, 1, 0])
    loss, grads = seqclf.loss_and_grads(params, config, ids, lengths, y)
    logits, cache = seqclf.forward(params, config, ids, lengths)
    labels_only = -np.mean(seqclf.log_softmax(logits)[np.arange(4), y])
    aux = reference_aux_lm_loss(params, config, ids, lengths, cache[-2])
    assert aux > 0.1
    assert loss == pytest.approx(labels_only + aux, rel=1e-12)
    assert set(grads) == set(params)
    # without the weight there are no heads and no extra loss
    plain = seqclf.SeqClfConfig(**{**config.to_dict(), "aux_lm_weight": 0.0})
    assert not any(k.startswith("lm.") for k in seqclf.init_params(plain, rng))


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_padded_batch_gives_the_same_logits_as_alone(pooling, dtype, rtol):
    config = seqclf.SeqClfConfig(
        "lstm", 9, 3, 5, num_layers=2, embedding_dim=4, bidirectional=True, pooling=pooling,
        dtype=dtype,
    )  # fmt: skip
    rng = np.random.default_rng(3)
    params = seqclf.init_params(config, rng)
    seqs = [rng.integers(0, 9, n) for n in (7, 1, 3, 12, 12)]
    together, _ = seqclf.forward(params, config, *seqclf.pad_batch(seqs))
    for b, s in enumerate(seqs):
        alone, _ = seqclf.forward(params, config, *seqclf.pad_batch([s]))
        assert_allclose(together[b], alone[0], rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("aux_lm_weight", [0.0, 0.5])
def test_padded_steps_get_no_gradient_and_change_nothing(aux_lm_weight):
    config = seqclf.SeqClfConfig(
        "gru", 7, 2, 4, embedding_dim=3, bidirectional=True, aux_lm_weight=aux_lm_weight
    )
    rng = np.random.default_rng(0)
    params = seqclf.init_params(config, rng)
    ids, lengths = seqclf.pad_batch([np.array([2, 3, 4, 5]), np.array([6, 2])])
    other = ids.copy()
    other[2:, 1] = 5  # different padding symbols in column 1
    y = np.array([0, 1])
    loss_a, grads_a = seqclf.loss_and_grads(params, config, ids, lengths, y)
    loss_b, grads_b = seqclf.loss_and_grads(params, config, other, lengths, y)
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for name in params:
        assert_allclose(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-7)


def test_reverse_index_reverses_within_length_and_is_an_involution():
    lengths = np.array([3, 1, 4])
    idx = seqclf.reverse_index(lengths, 4)
    assert_array_equal(idx[:, 0], [2, 1, 0, 3])
    assert_array_equal(idx[:, 1], [0, 1, 2, 3])
    assert_array_equal(
        np.take_along_axis(idx, idx, axis=0), np.broadcast_to(np.arange(4)[:, None], (4, 3))
    )


def test_pad_batch_and_unknown_rows_start_neutral():
    ids, lengths = seqclf.pad_batch([np.array([3, 4]), np.array([5, 6, 7])])
    assert_array_equal(ids, [[3, 5], [4, 6], [0, 7]])
    assert_array_equal(lengths, [2, 3])
    with pytest.raises(AssertionError, match="needs a symbol"):
        seqclf.pad_batch([np.array([], dtype=int)])
    config = seqclf.SeqClfConfig("rnn", 5, 2, 3, embedding_dim=2)
    params = seqclf.init_params(config, np.random.default_rng(0))
    assert not params["embed"][: CharVocab.UNK_ID + 1].any()
    assert params["embed"][2:].any()


def test_bucket_batches_cover_every_index_once_and_group_by_length():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000)
    batches = textbatch.bucket_batches(lengths, 10, np.random.default_rng(1))
    assert_array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    assert max(len(b) for b in batches) == 10
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 40  # random batches would span ~160
    again = textbatch.bucket_batches(lengths, 10, np.random.default_rng(2))
    assert any(not np.array_equal(a, b) for a, b in zip(batches, again))


def test_stratified_split_keeps_every_class_in_training():
    y = np.array([0] * 10 + [1] * 2 + [2])
    train, val = textbatch.stratified_split(y, 0.5, np.random.default_rng(0))
    assert set(y[train]) == {0, 1, 2}
    assert np.bincount(y[val], minlength=3).tolist() == [5, 1, 0]
    with pytest.raises(ValueError, match="validation_fraction"):
        textbatch.stratified_split(np.array([0, 1]), 0.1, np.random.default_rng(0))


# -- learning ------------------------------------------------------------------------------


def test_learns_whether_a_text_contains_x():
    X, y = contains_x(600)
    X_test, y_test = contains_x(200, seed=1)
    clf = CharRNNClassifier(
        hidden_size=16, embedding_dim=8, bidirectional=True, pooling="max", learning_rate=1e-2,
        max_iter=15, random_state=0,
    )  # fmt: skip
    fit_quietly(clf, X, y)
    assert clf.score(X_test, y_test) >= 0.95
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert len(clf.loss_curve_) == clf.n_iter_ == len(clf.validation_scores_)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_bidirectional_last_pooling_sees_the_first_character():
    # The label is the first character; a forward-only "last" state must carry it through up
    # to 40 random characters, while the backward pass ends right on it.
    rng = np.random.default_rng(0)
    X = ["".join(rng.choice(ALPHABET[:4], size=int(rng.integers(20, 41)))) for _ in range(400)]
    y = [t[0] for t in X]
    clf = CharRNNClassifier(
        cell="gru", hidden_size=12, embedding_dim=6, bidirectional=True, learning_rate=1e-2,
        max_iter=6, random_state=0,
    )  # fmt: skip
    fit_quietly(clf, X[:300], y[:300])
    assert clf.score(X[300:], y[300:]) >= 0.95


# -- estimator API -------------------------------------------------------------------------


def test_predict_proba_decision_function_and_predict_agree(fitted):
    clf, X, y = fitted
    proba = clf.predict_proba(X[:10])
    assert proba.shape == (10, 2)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(clf.classes_, ["none", "x"])
    dec = clf.decision_function(X[:10])
    assert dec.shape == (10,)
    assert_allclose(1 / (1 + np.exp(-dec)), proba[:, 1], rtol=1e-6)
    assert_array_equal(clf.predict(X[:10]), clf.classes_[proba.argmax(axis=1)])
    assert_allclose(np.exp(clf.predict_log_proba(X[:10])), proba, rtol=1e-6)
    assert clf.score(X, y) == np.mean(clf.predict(X) == np.asarray(y))


def test_a_text_gets_the_same_probabilities_alone_and_in_a_batch(fitted):
    clf = fitted[0]
    texts = ["ab", "a much longer text with many characters x", "", "x", "middle sized"]
    together = clf.predict_proba(texts)
    for i, t in enumerate(texts):
        assert_allclose(together[i], clf.predict_proba([t])[0], rtol=1e-5)


def test_multiclass_with_integer_labels():
    rng = np.random.default_rng(0)
    X = ["".join(rng.choice(list("abc"), size=8)) for _ in range(90)]
    y = np.array([{"a": 3, "b": 7, "c": 11}[t[0]] for t in X])
    clf = fit_quietly(CharRNNClassifier(**TINY), X, y)
    assert_array_equal(clf.classes_, [3, 7, 11])
    assert clf.predict_proba(X[:4]).shape == (4, 3)
    assert clf.decision_function(X[:4]).shape == (4, 3)
    assert set(clf.predict(X)) <= {3, 7, 11}


def test_unknown_characters_and_empty_text_do_not_crash(fitted):
    clf = fitted[0]
    proba = clf.predict_proba(["\u00e9\u00e9\u4e2d!", "", "abc\U0001f600"])
    assert np.isfinite(proba).all()
    # an unseen character is neutral: same as the unknown symbol's zero input vector
    assert_allclose(clf.predict_proba(["\u00e9"]), clf.predict_proba(["\u4e2d"]))


def test_weight_decay_shrinks_the_weights_and_partial_fit_reads_it_again(tmp_path):
    X, y = contains_x(64)

    def norm(clf):
        return float(np.sqrt(sum(np.sum(w**2.0) for w in clf.params_.values())))

    fast = {**TINY, "max_iter": 4, "learning_rate": 0.03}  # Adam moves a weight <= lr a step
    free = fit_quietly(CharRNNClassifier(**fast), X, y)
    decayed = fit_quietly(CharRNNClassifier(weight_decay=0.5, **fast), X, y)
    assert norm(decayed) < 0.97 * norm(free)
    decayed.save(tmp_path / "clf.npz")
    again = load_classifier(tmp_path / "clf.npz")
    assert again.weight_decay == 0.5 and float(again._optim_state["adam.weight_decay"]) == 0.5
    again.set_params(weight_decay=0.0).partial_fit(X, y)
    assert float(again._optim_state["adam.weight_decay"]) == 0.0


@pytest.mark.parametrize(
    "param,value",
    [
        ("cell", "transformer"),
        ("hidden_size", 0),
        ("num_layers", 1.5),
        ("embedding_dim", 0),
        ("bidirectional", "yes"),
        ("pooling", "sum"),
        ("dropout", 1.0),
        ("aux_lm_weight", -0.1),
        ("aux_lm_weight", float("inf")),
        ("batch_size", -1),
        ("learning_rate", 0),
        ("weight_decay", -1e-3),
        ("weight_decay", -1.0),
        ("lr_schedule", "step"),
        ("clip_norm", -1.0),
        ("ema_momentum", 1.0),
        ("ema_momentum", -0.5),
        ("max_iter", 0),
        ("max_time", 0),
        ("validation_fraction", 1.0),
        ("early_stopping", None),
        ("n_iter_no_change", 0),
        ("tol", -1),
        ("dtype", "float16"),
        ("verbose", -1),
        ("random_state", "seed"),
    ],
)
def test_invalid_parameters_raise_value_error_naming_them(param, value):
    clf = CharRNNClassifier(**{param: value})
    with pytest.raises(ValueError, match=param):
        clf.fit(["ab", "cd"] * 5, [0, 1] * 5)


def test_invalid_input_is_reported():
    clf = CharRNNClassifier(**TINY)
    with pytest.raises(TypeError, match="single str"):
        clf.fit("abc", [0, 1, 0])
    with pytest.raises(TypeError, match=r"X\[1\]"):
        clf.fit(["a", 2], [0, 1])
    with pytest.raises(ValueError, match="different lengths"):
        clf.fit(["a", "b"], [0])
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.fit(["a", "b"], [1, 1])
    with pytest.raises(ValueError, match="continuous"):
        clf.fit(["a", "b"], [0.5, 1.7])
    with pytest.raises(ValueError, match="no samples"):
        clf.fit([], [])


def test_not_fitted_clone_and_get_params(fitted):
    with pytest.raises(NotFittedError):
        CharRNNClassifier().predict(["a"])
    clf = fitted[0]
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "classes_")
    assert CharRNNClassifier(hidden_size=3).set_params(pooling="max").pooling == "max"
    tags = clf.__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array
    assert tags.estimator_type == "classifier"


def test_random_state_makes_fits_reproducible():
    X, y = contains_x(60)
    a = fit_quietly(CharRNNClassifier(**TINY), X, y)
    b = fit_quietly(CharRNNClassifier(**TINY), X, y)
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = fit_quietly(CharRNNClassifier(**{**TINY, "random_state": 1}), X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_early_stopping_keeps_the_best_weights(monkeypatch):
    X, y = contains_x(80)
    clf = CharRNNClassifier(**{**TINY, "max_iter": 6, "n_iter_no_change": 2, "tol": 0.0})
    scores = iter([0.5, 0.9, 0.6, 0.6, 0.6, 0.6])
    snapshot = {}

    def scripted_validation(task, params, parallel):
        score = next(scores)
        if score == 0.9:
            snapshot.update({k: v.copy() for k, v in clf.params_.items()})
        return score

    monkeypatch.setattr(ClassificationTask, "validation_score", scripted_validation)
    clf.fit(X, y)
    assert clf.validation_scores_ == [0.5, 0.9, 0.6, 0.6]
    assert clf.n_iter_ == 4
    assert clf.best_validation_score_ == 0.9
    assert snapshot
    for k, v in snapshot.items():
        assert_array_equal(clf.params_[k], v)


def test_validation_data_replaces_the_random_split(monkeypatch):
    X, y = contains_x(64)
    X_val, y_val = contains_x(20, seed=5)
    steps = []
    real_step = Adam.step
    monkeypatch.setattr(
        Adam, "step", lambda self, g, lr=None: steps.append(lr) or real_step(self, g, lr)
    )
    params = {**TINY, "batch_size": 10}
    clf = fit_quietly(CharRNNClassifier(**params), X, y)
    assert len(steps) == 2 * 6  # 10% held out: 58 texts -> 6 batches of <= 10
    steps.clear()
    clf = CharRNNClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y, validation_data=(X_val, y_val))
    assert len(steps) == 2 * 7 and len(clf.validation_scores_) == 2  # all 64 texts train
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert_array_equal(clf.vocab_.chars, CharVocab.fit(X).chars)
    monitor = CharRNNClassifier(**{**TINY, "early_stopping": False, "validation_fraction": 0.0})
    fit_quietly(monitor, X, y)
    assert monitor.validation_scores_ is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        monitor.fit(X, y, validation_data=(X_val, y_val))
    assert len(monitor.validation_scores_) == monitor.n_iter_
    with pytest.raises(ValueError, match="validation_data holds labels not in classes"):
        clf.fit(X, y, validation_data=(X_val, ["maybe"] * 20))
    with pytest.raises(ValueError, match="validation_data must be a pair"):
        clf.fit(X, y, validation_data=X_val)
    with pytest.raises(ValueError, match="validation_data X and y have different lengths"):
        clf.fit(X, y, validation_data=(X_val, y_val[:3]))


def test_convergence_warning_when_max_iter_ends_training():
    X, y = contains_x(40)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        CharRNNClassifier(**{**TINY, "max_iter": 1}).fit(X, y)


def recorded_learning_rates(monkeypatch, **params) -> list:
    """The learning rate of every step of a 3-epoch fit (8 batches each) on 64 texts."""
    X, y = contains_x(64)
    seen = []
    real_step = Adam.step

    def recording_step(self, grads, lr=None):
        seen.append(lr)
        return real_step(self, grads, lr)

    monkeypatch.setattr(Adam, "step", recording_step)
    clf = CharRNNClassifier(
        **{**TINY, "max_iter": 3, "early_stopping": False, "batch_size": 8, "n_iter_no_change": 9},
        learning_rate=0.01,
        **params,
    )
    fit_quietly(clf, X, y)
    return seen


@pytest.mark.parametrize("schedule", ["constant", "warmup_linear"])
def test_lr_schedule_spans_the_fit(monkeypatch, schedule):
    seen = recorded_learning_rates(monkeypatch, lr_schedule=schedule)
    assert len(seen) == 3 * 8
    if schedule == "constant":
        assert seen == [0.01] * len(seen)
    else:
        assert seen[0] < seen[2] and seen[-1] < seen[len(seen) // 2] < seen[2]
        assert seen[-1] >= 0.01 * 0.1


def test_a_time_budget_that_does_not_bind_leaves_the_schedule_to_the_step_count(monkeypatch):
    """A slow clock (a busy machine) must not move the rates while max_time is far off."""
    clock = {"t": 0.0}

    def slow_clock():
        clock["t"] += 2.0
        return clock["t"]

    monkeypatch.setattr(training.time, "perf_counter", slow_clock)
    seen = recorded_learning_rates(monkeypatch, lr_schedule="warmup_cosine", max_time=1e6)
    schedule = LRSchedule("warmup_cosine")
    assert seen == [0.01 * schedule.factor(k / 24) for k in range(24)]


def test_max_time_stops_training_early():
    X, y = contains_x(200)
    clf = CharRNNClassifier(**{**TINY, "max_iter": 50, "max_time": 1e-9, "batch_size": 8})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a time budget is not a failure
        clf.fit(X, y)
    assert clf.n_iter_ == 1
    assert hasattr(clf, "classes_")


def test_keyboard_interrupt_keeps_weights_with_a_warning(monkeypatch):
    X, y = contains_x(100)
    calls = {"n": 0}
    real = seqclf.loss_and_grads

    def interrupt_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(seqclf, "loss_and_grads", interrupt_on_third)
    clf = CharRNNClassifier(**{**TINY, "max_iter": 5, "batch_size": 8})
    with pytest.warns(UserWarning, match="interrupted"):
        clf.fit(X, y)
    assert clf.predict(X[:3]).shape == (3,)


def test_partial_fit_requires_classes_first_and_continues():
    X, y = contains_x(64)
    clf = CharRNNClassifier(**TINY)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:32], y[:32], classes=["x", "none"])
    assert_array_equal(clf.classes_, ["none", "x"])
    before = {k: v.copy() for k, v in clf.params_.items()}
    clf.partial_fit(X[32:], y[32:])
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert any(not np.array_equal(before[k], v) for k, v in clf.params_.items())
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(["abc"], ["other"])
    with pytest.raises(ValueError, match="differs"):
        clf.partial_fit(["abc"], ["x"], classes=["x", "y"])


def test_partial_fit_equals_one_epoch_of_fit_without_validation():
    X, y = contains_x(48)
    params = {**TINY, "max_iter": 1, "early_stopping": False, "validation_fraction": 0.0}
    a = fit_quietly(CharRNNClassifier(**params), X, y)
    b = CharRNNClassifier(**params).partial_fit(X, y, classes=np.unique(y))
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_pickle_round_trip(fitted):
    clf, X, _ = fitted
    again = pickle.loads(pickle.dumps(clf))
    assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    again.partial_fit(X[:16], fitted[2][:16])  # the optimiser still owns the weights


@pytest.mark.parametrize(
    "labels",
    [["neg", "pos"], [0, 1], [-1.0, 2.0], [False, True], np.array(["neg", "pos"], dtype=object)],
)
def test_save_load_round_trip(tmp_path, labels):
    X, y01 = contains_x(40)
    y = np.asarray(labels, dtype=object)[(np.asarray(y01) == "x").astype(int)]
    if not isinstance(labels, np.ndarray):
        y = np.asarray(y.tolist())
    clf = fit_quietly(CharRNNClassifier(**TINY), X, y)
    path = tmp_path / "clf.npz"
    clf.save(path)
    loaded = load_classifier(path)
    assert loaded.get_params() == clf.get_params()
    assert loaded.classes_.dtype == clf.classes_.dtype
    assert_array_equal(loaded.classes_, clf.classes_)
    assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert_array_equal(loaded.predict(X), clf.predict(X))
    assert loaded.loss_curve_ == clf.loss_curve_
    assert loaded.vocab_ == clf.vocab_
    loaded.partial_fit(X, y)  # optimiser state restored: training can continue


def test_save_refuses_labels_json_cannot_hold(tmp_path):
    X, y01 = contains_x(20)
    y = np.empty(len(y01), dtype=object)
    y[:] = [(0, 1) if v == "x" else (1, 0) for v in y01]
    clf = CharRNNClassifier(**TINY)
    clf.classes_ = np.array([(0, 1), (1, 0)], dtype=object)  # set directly: fit sorts tuples
    clf.vocab_ = CharVocab.fit(X)
    clf.config_ = seqclf.SeqClfConfig("gru", clf.vocab_.size, 2, 8, embedding_dim=4)
    with pytest.raises(ValueError, match="labels"):
        clf.save(tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_classifier(tmp_path / "missing.npz")
    from charrnn.io import save_arrays

    save_arrays(tmp_path / "gen.npz", {"estimator": "CharRNNGenerator"}, {})
    with pytest.raises(ValueError, match="CharRNNGenerator"):
        load_classifier(tmp_path / "gen.npz")


@pytest.mark.slow  # spawns processes: make test-fast leaves it out
def test_pipeline_and_grid_search_with_two_jobs():
    X, y = contains_x(48)
    pipe = make_pipeline(FunctionTransformer(np.char.lower), CharRNNClassifier(**TINY))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit([t.upper() for t in X], y)
        assert pipe.predict(X[:5]).shape == (5,)
        search = GridSearchCV(
            CharRNNClassifier(**{**TINY, "max_iter": 1}),
            {"pooling": ["last", "max"]},
            cv=2,
            n_jobs=2,
            error_score="raise",
        )
        search.fit(X, y)
    assert search.best_params_["pooling"] in ("last", "max")
    assert 0.0 <= search.best_score_ <= 1.0
    assert search.predict(X[:3]).shape == (3,)


# -- weight averaging (ema_momentum) ---------------------------------------------------------


def test_ema_trains_the_same_weights_and_predicts_with_their_average():
    X, y = contains_x(64)
    params = {**TINY, "early_stopping": False}
    plain = fit_quietly(CharRNNClassifier(**params), X, y)
    assert plain.averaged_params_ is None
    last = fit_quietly(CharRNNClassifier(**params, ema_momentum=0.0), X, y)
    averaged = fit_quietly(CharRNNClassifier(**params, ema_momentum=0.9), X, y)
    for k, v in plain.params_.items():  # averaging never feeds back into training
        assert_array_equal(averaged.params_[k], v)
        assert_array_equal(last.averaged_params_[k], v)  # momentum 0: the last step's weights
    assert_array_equal(last.predict_proba(X), plain.predict_proba(X))
    assert not np.array_equal(averaged.predict_proba(X), plain.predict_proba(X))
    # the average is what predicts: the same network run on averaged_params_ by hand
    ids, lens = seqclf.pad_batch(averaged._encode(X[:5]))
    logits = seqclf.forward(averaged.averaged_params_, averaged.config_, ids, lens)[0]
    assert_allclose(averaged.decision_function(X[:5]), logits[:, 1] - logits[:, 0], rtol=1e-5)


def test_ema_early_stopping_restores_the_best_epochs_average(monkeypatch):
    X, y = contains_x(80)
    clf = CharRNNClassifier(
        **{**TINY, "max_iter": 6, "n_iter_no_change": 2, "tol": 0.0, "ema_momentum": 0.8}
    )
    scores = iter([0.5, 0.9, 0.6, 0.6, 0.6, 0.6])
    snapshot = {}

    def scripted_validation(task, params, parallel):
        score = next(scores)
        if score == 0.9:
            snapshot["avg"] = {k: v.copy() for k, v in params.items()}  # the average is scored
            snapshot["raw"] = {k: v.copy() for k, v in clf.params_.items()}
        return score

    monkeypatch.setattr(ClassificationTask, "validation_score", scripted_validation)
    clf.fit(X, y)
    assert clf.n_iter_ == 4
    for k in snapshot["avg"]:
        assert_array_equal(clf.averaged_params_[k], snapshot["avg"][k])
        assert_array_equal(clf.params_[k], snapshot["raw"][k])


def test_ema_carries_over_partial_fit_save_load_and_set_params(tmp_path):
    X, y = contains_x(48)
    classes = np.unique(y)
    clf = CharRNNClassifier(**{**TINY, "ema_momentum": 0.5})
    clf.partial_fit(X, y, classes=classes)
    n_batches = clf._average.steps
    clf.partial_fit(X, y)
    assert clf._average.steps == 2 * n_batches
    path = tmp_path / "ema.npz"
    clf.save(path)
    loaded = load_classifier(path)
    assert loaded.ema_momentum == 0.5 and loaded._average.steps == 2 * n_batches
    for k, v in clf.averaged_params_.items():
        assert_array_equal(loaded.averaged_params_[k], v)
    assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    loaded.partial_fit(X, y)
    assert loaded._average.steps == 3 * n_batches
    # switched off: saved and loaded as it is until the next training call, which drops it
    clf.set_params(ema_momentum=None)
    clf.save(path)
    assert_array_equal(load_classifier(path).predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y)
    assert clf.averaged_params_ is None
    ids, lens = seqclf.pad_batch(clf._encode(X[:5]))
    logits = seqclf.forward(clf.params_, clf.config_, ids, lens)[0]
    assert_allclose(clf.decision_function(X[:5]), logits[:, 1] - logits[:, 0], rtol=1e-5)


def test_auxiliary_language_model_heads_train_but_do_not_predict(tmp_path):
    X, y = contains_x(64)
    plain = fit_quietly(CharRNNClassifier(**TINY), X, y)
    assert not any(k.startswith("lm.") for k in plain.params_)
    clf = fit_quietly(CharRNNClassifier(**TINY, bidirectional=True, aux_lm_weight=0.5), X, y)
    assert {k for k in clf.params_ if k.startswith("lm.")} == {
        "lm.fwd.W",
        "lm.fwd.b",
        "lm.bwd.W",
        "lm.bwd.b",
    }
    assert np.any(clf.params_["lm.fwd.b"] != 0) and np.any(clf.params_["lm.bwd.b"] != 0)
    proba = clf.predict_proba(X)
    path = tmp_path / "aux.npz"
    clf.save(path)
    loaded = load_classifier(path)
    assert loaded.aux_lm_weight == 0.5 and loaded.config_.aux_lm_weight == 0.5
    assert_array_equal(loaded.predict_proba(X), proba)
    for k in ("lm.fwd.W", "lm.bwd.W"):
        clf.params_[k][:] = 0.0
    assert_array_equal(clf.predict_proba(X), proba)


def _uses_average(est) -> bool:
    return est.averaged_params_ is not None


def _has_lm_heads(est) -> bool:
    return any(k.startswith("lm.") for k in est.params_)


@pytest.mark.parametrize(
    "param,values,uses_it",
    [("ema_momentum", [None, 0.9], _uses_average), ("aux_lm_weight", [0.0, 0.5], _has_lm_heads)],
)
def test_training_options_survive_pickle_and_grid_search_over_them(param, values, uses_it):
    X, y = contains_x(48)
    clf = fit_quietly(CharRNNClassifier(**TINY, **{param: values[1]}), X, y)
    assert uses_it(clf)
    again = pickle.loads(pickle.dumps(clf))
    assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    search = GridSearchCV(CharRNNClassifier(**TINY), {param: values}, cv=2, error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert uses_it(search.best_estimator_) == (search.best_params_[param] == values[1])


def test_too_few_texts_for_the_validation_split_say_how_to_train_without_it():
    clf = CharRNNClassifier(**TINY)
    with pytest.raises(ValueError, match="leaves no validation samples .* set it to 0"):
        clf.fit(["ab", "cd", "ef", "gh"], ["a", "a", "b", "b"])
    fit_quietly(clf.set_params(validation_fraction=0.0), ["ab", "cd", "ef", "gh"], list("aabb"))
    assert clf.validation_scores_ is None
