"""RNNForecaster: the next ``horizon`` values of a series, from windows of its past.

Fitting cuts the series into windows (:func:`charrnn.data.windows.make_windows`) and trains a
regressor -- an :class:`~charrnn.estimators.regressor.RNNRegressor` unless told otherwise --
to map each window to the ``horizon`` values after it, all at once (direct multi-output, so
no forecast is fed back as an input). ``X`` is the series itself, time along the first axis,
so scikit-learn's ``TimeSeriesSplit`` splits it into a past that ``fit`` sees and a future
that ``score`` forecasts, and ``GridSearchCV`` tunes a forecaster without leaking the future.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from charrnn.data.windows import check_series, check_window_length, make_windows
from charrnn.estimators.base import RecurrentEstimator
from charrnn.estimators.regressor import RNNRegressor
from charrnn.io import load_as, save_arrays

__all__ = ["BASELINES", "RNNForecaster", "load_forecaster", "seasonal_naive_scale"]

ESTIMATOR_NAME = "RNNForecaster"

#: what a forecaster's targets may be relative to (``baseline``), besides None (levels)
BASELINES = ("last", "seasonal", None)


def seasonal_naive_scale(series: np.ndarray, season: int) -> np.ndarray:
    """Mean absolute error of the seasonal-naive forecast within ``series``: MASE's scale.

    Parameters
    ----------
    series : ndarray, shape (n_times, n_series)
    season : int
        Lag of the naive forecast (1 repeats the last value); a series shorter than
        ``season + 1`` falls back to lag 1.

    Returns
    -------
    ndarray, shape (n_series,)
        Positive (a constant series gets 1, so its errors are reported unscaled).
    """
    m = season if len(series) > season else 1
    if len(series) <= m:
        return np.ones(series.shape[1])
    scale = np.mean(np.abs(series[m:] - series[:-m]), axis=0)
    return np.where(scale > 0, scale, 1.0)


class RNNForecaster(BaseEstimator):
    """Forecast the next ``horizon`` values of a series with a recurrent network.

    Parameters
    ----------
    estimator : regressor or None, default=None
        Maps windows to the values after them; None is ``RNNRegressor(linear_skip=True)``.
        It is cloned by ``fit`` (``estimator_`` is the fitted copy); its parameters are
        tuned as ``estimator__hidden_size`` and so on. Any scikit-learn regressor with
        multi-output support works (e.g. ``Ridge()``, a lag-feature linear model); it gets
        the windows flattened to shape (n_windows, window * n_series).
    window : int, default=24
        Past values each forecast reads.
    horizon : int, default=1
        Values forecast at once, one output each (direct multi-output).
    baseline : {"last", "seasonal"} or None, default="last"
        What the regressor learns the difference from, so that it learns the shape of what
        comes next rather than the level (a series with a trend leaves the range it was
        trained on; its changes do not). Every window is read relative to its last value;
        the targets are relative to that last value ("last"), or to the seasonal-naive
        forecast, the value one ``season`` before each target ("seasonal": the regressor
        learns corrections to seasonal naive; needs ``window >= season``). None learns
        levels.
    season : int, default=1
        Seasonal period: of the "seasonal" baseline, and of :meth:`score`'s scale (MASE),
        the mean absolute error of the seasonal-naive forecast on the training series. 12
        for monthly data with a yearly cycle.
    refit : bool, default=True
        With an :class:`RNNRegressor` that validates (``validation_fraction`` > 0): after the
        fit on the earlier windows has chosen, on the last ones, how many passes to train
        (``best_iteration_``), train a fresh copy of the regressor on every window for that
        many passes, so the final model has learnt from the end of the series -- the part
        closest to what it forecasts. It doubles the training time. False keeps the model
        fitted without the validation windows.

    Attributes
    ----------
    estimator_ : regressor
        The fitted regressor.
    n_series_ : int
        Series (columns) forecast together.
    last_window_ : ndarray, shape (window, n_series)
        The end of the training series: what :meth:`predict` forecasts from by default and
        :meth:`score` starts from.
    scale_ : ndarray, shape (n_series,)
        :func:`seasonal_naive_scale` of the training series.
    refitted_ : bool
        Whether ``estimator_`` is the ``refit`` on every window.
    validation_errors_ : ndarray, shape (n_validation, horizon, n_series), or None
        True minus forecast values of the validation windows (an :class:`RNNRegressor` with
        ``validation_fraction`` > 0), which :meth:`predict_interval` reads; else None.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(240)
    >>> series = np.sin(2 * np.pi * t / 12) + 0.01 * t
    >>> model = RNNForecaster(RNNRegressor(max_iter=20, random_state=0), window=24, horizon=6)
    >>> model.fit(series).predict().shape
    (6,)
    """

    def __init__(
        self, estimator=None, *, window=24, horizon=1, baseline="last", season=1, refit=True
    ):
        self.estimator = estimator
        self.window = window
        self.horizon = horizon
        self.baseline = baseline
        self.season = season
        self.refit = refit

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False  # the series is X; there is no y
        tags.non_deterministic = False
        return tags

    def _lengths(self) -> tuple[int, int]:
        window = check_window_length("window", self.window)
        horizon = check_window_length("horizon", self.horizon)
        season = check_window_length("season", self.season)
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.baseline == "seasonal" and window < season:
            raise ValueError(
                f"baseline='seasonal' reads the value one season before each target: window "
                f"must be >= season, got window={window}, season={season}"
            )
        return window, horizon

    def _inputs(self, Xw: np.ndarray) -> np.ndarray:
        """Windows (n, window, n_series) as the regressor takes them."""
        if isinstance(self.estimator_, RecurrentEstimator):
            return Xw[..., 0] if Xw.shape[2] == 1 else Xw  # steps stay steps
        return Xw.reshape(len(Xw), -1)

    def _relative(self, Xw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows (n, window, S) -> (inputs for the regressor, the values the targets are
        relative to, (n, horizon, S))."""
        n, window, S = Xw.shape
        if self.baseline is None:
            return self._inputs(Xw), np.zeros((n, int(self.horizon), S))
        last = Xw[:, -1:, :]
        if self.baseline == "last":
            base = np.repeat(last, int(self.horizon), axis=1)
        else:
            # seasonal naive: step k (0-based) repeats the value at k % season in the last season
            m = int(self.season)
            base = Xw[:, window - m + np.arange(int(self.horizon)) % m, :]
        return self._inputs(Xw - last), base

    def _supervised(self, series: np.ndarray, window: int, horizon: int):
        """(inputs, targets (n, horizon * S), what the targets are relative to (n, horizon, S))."""
        # series is (n_times, S), so the windows keep their series axis
        Xw, yw = make_windows(series, window, horizon)  # (n, window, S), (n, horizon, S)
        inputs, base = self._relative(Xw)
        return inputs, (yw - base).reshape(len(yw), -1), base

    def fit(self, X, y=None):
        """Fit on a series. Returns self.

        Parameters
        ----------
        X : array-like, shape (n_times, ) or (n_times, n_series)
            The series, oldest value first; at least ``window + horizon`` time steps (more
            with the regressor's validation hold-out).
        y : None
            Ignored: the targets are the series' own later values.
        """
        window, horizon = self._lengths()
        series = check_series(X, "X")
        if len(series) < window + horizon:
            raise ValueError(
                f"X has {len(series)} time steps, shorter than window + horizon = {window} + "
                f"{horizon}: use a longer series or a shorter window or horizon"
            )
        self.estimator_ = clone(
            RNNRegressor(linear_skip=True) if self.estimator is None else self.estimator
        )
        self.n_series_ = series.shape[1]
        inputs, targets, _ = self._supervised(series, window, horizon)
        fraction = getattr(self.estimator_, "validation_fraction", 0)
        if isinstance(self.estimator_, RNNRegressor) and fraction > 0:
            # the last windows validate: a random pick would score windows whose neighbours,
            # overlapping them almost entirely, were trained on
            n_val = int(np.ceil(len(inputs) * fraction))
            n_train = len(inputs) - n_val - (horizon - 1)  # no target shared with validation
            if n_train < 1:
                raise ValueError(
                    f"X has {len(series)} time steps: too short for window={window}, "
                    f"horizon={horizon} and a validation_fraction={fraction} hold-out; use a "
                    "longer series or estimator__validation_fraction=0"
                )
            self.estimator_.fit(
                inputs[:n_train],
                targets[:n_train],
                validation_data=(inputs[-n_val:], targets[-n_val:]),
            )
            # forecast errors on windows never trained on, for predict_interval
            pred = np.asarray(self.estimator_.predict(inputs[-n_val:]), dtype=np.float64)
            errors = targets[-n_val:] - pred.reshape(n_val, -1)
            self.validation_errors_ = errors.reshape(n_val, horizon, self.n_series_)
            self.refitted_ = bool(self.refit)
            if self.refit:
                self.estimator_ = self._refitted(inputs, targets)
        else:
            self.estimator_.fit(inputs, targets)
            self.validation_errors_ = None
            self.refitted_ = False
        self.last_window_ = series[-window:].copy()
        self.scale_ = seasonal_naive_scale(series, int(self.season))
        return self

    def _refitted(self, inputs: np.ndarray, targets: np.ndarray) -> RNNRegressor:
        """A fresh regressor trained on every window for the passes validation chose."""
        chosen = self.estimator_
        passes = chosen.best_iteration_ or chosen.n_iter_
        final = clone(chosen).set_params(
            max_iter=int(passes), validation_fraction=0.0, early_stopping=False, warm_start=False
        )
        with warnings.catch_warnings():
            # max_iter ending this fit is the plan, not a sign of an unfinished fit
            warnings.simplefilter("ignore", ConvergenceWarning)
            return final.fit(inputs, targets)

    def _shaped(self, values: np.ndarray) -> np.ndarray:
        """(n, horizon * S) outputs as (n, horizon) or (n, horizon, S)."""
        values = values.reshape(len(values), int(self.horizon), self.n_series_)
        return values[..., 0] if self.n_series_ == 1 else values

    def _check_continuation(self, X, min_length: int) -> np.ndarray:
        series = check_series(X, "X", min_length=min_length)
        if series.shape[1] != self.n_series_:
            raise ValueError(
                f"X has {series.shape[1]} series (columns), but the forecaster was fitted on "
                f"{self.n_series_}"
            )
        return series

    def predict(self, X=None) -> np.ndarray:
        """The next ``horizon`` values after a series.

        Parameters
        ----------
        X : array-like, shape (n_times,) or (n_times, n_series), optional
            Recent history, at least ``window`` time steps, oldest first; its last
            ``window`` values are read. None forecasts from the end of the training series.

        Returns
        -------
        ndarray, shape (horizon,) or (horizon, n_series)
        """
        check_is_fitted(self)
        window = int(self.window)
        history = self.last_window_ if X is None else self._check_continuation(X, window)[-window:]
        inputs, base = self._relative(history[None])  # a batch of one window
        out = np.asarray(self.estimator_.predict(inputs), dtype=np.float64)
        out = out.reshape(1, int(self.horizon), self.n_series_) + base
        return out[0, :, 0] if self.n_series_ == 1 else out[0]

    def predict_interval(self, X=None, coverage: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds around :meth:`predict`, from the validation errors.

        Split-conformal style: for each step of the horizon, the forecast plus the empirical
        ``(1 - coverage) / 2`` and ``(1 + coverage) / 2`` quantiles of the errors made on the
        validation windows (the end of the training series, never trained on). The
        validation windows also chose when training stopped, so the intervals are somewhat
        narrow; with few windows (say under 30) the outer quantiles are rough.

        Parameters
        ----------
        X : array-like, optional
            As for :meth:`predict`.
        coverage : float in (0, 1)
            Share of future values the interval should hold.

        Returns
        -------
        lower, upper : ndarray, shape (horizon,) or (horizon, n_series)

        Raises
        ------
        ValueError
            Without validation errors (another regressor, or ``validation_fraction=0``).
        """
        check_is_fitted(self)
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {coverage!r}")
        if self.validation_errors_ is None:
            raise ValueError(
                "predict_interval needs the validation errors of an RNNRegressor with "
                "validation_fraction > 0 (estimator__validation_fraction)"
            )
        point = self.predict(X)
        low, high = np.quantile(
            self.validation_errors_, [(1 - coverage) / 2, (1 + coverage) / 2], axis=0
        )  # each (horizon, S)
        if self.n_series_ == 1:
            low, high = low[:, 0], high[:, 0]
        return point + low, point + high

    def rolling_forecast(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Forecasts from every origin in ``X``, a continuation of the training series.

        Each forecast reads the ``window`` values before its origin -- the training series'
        last values, then ``X``'s own earlier values -- and is compared with the ``horizon``
        values of ``X`` after it: rolling-origin evaluation without refitting.

        Parameters
        ----------
        X : array-like, shape (n_times,) or (n_times, n_series), n_times >= horizon
            The values that followed the training series.

        Returns
        -------
        y_true, y_pred : ndarray, shape (n_times - horizon + 1, horizon[, n_series])
        """
        check_is_fitted(self)
        horizon = int(self.horizon)
        future = self._check_continuation(X, horizon)
        context = np.concatenate([self.last_window_, future])
        inputs, targets, base = self._supervised(context, int(self.window), horizon)
        pred = np.asarray(self.estimator_.predict(inputs), dtype=np.float64)
        pred = pred.reshape(len(pred), horizon, self.n_series_) + base
        true = targets.reshape(len(targets), horizon, self.n_series_) + base
        return self._shaped(true), self._shaped(pred)

    def score(self, X, y=None) -> float:
        """Minus the mean absolute scaled error (MASE) of :meth:`rolling_forecast` on ``X``.

        The mean absolute error over every origin and step of the horizon, divided by
        ``scale_`` (the training series' in-sample seasonal-naive error), averaged over
        the series; higher is better, as scikit-learn's model selection expects. A score
        above -1 beats the seasonal-naive forecast's in-sample error.

        Parameters
        ----------
        X : array-like, shape (n_times,) or (n_times, n_series), n_times >= horizon
            The values that followed the training series (e.g. a ``TimeSeriesSplit``
            test fold).
        y : None
            Ignored.
        """
        true, pred = self.rolling_forecast(X)
        err = np.abs(true - pred).reshape(-1, self.n_series_).mean(axis=0)
        return -float(np.mean(err / self.scale_))

    # -- persistence ----------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted forecaster to ``path`` (.npz with a JSON header), atomically.

        The regressor's own header and arrays are kept inside (prefixed), so the file holds
        everything :meth:`predict`, :meth:`predict_interval` and :meth:`score` need.

        Raises
        ------
        ValueError
            If the regressor is not an :class:`RNNRegressor` (pickle other models instead).
        """
        check_is_fitted(self)
        if not isinstance(self.estimator_, RNNRegressor):
            raise ValueError(
                f"only a forecaster over an RNNRegressor is saved as a model file, not over a "
                f"{type(self.estimator_).__name__}; pickle or joblib.dump it instead"
            )
        reg_header, reg_arrays = self.estimator_.saved_state()
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "estimator"}
        header = {"estimator": ESTIMATOR_NAME, "params": params, "regressor": reg_header}
        header["refitted"] = bool(self.refitted_)
        if isinstance(self.estimator, RNNRegressor):
            # what the forecaster was asked for: after a refit, estimator_'s own budget and
            # validation settings are the refit's
            asked = self.estimator.get_params()
            if not (asked["random_state"] is None or isinstance(asked["random_state"], int)):
                asked["random_state"] = None
            header["regressor_params"] = asked
        arrays = {f"regressor/{k}": v for k, v in reg_arrays.items()}
        arrays |= {"last_window": self.last_window_, "scale": self.scale_}
        if self.validation_errors_ is not None:
            arrays["validation_errors"] = self.validation_errors_
        save_arrays(path, header, arrays)

    @classmethod
    def _from_saved(cls, header: dict, arrays: dict, path=None) -> RNNForecaster:
        """Rebuild a fitted forecaster from :func:`charrnn.io.load_arrays` output."""
        if header.get("estimator") != ESTIMATOR_NAME:
            raise ValueError(f"file holds a {header.get('estimator')!r}, not a {ESTIMATOR_NAME}")
        prefix = "regressor/"
        reg = RNNRegressor.from_saved_state(
            header["regressor"],
            {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)},
        )
        asked = header.get("regressor_params", reg.get_params())
        est = cls(RNNRegressor(**asked), **header["params"])
        window, horizon = est._lengths()
        est.estimator_ = reg
        est.last_window_ = np.array(arrays["last_window"], dtype=np.float64)
        if est.last_window_.ndim != 2 or est.last_window_.shape[0] != window:
            raise ValueError(
                f"has a last window of shape {est.last_window_.shape}; expected ({window}, "
                "n_series)"
            )
        est.n_series_ = n_series = est.last_window_.shape[1]
        if (reg.n_inputs_, reg.n_features_in_) != (n_series, window) or (
            reg.n_outputs_ != horizon * n_series
        ):
            raise ValueError(
                f"has a regressor of {reg.n_inputs_} inputs, {reg.n_features_in_} steps and "
                f"{reg.n_outputs_} outputs for {n_series} series, window={window} and "
                f"horizon={horizon}"
            )
        est.scale_ = np.array(arrays["scale"], dtype=np.float64)
        if est.scale_.shape != (n_series,) or not np.all(est.scale_ > 0):
            raise ValueError(f"has a scale of shape {est.scale_.shape} or values <= 0")
        est.refitted_ = bool(header.get("refitted", False))
        errors = arrays.get("validation_errors")
        est.validation_errors_ = None if errors is None else np.array(errors, dtype=np.float64)
        if errors is not None and (errors.ndim != 3 or errors.shape[1:] != (horizon, n_series)):
            raise ValueError(
                f"has validation errors of shape {errors.shape}; expected (n, {horizon}, "
                f"{n_series})"
            )
        return est


def load_forecaster(path) -> RNNForecaster:
    """Load a forecaster written by :meth:`RNNForecaster.save`.

    Raises
    ------
    charrnn.io.ModelFileError
        For a file that cannot be read or holds another kind of model (a ValueError).
    """
    return load_as(path, RNNForecaster)
