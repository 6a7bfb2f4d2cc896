"""``charrnn forecast``: a CSV column or a named series in, the next values out."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import load
from charrnn.cli import cli
from charrnn.cli.forecast import FORECAST_DEFAULTS
from charrnn.data import series as named

FAST = ["--max-iter", "3", "--hidden-size", "4", "--seed", "0"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def series_csv(tmp_path):
    t = np.arange(120)
    path = tmp_path / "sales.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["month", "sales"])
        writer.writerows((i, 10 + np.sin(2 * np.pi * i / 12) + 0.02 * i) for i in t)
    return path


def test_forecast_prints_writes_plots_and_saves(series_csv, tmp_path):
    out, image, model = tmp_path / "f.csv", tmp_path / "f.png", tmp_path / "f.npz"
    result = run(
        "forecast", series_csv, "--column", "sales", "--horizon", 6, "--season", 12,
        "--output", out, "--plot", image, "--save", model, *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sales.csv:sales: 120 values; gru 4 units, window 24" in result.output
    lines = result.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("step"))
    assert lines[head].split() == ["step", "forecast", "low80", "high80"]
    table = lines[head + 1 :][:6]
    assert [int(line.split()[0]) for line in table] == [1, 2, 3, 4, 5, 6]
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["step", "forecast", "low80", "high80"] and len(rows) == 7
    low, point, high = float(rows[1][2]), float(rows[1][1]), float(rows[1][3])
    assert low <= point <= high
    assert abs(point - 12.4) < 2.0  # near the series' level, not nonsense
    assert image.stat().st_size > 1000
    assert float(rows[1][1]) == load(model).predict()[0]


def test_a_named_series_supplies_its_season(monkeypatch):
    # a stand-in for statsmodels' data: the command only sees values and a season
    fake = named.NamedSeries(lambda: np.sin(np.arange(80) / 2.0), 5, "test series")
    monkeypatch.setitem(named.SERIES, "wave", fake)
    result = run("forecast", "wave", "--coverage", 0, *FAST)
    assert result.exit_code == 0, result.output
    assert "wave: 80 values; gru 4 units, window 10" in result.output
    lines = result.output.rstrip().splitlines()
    assert lines[-1].split()[0] == "5"  # horizon: one season
    assert lines[-6].split() == ["step", "forecast"]  # --coverage 0: no interval


@pytest.mark.parametrize(
    "args,message",
    [
        (["nowhere"], "neither a named series"),
        (["{csv}", "--column", "price"], "no column 'price'; columns: month, sales"),
        (["{csv}", "--window", 200], "X has 120 time steps, shorter than window"),
        (["{csv}", "--horizon", 0], "Invalid value for '--horizon'"),
        (["{nan}"], "X holds NaN values (the first at time step 2)"),
        (["{csv}", "--embedding-dim", 3], "No such option '--embedding-dim'"),
    ],
)
def test_bad_input_is_a_one_line_error(series_csv, tmp_path, args, message):
    nan = tmp_path / "gap.csv"
    nan.write_text("v\n1\n2\n\n4\n5\n" + "\n".join(["6"] * 40) + "\n")
    args = [str(a).format(csv=series_csv, nan=nan) for a in args]
    result = run("forecast", *args, *FAST)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_defaults_differ_from_the_regressor_only_where_stated():
    params = {p.name: p.default for p in cli.commands["forecast"].params}
    for name, value in FORECAST_DEFAULTS.items():
        assert params[name] == value
    assert params["cell"] == "gru" and params["hidden_size"] == 32
