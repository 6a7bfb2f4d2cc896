"""Tests for gate_init: the initial gate biases of both networks, the parameter, old files."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import CharRNNClassifier, CharRNNGenerator, RNNRegressor, load
from charrnn.cli import cli
from charrnn.diagnostics import (
    recall_documents,
    recall_generator,
    recall_gradient_ratio,
)
from charrnn.engine import network, seqclf
from charrnn.engine.cells import CELLS
from charrnn.engine.network import GATE_INITS, gate_bias

DATA = Path(__file__).parent / "data"
H = 5


def _blocks(b, cell):
    """Bias (G*H,) -> {gate name: (H,) block} in the cell's fused order."""
    names = {"rnn": "a", "lstm": "ifog", "gru": "rzn"}[cell]
    return {g: b[k * H : (k + 1) * H] for k, g in enumerate(names)}


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("gate_init", GATE_INITS)
def test_gate_bias_sets_exactly_the_biases_it_claims(cell, gate_init):
    t_max = 30
    b = gate_bias(cell, H, gate_init, np.random.default_rng(0), np.float64, t_max)
    assert b.shape == (CELLS[cell].n_gates * H,)
    blocks = _blocks(b, cell)
    keep = {"lstm": "f", "gru": "z"}.get(cell)
    if keep is None or gate_init == "zeros" or (gate_init == "forget1" and cell == "gru"):
        assert not b.any()  # forget1: the GRU has no forget gate
        return
    if gate_init == "forget1":
        assert np.all(blocks["f"] == 1.0)
        changed = {"f"}
    else:
        # chrono: sigmoid(log u) = u / (1 + u) with u in [1, t_max - 1]: memory spans 2..t_max
        u = np.exp(blocks[keep])
        assert np.all((u >= 1.0) & (u <= t_max - 1))
        assert u.max() - u.min() > (t_max - 2) / 2  # spread out, not all one value
        changed = {keep}
        if cell == "lstm":
            assert np.array_equal(blocks["i"], -blocks["f"])
            changed.add("i")
    assert all(not v.any() for g, v in blocks.items() if g not in changed)


def test_chrono_draws_from_the_generator_and_only_for_gated_cells():
    rng = np.random.default_rng(1)
    state = rng.bit_generator.state
    gate_bias("rnn", H, "chrono", rng, np.float32, 10)
    gate_bias("lstm", H, "forget1", rng, np.float32, 10)
    assert rng.bit_generator.state == state
    a = gate_bias("lstm", H, "chrono", np.random.default_rng(2), np.float32, 10)
    b = gate_bias("lstm", H, "chrono", np.random.default_rng(3), np.float32, 10)
    assert a.dtype == np.float32 and not np.array_equal(a, b)


def _lm(cell, **kw):
    return network.NetworkConfig(cell=cell, vocab_size=7, hidden_size=H, num_layers=2, **kw)


def _clf(cell, **kw):
    return seqclf.SeqClfConfig(
        cell=cell, vocab_size=7, n_classes=3, hidden_size=H, num_layers=2, bidirectional=True, **kw
    )


@pytest.mark.parametrize("make, init", [(_lm, network.init_params), (_clf, seqclf.init_params)])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_both_networks_take_their_gate_biases_from_gate_bias(make, init, cell):
    config = make(cell)
    by_init = {g: init(config, np.random.default_rng(0), gate_init=g, t_max=40) for g in GATE_INITS}
    biases = [k for k in by_init["zeros"] if k.startswith("l") and k.endswith(".b")]
    assert len(biases) == (2 if make is _lm else 4)
    for gate_init, params in by_init.items():
        # every other weight is the same whatever gate_init: the biases are drawn last
        for k, v in params.items():
            if k not in biases:
                assert np.array_equal(v, by_init["zeros"][k]), (gate_init, k)
    # the same biases gate_bias gives, drawn in order from what is left of the generator
    rng = np.random.default_rng(0)
    init(config, rng, gate_init="zeros")  # the weights' draws
    for k in biases:
        expected = gate_bias(cell, H, "chrono", rng, np.float32, 40)
        assert np.array_equal(by_init["chrono"][k], expected), k
    lstm_forget = by_init["forget1"][biases[0]][H : 2 * H]
    assert np.all(lstm_forget == (1.0 if cell == "lstm" else 0.0))


DOCS = ["abcab", "bcabca", "cabcabc"] * 4


def _quiet_fit(est, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(*args)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_estimators_prepare_chrono_for_their_longest_dependency(cell):
    """The generator's t_max is seq_length, the classifier's its longest training text, the
    regressor's the number of steps; the weights are the networks' init_params'."""
    common = dict(cell=cell, hidden_size=H, gate_init="chrono", random_state=0)
    gen = CharRNNGenerator(num_layers=1, seq_length=6, **common).initialize(DOCS)
    texts = ["ab" * 10, "ba" * 20]  # the longest has 40 characters
    clf = CharRNNClassifier(**common).initialize(texts, ["x", "y"])
    X = np.random.default_rng(0).normal(size=(8, 12))
    reg = RNNRegressor(**common).initialize(X, X[:, -1])
    for est, expected in [
        (gen, network.init_params(gen.config_, np.random.default_rng(0), "chrono", 6)),
        (clf, seqclf.init_params(clf.config_, np.random.default_rng(0), "chrono", 40)),
        (reg, seqclf.init_params(reg.config_, np.random.default_rng(0), "chrono", 12)),
    ]:
        assert est.params_.keys() == expected.keys()
        for k, v in expected.items():
            assert np.array_equal(est.params_[k], v), (type(est).__name__, k)


@pytest.mark.parametrize("make", [CharRNNGenerator, CharRNNClassifier, RNNRegressor])
@pytest.mark.parametrize("value", ["ones", "", None, 1, "Chrono"])
def test_bad_gate_init_is_named(make, value):
    est = make(gate_init=value)
    with pytest.raises(ValueError, match=r"^gate_init must be one of 'zeros', 'forget1', 'chrono'"):
        if make is RNNRegressor:
            est.fit(np.zeros((4, 3)), np.zeros(4))
        elif make is CharRNNClassifier:
            est.fit(["ab", "ba"], [0, 1])
        else:
            est.fit(DOCS)
    assert not hasattr(est, "params_")


def test_train_help_shows_gate_init():
    out = " ".join(CliRunner().invoke(cli, ["train", "--help"]).output.split())
    assert "--gate-init [zeros|forget1|chrono]" in out
    assert "Initial gate biases" in out
    result = CliRunner().invoke(cli, ["train", "x.txt", "--gate-init", "ones"])
    assert result.exit_code != 0 and "--gate-init" in result.output


@pytest.mark.parametrize("name", ["generator_0.1.0.npz", "classifier_0.1.0.npz"])
def test_a_file_from_before_gate_init_loads_with_the_initialisation_it_had(name):
    est = load(DATA / name)
    assert est.gate_init == "forget1"


def test_gate_init_is_saved_and_loaded(tmp_path):
    gen = _quiet_fit(
        CharRNNGenerator(
            cell="lstm",
            hidden_size=4,
            num_layers=1,
            max_iter=1,
            gate_init="zeros",
            seq_length=4,
            batch_size=2,
        ),
        DOCS,
    )
    gen.save(tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").gate_init == "zeros"


# ------------------------------------------------------------------------------------------
# What the initialisation is for: the recall task


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_chrono_lets_the_initial_gradient_reach_the_key(cell):
    """At initialisation the recall loss's gradient at the key step, relative to lag 1, is
    orders of magnitude larger with chrono than with zero biases (same weights otherwise)."""
    lag = 40
    docs = recall_documents(16, lag, np.random.default_rng(0))
    ratio = {
        g: recall_gradient_ratio(
            recall_generator(cell, lag, hidden_size=16, gate_init=g, random_state=0).initialize(
                docs
            ),
            docs,
        )
        for g in GATE_INITS
    }
    assert ratio["chrono"] > 100 * ratio["zeros"]
    if cell == "lstm":
        assert ratio["zeros"] < ratio["forget1"] < ratio["chrono"]
