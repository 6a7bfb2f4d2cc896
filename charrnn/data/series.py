"""Named real time series, read offline from statsmodels' package data, and CSV columns.

statsmodels ships a few classic series as files inside the package, so the forecasting demo
and benchmark need no download: ``pip install charrnn[timeseries]`` brings them. Each named
series is one float array, oldest value first, with the period of its cycle (the ``season``
of seasonal-naive forecasts and MASE).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SERIES", "NamedSeries", "load_series", "read_csv_column"]


def _statsmodels_datasets():
    try:
        import statsmodels.datasets.elec_equip  # noqa: F401 (not in the package namespace)
        from statsmodels import datasets
    except ImportError:
        raise ValueError(
            "the named series come with statsmodels: pip install 'charrnn[timeseries]' "
            "(or statsmodels), or give a CSV file"
        ) from None
    return datasets


def _co2() -> np.ndarray:
    # weekly readings with gaps: monthly means, the few empty months interpolated
    frame = _statsmodels_datasets().co2.load_pandas().data
    return frame["co2"].resample("MS").mean().interpolate().to_numpy(dtype=np.float64)


def _sunspots() -> np.ndarray:
    frame = _statsmodels_datasets().sunspots.load_pandas().data
    return frame["SUNACTIVITY"].to_numpy(dtype=np.float64)


def _elec_equip() -> np.ndarray:
    frame = _statsmodels_datasets().elec_equip.load().data
    return frame.iloc[:, 0].to_numpy(dtype=np.float64)


def _elnino() -> np.ndarray:
    # one row per year, one column per month: read row by row
    frame = _statsmodels_datasets().elnino.load_pandas().data
    return frame.drop(columns="YEAR").to_numpy(dtype=np.float64).reshape(-1)


@dataclass(frozen=True)
class NamedSeries:
    """A named series: how to read it, its cycle and a line about it."""

    load: Callable[[], np.ndarray]
    season: int
    description: str


SERIES: dict[str, NamedSeries] = {
    "co2": NamedSeries(_co2, 12, "Mauna Loa CO2, ppm, monthly 1958-2001 (526 values)"),
    "sunspots": NamedSeries(_sunspots, 11, "Yearly sunspot numbers 1700-2008 (309 values)"),
    "elec_equip": NamedSeries(
        _elec_equip, 12, "Euro-area electrical equipment orders index, monthly 1995-2016"
    ),
    "elnino": NamedSeries(
        _elnino, 12, "Sea surface temperature, El Nino region, monthly 1950-2010"
    ),
}


def load_series(name: str) -> tuple[np.ndarray, int]:
    """A named series (see :data:`SERIES`) and its season.

    Returns
    -------
    values : ndarray of float64, shape (n_times,)
    season : int

    Raises
    ------
    ValueError
        For an unknown name, or when statsmodels is not installed.
    """
    if name not in SERIES:
        raise ValueError(f"unknown series {name!r}; named series: {', '.join(SERIES)}")
    entry = SERIES[name]
    return entry.load(), entry.season


def read_csv_column(path: str | Path, column: str | None = None) -> np.ndarray:
    """One numeric column of a CSV file with a header row, as float64 (n_rows,).

    ``column`` None takes the last column. Empty cells become NaN, which the forecaster
    refuses with the time step of the first one.

    Raises
    ------
    ValueError
        For a missing column, a file without rows, or a cell that is not a number.
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{path}: needs a header row and at least one row of values")
    header = [h.strip() for h in rows[0]]
    if column is None:
        index = len(header) - 1
    elif column in header:
        index = header.index(column)
    else:
        raise ValueError(f"{path}: no column {column!r}; columns: {', '.join(header)}")
    values = np.empty(len(rows) - 1)
    for i, row in enumerate(rows[1:], start=2):
        cell = row[index].strip() if index < len(row) else ""
        try:
            values[i - 2] = float(cell) if cell else np.nan
        except ValueError:
            raise ValueError(
                f"{path}, line {i}: {cell!r} in column {header[index]!r} is not a number"
            ) from None
    return values
