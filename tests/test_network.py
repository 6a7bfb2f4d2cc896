"""Tests for charrnn.engine.network: config checks, initialisation, gradients, PyTorch parity,
training."""

import math

import numpy as np
import pytest

from charrnn.engine.network import (
    NetworkConfig,
    forward,
    forward_logits,
    init_params,
    init_state,
    log_softmax,
    loss_and_grads,
    n_parameters,
    scatter_rows,
    step,
)
from charrnn.engine.optim import Adam

CELL_NAMES = ["rnn", "lstm", "gru"]
V, H, E, T, B = 7, 5, 4, 6, 3

# --------------------------------------------------------------------------- helpers


def _config(cell, num_layers=1, embedding_dim=None, dropout=0.0, dtype="float64", **kw):
    kw.setdefault("vocab_size", V)
    kw.setdefault("hidden_size", H)
    return NetworkConfig(
        cell=cell,
        num_layers=num_layers,
        embedding_dim=embedding_dim,
        dropout=dropout,
        dtype=dtype,
        **kw,
    )


def _setup(config, seed=0, random_state=False, t=T, b=B):
    """Parameters (biases made non-zero too), inputs, targets and an initial state."""
    rng = np.random.default_rng(seed)
    params = init_params(config, rng)
    for p in params.values():
        p += (0.1 * rng.standard_normal(p.shape)).astype(p.dtype)
    inputs = rng.integers(0, config.vocab_size, size=(t, b))
    targets = rng.integers(0, config.vocab_size, size=(t, b))
    state = init_state(config, b)
    if random_state:
        state = [
            tuple((0.5 * rng.standard_normal(s.shape)).astype(s.dtype) for s in st) for st in state
        ]
    return params, inputs, targets, state


def _reference_loss(params, config, inputs, targets, state, dropout_seed=None) -> float:
    """Mean cross-entropy computed independently of ``loss_and_grads`` (forward + log_softmax)."""
    train = dropout_seed is not None
    rng = np.random.default_rng(dropout_seed) if train else None
    top, _, _ = forward(params, config, inputs, state, rng=rng, train=train)
    logp = log_softmax(top @ params["Why"] + params["by"])
    return float(-np.take_along_axis(logp, targets[..., None], axis=-1).mean())


def _numeric_grad(f, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Fourth-order central difference of ``f()`` for each element of ``x`` (perturbed in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, x)
    for i in range(flat.size):
        old = flat[i]
        vals = []
        for d in (h, -h, 2 * h, -2 * h):
            flat[i] = old + d
            vals.append(f())
        flat[i] = old
        gflat[i] = (8.0 * (vals[0] - vals[1]) - (vals[2] - vals[3])) / (12.0 * h)
    return grad


def _max_rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Largest element-wise ``|a - n| / (|a| + |n|)``, denominator floored at 1e-6.

    The floor only matters for gradients below ~1e-6, where the finite difference's own
    round-off (~1e-12 absolute) dominates; there it demands |a - n| < 1e-12.
    """
    denom = np.maximum(np.abs(analytic) + np.abs(numeric), 1e-6)
    return float(np.max(np.abs(analytic - numeric) / denom))


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"cell": "transformer"}, "cell"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"vocab_size": 2.5}, "vocab_size"),
        ({"hidden_size": -3}, "hidden_size"),
        ({"hidden_size": "8"}, "hidden_size"),
        ({"num_layers": 0}, "num_layers"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"embedding_dim": 1.5}, "embedding_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": float("nan")}, "dropout"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_config_validation_names_the_parameter(kwargs, name):
    args = {"cell": "lstm", "vocab_size": 7, "hidden_size": 5, **kwargs}
    with pytest.raises(AssertionError, match=name):
        NetworkConfig(**args)


def test_config_accepts_numpy_integers_and_round_trips():
    cfg = NetworkConfig("gru", np.int64(9), np.int32(4), 2, np.int64(3), 0.25, "float64")
    assert cfg.cell_class.name == "gru"
    d = cfg.to_dict()
    assert d["cell"] == "gru" and d["dropout"] == 0.25 and d["embedding_dim"] == 3
    assert NetworkConfig(**d) == cfg


# --------------------------------------------------------------------------- init


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("embedding_dim", [None, E])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_init_shapes_dtypes_and_biases(cell, embedding_dim, dtype):
    cfg = _config(cell, num_layers=2, embedding_dim=embedding_dim, dtype=dtype)
    params = init_params(cfg, np.random.default_rng(0))
    G = cfg.cell_class.n_gates
    expected = {"Why": (H, V), "by": (V,)}
    if embedding_dim is not None:
        expected["embed"] = (V, E)
    for k, d_in in enumerate([embedding_dim or V, H]):
        expected |= {f"l{k}.Wx": (d_in, G * H), f"l{k}.Wh": (H, G * H), f"l{k}.b": (G * H,)}
        if cell == "gru":
            expected[f"l{k}.bhn"] = (H,)
    assert {k: v.shape for k, v in params.items()} == expected
    assert all(v.dtype == np.dtype(dtype) for v in params.values())
    assert not np.any(params["by"])
    for k in range(2):
        b = params[f"l{k}.b"]
        if cell == "lstm":  # [i, f, o, g]: forget-gate bias 1, the rest 0
            np.testing.assert_array_equal(b[H : 2 * H], 1.0)
            assert not np.any(b[:H]) and not np.any(b[2 * H :])
        else:
            assert not np.any(b)
        if cell == "gru":
            assert not np.any(params[f"l{k}.bhn"])
    # the random matrices are really random (not left at zero)
    for key in ("l0.Wx", "l1.Wx", "Why", *(["embed"] if embedding_dim else [])):
        assert np.std(params[key]) > 0.05


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_init_recurrent_blocks_are_orthogonal(cell):
    cfg = _config(cell, num_layers=2, hidden_size=6)
    params = init_params(cfg, np.random.default_rng(3))
    n = 6
    for k in range(2):
        Wh = params[f"l{k}.Wh"]
        blocks = [Wh[:, g * n : (g + 1) * n] for g in range(cfg.cell_class.n_gates)]
        for blk in blocks:
            np.testing.assert_allclose(blk.T @ blk, np.eye(n), atol=1e-12)
            np.testing.assert_allclose(blk @ blk.T, np.eye(n), atol=1e-12)
        if len(blocks) > 1:  # each gate gets its own matrix
            assert not np.allclose(blocks[0], blocks[1])


def test_init_is_determined_by_the_rng_seed():
    cfg = _config("lstm", num_layers=2, embedding_dim=E, dtype="float32")
    a = init_params(cfg, np.random.default_rng(42))
    b = init_params(cfg, np.random.default_rng(42))
    c = init_params(cfg, np.random.default_rng(43))
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["l0.Wh"], c["l0.Wh"])
    assert not np.array_equal(a["embed"], c["embed"])


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("embedding_dim", [None, E])
def test_n_parameters(cell, embedding_dim):
    cfg = _config(cell, num_layers=2, embedding_dim=embedding_dim)
    params = init_params(cfg, np.random.default_rng(0))
    G = cfg.cell_class.n_gates
    per_layer = [(d * G * H + H * G * H + G * H) for d in (embedding_dim or V, H)]
    expected = (V * embedding_dim if embedding_dim else 0) + sum(per_layer) + H * V + V
    if cell == "gru":
        expected += 2 * H
    assert n_parameters(params) == expected
    if cell == "lstm" and embedding_dim == E:
        assert n_parameters(params) == 490  # counted by hand


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_init_state_is_zero_per_layer(cell):
    cfg = _config(cell, num_layers=3, dtype="float32")
    state = init_state(cfg, 4)
    assert len(state) == 3
    for st in state:
        assert len(st) == cfg.cell_class.n_states
        for s in st:
            assert s.shape == (4, H) and s.dtype == np.float32 and not np.any(s)


# --------------------------------------------------------------------------- numerics


def test_log_softmax_is_stable_and_normalised():
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    out = log_softmax(logits)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.exp(out).sum(axis=-1), 1.0)
    np.testing.assert_allclose(out[0], [0.0, -1000.0, -2000.0])
    np.testing.assert_allclose(out[1], [1, 2, 3] - np.log(np.exp([1, 2, 3]).sum()))
    np.testing.assert_allclose(log_softmax(logits[1] + 500.0), out[1])


@pytest.mark.parametrize("n", [10, 2000])  # both the GEMM path and the sort-and-reduce path
def test_scatter_rows_is_the_adjoint_of_a_row_gather(n):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, n, size=3000)
    ids[:5] = n - 1  # repeated ids, the last row included
    rows = rng.standard_normal((ids.size, 3))
    expected = np.zeros((n, 3))
    np.add.at(expected, ids, rows)
    np.testing.assert_allclose(scatter_rows(ids, rows, n), expected, atol=1e-12)


# --------------------------------------------------------------------------- gradients

GRAD_CASES = [
    pytest.param(cell, layers, emb, 0.0, False, id=f"{cell}-{layers}l-{'emb' if emb else 'onehot'}")
    for cell in CELL_NAMES
    for layers in (1, 2)
    for emb in (None, E)
]
GRAD_CASES += [
    pytest.param(cell, 2, None, 0.4, False, id=f"{cell}-2l-onehot-dropout") for cell in CELL_NAMES
]
GRAD_CASES += [
    pytest.param(cell, 2, E, 0.0, True, id=f"{cell}-2l-emb-state") for cell in CELL_NAMES
]


@pytest.mark.parametrize(("cell", "layers", "emb", "dropout", "random_state"), GRAD_CASES)
def test_gradient_check_every_parameter(cell, layers, emb, dropout, random_state):
    cfg = _config(cell, num_layers=layers, embedding_dim=emb, dropout=dropout)
    params, inputs, targets, state = _setup(cfg, seed=7, random_state=random_state)
    seed = 11 if dropout > 0 else None  # a fresh Generator per call: the same masks every time

    def objective() -> float:
        return _reference_loss(params, cfg, inputs, targets, state, seed)

    loss, grads, _ = loss_and_grads(
        params, cfg, inputs, targets, state, rng=np.random.default_rng(11), train=True
    )
    assert loss == pytest.approx(objective(), abs=1e-12)
    if dropout > 0:  # the masks really are applied
        assert abs(loss - _reference_loss(params, cfg, inputs, targets, state)) > 1e-3
    assert grads.keys() == params.keys()

    for key, p in params.items():
        numeric = _numeric_grad(objective, p)
        assert grads[key].shape == p.shape
        err = _max_rel_error(grads[key], numeric)
        assert err < 1e-6, f"{key}: relative error {err:.2e}"


# --------------------------------------------------------------------------- one step, chunks


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("emb", [None, E])
def test_step_matches_forward_logits(cell, emb):
    cfg = _config(cell, num_layers=2, embedding_dim=emb)
    params, inputs, _, state = _setup(cfg, seed=2, random_state=True)
    logits, final, top = forward_logits(params, cfg, inputs, state)
    assert logits.shape == (T, B, V) and top.shape == (T, B, H)
    st = state
    for t in range(T):
        step_logits, st = step(params, cfg, inputs[t], st)
        np.testing.assert_allclose(step_logits, logits[t], rtol=0, atol=1e-12)
    for a, b in zip(st, final):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_two_chunks_with_carried_state_equal_one_chunk(cell):
    cfg = _config(cell, num_layers=2, embedding_dim=E)
    params, inputs, targets, state = _setup(cfg, seed=4, t=10, random_state=True)
    split = 3  # unequal chunks, so the loss average must be weighted by length

    logits, final, _ = forward_logits(params, cfg, inputs, state)
    loss, _, final2 = loss_and_grads(params, cfg, inputs, targets, state, train=False)

    la, st_a, _ = forward_logits(params, cfg, inputs[:split], state)
    lb, st_b, _ = forward_logits(params, cfg, inputs[split:], st_a)
    np.testing.assert_allclose(np.concatenate([la, lb]), logits, rtol=0, atol=1e-12)

    loss_a, _, s_a = loss_and_grads(
        params, cfg, inputs[:split], targets[:split], state, train=False
    )
    loss_b, _, s_b = loss_and_grads(params, cfg, inputs[split:], targets[split:], s_a, train=False)
    combined = (split * loss_a + (len(inputs) - split) * loss_b) / len(inputs)
    assert combined == pytest.approx(loss, abs=1e-12)
    assert loss_a != pytest.approx(loss_b)  # so the weighting above is really tested

    for states in (st_b, s_b, final2):
        for a, b in zip(states, final):
            for x, y in zip(a, b):
                np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_dropout_off_in_eval_mode(cell):
    cfg = _config(cell, num_layers=2, dropout=0.5)
    cfg0 = _config(cell, num_layers=2, dropout=0.0)
    params, inputs, targets, state = _setup(cfg, seed=5)
    loss, grads, _ = loss_and_grads(params, cfg, inputs, targets, state, train=False)
    loss0, grads0, _ = loss_and_grads(params, cfg0, inputs, targets, state, train=True)
    assert loss == loss0
    for key in params:
        np.testing.assert_array_equal(grads[key], grads0[key])

    train1, _, _ = loss_and_grads(
        params, cfg, inputs, targets, state, rng=np.random.default_rng(1), train=True
    )
    again, _, _ = loss_and_grads(
        params, cfg, inputs, targets, state, rng=np.random.default_rng(1), train=True
    )
    other, _, _ = loss_and_grads(
        params, cfg, inputs, targets, state, rng=np.random.default_rng(2), train=True
    )
    assert train1 == again
    assert abs(train1 - loss) > 1e-3
    assert abs(train1 - other) > 1e-6


def test_dropout_requires_an_rng_only_when_used():
    cfg = _config("lstm", dropout=0.3)
    params, inputs, targets, state = _setup(cfg)
    with pytest.raises(AssertionError, match="rng"):
        loss_and_grads(params, cfg, inputs, targets, state, rng=None, train=True)
    with pytest.raises(AssertionError, match="rng"):
        forward(params, cfg, inputs, state, rng=None, train=True)
    loss_and_grads(params, cfg, inputs, targets, state, rng=None, train=False)
    cfg0 = _config("lstm", dropout=0.0)
    loss_and_grads(params, cfg0, inputs, targets, state, rng=None, train=True)


def test_dropout_is_inverted_and_drops_about_p():
    cfg = _config("gru", num_layers=1, hidden_size=16, dropout=0.5)
    params, inputs, _, state = _setup(cfg, t=20, b=10)
    clean, _, _ = forward(params, cfg, inputs, state, train=False)
    clean = clean.copy()
    noisy, _, _ = forward(params, cfg, inputs, state, rng=np.random.default_rng(0), train=True)
    nz = clean != 0
    ratio = noisy[nz] / clean[nz]
    assert np.all(np.isclose(ratio, 0.0) | np.isclose(ratio, 2.0))  # kept units scaled by 1/keep
    assert abs(np.mean(ratio == 0.0) - 0.5) < 0.05  # 3200 units: std of the fraction ~0.009


# --------------------------------------------------------------------------- PyTorch parity


def _torch_model(params, cfg, state, rng):
    """torch RNN/LSTM/GRU + Linear (+ Embedding) holding our weights, and torch initial state."""
    torch = pytest.importorskip("torch")
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cfg.cell]
    extra = {"nonlinearity": "tanh"} if cfg.cell == "rnn" else {}
    d_in = cfg.embedding_dim or cfg.vocab_size
    rnn = cls(d_in, H, num_layers=cfg.num_layers, dtype=torch.float64, **extra)
    lin = torch.nn.Linear(H, V, dtype=torch.float64)
    emb = (
        torch.nn.Embedding(V, cfg.embedding_dim, dtype=torch.float64) if cfg.embedding_dim else None
    )
    order = _torch_gate_order(cfg.cell)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    with torch.no_grad():
        for k in range(cfg.num_layers):
            getattr(rnn, f"weight_ih_l{k}").copy_(t(_regate(params[f"l{k}.Wx"], order).T))
            getattr(rnn, f"weight_hh_l{k}").copy_(t(_regate(params[f"l{k}.Wh"], order).T))
            b = _regate(params[f"l{k}.b"], order)
            # split our folded bias at random between b_ih and b_hh: only the sum matters ...
            b_hh = 0.3 * rng.standard_normal(b.shape)
            if cfg.cell == "gru":  # ... except GRU's n-gate, whose recurrent bias is bhn
                b_hh[2 * H :] = params[f"l{k}.bhn"]
                b_ih = b.copy()
                b_ih[: 2 * H] -= b_hh[: 2 * H]
            else:
                b_ih = b - b_hh
            getattr(rnn, f"bias_ih_l{k}").copy_(t(b_ih))
            getattr(rnn, f"bias_hh_l{k}").copy_(t(b_hh))
        lin.weight.copy_(t(params["Why"].T))
        lin.bias.copy_(t(params["by"]))
        if emb is not None:
            emb.weight.copy_(t(params["embed"]))
    h0 = t(np.stack([st[0] for st in state]))
    if cfg.cell == "lstm":
        h0 = (h0, t(np.stack([st[1] for st in state])))
    return torch, rnn, lin, emb, h0


def _torch_gate_order(cell):
    """Our gate blocks in torch's order: torch LSTM is [i, f, g, o], ours [i, f, o, g]."""
    return {"rnn": [0], "lstm": [0, 1, 3, 2], "gru": [0, 1, 2]}[cell]


def _regate(a, order):
    """Permute the gate blocks along the last axis (our order <-> torch order; an involution)."""
    n = a.shape[-1] // len(order)
    return np.concatenate([a[..., j * n : (j + 1) * n] for j in order], axis=-1)


@pytest.mark.torch
@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("emb", [None, E], ids=["onehot", "emb"])
def test_matches_torch(cell, layers, emb):
    cfg = _config(cell, num_layers=layers, embedding_dim=emb)
    params, inputs, targets, state = _setup(cfg, seed=9, random_state=True)
    torch, rnn, lin, emb_layer, h0 = _torch_model(params, cfg, state, np.random.default_rng(1))
    F = torch.nn.functional

    ids = torch.from_numpy(inputs)
    x = emb_layer(ids) if emb_layer is not None else F.one_hot(ids, V).to(torch.float64)
    out, hn = rnn(x, h0)
    logits_t = lin(out)
    loss_t = F.cross_entropy(logits_t.reshape(-1, V), torch.from_numpy(targets).reshape(-1))
    loss_t.backward()

    logits, final, _ = forward_logits(params, cfg, inputs, state)
    np.testing.assert_allclose(logits, logits_t.detach().numpy(), rtol=0, atol=1e-6)
    hn_t = hn if cfg.cell == "lstm" else (hn,)
    for i, s_t in enumerate(hn_t):  # h_n (and c_n) of every layer
        ours = np.stack([st[i] for st in final])
        np.testing.assert_allclose(ours, s_t.detach().numpy(), rtol=0, atol=1e-6)

    loss, grads, _ = loss_and_grads(params, cfg, inputs, targets, state, train=False)
    assert loss == pytest.approx(loss_t.item(), abs=1e-6)

    order = _torch_gate_order(cell)
    expected = {"Why": lin.weight.grad.numpy().T, "by": lin.bias.grad.numpy()}
    if emb_layer is not None:
        expected["embed"] = emb_layer.weight.grad.numpy()
    for k in range(layers):
        g = {n: getattr(rnn, f"{n}_l{k}").grad.numpy() for n in ("weight_ih", "weight_hh")}
        g |= {n: getattr(rnn, f"{n}_l{k}").grad.numpy() for n in ("bias_ih", "bias_hh")}
        expected[f"l{k}.Wx"] = _regate(g["weight_ih"].T, order)
        expected[f"l{k}.Wh"] = _regate(g["weight_hh"].T, order)
        expected[f"l{k}.b"] = _regate(g["bias_ih"], order)
        if cell == "gru":
            expected[f"l{k}.bhn"] = g["bias_hh"][2 * H :]
    assert expected.keys() == grads.keys()
    for key, want in expected.items():
        np.testing.assert_allclose(grads[key], want, rtol=0, atol=1e-6, err_msg=key)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_each_cell_memorises_a_tiny_text(cell):
    text = "hello world, hello charrnn!\n" * 8
    chars = sorted(set(text))
    ids = np.searchsorted(chars, list(text))
    cfg = NetworkConfig(cell, vocab_size=len(chars), hidden_size=32)  # float32 default
    params = init_params(cfg, np.random.default_rng(0))
    opt = Adam(params, lr=1e-2)
    seq = 16
    n_chunks = (len(ids) - 1) // seq

    first_loss = None
    for _ in range(30):
        state = init_state(cfg, 1)
        epoch = []
        for k in range(n_chunks):
            x = ids[k * seq : (k + 1) * seq, None]
            y = ids[k * seq + 1 : (k + 1) * seq + 1, None]
            loss, grads, state = loss_and_grads(params, cfg, x, y, state)
            opt.step(grads)
            epoch.append(loss)
            first_loss = loss if first_loss is None else first_loss
    assert first_loss > 0.8 * math.log(len(chars))  # it starts out knowing nothing
    assert np.mean(epoch) < 0.05  # last pass over the text

    # and the whole text, in one go from a zero state, without training
    logits, _, _ = forward_logits(params, cfg, ids[:-1, None], init_state(cfg, 1))
    nll = -np.take_along_axis(log_softmax(logits), ids[1:, None, None], axis=-1).mean()
    assert nll < 0.05


@pytest.mark.parametrize("bad", [-1, V])
def test_one_hot_ids_out_of_range_raise_index_error(bad):
    config = _config("gru")
    params, inputs, targets, state = _setup(config)
    inputs = inputs.copy()
    inputs[2, 1] = bad
    with pytest.raises(IndexError, match=r"input ids must be in \[0, 7\)"):
        loss_and_grads(params, config, inputs, targets, state)
