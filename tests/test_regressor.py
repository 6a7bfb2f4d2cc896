"""Tests for charrnn.estimators.regressor (RNNRegressor) and the float-input, squared-error
path of charrnn.engine.seqclf."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from charrnn import RNNRegressor, load
from charrnn.engine import seqclf
from charrnn.engine.tasks import r2_score
from charrnn.estimators.regressor import load_regressor


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function(*args, **kwargs)


def sums(n=200, steps=8, features=1, seed=0, outputs=1):
    """Sequences whose targets are sums of their last steps: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, steps, features))
    y = np.stack([X[:, -1 - k :, :].sum(axis=(1, 2)) for k in range(outputs)], axis=1)
    return (X[..., 0] if features == 1 else X), (y[:, 0] if outputs == 1 else y)


# -- numerics -----------------------------------------------------------------------------------


def regression_gradient_error(config, x, targets, dropout_seed=None) -> float:
    """Largest relative error over parameters of the analytic gradient of the squared-error
    loss against float64 central differences, ``|num - ana| / (|num| + |ana|)`` (L2 norms)."""
    rng = np.random.default_rng(0)
    params = seqclf.init_params(config, rng)
    for p in params.values():  # move off the special initial values (zeros, orthogonal)
        p += 0.5 * rng.standard_normal(p.shape)
    lengths = np.full(x.shape[1], x.shape[0], dtype=np.intp)

    def drng():
        return None if dropout_seed is None else np.random.default_rng(dropout_seed)

    def loss() -> float:
        out, _ = seqclf.forward(params, config, x, lengths, drng(), train=True)
        return 0.5 * float(np.mean((out - targets) ** 2))

    value, grads = seqclf.loss_and_grads(params, config, x, lengths, targets, drng())
    assert value == pytest.approx(loss(), rel=1e-12)
    worst, eps = 0.0, 1e-5
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
@pytest.mark.parametrize("num_layers", [1, 2])
def test_regression_gradients_match_central_differences(cell, bidirectional, pooling, num_layers):
    rng = np.random.default_rng(2)
    config = seqclf.SeqClfConfig(
        cell=cell, vocab_size=0, n_classes=2, hidden_size=2, num_layers=num_layers,
        bidirectional=bidirectional, pooling=pooling, dtype="float64", input_size=3,
        loss="squared_error",
    )  # fmt: skip
    x = rng.standard_normal((4, 3, 3))  # (T, B, F)
    targets = rng.standard_normal((3, 2))
    assert regression_gradient_error(config, x, targets) < 1e-6


def test_regression_gradients_with_dropout():
    config = seqclf.SeqClfConfig(
        "lstm", 0, 1, 3, num_layers=2, bidirectional=True, pooling="mean", dropout=0.3,
        dtype="float64", input_size=2, loss="squared_error",
    )  # fmt: skip
    rng = np.random.default_rng(3)
    x, targets = rng.standard_normal((5, 3, 2)), rng.standard_normal((3, 1))
    assert regression_gradient_error(config, x, targets, dropout_seed=7) < 1e-6


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_regression_gradients_with_the_linear_skip_path(cell):
    config = seqclf.SeqClfConfig(
        cell, 0, 2, 3, num_layers=2, bidirectional=True, pooling="mean", dropout=0.3,
        dtype="float64", input_size=2, loss="squared_error", skip_size=5 * 2,
    )  # fmt: skip
    rng = np.random.default_rng(4)
    x, targets = rng.standard_normal((5, 3, 2)), rng.standard_normal((3, 2))
    assert regression_gradient_error(config, x, targets, dropout_seed=7) < 1e-6


def test_linear_skip_path_adds_a_linear_map_of_the_flattened_input():
    config = seqclf.SeqClfConfig(
        "gru", 0, 1, 3, dtype="float64", input_size=2, loss="squared_error", skip_size=8
    )
    rng = np.random.default_rng(5)
    params = seqclf.init_params(config, rng)
    assert params["Wskip"].shape == (8, 1) and not params["Wskip"].any()
    x, lengths = rng.standard_normal((4, 3, 2)), np.full(3, 4)
    base, _ = seqclf.forward(params, config, x, lengths)
    params["Wskip"] = rng.standard_normal((8, 1))
    out, _ = seqclf.forward(params, config, x, lengths)
    # step-major flattening: sequence b's values in the order (t0 f0, t0 f1, t1 f0, ...)
    flat = np.stack([x[:, b, :].reshape(-1) for b in range(3)])
    assert_allclose(out - base, flat @ params["Wskip"])
    with pytest.raises(AssertionError, match="skip"):
        seqclf.SeqClfConfig("gru", 3, 2, 2, skip_size=4)  # symbol input has no skip path


def test_linear_skip_fits_a_linear_target_that_the_recurrent_head_alone_misses():
    # y is a fixed linear mix of all the steps: exact for the skip path, hard for a tiny GRU
    rng = np.random.default_rng(6)
    X = rng.standard_normal((300, 12))
    y = X @ rng.standard_normal(12)
    scores = {}
    for skip in (False, True):
        reg = RNNRegressor(hidden_size=2, max_iter=60, linear_skip=skip, random_state=0)
        scores[skip] = quietly(reg.fit, X[:200], y[:200]).score(X[200:], y[200:])
    assert scores[True] > 0.99 > scores[False]


def test_float_input_config_asserts_what_belongs_to_symbols():
    for extra in ({"embedding_dim": 2}, {"aux_lm_weight": 0.5}):
        with pytest.raises(AssertionError, match="input_size"):
            seqclf.SeqClfConfig("gru", 0, 1, 2, input_size=3, loss="squared_error", **extra)
    with pytest.raises(AssertionError, match="loss must be one of"):
        seqclf.SeqClfConfig("gru", 5, 2, 2, loss="hinge")
    with pytest.raises(AssertionError, match="n_classes"):
        seqclf.SeqClfConfig("gru", 5, 1, 2)  # one class is no classification


def test_r2_score_matches_scikit_learn():
    from sklearn.metrics import r2_score as sk_r2

    rng = np.random.default_rng(0)
    y, p = rng.standard_normal((20, 3)), rng.standard_normal((20, 3))
    y[:, 2] = 1.0  # a constant output
    assert r2_score(y, p) == pytest.approx(sk_r2(y, p))
    assert r2_score(y, y) == 1.0


# -- scikit-learn's checks, in full -------------------------------------------------------------


def checked() -> RNNRegressor:
    # enough training to pass check_regressors_train (R² > 0.5 on make_regression, one
    # informative step of ten); validation off so that 20-sample folds are not split further
    return RNNRegressor(
        hidden_size=16, learning_rate=1e-2, max_iter=200, validation_fraction=0.0, random_state=0
    )


# Every check holds; the list stays here (empty) so a future failure is added with its reason.
EXPECTED_FAILURES: dict[str, str] = {}


@parametrize_with_checks(
    [checked()], expected_failed_checks=lambda est: EXPECTED_FAILURES, xfail_strict=True
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# -- behaviour ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    X, y = sums()
    return quietly(RNNRegressor(hidden_size=16, max_iter=40, random_state=0).fit, X, y)


def test_learns_a_sum_of_the_last_steps(fitted):
    X, y = sums(seed=1)
    assert fitted.score(X, y) > 0.9
    assert fitted.validation_scores_[-1] > 0.8  # R² on the held-out tenth


@pytest.mark.parametrize("standardize,expected", [(True, 0.9), (False, None)])
def test_standardize_lets_raw_units_train(standardize, expected):
    # the same task in units far from 0 and 1 (a level of 1000, steps of 50)
    X, y = sums()
    reg = RNNRegressor(hidden_size=16, max_iter=40, standardize=standardize, random_state=0)
    quietly(reg.fit, 1000 + 50 * X, 3000 + 50 * y)
    score = reg.score(1000 + 50 * X, 3000 + 50 * y)
    if expected is not None:
        assert score > expected
        assert_allclose(reg.x_mean_, [1000 + 50 * X.mean()], rtol=1e-9)
        assert_allclose(reg.y_scale_, [50 * y.std()], rtol=1e-9)
    else:
        assert score < 0.5  # what the built-in scaling is for
        assert_array_equal(reg.x_scale_, [1.0])


def test_three_d_input_and_multi_output_shapes():
    X, y = sums(n=60, steps=5, features=3, outputs=2)
    reg = quietly(RNNRegressor(hidden_size=4, max_iter=2, random_state=0).fit, X, y)
    assert reg.n_features_in_ == 5 and reg.n_inputs_ == 3 and reg.n_outputs_ == 2
    assert reg.predict(X).shape == (60, 2)
    with pytest.raises(ValueError, match="features per step"):
        reg.predict(X[:, :, :2])
    with pytest.raises(ValueError, match="5 features"):
        reg.predict(X[:, :4])


def test_bidirectional_reads_both_ends():
    # the target is the first step: the backward pass's final state holds it
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 12))
    reg = RNNRegressor(hidden_size=8, bidirectional=True, max_iter=30, random_state=0)
    assert quietly(reg.fit, X, X[:, 0]).score(X, X[:, 0]) > 0.95
    assert reg.params_["l0.bwd.Wx"].shape == (1, 3 * 8)


def test_random_state_makes_fits_reproducible():
    X, y = sums(n=60)
    a = quietly(RNNRegressor(hidden_size=4, max_iter=3, dropout=0.2, random_state=5).fit, X, y)
    b = quietly(clone(a).fit, X, y)
    for k in a.params_:
        assert_array_equal(a.params_[k], b.params_[k])


def test_validation_data_replaces_the_random_split():
    X, y = sums(n=80)
    reg = RNNRegressor(hidden_size=4, max_iter=2, random_state=0)
    quietly(reg.fit, X[:60], y[:60], validation_data=(X[60:], y[60:]))
    assert len(reg.validation_scores_) == 2
    with pytest.raises(ValueError, match="different lengths"):
        reg.fit(X[:60], y[:60], validation_data=(X[60:], y[61:]))


def test_invalid_parameters_and_input_name_what_is_wrong():
    X, y = sums(n=20)
    with pytest.raises(ValueError, match="embedding_dim must be None"):
        RNNRegressor(embedding_dim=8).fit(X, y)
    with pytest.raises(ValueError, match="pooling must be one of"):
        RNNRegressor(pooling="sum").fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        RNNRegressor().fit(np.where(X > 2, np.nan, X), y)
    with pytest.raises(ValueError, match="validation_fraction=0"):
        RNNRegressor(validation_fraction=0.5).fit(X[:1], y[:1])
    with pytest.raises(NotFittedError):
        RNNRegressor().predict(X)


def test_partial_fit_keeps_the_scaling_and_refuses_new_shapes():
    X, y = sums(n=40)
    reg = RNNRegressor(hidden_size=4, random_state=0).partial_fit(X, y)
    mean = reg.x_mean_.copy()
    reg.partial_fit(X + 100, y)
    assert_array_equal(reg.x_mean_, mean) and reg.n_iter_ == 2
    with pytest.raises(ValueError, match="features"):
        reg.partial_fit(X[:, :3], y)
    with pytest.raises(ValueError, match="outputs"):
        reg.partial_fit(X, np.c_[y, y])


def test_save_load_and_pickle_round_trips(fitted, tmp_path):
    X, _ = sums(n=30, seed=2)
    path = tmp_path / "reg.npz"
    fitted.save(path)
    for twin in (load(path), load_regressor(path), pickle.loads(pickle.dumps(fitted))):
        assert isinstance(twin, RNNRegressor)
        assert_array_equal(twin.predict(X), fitted.predict(X))
        assert twin.get_params() == fitted.get_params()
        assert twin.loss_curve_ == fitted.loss_curve_
    # the loaded model continues training
    cont = load(path).set_params(warm_start=True, max_iter=1)
    assert quietly(cont.fit, *sums(n=30)).n_iter_ == fitted.n_iter_ + 1


def test_linear_skip_model_saves_and_loads(tmp_path):
    X, y = sums(n=60)
    reg = quietly(
        RNNRegressor(hidden_size=3, max_iter=3, linear_skip=True, random_state=0).fit, X, y
    )
    reg.save(tmp_path / "skip.npz")
    twin = load(tmp_path / "skip.npz")
    assert twin.linear_skip and "Wskip" in twin.params_
    assert_array_equal(twin.predict(X), reg.predict(X))


def test_linear_skip_starts_at_the_ridge_fit_of_the_training_data():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(7)
    X = rng.standard_normal((80, 6)) * 3 + 10
    y = X @ rng.standard_normal(6) + rng.standard_normal(80)
    # a step too small to move the weights: what is left is the starting point
    reg = RNNRegressor(
        hidden_size=3, linear_skip=True, learning_rate=1e-12, max_iter=1,
        validation_fraction=0.0, early_stopping=False, dtype="float64", random_state=0,
    )  # fmt: skip
    quietly(reg.fit, X, y)
    Xs = (X - X.mean()) / X.std()  # one mean and scale for every step of the one feature
    ys = (y - y.mean()) / y.std()
    ridge = Ridge(alpha=1.0).fit(Xs, ys)
    assert_allclose(reg.predict(X), ridge.predict(Xs) * y.std() + y.mean(), rtol=1e-6)
    assert np.abs(reg.params_["Wout"]).max() < 1e-9  # the recurrent head starts at zero
