"""A series in, training windows out: the supervised form of a forecasting problem.

A forecaster that predicts ``horizon`` values from the ``window`` values before them learns
from every position of the series where both fit: sample ``i`` reads ``series[i : i + window]``
and predicts ``series[i + window : i + window + horizon]``. The windows only ever look back,
so a model fitted on a prefix of a series has seen nothing after it.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["check_series", "check_window_length", "make_windows"]


def check_window_length(name: str, value) -> int:
    """``value`` as an int >= 1; ValueError naming ``name`` otherwise (a horizon of 0 too)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_series(series, name: str = "X", min_length: int = 1) -> np.ndarray:
    """A series as a float64 array of shape (n_times, n_series), checked.

    Parameters
    ----------
    series : array-like, shape (n_times,) or (n_times, n_series)
        One series, or several observed at the same times (columns).
    name : str
        What the caller calls it, for error messages.
    min_length : int
        Fewest time steps accepted.

    Returns
    -------
    ndarray of float64, shape (n_times, n_series)

    Raises
    ------
    ValueError
        For another rank, values that are not numbers, NaN or infinite values, or a series
        shorter than ``min_length``; the message names ``name``.
    """
    try:
        arr = np.array(series, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from None
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be a series of shape (n_times,) or (n_times, n_series), "
            f"got an array of rank {arr.ndim} with shape {arr.shape}"
        )
    if arr.ndim == 1:
        arr = arr[:, None]
    bad = ~np.isfinite(arr)
    if bad.any():
        where = int(np.argwhere(bad)[0][0])
        kind = "NaN" if np.isnan(arr).any() else "infinite"
        raise ValueError(
            f"{name} holds {kind} values (the first at time step {where}); fill or drop them "
            "first (e.g. pandas' interpolate)"
        )
    if arr.shape[0] < min_length:
        raise ValueError(
            f"{name} has {arr.shape[0]} time steps, fewer than the {min_length} needed"
        )
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has no series (0 columns)")
    return arr


def make_windows(series, window: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Every (past ``window`` values, next ``horizon`` values) pair of a series.

    Parameters
    ----------
    series : array-like, shape (n_times,) or (n_times, n_series)
    window : int >= 1
        Values the model reads.
    horizon : int >= 1
        Values it predicts (direct multi-output: all of them at once).

    Returns
    -------
    X : ndarray of float64, shape (n_windows, window) or (n_windows, window, n_series)
        ``X[i] = series[i : i + window]``; ``n_windows = n_times - window - horizon + 1``.
    y : ndarray of float64, shape (n_windows, horizon) or (n_windows, horizon, n_series)
        ``y[i] = series[i + window : i + window + horizon]``.

    Raises
    ------
    ValueError
        For a window or horizon that is not an integer >= 1, and for a series shorter than
        ``window + horizon``, besides :func:`check_series`'s errors.

    Examples
    --------
    >>> X, y = make_windows([1.0, 2.0, 3.0, 4.0, 5.0], window=3, horizon=2)
    >>> X.tolist(), y.tolist()
    ([[1.0, 2.0, 3.0]], [[4.0, 5.0]])
    """
    window = check_window_length("window", window)
    horizon = check_window_length("horizon", horizon)
    univariate = np.ndim(series) == 1
    arr = check_series(series, "series", min_length=1)
    if arr.shape[0] < window + horizon:
        raise ValueError(
            f"series has {arr.shape[0]} time steps, shorter than window + horizon = "
            f"{window} + {horizon}: use a longer series or a shorter window or horizon"
        )
    n = arr.shape[0] - window - horizon + 1
    # (n_times - k + 1, n_series, k) views; copied out time-major per window
    X = sliding_window_view(arr[: n + window - 1], window, axis=0).transpose(0, 2, 1)
    y = sliding_window_view(arr[window:], horizon, axis=0).transpose(0, 2, 1)
    X, y = np.ascontiguousarray(X), np.ascontiguousarray(y)
    if univariate:
        return X[..., 0], y[..., 0]
    return X, y
