"""The training-memory estimate and the refusal of configurations the machine cannot hold."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.exceptions import ConvergenceWarning

from charrnn import CharRNNClassifier, CharRNNGenerator, RNNForecaster, RNNRegressor
from charrnn.cli import cli
from charrnn.engine import network, seqclf
from charrnn.engine.cells import CELLS
from charrnn.engine.memory import estimate_for, format_bytes
from charrnn.engine.workspace import Workspace
from charrnn.estimators.memory import MEMORY_ENV, InsufficientMemoryError, available_memory

NETWORKS = [
    network.NetworkConfig(cell=c, vocab_size=7, hidden_size=5, num_layers=n, embedding_dim=e)
    for c in CELLS
    for n in (1, 2)
    for e in (None, 3)
]
SEQUENCE_NETWORKS = [
    seqclf.SeqClfConfig(
        cell=c, vocab_size=7, n_classes=3, hidden_size=5, num_layers=2, bidirectional=b,
        aux_lm_weight=a, embedding_dim=e,
    )
    for c in CELLS
    for b in (False, True)
    for a, e in ((0.0, None), (0.5, 3))
] + [
    seqclf.SeqClfConfig(
        cell="gru", vocab_size=0, n_classes=2, hidden_size=4, input_size=3, loss="squared_error"
    )
]  # fmt: skip


@pytest.mark.parametrize("config", NETWORKS, ids=repr)
def test_network_param_shapes_are_init_params_shapes(config):
    made = network.init_params(config, np.random.default_rng(0))
    assert network.param_shapes(config) == {k: v.shape for k, v in made.items()}


@pytest.mark.parametrize("config", SEQUENCE_NETWORKS, ids=repr)
def test_seqclf_param_shapes_are_init_params_shapes(config):
    made = seqclf.init_params(config, np.random.default_rng(0))
    assert seqclf.param_shapes(config) == {k: v.shape for k, v in made.items()}


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_activation_estimate_matches_the_scratch_arrays_a_step_uses(cell, dropout):
    """The cells' scratch_per_unit and the rest of the per-step count, against a Workspace
    that kept every scratch array of a forward and backward pass."""
    T, B = 20, 6
    config = network.NetworkConfig(
        cell=cell, vocab_size=11, hidden_size=16, num_layers=2, embedding_dim=5, dropout=dropout
    )
    params = network.init_params(config, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 11, size=(T + 1, B))
    ws = Workspace()
    state = network.init_state(config, B)
    network.loss_and_grads(params, config, ids[:-1], ids[1:], state, rng=rng, workspace=ws)
    estimate = estimate_for(config, batch_size=B, steps=T, optimizer_slots=2, keep_best=False)
    # the workspace also keeps the transposed recurrent weights, which the estimate counts
    # among its working copies (beside the divergence guard's weights)
    counted = estimate.activations + estimate.copies - estimate.weights
    assert 0.9 < counted / ws.nbytes() < 1.1


def test_estimate_parts_follow_the_configuration():
    config = network.NetworkConfig(cell="lstm", vocab_size=50, hidden_size=32, num_layers=2)
    n_weights = sum(int(np.prod(s)) for s in network.param_shapes(config).values())
    base = estimate_for(config, batch_size=8, steps=16, optimizer_slots=2, keep_best=True)
    assert base.weights == base.best_copy == 4 * n_weights
    assert base.gradients == 2 * base.weights and base.optimizer == 3 * base.weights
    n_recurrent = sum(
        int(np.prod(s)) for k, s in network.param_shapes(config).items() if k.endswith(".Wh")
    )
    assert base.copies == base.weights + 4 * n_recurrent
    double = estimate_for(config, batch_size=16, steps=16, optimizer_slots=2, keep_best=True)
    assert double.activations == 2 * base.activations
    workers = estimate_for(
        config, batch_size=8, steps=16, optimizer_slots=2, keep_best=True, n_groups=3
    )
    assert workers.workers == 4 * base.weights and workers.total > base.total


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**30 / 2) == "1.5 GiB"


def test_available_memory_reads_the_system_or_the_override(monkeypatch):
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    found = available_memory()
    assert found is None or found > 0
    monkeypatch.setenv(MEMORY_ENV, "2e9")
    assert available_memory() == 2_000_000_000
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(ValueError, match=MEMORY_ENV):
        available_memory()


TEXT = "the cat sat on the mat\n" * 40


def _regressor_data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((30, 12, 2)), rng.standard_normal(30)


# (estimator factory, X, y): every kind fit refuses through the one hook in base.py
KINDS = {
    "generator": (lambda **p: CharRNNGenerator(seq_length=16, **p), TEXT, None),
    "classifier": (lambda **p: CharRNNClassifier(**p), ["ab", "ba", "aa", "bb"] * 5, [0, 1] * 10),
    "regressor": (lambda **p: RNNRegressor(**p), *_regressor_data()),
    "forecaster": (
        lambda **p: RNNForecaster(RNNRegressor(**p), window=8),
        np.sin(np.arange(60.0)),
        None,
    ),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fit_refuses_a_network_larger_than_the_memory_before_allocating(kind, monkeypatch):
    make, X, y = KINDS[kind]
    monkeypatch.setenv(MEMORY_ENV, str(2**30))
    est = make(hidden_size=20_000, batch_size=4, max_iter=1, random_state=0)
    with pytest.raises(InsufficientMemoryError) as info:
        est.fit(X) if y is None else est.fit(X, y)
    message = str(info.value)
    assert "hidden_size=20,000" in message and "batch_size=4" in message
    assert "1.0 GiB available" in message and "GiB of memory" in message
    inner = est.estimator_ if kind == "forecaster" else est
    assert not hasattr(inner, "params_")  # refused before the weights were made


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fit_goes_ahead_when_the_memory_suffices(kind, monkeypatch):
    make, X, y = KINDS[kind]
    est = make(hidden_size=4, batch_size=4, max_iter=1, random_state=0)
    inner = est if kind != "forecaster" else est.estimator
    need = inner.check_memory(*((X, y) if kind != "forecaster" else (np.zeros((5, 8)), [0] * 5)))
    monkeypatch.setenv(MEMORY_ENV, str(10 * need.total + 2**20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X) if y is None else est.fit(X, y)


def test_check_memory_names_the_sequence_length(monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "1000")
    with pytest.raises(InsufficientMemoryError, match="seq_length=16.*1000 B available"):
        CharRNNGenerator(seq_length=16, hidden_size=8).check_memory(TEXT)


def test_charrnn_train_reports_an_impossible_size_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(MEMORY_ENV, str(8 * 2**30))
    (tmp_path / "t.txt").write_text(TEXT * 10, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "t.txt", "--hidden-size", "100000"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output
    assert "hidden_size=100,000" in lines[-1] and "8.0 GiB available" in lines[-1]
    assert not (tmp_path / "models" / "t.npz").exists()
