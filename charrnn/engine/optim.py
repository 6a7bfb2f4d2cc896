"""Optimisers that update a dict of NumPy parameters in place, gradient clipping, LR schedules.

The network owns its parameter arrays. An optimiser keeps references to them plus, for every
parameter, its state buffers (moment estimates, accumulators) and one scratch buffer, all of the
parameter's shape and dtype. A step is a fixed sequence of in-place ufuncs writing into those
buffers, so training allocates nothing per batch. The update rules follow torch.optim's (no
AMSGrad, no centring), which makes results comparable with PyTorch: ``weight_decay`` adds
``weight_decay * p`` to every gradient (an L2 penalty) in Adam, RMSprop, Adagrad and SGD, and
AdamW decays the weights apart from the gradient (Loshchilov & Hutter), as their namesakes do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Adagrad",
    "Adam",
    "AdamW",
    "LRSchedule",
    "Optimizer",
    "RMSprop",
    "SGD",
    "clip_grad_norm",
    "make_optimizer",
]


_REAL_TYPES = (int, float, np.integer, np.floating)


def _is_real(x: Any) -> bool:
    return isinstance(x, _REAL_TYPES) and not isinstance(x, bool | np.bool_)


# What each kind of hyperparameter accepts: a test of the value and the words for it. Values
# given in code (constructors, setters, step) are asserted against it -- the estimators check
# what a user passes against their own parameter table first (charrnn.estimators.params), so a
# failure here is a programming error -- while values read back from a state file
# (load_state_dict, LRSchedule.from_dict) that fail it are a ValueError.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "real": (_is_real, "a real number"),
    "positive": (lambda x: _is_real(x) and math.isfinite(x) and x > 0, "a finite number > 0"),
    "fraction": (lambda x: _is_real(x) and 0.0 <= x < 1.0, "a number in [0, 1)"),
    "nonnegative": (lambda x: _is_real(x) and math.isfinite(x) and x >= 0, "a finite number >= 0"),
    "unit": (lambda x: _is_real(x) and 0.0 <= x <= 1.0, "a number in [0, 1]"),
    "flag": (lambda x: isinstance(x, bool | np.bool_), "a bool"),
}


def _follows(kind: str, name: str, value: Any) -> tuple[Any, str | None]:
    """``value`` as a Python float (bool for ``"flag"``) and, when it breaks rule ``kind``,
    what is wrong with it."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    test, words = _RULES[kind]
    if not test(value):
        return value, f"{name} must be {words}, got {value!r}"
    return (bool(value) if kind == "flag" else float(value)), None


def _checked(kind: str, name: str, value: Any) -> Any:
    """A value given in code, asserted to follow rule ``kind`` (see :data:`_RULES`)."""
    value, problem = _follows(kind, name, value)
    assert problem is None, problem
    return value


def _loaded(kind: str, name: str, value: Any) -> Any:
    """A value read from a file: ValueError unless it follows rule ``kind``."""
    value, problem = _follows(kind, name, value)
    if problem is not None:
        raise ValueError(problem)
    return value


class Optimizer:
    """Base class: parameter bookkeeping, the step loop and state (de)serialisation.

    Parameters
    ----------
    params : dict of str to ndarray
        The arrays to optimise (float32 or float64, any shape). They are updated in place; the
        optimiser stores references, so the caller must not replace them with new arrays.
    lr : float
        Learning rate, > 0.
    **hyper
        Subclass hyperparameters, validated by the subclass.

    Attributes
    ----------
    params : dict of str to ndarray
        The parameter arrays (same objects as passed in).
    steps : int
        Number of updates applied so far (used by Adam's bias correction).
    """

    name: ClassVar[str] = ""
    slots: ClassVar[tuple[str, ...]] = ()
    # Hyperparameter name -> the kind of value it takes (a key of _RULES); asserted in
    # __init__, a ValueError in load_state_dict.
    checks: ClassVar[dict[str, str]] = {"lr": "positive"}
    # Hyperparameters added after state files were first written, with the value those runs
    # used: load_state_dict fills them in when a state lacks them.
    added_later: ClassVar[dict[str, Any]] = {"weight_decay": 0.0}
    # Whether ``weight_decay`` is an L2 penalty folded into the gradient before ``_update``
    # (torch.optim's Adam, RMSprop, Adagrad, SGD); AdamW applies it in ``_update`` instead.
    l2_penalty: ClassVar[bool] = True

    def __init__(self, params: Mapping[str, np.ndarray], lr: float, **hyper: Any) -> None:
        assert isinstance(params, Mapping) and params, "params must be a non-empty dict"
        for key, p in params.items():
            assert isinstance(p, np.ndarray) and p.dtype in (np.float32, np.float64), (
                f"params[{key!r}] must be a float32 or float64 ndarray"
            )
            assert p.flags.writeable, f"params[{key!r}] is read-only; it is updated in place"
        self.params: dict[str, np.ndarray] = dict(params)
        self._hyper = self._validate({"lr": lr, **hyper})
        self.steps = 0
        # State dtype follows each parameter so float32 models keep float32 moments.
        self._state = {
            slot: {k: np.zeros(p.shape, dtype=p.dtype) for k, p in self.params.items()}
            for slot in self.slots
        }
        self._scratch = {k: np.empty(p.shape, dtype=p.dtype) for k, p in self.params.items()}
        # One tuple per parameter so the hot loop does no dict look-ups.
        self._groups = [
            (k, p, self._scratch[k], tuple(self._state[s][k] for s in self.slots))
            for k, p in self.params.items()
        ]
        # gradient + weight_decay * p, made only when an L2 penalty is in use (the caller's
        # gradients are left alone, as torch.optim leaves .grad alone)
        self._penalised: dict[str, np.ndarray] = {}

    def _validate(self, hyper: dict[str, Any], loaded: bool = False) -> dict[str, Any]:
        """The hyperparameters as Python numbers, checked against :attr:`checks`: asserted,
        or (``loaded``, values read from a file) a ValueError."""
        conform = _loaded if loaded else _checked
        return {key: conform(kind, key, hyper[key]) for key, kind in self.checks.items()}

    def _update(self, p: np.ndarray, g: np.ndarray, s: np.ndarray, bufs: tuple, lr: float) -> None:
        raise NotImplementedError

    @property
    def lr(self) -> float:
        """The base learning rate (a schedule passes ``lr=`` to :meth:`step` instead)."""
        return self._hyper["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self._hyper["lr"] = _checked("positive", "lr", value)

    @property
    def weight_decay(self) -> float:
        """The weight decay (see the class's update rule); settable, e.g. when a resumed run
        asks for another one."""
        return self._hyper.get("weight_decay", 0.0)

    @weight_decay.setter
    def weight_decay(self, value: float) -> None:
        self.set_hyperparameters(weight_decay=value)

    def set_hyperparameters(self, **values: Any) -> None:
        """Change hyperparameters of this optimiser (say, when a resumed run asks for other
        betas than its saved state holds); every name must be one of :attr:`checks`."""
        unknown = sorted(values.keys() - self.checks.keys())
        assert not unknown, f"{type(self).__name__} has no hyperparameter {unknown}"
        for key, value in values.items():
            self._hyper[key] = _checked(self.checks[key], key, value)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """A copy of the hyperparameters, ``lr`` included."""
        return dict(self._hyper)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyper.items())
        return f"{type(self).__name__}({args})"

    def step(self, grads: Mapping[str, np.ndarray], lr: float | None = None) -> None:
        """Apply one update to every parameter, in place.

        Parameters
        ----------
        grads : dict of str to ndarray
            Gradient of the loss for every parameter, same keys and shapes as ``params``.
        lr : float, optional
            Learning rate for this step only (e.g. base lr times a schedule factor); >= 0.
        """
        lr = self._hyper["lr"] if lr is None else _checked("nonnegative", "lr", lr)
        # checked before anything is touched, so a bad call never half-applies an update
        assert grads.keys() == self.params.keys(), (
            f"grads keys differ from params: missing {sorted(self.params.keys() - grads.keys())}"
            f", extra {sorted(grads.keys() - self.params.keys())}"
        )
        for key, p in self.params.items():
            assert np.shape(grads[key]) == p.shape, (
                f"grads[{key!r}] has shape {np.shape(grads[key])}, expected {p.shape}"
            )
        self.steps += 1
        decay = self._hyper.get("weight_decay", 0.0) if self.l2_penalty else 0.0
        for key, p, s, bufs in self._groups:
            g = grads[key]
            if decay:
                d = self._penalised.get(key)
                if d is None:
                    d = self._penalised[key] = np.empty_like(p)
                np.multiply(p, decay, out=d)
                np.add(g, d, out=d)
                g = d
            self._update(p, g, s, bufs, lr)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume bit-exactly, as a flat dict of arrays (npz-storable).

        Returns
        -------
        dict of str to ndarray
            ``"<name>.step"`` (0-d int64), ``"<name>.<hyper>"`` (0-d) and
            ``"<name>.<slot>.<param>"`` (copies of the state buffers, parameter shape and dtype).
        """
        state: dict[str, np.ndarray] = {f"{self.name}.step": np.array(self.steps, dtype=np.int64)}
        for hname, value in self._hyper.items():
            state[f"{self.name}.{hname}"] = np.array(value)
        for slot, bufs in self._state.items():
            for key, buf in bufs.items():
                state[f"{self.name}.{slot}.{key}"] = buf.copy()
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict`; hyperparameters and step count are restored too.

        Raises
        ------
        ValueError
            If keys (optimiser type, parameter names) or shapes do not match; nothing is changed.
            A state written before a hyperparameter of :attr:`added_later` existed gets the
            value those runs used (``weight_decay`` 0).
        """
        state = dict(state)
        for hname, value in self.added_later.items():
            if hname in self._hyper:
                state.setdefault(f"{self.name}.{hname}", np.array(value))
        expected = {f"{self.name}.step"} | {f"{self.name}.{h}" for h in self._hyper}
        expected |= {f"{self.name}.{s}.{k}" for s in self.slots for k in self.params}
        if state.keys() != expected:
            missing = sorted(expected - state.keys())[:5]
            extra = sorted(state.keys() - expected)[:5]
            raise ValueError(
                f"optimizer state does not match this {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {extra}"
            )
        for slot in self.slots:
            for key, p in self.params.items():
                arr = np.asarray(state[f"{self.name}.{slot}.{key}"])
                if arr.shape != p.shape:
                    raise ValueError(
                        f"optimizer state {self.name}.{slot}.{key} has shape {arr.shape}, "
                        f"expected {p.shape}"
                    )
        steps = np.asarray(state[f"{self.name}.step"])
        if steps.ndim != 0 or steps.dtype.kind not in "iu" or steps < 0:
            raise ValueError(f"optimizer state {self.name}.step must be a 0-d integer >= 0")
        hyper = self._validate({h: state[f"{self.name}.{h}"] for h in self._hyper}, loaded=True)
        # All checks passed: now mutate.
        self._hyper = hyper
        self.steps = int(steps)
        for slot, bufs in self._state.items():
            for key, buf in bufs.items():
                np.copyto(buf, state[f"{self.name}.{slot}.{key}"])


def _average_square(v: np.ndarray, g: np.ndarray, beta: float, s: np.ndarray) -> None:
    """``v = beta * v + (1 - beta) * g**2`` in place, in torch.optim's operation order (Adam's
    second moment and RMSprop's square average); ``s`` is scratch of ``g``'s shape."""
    np.multiply(v, beta, out=v)
    np.multiply(g, g, out=s)
    np.multiply(s, 1.0 - beta, out=s)
    np.add(v, s, out=v)


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba), numerically as ``torch.optim.Adam``.

    ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
    ``p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps)``, with ``g`` the gradient plus
    ``weight_decay * p``.
    """

    name = "adam"
    slots = ("m", "v")
    checks = {
        "lr": "positive",
        "beta1": "fraction",
        "beta2": "fraction",
        "eps": "positive",
        "weight_decay": "nonnegative",
    }

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 2e-3,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)

    def _update(self, p, g, s, bufs, lr):
        m, v = bufs
        b1, b2, eps = self._hyper["beta1"], self._hyper["beta2"], self._hyper["eps"]
        bc1 = 1.0 - b1**self.steps
        bc2_sqrt = math.sqrt(1.0 - b2**self.steps)
        np.multiply(m, b1, out=m)
        np.multiply(g, 1.0 - b1, out=s)
        np.add(m, s, out=m)
        _average_square(v, g, b2, s)
        # Same operation order as PyTorch: (sqrt(v) / sqrt(bc2) + eps), then m / that.
        np.sqrt(v, out=s)
        np.divide(s, bc2_sqrt, out=s)
        np.add(s, eps, out=s)
        np.divide(m, s, out=s)
        np.multiply(s, lr / bc1, out=s)
        np.subtract(p, s, out=p)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), numerically as
    ``torch.optim.AdamW``: ``p *= 1 - lr * weight_decay``, then Adam's update from the plain
    gradient. Decaying the weights apart from the adaptive step shrinks every weight by the same
    fraction, where Adam's L2 penalty is divided by the gradient's running scale.
    """

    name = "adamw"
    added_later = {}  # new with weight_decay: every AdamW state has it
    l2_penalty = False

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 2e-3,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)

    def _update(self, p, g, s, bufs, lr):
        np.multiply(p, 1.0 - lr * self._hyper["weight_decay"], out=p)
        super()._update(p, g, s, bufs, lr)


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop`` (uncentred, no momentum).

    ``v = alpha v + (1-alpha) g^2``; ``p -= lr * g / (sqrt(v) + eps)``, with ``g`` the
    gradient plus ``weight_decay * p``.
    """

    name = "rmsprop"
    slots = ("v",)
    checks = {
        "lr": "positive",
        "alpha": "fraction",
        "eps": "positive",
        "weight_decay": "nonnegative",
    }

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 2e-3,
        *,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, alpha=alpha, eps=eps, weight_decay=weight_decay)

    def _update(self, p, g, s, bufs, lr):
        (v,) = bufs
        alpha, eps = self._hyper["alpha"], self._hyper["eps"]
        _average_square(v, g, alpha, s)
        np.sqrt(v, out=s)
        np.add(s, eps, out=s)
        np.divide(g, s, out=s)
        np.multiply(s, lr, out=s)
        np.subtract(p, s, out=p)


class Adagrad(Optimizer):
    """Adagrad as ``torch.optim.Adagrad`` (no lr decay, zero initial accumulator).

    ``a += g^2``; ``p -= lr * g / (sqrt(a) + eps)``, with ``g`` the gradient plus
    ``weight_decay * p``.
    """

    name = "adagrad"
    slots = ("sum",)
    checks = {"lr": "positive", "eps": "positive", "weight_decay": "nonnegative"}

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 0.1,
        *,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, eps=eps, weight_decay=weight_decay)

    def _update(self, p, g, s, bufs, lr):
        (acc,) = bufs
        np.multiply(g, g, out=s)
        np.add(acc, s, out=acc)
        np.sqrt(acc, out=s)
        np.add(s, self._hyper["eps"], out=s)
        np.divide(g, s, out=s)
        np.multiply(s, lr, out=s)
        np.subtract(p, s, out=p)


class SGD(Optimizer):
    """SGD with (optionally Nesterov) momentum, as ``torch.optim.SGD`` with zero dampening.

    ``b = momentum b + g``; ``p -= lr * b``, or with Nesterov ``p -= lr * (g + momentum b)``,
    with ``g`` the gradient plus ``weight_decay * p``.
    """

    name = "sgd"
    slots = ("buf",)
    checks = {
        "lr": "positive",
        "momentum": "nonnegative",
        "nesterov": "flag",
        "weight_decay": "nonnegative",
    }

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 0.1,
        *,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params, lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )

    def _validate(self, hyper: dict[str, Any], loaded: bool = False) -> dict[str, Any]:
        hyper = super()._validate(hyper, loaded)
        if hyper["nesterov"] and hyper["momentum"] == 0:
            problem = "nesterov=True needs momentum > 0"
            if loaded:
                raise ValueError(problem)
            raise AssertionError(problem)
        return hyper

    def _update(self, p, g, s, bufs, lr):
        (buf,) = bufs
        mu = self._hyper["momentum"]
        # With a zero initial buffer the first step gives buf = g, as PyTorch's clone does.
        np.multiply(buf, mu, out=buf)
        np.add(buf, g, out=buf)
        if self._hyper["nesterov"]:
            np.multiply(buf, mu, out=s)
            np.add(s, g, out=s)
            np.multiply(s, lr, out=s)
        else:
            np.multiply(buf, lr, out=s)
        np.subtract(p, s, out=p)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "sgd": SGD,
}


def make_optimizer(
    name: str, params: Mapping[str, np.ndarray], lr: float | None = None, **hyper: Any
) -> Optimizer:
    """Build an optimiser by registry name (``"adam"``, ``"adamw"``, ``"rmsprop"``,
    ``"adagrad"``, ``"sgd"``).

    ``lr=None`` uses the optimiser's default learning rate; ``hyper`` goes to its constructor.
    """
    cls = OPTIMIZERS.get(name) if isinstance(name, str) else None
    assert cls is not None, f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}"
    return cls(params, **hyper) if lr is None else cls(params, lr, **hyper)


def clip_grad_norm(grads: Mapping[str, np.ndarray], max_norm: float | None) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : dict of str to ndarray
        Gradients of any shapes; modified in place when clipping happens.
    max_norm : float or None
        Largest allowed global norm (> 0). ``None`` or ``inf`` only measures the norm.

    Returns
    -------
    float
        The global norm before clipping. If it is not finite (nan/inf gradients) nothing is
        scaled, so the caller can see it and skip the update.
    """
    if max_norm is not None:
        max_norm = _checked("real", "max_norm", max_norm)
        assert max_norm > 0, f"max_norm must be > 0, inf or None, got {max_norm!r}"
    total = 0.0
    for g in grads.values():
        flat = g.reshape(-1)
        with np.errstate(over="ignore"):
            sq = float(np.dot(flat, flat))
        if not math.isfinite(sq):
            # float32 squares overflow above ~1.8e19; redo this array in float64 (rare path).
            flat = flat.astype(np.float64)
            sq = float(np.dot(flat, flat))
        total += sq
    norm = math.sqrt(total)
    if max_norm is not None and math.isfinite(norm) and norm > max_norm:
        coef = max_norm / norm
        for g in grads.values():
            np.multiply(g, coef, out=g)
    return norm


SCHEDULES = ("constant", "warmup_cosine", "warmup_linear")
# Warm-up starts here rather than at 0 so the very first update is not wasted.
WARMUP_START = 1e-3


@dataclass(frozen=True)
class LRSchedule:
    """Learning-rate multiplier as a function of training progress in [0, 1].

    Parameters
    ----------
    kind : {"constant", "warmup_cosine", "warmup_linear"}
        ``constant`` is always 1. The others rise linearly from ``WARMUP_START`` to 1 over the
        first ``warmup`` fraction of the budget, then decay (half-cosine or linearly) to
        ``final_factor`` at progress 1.
    warmup : float
        Fraction of the budget used for warm-up, in [0, 1).
    final_factor : float
        Multiplier reached at the end of training, in [0, 1].
    """

    kind: str = "constant"
    warmup: float = 0.02
    final_factor: float = 0.1

    def __post_init__(self) -> None:
        assert self.kind in SCHEDULES, f"kind must be one of {list(SCHEDULES)}, got {self.kind!r}"
        # Frozen dataclass: normalise to plain floats so to_dict() is JSON-serialisable.
        object.__setattr__(self, "warmup", _checked("fraction", "warmup", self.warmup))
        object.__setattr__(
            self, "final_factor", _checked("unit", "final_factor", self.final_factor)
        )

    def factor(self, progress: float) -> float:
        """Multiplier for the base learning rate; ``progress`` is clipped to [0, 1]."""
        x = _checked("real", "progress", progress)
        assert not math.isnan(x), "progress must be a number in [0, 1], got nan"
        x = min(max(x, 0.0), 1.0)
        if self.kind == "constant":
            return 1.0
        w = self.warmup
        if x < w:
            return WARMUP_START + (1.0 - WARMUP_START) * (x / w)
        q = (x - w) / (1.0 - w)
        ff = self.final_factor
        if self.kind == "warmup_cosine":
            return ff + (1.0 - ff) * 0.5 * (1.0 + math.cos(math.pi * q))
        return ff + (1.0 - ff) * (1.0 - q)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description; :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LRSchedule:
        """Rebuild from :meth:`to_dict` output (missing keys take their defaults).

        Raises
        ------
        ValueError
            If ``d`` (read from a checkpoint, say) has unknown keys or values out of range.
        """
        unknown = set(d) - {"kind", "warmup", "final_factor"}
        if unknown:
            raise ValueError(f"unknown LRSchedule keys: {sorted(unknown)}")
        kind = d.get("kind", "constant")
        if kind not in SCHEDULES:
            raise ValueError(f"LRSchedule kind must be one of {list(SCHEDULES)}, got {kind!r}")
        values = {"kind": kind}
        for key, rule in (("warmup", "fraction"), ("final_factor", "unit")):
            if key in d:
                values[key] = _loaded(rule, key, d[key])
        return cls(**values)
