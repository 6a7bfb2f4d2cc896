"""Forecasting benchmark: RNNForecaster against classic baselines on real series.

Rolling-origin evaluation on the named series of :mod:`charrnn.data.series` (statsmodels'
package data, read offline). Each series' last ``folds * 2 * season`` values are cut into
``folds`` consecutive test blocks of two seasons (as scikit-learn's ``TimeSeriesSplit`` cuts
them). For each block every method is fitted once on all the values before it and then forecasts the
next ``season`` values from every origin inside the block whose whole horizon lies in it,
reading the block's earlier values as they arrive but not refitting (ETS excepted: it is
refitted at every origin, as statsmodels' Holt-Winters results cannot take new data).

Errors are MASE: absolute errors divided by the in-sample mean absolute error of the
seasonal-naive forecast on the block's training values, averaged over origins and blocks;
reported at horizon 1 and over horizons 1..season. Methods:

* ``snaive``: each value repeats the one a season earlier.
* ``ridge``: ``Ridge`` on the last ``2 * season`` values as lag features (relative to the last
  one, like the RNN's windows), one output per horizon step (:class:`RNNForecaster` with
  ``Ridge`` as its regressor).
* ``ets``: statsmodels' Holt-Winters, additive damped trend and additive season.
* ``arima``: statsmodels' SARIMAX (1,1,1)(0,1,1,season), fitted per block, then filtered
  forward over the block with fixed parameters.
* ``gru`` / ``lstm``: :class:`RNNForecaster` (windows of ``2 * season``, direct multi-output,
  the last 15 % of windows as validation for early stopping); ``grux3``: the mean forecast of
  three such networks started from different seeds (its time is that of all three).

Run: ``python scripts/forecast_bench.py`` (needs ``pip install 'charrnn[timeseries]'``);
``--quick`` for a smoke run. Prints a Markdown table and writes JSON with every number.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import Ridge

from charrnn import RNNForecaster, RNNRegressor
from charrnn.data.series import SERIES, load_series
from charrnn.estimators.forecaster import seasonal_naive_scale


def windows_of(values: np.ndarray, start: int, horizon: int) -> np.ndarray:
    """The true next ``horizon`` values from every origin ``o >= start`` that has them."""
    n = len(values) - horizon - start + 1
    return np.stack([values[start + i : start + i + horizon] for i in range(n)])


def seasonal_naive(values: np.ndarray, start: int, season: int) -> np.ndarray:
    n = len(values) - season - start + 1
    return np.stack([values[start + i - season : start + i] for i in range(n)])


# RNNRegressor's settings here (those of `charrnn forecast`); --rnn-params overrides them
RNN_PARAMS = dict(
    hidden_size=32,
    learning_rate=3e-3,
    n_iter_no_change=20,
    validation_fraction=0.15,
    linear_skip=True,
)


def rnn_forecasts(cell, seed, train, test, season, max_iter, overrides):
    params = {**RNN_PARAMS, **overrides}
    windows = params.pop("window_seasons", 2)
    baseline = params.pop("baseline", "last")
    refit = params.pop("refit", RNNForecaster().refit)
    reg = RNNRegressor(cell=cell, max_iter=max_iter, random_state=seed, **params)
    model = RNNForecaster(
        reg, window=windows * season, horizon=season, season=season, baseline=baseline,
        refit=refit,
    )  # fmt: skip
    model.fit(train)
    return model.rolling_forecast(test)[1], model.estimator_.n_iter_


def ridge_forecasts(train, test, season):
    model = RNNForecaster(Ridge(alpha=1.0), window=2 * season, horizon=season, season=season)
    return model.fit(train).rolling_forecast(test)[1], None


def ets_forecasts(train, test, season):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    history = np.concatenate([train, test])
    out = []
    for o in range(len(train), len(history) - season + 1):
        fit = ExponentialSmoothing(
            history[:o], trend="add", damped_trend=True, seasonal="add", seasonal_periods=season
        ).fit()
        out.append(fit.forecast(season))
    return np.array(out), None


def arima_forecasts(train, test, season):
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    res = SARIMAX(train, order=(1, 1, 1), seasonal_order=(0, 1, 1, season)).fit(disp=False)
    out = [res.forecast(season)]
    for i in range(1, len(test) - season + 1):
        out.append(res.append(test[:i]).forecast(season))  # the same parameters, more data
    return np.array(out), None


def evaluate(name, methods, folds, seeds, max_iter, skip_blocks=0, overrides=None):
    values, season = load_series(name)
    block = 2 * season
    # --skip-blocks: evaluate on earlier blocks, leaving the reported ones unseen (for tuning)
    values = values[: len(values) - skip_blocks * block]
    rows = {}
    for k in range(folds):
        # consecutive blocks at the end, as TimeSeriesSplit(test_size=block) cuts them
        cut = len(values) - (folds - k) * block
        train, test = values[:cut], values[cut : cut + block]
        scale = seasonal_naive_scale(train[:, None], season)[0]
        truth = windows_of(np.concatenate([train, test]), len(train), season)
        for method in methods:
            runs = seeds if method.split("x")[0] in ("gru", "lstm") else [None]
            for seed in runs:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if method == "snaive":
                        pred, n_iter = (
                            seasonal_naive(np.concatenate([train, test]), len(train), season),
                            None,
                        )
                    elif method == "ridge":
                        pred, n_iter = ridge_forecasts(train, test, season)
                    elif method == "ets":
                        pred, n_iter = ets_forecasts(train, test, season)
                    elif method == "arima":
                        pred, n_iter = arima_forecasts(train, test, season)
                    else:
                        # "gru" is one network; "grux3" the mean forecast of 3 (seeds seed..seed+2)
                        cell, _, n_nets = method.partition("x")
                        fits = [
                            rnn_forecasts(
                                cell, seed + j, train, test, season, max_iter, overrides or {}
                            )
                            for j in range(int(n_nets or 1))
                        ]
                        pred = np.mean([f[0] for f in fits], axis=0)
                        n_iter = [f[1] for f in fits]
                seconds = time.perf_counter() - start
                err = np.abs(truth - pred) / scale  # (origins, season)
                rec = rows.setdefault(method, {"h1": [], "all": [], "seconds": [], "n_iter": []})
                rec["h1"].append(float(err[:, 0].mean()))
                rec["all"].append(float(err.mean()))
                rec["seconds"].append(seconds)
                rec["n_iter"].append(n_iter)
        print(f"  {name}: block {k + 1}/{folds} done", flush=True)
    return {
        "season": season,
        "n_values": len(values),
        "methods": {
            m: {
                "mase_h1": float(np.mean(r["h1"])),
                "mase_1_to_season": float(np.mean(r["all"])),
                "seconds_per_fit": float(np.mean(r["seconds"])),
                "per_block_h1": r["h1"],
                "per_block_all": r["all"],
                "n_iter": r["n_iter"],
            }
            for m, r in rows.items()
        },
    }


def table(results: dict, methods: list[str]) -> str:
    head = "| series (season) | " + " | ".join(methods) + " |"
    lines = [head, "|" + "---|" * (len(methods) + 1)]
    for name, res in results.items():
        ms = res["methods"]
        best_h1 = min(ms[m]["mase_h1"] for m in methods)
        best_all = min(ms[m]["mase_1_to_season"] for m in methods)
        cells = []
        for m in methods:
            h1, al = ms[m]["mase_h1"], ms[m]["mase_1_to_season"]
            a = f"**{h1:.2f}**" if h1 == best_h1 else f"{h1:.2f}"
            b = f"**{al:.2f}**" if al == best_all else f"{al:.2f}"
            cells.append(f"{a} / {b}")
        lines.append(f"| {name} ({res['season']}) | " + " | ".join(cells) + " |")
    lines.append("| seconds per fit (mean) | " + " | ".join(
        f"{np.mean([r['methods'][m]['seconds_per_fit'] for r in results.values()]):.2f}"
        for m in methods
    ) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", nargs="+", default=list(SERIES), choices=list(SERIES))
    parser.add_argument(
        "--methods", nargs="+", default=["snaive", "ridge", "ets", "arima", "gru", "lstm"]
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="one block, 20 passes")
    parser.add_argument(
        "--skip-blocks",
        type=int,
        default=0,
        help="drop this many blocks from each series' end first (tune on earlier data)",
    )
    parser.add_argument(
        "--rnn-params", type=json.loads, default={}, help="JSON overrides of RNN_PARAMS"
    )
    parser.add_argument("--out", type=Path, default=Path("bench_results/forecast_bench.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.folds, args.max_iter = 1, 20
    methods = list(args.methods)
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        methods = [m for m in methods if m not in ("ets", "arima")]
        print("statsmodels is not installed: no ETS or ARIMA")
    start = time.perf_counter()
    results = {
        name: evaluate(
            name, methods, args.folds, args.seeds, args.max_iter, args.skip_blocks, args.rnn_params
        )
        for name in args.series
    }
    print()
    print("MASE at horizon 1 / over horizons 1..season (lower is better; bold: best)")
    print(table(results, methods))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"args": vars(args) | {"out": str(args.out)}, "results": results}, indent=1)
    )


if __name__ == "__main__":
    main()
