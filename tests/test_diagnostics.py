"""Tests for charrnn.diagnostics: gradient flow, summaries, the recall task, `charrnn gradients`."""

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import CharRNNGenerator
from charrnn.cli.gradients import gradients
from charrnn.diagnostics import (
    gradient_flow,
    gradient_flow_summary,
    hidden_gradients,
    init_model,
    make_recall_task,
    recall_accuracy,
    recall_documents,
    recall_generator,
    recall_gradient_flow,
    recall_gradient_ratio,
    recall_stream_accuracy,
    recall_text,
    sparkline,
    standard_lags,
)
from charrnn.engine import network

TEXT = "the cat sat on the mat. a bat ate the hat; that cat sat.\n" * 4


def _layer_p(params, config, k):
    p = {"Wh": params[f"l{k}.Wh"]}
    for name in config.cell_class.extra_params:
        p[name] = params[f"l{k}.{name}"]
    return p


def _last_loss(params, config, inputs, target, perturb=None):
    """Last-step loss computed with the cells' cache-free ``step``, independent of backward.

    ``perturb = (layer, t, unit, eps)`` adds eps to one unit of h at (layer, t) after the cell
    computes it and before anything reads it (for the LSTM the cell state stays as it is).
    """
    cell = config.cell_class
    state = network.init_state(config, 1)
    h = None
    for t, sym in enumerate(inputs):
        xw = params["l0.Wx"][[sym]] + params["l0.b"]
        for k in range(config.num_layers):
            if k > 0:
                xw = h @ params[f"l{k}.Wx"] + params[f"l{k}.b"]
            st = cell.step(xw, state[k], _layer_p(params, config, k))
            if perturb is not None and perturb[:2] == (k, t):
                h_new = st[0].copy()
                h_new[0, perturb[2]] += perturb[3]
                st = (h_new,) + tuple(st[1:])
            state[k] = st
            h = st[0]
    logits = (h @ params["Why"] + params["by"])[0]
    return float(-network.log_softmax(logits)[target])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_hidden_gradients_match_finite_differences(cell, num_layers):
    rng = np.random.default_rng(3)
    V, H, T = 7, 4, 6
    config = network.NetworkConfig(cell, V, H, num_layers, dtype="float64")
    params = network.init_params(config, rng)
    # Larger, random recurrent biases and weights so gates sit away from their initial values.
    for name in params:
        params[name] = params[name] + 0.3 * rng.standard_normal(params[name].shape)
    inputs = rng.integers(0, V, size=T)
    target = int(rng.integers(0, V))
    grads = hidden_gradients(params, config, inputs[:, None], np.array([target]))
    assert grads.shape == (num_layers, T, 1, H)
    eps = 1e-6
    numeric = np.zeros_like(grads)
    for k in range(num_layers):
        for t in range(T):
            for i in range(H):
                up = _last_loss(params, config, inputs, target, (k, t, i, eps))
                down = _last_loss(params, config, inputs, target, (k, t, i, -eps))
                numeric[k, t, 0, i] = (up - down) / (2 * eps)
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-9)
    # a check that is not vacuous: the earliest state does influence the loss
    assert np.abs(numeric[:, 0]).max() > 1e-6


def test_hidden_gradients_batch_rows_are_independent():
    rng = np.random.default_rng(0)
    config = network.NetworkConfig("gru", 6, 5, 2, dtype="float64")
    params = network.init_params(config, rng)
    inputs = rng.integers(0, 6, size=(8, 3))
    targets = rng.integers(0, 6, size=3)
    together = hidden_gradients(params, config, inputs, targets)
    for b in range(3):
        alone = hidden_gradients(params, config, inputs[:, b : b + 1], targets[b : b + 1])
        np.testing.assert_allclose(together[:, :, b], alone[:, :, 0], rtol=1e-12, atol=1e-15)


def test_hidden_gradients_validates_shapes():
    config = network.NetworkConfig("rnn", 5, 3)
    params = network.init_params(config, np.random.default_rng(0))
    with pytest.raises(ValueError, match="targets"):
        hidden_gradients(params, config, np.zeros((4, 2), dtype=int), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="inputs"):
        hidden_gradients(params, config, np.zeros(4, dtype=int), np.zeros(1, dtype=int))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradient_flow_shape_and_lag_order(cell):
    model = init_model(TEXT, cell=cell, hidden_size=8, num_layers=2, random_state=0)
    flow = gradient_flow(model, TEXT, window=30)
    assert flow.shape == (2, 30)
    assert np.all(np.isfinite(flow)) and np.all(flow >= 0)
    # lag 0 of the top layer is the output layer's gradient alone: Why @ (p - onehot)
    ids = np.concatenate(([0], model.vocab_.encode(TEXT)))
    start = len(ids) - 31
    logits, _, _ = network.forward_logits(
        model.params_,
        model.config_,
        ids[start : start + 30, None].astype(np.intp),
        network.init_state(model.config_, 1),
    )
    p = np.exp(network.log_softmax(logits[-1, 0].astype(np.float64)))
    p[ids[-1]] -= 1.0
    expected = np.linalg.norm(model.params_["Why"].astype(np.float64) @ p)
    assert flow[1, 0] == pytest.approx(expected, rel=1e-5)


def test_gradient_flow_positions_average_of_windows():
    model = init_model(TEXT, cell="rnn", hidden_size=6, num_layers=1, random_state=1)
    a = gradient_flow(model, TEXT, window=10, position=5)
    b = gradient_flow(model, TEXT, window=10, position=40)
    both = gradient_flow(model, TEXT, window=10, position=[5, 40])
    np.testing.assert_allclose(both, (a + b) / 2)
    assert not np.allclose(a, b)
    spread = gradient_flow(model, TEXT, window=10, n_windows=4)
    assert spread.shape == (1, 10)


def test_gradient_flow_of_fitted_model_and_errors():
    model = CharRNNGenerator(
        cell="lstm",
        hidden_size=8,
        num_layers=1,
        seq_length=16,
        batch_size=4,
        max_iter=1,
        validation_fraction=0.0,
        random_state=0,
    ).fit(TEXT)
    flow = gradient_flow(model, TEXT[:40], window=40)
    assert flow.shape == (1, 40)
    with pytest.raises(ValueError, match="window=41"):
        gradient_flow(model, TEXT[:40], window=41)
    with pytest.raises(ValueError, match="window"):
        gradient_flow(model, TEXT, window=0)
    with pytest.raises(ValueError, match="position"):
        gradient_flow(model, TEXT, window=10, position=10**6)
    with pytest.raises(TypeError, match="model"):
        gradient_flow(object(), TEXT)
    with pytest.raises(TypeError, match="text"):
        gradient_flow(model, 123)


def test_init_model_matches_the_start_of_fit():
    fresh = init_model(TEXT, cell="gru", hidden_size=5, num_layers=1, random_state=7)
    fitted = CharRNNGenerator(cell="gru", hidden_size=5, num_layers=1, random_state=7)
    fitted.initialize([TEXT])
    for name, value in fitted.params_.items():
        np.testing.assert_array_equal(fresh.params_[name], value)
    assert fresh.vocab_ == fitted.vocab_


def test_summary_lags_and_vanish_lag():
    assert standard_lags(101) == [1, 2, 5, 10, 20, 50, 100]
    assert standard_lags(100) == [1, 2, 5, 10, 20, 50]
    lags = np.arange(60)
    flow = np.stack([0.5**lags, np.ones(60)])  # layer 0 halves every step, layer 1 does not decay
    s = gradient_flow_summary(flow)
    assert s["lags"] == [1, 2, 5, 10, 20, 50]
    assert s["norms"][0][0] == pytest.approx(0.5)
    assert s["norms"][1] == [1.0] * 6
    # 0.5**lag < 1e-3 * 0.5  <=>  lag >= 11
    assert s["vanish_lag"] == [11, None]
    with pytest.raises(ValueError, match="flow"):
        gradient_flow_summary(np.ones(5))


def test_sparkline():
    line = sparkline([1.0, 1e-1, 1e-2, 1e-3])
    assert line[0] == "█" and line[-1] == "▁" and len(line) == 4
    assert sparkline([1.0, 0.0, np.nan]) == "█  "
    assert sparkline([1e-3], lo=1e-6, hi=1.0) == "▅"
    assert len(sparkline(np.ones(100), width=20)) == 20


def test_recall_task_is_deterministic_and_well_formed():
    a = make_recall_task(50, 7, n_keys=4, rng=11)
    b = make_recall_task(50, 7, n_keys=4, rng=np.random.default_rng(11))
    assert a == b
    assert a != make_recall_task(50, 7, n_keys=4, rng=12)
    for s in a:
        assert len(s) == 7 + 3
        assert s[0] in "ABCD" and s[-1] == s[0]
        assert s[-2] == "?"
        assert set(s[1:-2]) <= set(".-")
    assert {s[0] for s in a} == set("ABCD")  # 50 draws cover 4 keys
    assert recall_text(a[:2]) == a[0] + "\n" + a[1] + "\n"
    assert make_recall_task(3, 0, rng=0)[0][1] == "?"
    custom = make_recall_task(5, 3, n_keys=2, rng=0, fillers="xyz", cue="!")
    assert all(s[-2] == "!" and set(s[1:4]) <= set("xyz") for s in custom)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_keys": 1},
        {"n_keys": 27},
        {"fillers": "A."},
        {"fillers": ""},
        {"cue": "??"},
        {"lag": -1},
    ],
)
def test_recall_task_rejects_bad_arguments(kwargs):
    args = {"n_sequences": 3, "lag": 2} | kwargs
    with pytest.raises(ValueError):
        make_recall_task(**args)


class _Oracle:
    """Stands in for a model: predicts the first capital letter of the query's last line."""

    def predict(self, queries):
        return np.array([q.rsplit("\n", 1)[-1][0] for q in queries])


def test_recall_accuracy_uses_context_and_scores():
    seqs = make_recall_task(20, 4, rng=0)
    assert recall_accuracy(_Oracle(), seqs) == 1.0
    wrong = [s[:-1] + ("A" if s[-1] != "A" else "B") for s in seqs]
    assert recall_accuracy(_Oracle(), wrong) == 0.0


def test_recall_gradient_ratio_is_finite_and_positive():
    seqs = make_recall_task(6, 5, rng=0)
    model = init_model(recall_text(seqs), cell="lstm", hidden_size=6, random_state=0)
    ratio = recall_gradient_ratio(model, seqs)
    assert 0 < ratio < np.inf
    with pytest.raises(ValueError, match="same length"):
        recall_gradient_ratio(model, seqs + make_recall_task(1, 2, rng=0))


def test_recall_documents_and_generator_set_up_the_task():
    docs = recall_documents(5, 7, np.random.default_rng(0))
    assert all(len(d) == 10 and d[1:8] == "......." and d[8] == "?" for d in docs)
    assert all(d[0] == d[-1] and d[0] in "ABCD" for d in docs)
    est = recall_generator("gru", 7, hidden_size=8)
    assert (est.seq_length, est.hidden_size, est.num_layers) == (36, 8, 1)
    assert est.validation_fraction == 0.0 and not est.early_stopping
    with pytest.raises(ValueError, match="lag"):
        recall_generator("gru", -1)


def test_recall_gradient_flow_ends_at_the_key_and_matches_the_ratio():
    docs = recall_documents(4, 6, np.random.default_rng(0))
    model = recall_generator("lstm", 6, hidden_size=6, random_state=0).initialize(docs)
    flow = recall_gradient_flow(model, docs)
    assert flow.shape == (1, len(docs[0]))  # lags 0 (the cue) .. the end-of-document symbol
    assert recall_gradient_ratio(model, docs) == pytest.approx(flow[0, -2] / flow[0, 1])


def test_recall_stream_accuracy_reads_the_documents_as_one_stream(monkeypatch):
    docs = recall_documents(16, 3, np.random.default_rng(0))
    model = recall_generator("gru", 3, hidden_size=6, random_state=0).initialize(docs)
    acc = recall_stream_accuracy(model, docs, n_streams=4)
    assert 0.0 <= acc <= 1.0
    # a network that predicts each input's successor in the stream scores 1
    ids = {}

    def perfect(params, config, inputs, state):
        T, B = inputs.shape
        logits = np.zeros((T, B, config.vocab_size))
        nxt = ids["all"][1:]
        logits[np.arange(T)[:, None], np.arange(B)[None, :], nxt] = 1.0
        return logits, state, None

    real_encode = model.vocab_.encode_documents

    def remember(d):
        out = real_encode(d)
        ids.setdefault("parts", []).append(out)
        if len(ids["parts"]) == 4:
            ids["all"] = np.stack(ids["parts"], axis=1)
        return out

    monkeypatch.setattr(model.vocab_, "encode_documents", remember)
    monkeypatch.setattr(network, "forward_logits", perfect)
    assert recall_stream_accuracy(model, docs, n_streams=4) == 1.0
    with pytest.raises(ValueError, match="n_streams"):
        recall_stream_accuracy(model, docs[:3], n_streams=4)


# --------------------------------------------------------------------------------------------
# The `charrnn gradients` command


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny.npz"
    CharRNNGenerator(
        cell="gru",
        hidden_size=8,
        num_layers=2,
        seq_length=16,
        batch_size=4,
        max_iter=1,
        validation_fraction=0.0,
        random_state=0,
    ).fit(TEXT).save(path)
    return path


def test_gradients_command_prints_lags_and_sparkline(tiny_model_path):
    result = CliRunner().invoke(
        gradients, ["--model", str(tiny_model_path), "--text", TEXT, "--window", "25"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "tiny.npz: gru (2 x 8, trained on " in out
    assert "layer 1" in out and "layer 2" in out
    assert "lag 20" in out and "lag 50" not in out  # the standard lags below the window
    assert "<1e-3 at" in out
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")


def test_gradients_command_compare_and_plot(tiny_model_path, tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "flow.png"
    result = CliRunner().invoke(
        gradients,
        [
            "--model",
            str(tiny_model_path),
            "--text",
            TEXT,
            "--window",
            "20",
            "--compare",
            "--initialised",
            "--plot",
            str(plot),
        ],
    )
    assert result.exit_code == 0, result.output
    for cell in ("rnn", "lstm", "gru"):
        assert f"\n{cell} (2 x 8, initialised)" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradients_command_compare_trained_briefly(tiny_model_path):
    result = CliRunner().invoke(
        gradients,
        [
            "--model",
            str(tiny_model_path),
            "--text",
            TEXT,
            "--window",
            "10",
            "--compare",
            "--trained",
            "--train-time",
            "0.2",
            "--windows",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "lstm (2 x 8, trained 0.2 s)" in result.output
    assert "lstm (2 x 8, initialised)" in result.output  # the weights its training started from


def test_gradients_command_errors(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(gradients, ["--text", TEXT])
    assert result.exit_code != 0 and "--model" in result.output and "train" in result.output
    result = runner.invoke(
        gradients, ["--model", str(tiny_model_path), "--text", "short", "--window", "50"]
    )
    assert result.exit_code != 0 and "window" in result.output
    result = runner.invoke(
        gradients, ["--model", str(tiny_model_path), "--text", TEXT, "--corpus", "x"]
    )
    assert result.exit_code != 0 and "--text" in result.output


def test_gradients_command_reads_models_last(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "LAST").write_text(str(tiny_model_path) + "\n")
    result = CliRunner().invoke(gradients, ["--text", TEXT, "--window", "15", "--initialised"])
    assert result.exit_code == 0, result.output
    assert "initialised" in result.output


# --------------------------------------------------------------------------------------------
# `charrnn gradients --task recall`: the three cells on one figure


def test_gradients_recall_task_draws_the_three_cells_on_one_figure(tmp_path):
    mpimg = pytest.importorskip("matplotlib.image")
    from matplotlib.colors import to_rgb

    from charrnn.cli.gradients import COLOURS

    out = tmp_path / "flow.png"
    args = ["--task", "recall", "--lag", "8", "--cells", "rnn,lstm,gru", "--initialised"]
    result = CliRunner().invoke(gradients, [*args, "--windows", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "mean over 4 recall document(s) with 8 dots, so the key was read at lag 9" in (
        " ".join(result.output.split())
    )
    default = CharRNNGenerator().gate_init  # what --gate-init defaults to
    for label in ("rnn", f"lstm, {default}", f"gru, {default}"):
        assert f"\n{label} (initialised)\n" in result.output
    img = mpimg.imread(out)  # (height, width, RGBA) floats in [0, 1]
    assert img.shape[:2] == (540, 900)  # 7.5 x 4.5 inches at 120 dpi
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05  # not blank
    for cell, colour in COLOURS.items():
        # a thin dotted line leaves a few dozen pixels of its exact colour (the rest antialiased)
        near = np.abs(rgb - np.array(to_rgb(colour))).max(axis=1) < 0.05
        assert near.sum() > 40, f"no {cell} line ({colour}) in the figure"


def test_gradient_flow_figure_has_a_line_per_curve_in_its_colour_and_style():
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex

    from charrnn.cli.gradients import COLOURS, GATE_STYLES, gradient_flow_figure

    flow = np.array([[1.0, 0.5, 0.25, 0.0]])  # a zero is not drawn on the log axis
    curves = {"rnn (initialised)": flow, "lstm, zeros (x)": flow, "lstm, chrono (x)": 2 * flow}
    styles = {"lstm, zeros (x)": GATE_STYLES["zeros"], "lstm, chrono (x)": GATE_STYLES["chrono"]}
    fig = gradient_flow_figure(curves, "t", styles=styles, key_lag=2)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(curves) | {"the key (lag 2)"} == set(lines)
    assert to_hex(lines["rnn (initialised)"].get_color()) == to_hex(COLOURS["rnn"])
    assert to_hex(lines["lstm, chrono (x)"].get_color()) == to_hex(COLOURS["lstm"])
    assert lines["lstm, zeros (x)"].get_linestyle() != lines["lstm, chrono (x)"].get_linestyle()
    assert np.isnan(lines["rnn (initialised)"].get_ydata()[-1])


def test_gradients_recall_task_compares_gate_inits_and_checks_its_options():
    runner = CliRunner()
    args = ["--task", "recall", "--lag", "5", "--windows", "2", "--initialised"]
    result = runner.invoke(gradients, [*args, "--cells", "lstm,rnn", "--gate-init", "zeros,chrono"])
    assert result.exit_code == 0, result.output
    labels = [line for line in result.output.splitlines() if line.endswith("(initialised)")]
    assert labels == [
        "lstm, zeros (initialised)",
        "lstm, chrono (initialised)",
        "rnn (initialised)",  # once: it has no gates
    ]
    for bad, hint in [
        (["--cells", "lstm,tcn"], "--cells"),
        (["--gate-init", "ones"], "--gate-init"),
        (["--model", __file__], "--model"),
    ]:
        result = runner.invoke(gradients, [*args, *bad])
        assert result.exit_code != 0 and hint in result.output, (bad, result.output)
