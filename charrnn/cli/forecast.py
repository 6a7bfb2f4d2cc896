"""``charrnn forecast``: fit an RNNForecaster on a series and print its next values."""

from __future__ import annotations

import contextlib
import csv
import io
import warnings
from pathlib import Path

import click
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from charrnn.cli.common import library_errors
from charrnn.cli.options import estimator_options
from charrnn.data.series import SERIES, load_series, read_csv_column
from charrnn.estimators.forecaster import RNNForecaster
from charrnn.estimators.regressor import RNNRegressor
from charrnn.io import atomic_write, check_writable
from charrnn.locks import model_lock

__all__ = ["FORECAST_DEFAULTS", "forecast", "plot_forecast"]

# Where the command deliberately differs from RNNRegressor's defaults: a series gives few
# windows, so more passes, more patience and a larger (chronological) validation hold-out;
# and the linear path from the window to the forecast (docs/benchmarks.md, forecasting).
FORECAST_DEFAULTS = {
    "max_iter": 300,
    "n_iter_no_change": 20,
    "validation_fraction": 0.15,
    "linear_skip": True,
}


def read_series(source: str, column: str | None) -> tuple[np.ndarray, int | None, str]:
    """The values of a named series or of a CSV column, the series' season (None when
    unknown) and a label."""
    if source in SERIES:
        values, season = load_series(source)
        return values, season, source
    path = Path(source)
    if not path.is_file():
        raise click.UsageError(
            f"{source!r} is neither a named series ({', '.join(SERIES)}) nor a CSV file"
        )
    return read_csv_column(path, column), None, f"{path.name}{':' + column if column else ''}"


def plot_forecast(
    history: np.ndarray, forecast: np.ndarray, path: Path, title: str, bounds=None
) -> None:
    """History and forecast (and its interval: a pair of arrays like ``forecast``) on one
    time axis, written atomically to ``path``."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(
            "--plot needs matplotlib, which is not installed: pip install 'charrnn[plot]'"
        ) from None
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    ax = fig.add_subplot()
    t = np.arange(len(history))
    ax.plot(t, history, color="black", linewidth=1.0, label="history")
    # the forecast starts from the last observed value so the two lines join
    ft = np.arange(len(history) - 1, len(history) + len(forecast))
    ax.plot(ft, np.r_[history[-1], forecast], color="tab:red", linewidth=1.5, label="forecast")
    if bounds is not None:
        ax.fill_between(ft[1:], *bounds, color="tab:red", alpha=0.2, linewidth=0, label="interval")
    ax.set_xlabel("time step")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt, dpi=120)


@click.command()
@click.argument("source", metavar="SERIES_OR_CSV")
@click.option(
    "--column", default=None, show_default="the last", help="CSV column holding the series."
)
@click.option(
    "--window",
    type=click.IntRange(1),
    default=None,
    show_default="two seasons",
    help="Past values each forecast reads.",
)
@click.option(
    "--horizon",
    type=click.IntRange(1),
    default=None,
    show_default="one season",
    help="Values to forecast (all at once: direct multi-output).",
)
@click.option(
    "--season",
    type=click.IntRange(1),
    default=None,
    show_default="the named series' own, else 12",
    help="Period of the series' cycle (sets the default window and horizon).",
)
@click.option(
    "--baseline",
    type=click.Choice(["last", "seasonal", "none"]),
    default="last",
    show_default=True,
    help="Learn differences from each window's last value, or from the value a season "
    "before each target (seasonal naive), or levels (none).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="no file",
    help="Write the forecast to this CSV file (step, forecast).",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="no plot",
    help="Draw history and forecast into this image file (needs matplotlib).",
)
@click.option(
    "--save",
    "save_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="not saved",
    help="Save the fitted forecaster to this model file (charrnn.load reads it).",
)
@click.option(
    "--coverage",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.8,
    show_default=True,
    help="Also print an interval meant to hold this share of future values, from the "
    "errors on the validation windows; 0 leaves it out.",
)
@estimator_options(RNNRegressor, FORECAST_DEFAULTS, exclude={"embedding_dim"})
def forecast(
    source, column, window, horizon, season, baseline, output, plot, save_path, coverage, **hyper
):
    """Fit a recurrent forecaster on SERIES_OR_CSV and print its next values.

    SERIES_OR_CSV is a named series (co2, sunspots, elec_equip, elnino: statsmodels' package
    data, `pip install 'charrnn[timeseries]'`) or a CSV file with a header row (--column).
    The model reads the last --window values and forecasts the next --horizon; the last
    validation_fraction of the windows stops training early.
    """
    with contextlib.ExitStack() as held:
        if save_path is not None:
            with library_errors():
                check_writable(save_path)
                # the file is written by this run alone, from before training to the save
                held.enter_context(model_lock(save_path))
        _forecast(
            source, column, window, horizon, season, baseline, output, plot, save_path,
            coverage, hyper,
        )  # fmt: skip


def _forecast(
    source, column, window, horizon, season, baseline, output, plot, save_path, coverage, hyper
) -> None:
    with library_errors():
        values, own_season, label = read_series(source, column)
        season = season or own_season or 12
        window = window or 2 * season
        horizon = horizon or season
        model = RNNForecaster(
            RNNRegressor(**hyper, verbose=1),
            window=window,
            horizon=horizon,
            baseline=None if baseline == "none" else baseline,
            season=season,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(values)
        predicted = model.predict()
        bounds = None
        if model.validation_errors_ is not None and coverage > 0:
            bounds = model.predict_interval(coverage=coverage)
    for w in caught:  # one line each, not the warning machinery's source line
        click.echo(f"note: {w.message}", err=True)
    reg = model.estimator_
    click.echo(
        f"{label}: {len(values)} values; {reg.cell} {reg.hidden_size} units, window {window}, "
        + (
            f"{reg.n_iter_} passes chosen on the validation windows, then trained on all"
            if model.refitted_
            else f"{reg.n_iter_} passes ({reg.stop_reason_})"
        )
    )
    header = ["step", "forecast"]
    columns = [predicted]
    if bounds is not None:
        pct = f"{100 * coverage:g}"
        header += [f"low{pct}", f"high{pct}"]
        columns += list(bounds)
    rows = [[i + 1, *(float(c[i]) for c in columns)] for i in range(len(predicted))]
    click.echo("  ".join(f"{h:>10}" if k else h for k, h in enumerate(header)))
    for row in rows:
        click.echo(f"{row[0]:>4}" + "".join(f"  {v:>10.6g}" for v in row[1:]))
    with library_errors():
        if output is not None:
            text = io.StringIO()
            writer = csv.writer(text)
            writer.writerow(header)
            writer.writerows([row[0], *(repr(v) for v in row[1:])] for row in rows)
            with atomic_write(output, "w") as f:
                f.write(text.getvalue())
            click.echo(f"wrote {output}")
        if save_path is not None:
            model.save(save_path)
            click.echo(f"wrote {save_path}")
        if plot is not None:
            plot_forecast(values, predicted, plot, f"{label}: {horizon}-step forecast", bounds)
            click.echo(f"wrote {plot}")
