"""Tests for charrnn.engine.optim: update rules, state round trips, clipping and schedules."""

import math

import numpy as np
import pytest

from charrnn.engine.optim import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    LRSchedule,
    Optimizer,
    RMSprop,
    clip_grad_norm,
    make_optimizer,
)

# --------------------------------------------------------------------------- helpers


def _problem(seed=0, dtype=np.float64, shapes=((3, 4), (5,))):
    """Random parameters and a sequence of random gradients for them."""
    rng = np.random.default_rng(seed)
    params = {f"p{i}": rng.standard_normal(s).astype(dtype) for i, s in enumerate(shapes)}
    grads = [
        {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()} for _ in range(6)
    ]
    return params, grads


def _ref_adam(p, gs, lr, b1, b2, eps, weight_decay=0.0, decoupled=False):
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(gs, start=1):
        if decoupled:  # AdamW
            p = p * (1 - lr * weight_decay)
        else:  # an L2 penalty in the gradient
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def _ref_adamw(p, gs, lr, b1, b2, eps, weight_decay):
    return _ref_adam(p, gs, lr, b1, b2, eps, weight_decay, decoupled=True)


def _ref_rmsprop(p, gs, lr, alpha, eps, weight_decay=0.0):
    v = np.zeros_like(p)
    for g in gs:
        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        p = p - lr * g / (np.sqrt(v) + eps)
    return p


def _ref_adagrad(p, gs, lr, eps, weight_decay=0.0):
    acc = np.zeros_like(p)
    for g in gs:
        g = g + weight_decay * p
        acc = acc + g * g
        p = p - lr * g / (np.sqrt(acc) + eps)
    return p


def _ref_sgd(p, gs, lr, momentum, nesterov, weight_decay=0.0):
    buf = np.zeros_like(p)
    for g in gs:
        g = g + weight_decay * p
        buf = momentum * buf + g
        p = p - lr * (g + momentum * buf if nesterov else buf)
    return p


REFERENCES = [
    (Adam, {"beta1": 0.8, "beta2": 0.95, "eps": 1e-6}, _ref_adam),
    (RMSprop, {"alpha": 0.9, "eps": 1e-6}, _ref_rmsprop),
    (Adagrad, {"eps": 1e-6}, _ref_adagrad),
    (SGD, {"momentum": 0.9, "nesterov": False}, _ref_sgd),
    (SGD, {"momentum": 0.7, "nesterov": True}, _ref_sgd),
    (SGD, {"momentum": 0.0, "nesterov": False}, _ref_sgd),
    # weight decay: an L2 penalty in the gradient, or decoupled (AdamW)
    (Adam, {"beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.3}, _ref_adam),
    (AdamW, {"beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.3}, _ref_adamw),
    (RMSprop, {"alpha": 0.9, "eps": 1e-6, "weight_decay": 0.3}, _ref_rmsprop),
    (Adagrad, {"eps": 1e-6, "weight_decay": 0.3}, _ref_adagrad),
    (SGD, {"momentum": 0.7, "nesterov": True, "weight_decay": 0.3}, _ref_sgd),
]

# --------------------------------------------------------------------------- update rules


@pytest.mark.parametrize(("cls", "hyper", "ref"), REFERENCES)
def test_matches_reference_update_float64(cls, hyper, ref):
    params, grads = _problem()
    start = {k: v.copy() for k, v in params.items()}
    opt = cls(params, 0.05, **hyper)
    for g in grads:
        opt.step(g)
    for k, p in params.items():
        expected = ref(start[k], [g[k] for g in grads], 0.05, *hyper.values())
        np.testing.assert_allclose(p, expected, rtol=1e-12, atol=1e-15)
    assert opt.steps == len(grads)


def test_first_steps_by_hand():
    g = np.array([0.5, -0.25])
    # Adam's first step is lr * sign(g): both moments are exactly de-biased to g and g^2.
    p = {"w": np.array([1.0, -2.0])}
    Adam(p, 0.1, eps=1e-12).step({"w": g})
    np.testing.assert_allclose(p["w"], [0.9, -1.9], rtol=1e-10)
    # RMSprop: v = 0.01 g^2, so the step is lr * g / (0.1 |g|) = 10 lr sign(g).
    p = {"w": np.array([1.0, -2.0])}
    RMSprop(p, 0.01, alpha=0.99, eps=1e-12).step({"w": g})
    np.testing.assert_allclose(p["w"], [0.9, -1.9], rtol=1e-10)
    # Adagrad: lr sign(g), then lr sign(g) / sqrt(2) for the same gradient again.
    p = {"w": np.array([1.0, -2.0])}
    opt = Adagrad(p, 0.1, eps=1e-12)
    opt.step({"w": g})
    opt.step({"w": g})
    np.testing.assert_allclose(p["w"], [0.9 - 0.1 / math.sqrt(2), -1.9 + 0.1 / math.sqrt(2)])
    # SGD momentum 0.9, lr 0.1, g = 0.5 twice: buf 0.5 then 0.95; p 1 -> 0.95 -> 0.855.
    p = {"w": np.array([1.0])}
    opt = SGD(p, 0.1, momentum=0.9)
    opt.step({"w": np.array([0.5])})
    np.testing.assert_allclose(p["w"], [0.95])
    opt.step({"w": np.array([0.5])})
    np.testing.assert_allclose(p["w"], [0.855])
    # Nesterov looks ahead: the first step uses g + 0.9 * buf = 0.95.
    p = {"w": np.array([1.0])}
    SGD(p, 0.1, momentum=0.9, nesterov=True).step({"w": np.array([0.5])})
    np.testing.assert_allclose(p["w"], [0.905])


def test_weight_decay_leaves_the_callers_gradients_alone():
    params, grads = _problem()
    before = {k: v.copy() for k, v in grads[0].items()}
    Adam(params, 0.01, weight_decay=0.5).step(grads[0])
    for k in before:
        np.testing.assert_array_equal(grads[0][k], before[k])


# (charrnn class, its hyperparameters, torch.optim class name, the same in torch's terms)
TORCH_TWINS = [
    (
        Adam,
        {"beta1": 0.85, "beta2": 0.99, "eps": 1e-7},
        "Adam",
        {"betas": (0.85, 0.99), "eps": 1e-7},
    ),
    (Adam, {"weight_decay": 0.2}, "Adam", {"weight_decay": 0.2}),
    (
        AdamW,
        {"beta1": 0.85, "weight_decay": 0.2},
        "AdamW",
        {"betas": (0.85, 0.999), "weight_decay": 0.2},
    ),
    (AdamW, {}, "AdamW", {}),  # both default to weight_decay 0.01
    (RMSprop, {"alpha": 0.9, "weight_decay": 0.2}, "RMSprop", {"alpha": 0.9, "weight_decay": 0.2}),
    (Adagrad, {"weight_decay": 0.2}, "Adagrad", {"weight_decay": 0.2}),
    (
        SGD,
        {"momentum": 0.8, "nesterov": True, "weight_decay": 0.2},
        "SGD",
        {"momentum": 0.8, "nesterov": True, "weight_decay": 0.2},
    ),
]


@pytest.mark.torch
@pytest.mark.parametrize(("cls", "hyper", "torch_name", "torch_hyper"), TORCH_TWINS)
def test_matches_torch_optim(cls, hyper, torch_name, torch_hyper):
    torch = pytest.importorskip("torch")
    params, grads = _problem(seed=3)
    start = params["p0"].copy()
    opt = cls(params, 0.03, **hyper)
    tp = torch.tensor(start.copy(), requires_grad=True)
    topt = getattr(torch.optim, torch_name)([tp], lr=0.03, **torch_hyper)
    for g in grads:
        opt.step(g)
        tp.grad = torch.tensor(g["p0"])
        topt.step()
    np.testing.assert_allclose(params["p0"], tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert not np.allclose(params["p0"], start)


def test_lr_override_applies_to_one_step_only():
    p = {"w": np.array([1.0, 2.0])}
    opt = SGD(p, 0.1, momentum=0.0)
    g = {"w": np.array([1.0, -1.0])}
    opt.step(g, lr=0.5)
    np.testing.assert_array_equal(p["w"], [0.5, 2.5])
    opt.step(g, lr=0.0)
    np.testing.assert_array_equal(p["w"], [0.5, 2.5])
    opt.step(g)
    np.testing.assert_allclose(p["w"], [0.4, 2.6])
    assert opt.lr == 0.1
    with pytest.raises(AssertionError, match="lr"):
        opt.step(g, lr=-1.0)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dtype_follows_params(name, dtype):
    params, grads = _problem(dtype=dtype)
    params["other"] = np.ones(3, dtype=np.float64 if dtype == np.float32 else np.float32)
    grads[0]["other"] = np.ones(3, dtype=params["other"].dtype)
    opt = make_optimizer(name, params, 0.01)
    opt.step(grads[0])
    n_buffers = 0
    for key, arr in opt.state_dict().items():
        if arr.ndim:  # "<name>.<slot>.<param>"; 0-d entries are step and hyperparameters
            assert arr.dtype == params[key.split(".", 2)[2]].dtype
            n_buffers += 1
    assert n_buffers == len(opt.slots) * len(params)
    assert params["p0"].dtype == dtype


QUADRATIC_LR = {"adam": 0.05, "adamw": 0.05, "rmsprop": 0.01, "adagrad": 0.5, "sgd": 0.05}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_minimises_quadratic(name):
    # f(x) = 0.5 * sum(a * (x - c)^2) with curvatures spread over [0.5, 2].
    rng = np.random.default_rng(1)
    a = rng.uniform(0.5, 2.0, size=20)
    c = rng.standard_normal(20)
    params = {"x": np.zeros(20)}

    def loss():
        return 0.5 * float(np.sum(a * (params["x"] - c) ** 2))

    initial = loss()
    opt = make_optimizer(name, params, QUADRATIC_LR[name])
    for _ in range(1000):
        opt.step({"x": a * (params["x"] - c)})
    assert loss() < 1e-3 * initial


# --------------------------------------------------------------------------- state round trip


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resume_is_bitwise_exact(name, tmp_path):
    params, grads = _problem(seed=7, dtype=np.float32)
    n_steps, k = len(grads), 2
    straight = {key: v.copy() for key, v in params.items()}
    opt = make_optimizer(name, straight, 0.01)
    for g in grads:
        opt.step(g)

    first = {key: v.copy() for key, v in params.items()}
    opt = make_optimizer(name, first, 0.01)
    for g in grads[:k]:
        opt.step(g)
    # Round trip through an .npz without pickle, as checkpoints store it.
    np.savez(tmp_path / "state.npz", **opt.state_dict())
    with np.load(tmp_path / "state.npz", allow_pickle=False) as f:
        state = {key: f[key] for key in f.files}
    resumed = {key: v.copy() for key, v in first.items()}
    # Different lr at construction: load_state_dict must restore the saved one.
    opt2 = make_optimizer(name, resumed, 0.5)
    opt2.load_state_dict(state)
    assert opt2.steps == k and opt2.lr == 0.01
    for g in grads[k:n_steps]:
        opt2.step(g)
    for key in params:
        assert np.array_equal(resumed[key], straight[key])
        assert resumed[key].dtype == np.float32


def test_state_dict_is_a_copy():
    params, grads = _problem()
    opt = Adam(params)
    opt.step(grads[0])
    state = opt.state_dict()
    saved = state["adam.m.p0"].copy()
    opt.step(grads[1])
    np.testing.assert_array_equal(state["adam.m.p0"], saved)
    assert state["adam.step"] == 1 and state["adam.step"].dtype == np.int64


@pytest.mark.parametrize("name", ["adam", "rmsprop", "adagrad", "sgd"])
def test_a_state_from_before_weight_decay_resumes_without_it(name):
    # model files written before weight_decay existed have no "<name>.weight_decay" entry;
    # those runs had no decay, and resuming them must go on without one
    params, grads = _problem(seed=5)
    opt = make_optimizer(name, params, 0.01)
    opt.step(grads[0])
    old_state = {k: v for k, v in opt.state_dict().items() if not k.endswith(".weight_decay")}
    resumed = make_optimizer(name, {k: v.copy() for k, v in params.items()}, 0.01, weight_decay=0.5)
    resumed.load_state_dict(old_state)
    assert resumed.hyperparameters["weight_decay"] == 0.0
    opt.step(grads[1])
    resumed.step(grads[1])
    for k in params:
        np.testing.assert_array_equal(resumed.params[k], params[k])
    # a state that has it restores it
    with_decay = make_optimizer(
        name, {k: v.copy() for k, v in params.items()}, 0.01, weight_decay=0.5
    )
    opt.load_state_dict(with_decay.state_dict())
    assert opt.hyperparameters["weight_decay"] == 0.5


def test_load_state_dict_rejects_mismatches_without_changing_anything():
    params, grads = _problem()
    opt = Adam(params)
    opt.step(grads[0])
    before = opt.state_dict()
    with pytest.raises(ValueError, match="missing keys"):
        opt.load_state_dict(RMSprop(_problem()[0]).state_dict())
    bad = dict(before)
    bad["adam.v.p1"] = np.zeros(4)
    bad["adam.step"] = np.array(9)
    with pytest.raises(ValueError, match=r"adam\.v\.p1"):
        opt.load_state_dict(bad)
    bad = dict(before)
    bad["adam.beta1"] = np.array(1.5)
    with pytest.raises(ValueError, match="beta1"):
        opt.load_state_dict(bad)
    assert opt.steps == 1
    for key, arr in opt.state_dict().items():
        np.testing.assert_array_equal(arr, before[key])


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (Adam, {"lr": 0.0}, "lr"),
        (Adam, {"lr": -1e-3}, "lr"),
        (Adam, {"lr": float("nan")}, "lr"),
        (Adam, {"lr": float("inf")}, "lr"),
        (Adam, {"beta1": 1.0}, "beta1"),
        (Adam, {"beta2": -0.1}, "beta2"),
        (Adam, {"eps": 0.0}, "eps"),
        (RMSprop, {"alpha": 1.0}, "alpha"),
        (RMSprop, {"eps": -1.0}, "eps"),
        (Adagrad, {"eps": float("nan")}, "eps"),
        (SGD, {"momentum": -0.5}, "momentum"),
        (SGD, {"momentum": 0.0, "nesterov": True}, "nesterov"),
        (Adam, {"weight_decay": -0.1}, "weight_decay"),
        (AdamW, {"weight_decay": float("inf")}, "weight_decay"),
        (SGD, {"weight_decay": float("nan")}, "weight_decay"),
    ],
)
def test_bad_hyperparameters_raise(cls, kwargs, name):
    with pytest.raises(AssertionError, match=name):
        cls({"w": np.zeros(2)}, **kwargs)


def test_bad_types_raise():
    with pytest.raises(AssertionError, match="lr"):
        Adam({"w": np.zeros(2)}, lr="fast")
    with pytest.raises(AssertionError, match="nesterov"):
        SGD({"w": np.zeros(2)}, nesterov="yes")
    with pytest.raises(AssertionError, match="params"):
        Adam({"w": np.zeros(2, dtype=np.int64)})
    with pytest.raises(AssertionError, match="params"):
        Adam({})
    frozen = np.zeros(2)
    frozen.flags.writeable = False
    with pytest.raises(AssertionError, match="read-only"):
        Adam({"w": frozen})


def test_step_rejects_bad_grads_before_updating():
    params = {"a": np.ones(3), "b": np.ones(2)}
    opt = SGD(params, 0.1)
    with pytest.raises(AssertionError, match="missing"):
        opt.step({"a": np.ones(3)})
    with pytest.raises(AssertionError, match="grads\\['b'\\]"):
        opt.step({"a": np.ones(3), "b": np.ones(4)})
    np.testing.assert_array_equal(params["a"], np.ones(3))
    assert opt.steps == 0


def test_make_optimizer():
    params = {"w": np.zeros(2)}
    for name, cls in OPTIMIZERS.items():
        opt = make_optimizer(name, params, 0.02)
        assert type(opt) is cls and isinstance(opt, Optimizer) and opt.lr == 0.02
    assert make_optimizer("adam", params).lr == 2e-3
    assert make_optimizer("sgd", params, 0.1, momentum=0.5).hyperparameters["momentum"] == 0.5
    assert make_optimizer("adamw", params).hyperparameters["weight_decay"] == 1e-2
    assert make_optimizer("adam", params).hyperparameters["weight_decay"] == 0.0
    with pytest.raises(AssertionError, match="optimizer"):
        make_optimizer("lamb", params, 0.1)


# --------------------------------------------------------------------------- clipping


def test_clip_grad_norm_scales_to_max_norm():
    rng = np.random.default_rng(2)
    grads = {"a": rng.standard_normal((4, 3)), "b": rng.standard_normal(7)}
    orig = {k: v.copy() for k, v in grads.items()}
    expected = math.sqrt(sum(float(np.sum(v**2)) for v in orig.values()))
    norm = clip_grad_norm(grads, expected / 4)
    assert norm == pytest.approx(expected, rel=1e-12)
    clipped = math.sqrt(sum(float(np.sum(v**2)) for v in grads.values()))
    assert clipped == pytest.approx(expected / 4, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], orig[k] / 4, rtol=1e-12)


@pytest.mark.parametrize("max_norm", [None, math.inf, 100.0])
def test_clip_grad_norm_no_clip(max_norm):
    grads = {"a": np.array([3.0, 4.0], dtype=np.float32)}
    assert clip_grad_norm(grads, max_norm) == pytest.approx(5.0)
    np.testing.assert_array_equal(grads["a"], [3.0, 4.0])


def test_clip_grad_norm_float32_extremes_and_bad_input():
    # Squares of 1e20 overflow float32, but the norm must still come out right and clip.
    grads = {"a": np.full(4, 1e20, dtype=np.float32)}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(2e20, rel=1e-6)
    np.testing.assert_allclose(grads["a"], np.full(4, 0.5), rtol=1e-6)
    nan_grads = {"a": np.array([1.0, np.nan])}
    assert math.isnan(clip_grad_norm(nan_grads, 1e-3))
    assert nan_grads["a"][0] == 1.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(AssertionError, match="max_norm"):
            clip_grad_norm({"a": np.ones(2)}, bad)


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("kind", ["warmup_cosine", "warmup_linear"])
def test_schedule_shape(kind):
    s = LRSchedule(kind, warmup=0.1, final_factor=0.2)
    assert 0 < s.factor(0.0) < 0.01
    assert s.factor(0.1) == 1.0
    warm = [s.factor(x) for x in np.linspace(0, 0.1, 51)]
    assert np.all(np.diff(warm) > 0)
    decay = [s.factor(x) for x in np.linspace(0.1, 1.0, 501)]
    assert np.all(np.diff(decay) <= 0) and decay[250] < 1.0
    assert s.factor(1.0) == pytest.approx(0.2, abs=1e-15)
    assert s.factor(-3.0) == s.factor(0.0) and s.factor(7.0) == s.factor(1.0)
    assert LRSchedule(kind, warmup=0.0).factor(0.0) == 1.0


def test_schedule_cosine_and_linear_differ_midway():
    cos = LRSchedule("warmup_cosine", warmup=0.0, final_factor=0.0)
    lin = LRSchedule("warmup_linear", warmup=0.0, final_factor=0.0)
    assert cos.factor(0.5) == pytest.approx(0.5) and lin.factor(0.5) == pytest.approx(0.5)
    assert cos.factor(0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lin.factor(0.25) == pytest.approx(0.75)


def test_constant_schedule_and_round_trip():
    s = LRSchedule()
    assert all(s.factor(x) == 1.0 for x in (0.0, 0.01, 0.5, 1.0, 2.0))
    for sched in (s, LRSchedule("warmup_cosine", 0.05, 0.0), LRSchedule("warmup_linear", 0, 1)):
        d = sched.to_dict()
        assert LRSchedule.from_dict(d) == sched
        assert isinstance(d["warmup"], float)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"kind": "step"}, "kind"),
        ({"warmup": 1.0}, "warmup"),
        ({"warmup": -0.1}, "warmup"),
        ({"final_factor": 1.5}, "final_factor"),
        ({"final_factor": -0.1}, "final_factor"),
    ],
)
def test_schedule_validation(kwargs, name):
    with pytest.raises(AssertionError, match=name):
        LRSchedule(**kwargs)


def test_schedule_bad_progress_and_dict():
    with pytest.raises(AssertionError, match="progress"):
        LRSchedule("warmup_cosine").factor(float("nan"))
    # a dict read from a checkpoint: what is wrong with it is a ValueError
    with pytest.raises(ValueError, match="unknown"):
        LRSchedule.from_dict({"kind": "constant", "gamma": 0.5})
    with pytest.raises(ValueError, match="kind"):
        LRSchedule.from_dict({"kind": "step"})
    with pytest.raises(ValueError, match="warmup"):
        LRSchedule.from_dict({"kind": "warmup_cosine", "warmup": 1.5})


def test_set_hyperparameters_checks_names_and_values():
    opt = Adam({"w": np.zeros(3)}, 1e-3)
    opt.set_hyperparameters(beta1=0.0, beta2=0.99)
    assert (opt.hyperparameters["beta1"], opt.hyperparameters["beta2"]) == (0.0, 0.99)
    with pytest.raises(AssertionError, match="momentum"):
        opt.set_hyperparameters(momentum=0.9)
    with pytest.raises(AssertionError, match="beta2"):
        opt.set_hyperparameters(beta2=1.5)
