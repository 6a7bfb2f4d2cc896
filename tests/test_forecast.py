"""Tests for charrnn.data.windows and charrnn.estimators.forecaster (RNNForecaster), on tiny
synthetic series."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit

from charrnn import RNNForecaster, RNNRegressor
from charrnn.data.windows import check_series, make_windows
from charrnn.estimators.forecaster import seasonal_naive_scale


def seasonal(n=240, period=12, seed=0):
    """A trend, a yearly cycle and a little noise: monthly data in miniature."""
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 0.05 * t + np.sin(2 * np.pi * t / period) + 0.05 * rng.standard_normal(n)


def quick(**params) -> RNNRegressor:
    base = dict(hidden_size=8, max_iter=3, random_state=0)
    return RNNRegressor(**{**base, **params})


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function(*args, **kwargs)


# -- windows ------------------------------------------------------------------------------------


def test_windows_pair_each_past_with_its_future():
    series = np.arange(10.0)
    X, y = make_windows(series, window=4, horizon=3)
    assert X.shape == (4, 4) and y.shape == (4, 3)
    for i in range(4):
        assert_array_equal(X[i], series[i : i + 4])
        assert_array_equal(y[i], series[i + 4 : i + 7])
    X, y = make_windows(series, window=9, horizon=1)  # exactly window + horizon long
    assert X.shape == (1, 9) and y.tolist() == [[9.0]]


def test_multivariate_windows_keep_time_then_series():
    series = np.c_[np.arange(8.0), -np.arange(8.0)]
    X, y = make_windows(series, window=3, horizon=2)
    assert X.shape == (4, 3, 2) and y.shape == (4, 2, 2)
    assert_array_equal(X[1], series[1:4])
    assert_array_equal(y[1], series[4:6])


@pytest.mark.parametrize(
    "series,kwargs,match",
    [
        ([1.0, np.nan, 3.0, 4.0], {}, "NaN values .*time step 1"),
        ([1.0, 2.0, np.inf, 4.0], {}, "infinite"),
        (np.arange(4.0), dict(window=3, horizon=2), "shorter than window \\+ horizon = 3 \\+ 2"),
        (np.zeros((4, 2, 2)), {}, "rank 3"),
        (np.arange(5.0), dict(horizon=0), "horizon must be an integer >= 1, got 0"),
        (np.arange(5.0), dict(window=1.5), "window must be an integer >= 1"),
        (["a", "b", "c"], {}, "array of numbers"),
    ],
)
def test_windows_refuse_bad_input_naming_it(series, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_windows(series, **{"window": 2, "horizon": 1, **kwargs})


def test_check_series_gives_a_column_per_series():
    assert check_series([1, 2, 3]).shape == (3, 1)
    assert check_series(np.ones((5, 2))).dtype == np.float64


def test_seasonal_naive_scale():
    series = np.tile([0.0, 1.0, 0.0, 3.0], 3)[:, None]
    assert_allclose(seasonal_naive_scale(series, 4), [1.0])  # exact repeats: 0, reported as 1
    assert_allclose(seasonal_naive_scale(series, 1), [21 / 11])  # |1|, |1|, |3|, |3|, ...
    assert_allclose(seasonal_naive_scale(series[:3], 4), [1.0])  # too short: lag 1


# -- forecaster ---------------------------------------------------------------------------------


def test_forecast_shapes_for_one_and_several_series():
    series = seasonal(120)
    model = quietly(RNNForecaster(quick(), window=12, horizon=4).fit, series)
    assert model.predict().shape == (4,)
    assert_allclose(model.predict(series), model.predict())  # the same last window
    both = np.c_[series, -series]
    model = quietly(RNNForecaster(quick(), window=12, horizon=4).fit, both)
    assert model.predict().shape == (4, 2)
    true, pred = model.rolling_forecast(both[:10])
    assert true.shape == pred.shape == (7, 4, 2)
    assert_allclose(true[0], both[:4], rtol=1e-12)


def test_forecaster_beats_seasonal_naive_on_a_seasonal_series():
    series = seasonal(300)
    model = RNNForecaster(
        RNNRegressor(hidden_size=16, max_iter=60, random_state=0),
        window=24, horizon=12, season=12,
    )  # fmt: skip
    quietly(model.fit, series[:240])
    true, pred = model.rolling_forecast(series[240:])
    # seasonal naive: each value repeats the one a season before
    naive = np.stack([series[228 + i : 240 + i] for i in range(len(true))])
    assert np.abs(true - pred).mean() < 0.8 * np.abs(true - naive).mean()
    assert model.score(series[240:]) > -1.0


def test_relative_windows_follow_a_trend_out_of_the_training_range():
    series = 10 * np.arange(200.0)  # a straight line: relative windows make it trivial
    model = quietly(
        RNNForecaster(RNNRegressor(hidden_size=4, max_iter=30, random_state=0), window=6).fit,
        series[:150],
    )
    assert abs(model.predict(series[:180])[0] - 1800.0) < 15.0


def test_seasonal_baseline_learns_corrections_to_seasonal_naive():
    # an exactly periodic series: every correction is 0, so the forecast repeats the cycle,
    # also past one season (step k repeats step k - season of the last cycle)
    pattern = np.array([1.0, 5.0, 2.0, 7.0])
    series = np.tile(pattern, 10)
    model = RNNForecaster(Ridge(), window=8, horizon=6, season=4, baseline="seasonal")
    assert_allclose(model.fit(series).predict(), np.tile(pattern, 2)[:6], atol=1e-9)
    true, pred = model.rolling_forecast(series[:10])
    assert_allclose(pred, true, atol=1e-9)
    with pytest.raises(ValueError, match="window must be >= season"):
        RNNForecaster(Ridge(), window=3, season=4, baseline="seasonal").fit(series)
    with pytest.raises(ValueError, match="baseline must be one of"):
        RNNForecaster(Ridge(), baseline="mean").fit(series)


def test_prediction_intervals_come_from_the_validation_errors():
    series = seasonal(300, seed=3)
    reg = RNNRegressor(hidden_size=16, max_iter=40, validation_fraction=0.3, random_state=0)
    model = quietly(RNNForecaster(reg, window=24, horizon=6, season=12).fit, series[:240])
    assert model.validation_errors_.shape == (int(np.ceil(211 * 0.3)), 6, 1)
    point = model.predict()
    low, high = model.predict_interval(coverage=0.8)
    wide_low, wide_high = model.predict_interval(coverage=0.98)
    assert low.shape == high.shape == (6,)
    assert (low <= point).all() and (point <= high).all()
    assert (wide_low <= low).all() and (high <= wide_high).all()
    # on the next values, the 80 % intervals hold roughly that share
    true, pred = model.rolling_forecast(series[240:])
    q = np.quantile(model.validation_errors_[..., 0], [0.1, 0.9], axis=0)
    inside = (true >= pred + q[0]) & (true <= pred + q[1])
    assert 0.6 < inside.mean() <= 1.0
    with pytest.raises(ValueError, match="coverage must be in"):
        model.predict_interval(coverage=1.0)
    ridge = RNNForecaster(Ridge(), window=12).fit(series)
    with pytest.raises(ValueError, match="validation_fraction > 0"):
        ridge.predict_interval()


def test_any_multi_output_regressor_works_as_lag_feature_model():
    series = np.c_[seasonal(100), seasonal(100, seed=1)]
    model = RNNForecaster(Ridge(alpha=1e-3), window=12, horizon=3).fit(series)
    assert model.estimator_.coef_.shape == (3 * 2, 12 * 2)  # flattened windows
    assert model.predict().shape == (3, 2)


@pytest.mark.parametrize("refit", [False, True])
def test_the_validation_hold_out_is_the_end_of_the_series(monkeypatch, refit):
    calls = []
    real = RNNRegressor.fit

    def spy(self, X, y, validation_data=None):
        calls.append(dict(X=X, val=validation_data, params=self.get_params()))
        return real(self, X, y, validation_data=validation_data)

    monkeypatch.setattr(RNNRegressor, "fit", spy)
    series = np.arange(40.0)
    model = RNNForecaster(
        quick(validation_fraction=0.25), window=5, horizon=3, baseline=None, refit=refit
    )
    quietly(model.fit, series)
    # 33 windows: the last 9 validate, the 2 before them are dropped (targets shared)
    seen = calls[0]
    assert len(seen["X"]) == 22 and len(seen["val"][0]) == 9
    assert seen["X"][-1, -1] == 25.0 and seen["val"][0][0, 0] == 24.0
    assert len(calls) == 1 + refit
    if refit:
        # the final model: every window, for the passes the validation chose, no hold-out
        final = calls[1]
        assert len(final["X"]) == 33 and final["val"] is None
        assert final["params"]["validation_fraction"] == 0.0
        assert model.estimator_.n_iter_ == final["params"]["max_iter"] >= 1
        assert model.validation_errors_.shape == (9, 3, 1)


@pytest.mark.parametrize(
    "params,series,match",
    [
        (dict(horizon=0), np.arange(50.0), "horizon must be an integer >= 1, got 0"),
        (dict(window=30), np.arange(20.0), "X has 20 time steps, shorter than window"),
        (dict(window=10), np.arange(12.0), "validation_fraction"),
        ({}, np.zeros((30, 2, 2)), "X must be a series .* rank 3"),
        ({}, np.r_[np.arange(30.0), np.nan], "X holds NaN values"),
        ({}, np.r_[np.arange(30.0), -np.inf], "X holds infinite values"),
        (dict(season=0), np.arange(50.0), "season must be an integer >= 1"),
    ],
)
def test_forecaster_errors_name_the_parameter(params, series, match):
    model = RNNForecaster(quick(), **{"window": 5, "horizon": 2, **params})
    with pytest.raises(ValueError, match=match):
        model.fit(series)


def test_score_and_predict_check_their_input():
    model = quietly(RNNForecaster(quick(), window=5, horizon=3).fit, np.arange(40.0))
    with pytest.raises(ValueError, match="fewer than the 3 needed"):
        model.score(np.arange(2.0))
    with pytest.raises(ValueError, match="fewer than the 5 needed"):
        model.predict(np.arange(4.0))
    with pytest.raises(ValueError, match="2 series .* fitted on 1"):
        model.predict(np.ones((10, 2)))


def test_grid_search_with_time_series_split_never_trains_on_the_future():
    series = seasonal(160)
    model = RNNForecaster(quick(), window=12, horizon=4, season=12)
    grid = {"estimator__hidden_size": [4, 8], "window": [6, 12]}
    cv = TimeSeriesSplit(n_splits=3, test_size=24)
    search = quietly(GridSearchCV(model, grid, cv=cv).fit, series)
    assert search.best_estimator_.predict().shape == (4,)
    # every fold's score is that of a model fitted on its past alone, scored on its future
    for i, (train, test) in enumerate(cv.split(series)):
        assert train.max() < test.min()
        best = clone(model).set_params(**search.best_params_)
        fold = quietly(best.fit, series[train])
        score = search.cv_results_[f"split{i}_test_score"][search.best_index_]
        assert score == pytest.approx(fold.score(series[test]), rel=1e-12)
        # and what comes after the fold's past cannot change that model
        changed = series.copy()
        changed[test.min() :] = 1e6
        refit = quietly(clone(best).fit, changed[train])
        assert_array_equal(refit.predict(), fold.predict())


def test_forecaster_clones_and_tunes_nested_parameters():
    model = RNNForecaster(quick(), window=8)
    twin = clone(model).set_params(estimator__cell="lstm", horizon=2)
    assert twin.estimator.cell == "lstm" and model.estimator.cell == "gru"
    fitted = quietly(twin.fit, seasonal(60))
    assert fitted.estimator_ is not twin.estimator and fitted.estimator_.config_.cell == "lstm"


def test_save_and_load_round_trip(tmp_path):
    from charrnn import load
    from charrnn.estimators.forecaster import load_forecaster

    series = np.c_[seasonal(120), seasonal(120, seed=1)]
    model = RNNForecaster(quick(), window=12, horizon=3, baseline="seasonal", season=3)
    quietly(model.fit, series)
    path = tmp_path / "forecaster.npz"
    model.save(path)
    for twin in (load(path), load_forecaster(path)):
        assert isinstance(twin, RNNForecaster)
        assert twin.get_params(deep=False)["season"] == 3
        assert twin.estimator.get_params() == model.estimator.get_params()
        assert twin.estimator_.get_params() == model.estimator_.get_params()
        assert_array_equal(twin.predict(), model.predict())
        assert_array_equal(twin.predict_interval()[1], model.predict_interval()[1])
        assert twin.score(series[:20]) == model.score(series[:20])
    with pytest.raises(ValueError, match="pickle or joblib.dump it instead"):
        RNNForecaster(Ridge(), window=12).fit(series).save(tmp_path / "ridge.npz")


# -- named series and CSV columns -----------------------------------------------------------------


def test_read_csv_column_by_name_or_last(tmp_path):
    from charrnn.data.series import read_csv_column

    path = tmp_path / "s.csv"
    path.write_text("t,a,b\n0,1.5,10\n1,,11\n2,3,12\n")
    assert_array_equal(read_csv_column(path), [10.0, 11.0, 12.0])
    a = read_csv_column(path, "a")
    assert a[0] == 1.5 and np.isnan(a[1])  # refused later, with its time step
    path.write_text("t,a\n0,x\n")
    with pytest.raises(ValueError, match="line 2: 'x' in column 'a' is not a number"):
        read_csv_column(path, "a")


def test_unknown_series_names_the_known_ones():
    from charrnn.data.series import load_series

    with pytest.raises(ValueError, match="unknown series 'airline'; named series: co2, "):
        load_series("airline")


def test_named_series_read_offline_from_statsmodels():
    pytest.importorskip("statsmodels")
    from charrnn.data.series import SERIES, load_series

    for name in SERIES:
        values, season = load_series(name)
        assert values.ndim == 1 and len(values) > 200 and np.isfinite(values).all(), name
        assert season in (11, 12)
