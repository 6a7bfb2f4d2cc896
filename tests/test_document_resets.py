"""The recurrent state restarts from zero at every document start, in training as in predict.

A stream of documents joined by the end-of-document symbol is trained as if each document were
read alone from the zero state: the state entering a step that reads the symbol is zero, and no
gradient crosses it. A text of one document trains exactly as before resets existed.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from charrnn.data.batches import document_resets
from charrnn.data.vocab import CharVocab
from charrnn.engine import tasks
from charrnn.engine.cells import reset_points
from charrnn.engine.network import (
    NetworkConfig,
    forward,
    init_params,
    init_state,
    log_softmax,
    loss_and_grads,
)
from charrnn.engine.tasks import LanguageModelTask, stream_loss
from charrnn.estimators.generator import CharRNNGenerator
from charrnn.parallel.groups import StreamGroups

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CELLS = ["rnn", "lstm", "gru"]
V, H, E = 7, 5, 4
EOD = CharVocab.EOD_ID


def _config(cell, num_layers=1, embedding_dim=None, dropout=0.0):
    return NetworkConfig(
        cell=cell,
        vocab_size=V,
        hidden_size=H,
        num_layers=num_layers,
        embedding_dim=embedding_dim,
        dropout=dropout,
        dtype="float64",
    )


def _params(config, rng):
    """Initial weights with every bias made non-zero, so a zero state is not a special case."""
    params = init_params(config, rng)
    for p in params.values():
        p += 0.1 * rng.standard_normal(p.shape)
    return params


def _random_state(config, B, rng):
    return [tuple(0.5 * rng.standard_normal(s.shape) for s in lay) for lay in init_state(config, B)]


def _stream(T, B, rng, boundaries):
    """(T, B) inputs without EOD but at ``boundaries`` (a list of (t, b)), and random targets."""
    inputs = rng.integers(1, V, size=(T, B))
    for t, b in boundaries:
        inputs[t, b] = EOD
    return inputs, rng.integers(0, V, size=(T, B))


# boundaries at the first step (the carried state is dropped), inside, at the last step, two in
# one stream and none in another
BOUNDARIES = [(0, 0), (3, 1), (7, 1), (4, 2), (9, 0)]
T_, B_ = 10, 4


# ----------------------------------------------------------------------------- the network
def _pieces(inputs, resets):
    """Each stream cut at its resets: a list of (b, start, stop)."""
    T, B = inputs.shape
    out = []
    for b in range(B):
        cuts = [0, *[t for t in range(1, T) if resets[t, b]], T]
        out += [(b, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])]
    return out


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("layers", "emb"), [(1, None), (2, None), (2, E)])
def test_a_stream_of_documents_equals_each_document_from_the_zero_state(cell, layers, emb):
    config = _config(cell, layers, emb)
    rng = np.random.default_rng(3)
    params = _params(config, rng)
    inputs, targets = _stream(T_, B_, rng, BOUNDARIES)
    state = _random_state(config, B_, rng)
    resets = document_resets(inputs)

    loss, grads, new_state = loss_and_grads(params, config, inputs, targets, state, resets=resets)
    grads = {k: v.copy() for k, v in grads.items()}

    # the same characters as separate pieces: a piece that starts at a reset from the zero
    # state, the first piece of a stream from the carried state unless it starts with a reset
    ref_loss, ref_grads = 0.0, {k: np.zeros_like(v) for k, v in params.items()}
    ref_state = [[None] * B_ for _ in range(layers)]
    for b, lo, hi in _pieces(inputs, resets):
        if resets[lo, b]:
            start = init_state(config, 1)
        else:
            start = [tuple(s[b : b + 1] for s in lay) for lay in state]
        piece_loss, piece_grads, piece_state = loss_and_grads(
            params, config, inputs[lo:hi, b : b + 1], targets[lo:hi, b : b + 1], start
        )
        share = (hi - lo) / (T_ * B_)  # the piece's characters in the chunk's mean
        ref_loss += share * piece_loss
        for k, g in piece_grads.items():
            ref_grads[k] += share * g
        if hi == T_:
            for k in range(layers):
                ref_state[k][b] = piece_state[k]

    assert loss == pytest.approx(ref_loss, abs=1e-13)
    for k in params:
        np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-10, atol=1e-13, err_msg=k)
    for k in range(layers):
        for j, s in enumerate(new_state[k]):
            expected = np.concatenate([ref_state[k][b][j] for b in range(B_)])
            np.testing.assert_allclose(s, expected, rtol=0, atol=1e-13)


def _numeric_grad(f, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Fourth-order central difference of ``f()`` for each element of ``x`` (perturbed in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        vals = []
        for d in (h, -h, 2 * h, -2 * h):
            flat[i] = old + d
            vals.append(f())
        flat[i] = old
        gflat[i] = (8.0 * (vals[0] - vals[1]) - (vals[2] - vals[3])) / (12.0 * h)
    return grad


GRAD_CASES = [
    pytest.param(cell, layers, dropout, id=f"{cell}-{layers}l-dropout{dropout}")
    for cell in CELLS
    for layers in (1, 2)
    for dropout in (0.0, 0.4)
]


@pytest.mark.parametrize(("cell", "layers", "dropout"), GRAD_CASES)
def test_gradient_check_with_resets_inside_a_chunk(cell, layers, dropout):
    """Central differences in float64 of the loss computed with resets, every parameter."""
    config = _config(cell, layers, dropout=dropout)
    rng = np.random.default_rng(5)
    params = _params(config, rng)
    inputs, targets = _stream(8, 3, rng, [(0, 0), (2, 1), (5, 1), (6, 2)])
    state = _random_state(config, 3, rng)
    resets = document_resets(inputs)
    seed = 11 if dropout > 0 else None

    def objective() -> float:
        mask_rng = np.random.default_rng(seed) if seed is not None else None
        top, _, _ = forward(params, config, inputs, state, mask_rng, seed is not None, None, resets)
        logp = log_softmax(top @ params["Why"] + params["by"])
        return float(-np.take_along_axis(logp, targets[..., None], axis=-1).mean())

    loss, grads, _ = loss_and_grads(
        params, config, inputs, targets, state, np.random.default_rng(11), True, None, resets
    )
    assert loss == pytest.approx(objective(), abs=1e-12)
    without, _, _ = loss_and_grads(
        params, config, inputs, targets, state, np.random.default_rng(11), True
    )
    assert abs(loss - without) > 1e-4  # the resets really change the loss
    for k, p in params.items():
        numeric = _numeric_grad(objective, p)
        denom = np.maximum(np.abs(grads[k]) + np.abs(numeric), 1e-6)
        err = float(np.max(np.abs(grads[k] - numeric) / denom))
        assert err < 1e-6, f"{k}: relative error {err:.2e}"


@pytest.mark.parametrize("cell", CELLS)
def test_no_boundary_means_no_resets_and_the_plain_step(cell):
    config = _config(cell, 2)
    rng = np.random.default_rng(0)
    params = _params(config, rng)
    inputs, targets = _stream(6, 3, rng, [])
    state = _random_state(config, 3, rng)
    assert document_resets(inputs) is None
    assert reset_points(np.zeros((6, 3), dtype=bool)) is None
    plain = loss_and_grads(params, config, inputs, targets, state)
    plain = (plain[0], {k: v.copy() for k, v in plain[1].items()}, plain[2])
    masked = loss_and_grads(
        params, config, inputs, targets, state, resets=np.zeros((6, 3), dtype=bool)
    )
    assert plain[0] == masked[0]
    for k in params:
        np.testing.assert_array_equal(plain[1][k], masked[1][k])


def test_document_resets_marks_the_steps_that_read_the_end_symbol():
    inputs = np.array([[3, 0], [0, 2], [4, 5]])
    np.testing.assert_array_equal(
        document_resets(inputs), [[False, True], [True, False], [False, False]]
    )
    assert document_resets(np.array([[3, 1], [2, 2]])) is None


# ----------------------------------------------------------------------------- parallel groups
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", ["sequence", "threads", "processes"])
def test_groups_with_resets_give_the_unsplit_step(cell, mode):
    config = _config(cell, 2)
    rng = np.random.default_rng(1)
    params = _params(config, rng)
    # streams 0-2 have boundaries, 3-6 none: the second and third groups run the plain step
    inputs, targets = _stream(T_, 7, rng, [(0, 0), (3, 1), (7, 1), (4, 2)])
    state = _random_state(config, 7, rng)
    resets = document_resets(inputs)
    whole = loss_and_grads(params, config, inputs, targets, state, resets=resets)
    whole = (whole[0], {k: v.copy() for k, v in whole[1].items()}, whole[2])
    with (
        StreamGroups(7, 3, processes=mode == "processes") as groups,
        threadpool_limits(1, user_api="blas"),
    ):
        split = groups.loss_and_grads(
            params, config, inputs, targets, state, None, True, mode != "sequence", resets
        )
        assert groups.backend == ("processes" if mode == "processes" else "threads")
    np.testing.assert_allclose(split[0], whole[0], rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(split[1][k], whole[1][k], rtol=1e-12, atol=1e-14, err_msg=k)
    for lay_a, lay_b in zip(split[2], whole[2]):
        for x, y in zip(lay_a, lay_b):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("processes", [False, True])
def test_parallel_and_sequential_groups_agree_bit_for_bit_with_resets_and_dropout(processes):
    config = _config("lstm", 2, dropout=0.3)
    rng = np.random.default_rng(2)
    params = _params(config, rng)
    inputs, targets = _stream(T_, 6, rng, [(2, 0), (5, 3), (0, 4)])
    state = _random_state(config, 6, rng)
    resets = document_resets(inputs)
    results = []
    for parallel in (False, True):
        with (
            StreamGroups(6, 2, processes=processes) as groups,
            threadpool_limits(1, user_api="blas"),
        ):
            loss, grads, new_state = groups.loss_and_grads(
                params,
                config,
                inputs,
                targets,
                state,
                np.random.default_rng(9),
                True,
                parallel,
                resets,
            )
            results.append((loss, {k: v.copy() for k, v in grads.items()}, new_state))
    assert results[0][0] == results[1][0]
    for k in params:
        np.testing.assert_array_equal(results[0][1][k], results[1][1][k])


# ----------------------------------------------------------------------------- training
DOCS = ["abcab", "ba", "cabbacab", "acb", "bbca", "cab", "a", "abcabcab"] * 3


def _fit(X, cell="gru", **params):
    settings = dict(
        cell=cell,
        hidden_size=8,
        seq_length=6,
        batch_size=2,
        max_iter=2,
        validation_fraction=0.0,
        random_state=0,
        verbose=0,
    )
    return CharRNNGenerator(**{**settings, **params}).fit(X)


@pytest.mark.parametrize("cell", CELLS)
def test_a_text_of_one_document_trains_bit_for_bit_as_without_resets(cell, monkeypatch):
    text = "".join(DOCS)
    with_resets = _fit([text], cell, validation_fraction=0.2)
    seen = []

    def no_resets(inputs, eod_id=EOD):
        seen.append(document_resets(inputs, eod_id))
        return None

    monkeypatch.setattr(tasks, "document_resets", no_resets)
    without = _fit([text], cell, validation_fraction=0.2)
    assert seen and all(r is None for r in seen)  # training and validation: no boundary
    for k in with_resets.params_:
        np.testing.assert_array_equal(with_resets.params_[k], without.params_[k], err_msg=k)
    assert with_resets.loss_curve_ == without.loss_curve_


def test_documents_train_with_resets(monkeypatch):
    """Many documents: the task passes the boundaries, and they change the weights."""
    calls = []
    real = tasks.document_resets

    def spy(inputs, eod_id=EOD):
        calls.append(real(inputs, eod_id))
        return calls[-1]

    monkeypatch.setattr(tasks, "document_resets", spy)
    fitted = _fit(DOCS)
    assert any(r is not None for r in calls)
    monkeypatch.setattr(tasks, "document_resets", lambda inputs, eod_id=EOD: None)
    carried = _fit(DOCS)
    assert any(not np.array_equal(fitted.params_[k], carried.params_[k]) for k in fitted.params_)


def test_task_step_is_the_network_step_with_the_chunk_resets():
    vocab = CharVocab.fit(DOCS)
    ids = vocab.encode_documents(DOCS)
    config = NetworkConfig("lstm", vocab.size, H, dtype="float64")
    params = _params(config, np.random.default_rng(0))
    task = LanguageModelTask(config, ids, ids[:0], batch_size=2, seq_length=6)
    (_, batch), *_ = task.batches(0, None)

    class Plain:
        def loss_and_grads(self, *args, **kwargs):
            return loss_and_grads(*args, **kwargs)

    loss, grads, _, _ = task.loss_and_grads(params, batch, None, Plain())
    inputs, targets = batch
    expected = loss_and_grads(
        params, config, inputs, targets, init_state(config, 2), resets=inputs == EOD
    )
    assert (inputs == EOD).any()
    assert loss == expected[0]
    for k in params:
        np.testing.assert_array_equal(grads[k], expected[1][k])


def test_stream_scoring_reads_documents_as_score_does():
    """Documents joined in one stream (an end symbol first) and scored with resets give the
    estimator's ``score_samples``: every document read from the zero state after the symbol."""
    model = _fit(DOCS, "lstm")
    docs = ["abcab", "ba", "cabbacab", "acb"]
    ids = np.concatenate(([EOD], model.vocab_.encode_documents(docs)))
    per_char = stream_loss(model.params_, model.config_, ids, n_streams=1)
    total = -model.score_samples(docs).sum()
    assert per_char * (len(ids) - 1) == pytest.approx(total, rel=1e-5)
