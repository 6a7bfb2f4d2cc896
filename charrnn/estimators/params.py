"""Parameter rules as data: what each estimator parameter accepts, declared once.

Every estimator class holds a ``_parameter_constraints`` table (the name scikit-learn uses)
mapping each constructor parameter to a :class:`Param`: a rule (:class:`Integer`,
:class:`Real`, :class:`Boolean`, :class:`Options`, :class:`RandomState`, :class:`Custom`)
and a one-line help text. :func:`validate_params` checks an estimator against its table at
the top of ``fit``; the ``charrnn train`` command builds its Click options from the same
table (:mod:`charrnn.cli.options`), so the library and the command line cannot disagree on
what a value may be. The engine below the estimators only asserts programming errors.

A rule is plain data with one method, :meth:`Rule.check`, which raises
:class:`InvalidParameterError` naming the parameter and what was expected. Like
scikit-learn's error of the same name it is both a ``ValueError`` and a ``TypeError``, so
callers may catch either.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Boolean",
    "Custom",
    "Integer",
    "InvalidParameterError",
    "Options",
    "Param",
    "RandomState",
    "Real",
    "Rule",
    "as_generator",
    "validate_params",
]


class InvalidParameterError(ValueError, TypeError):
    """A parameter value its rule does not accept (a ValueError and a TypeError)."""


class Rule:
    """What one parameter accepts. Subclasses are frozen dataclasses: data, not behaviour."""

    none_ok: bool = False

    def check(self, name: str, value) -> None:
        """Raise ValueError or TypeError naming ``name`` unless ``value`` is acceptable."""
        raise NotImplementedError

    def describe(self) -> str:
        """What is expected, in words, e.g. ``"an integer >= 1 or None"``."""
        raise NotImplementedError

    def _fail(self, name: str, value):
        raise InvalidParameterError(f"{name} must be {self.describe()}, got {value!r:.80}")


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


@dataclass(frozen=True)
class Integer(Rule):
    """An integer in ``[low, high]`` (``high`` None: no upper bound); bools refused."""

    low: int
    high: int | None = None
    none_ok: bool = False

    def describe(self) -> str:
        text = (
            f"an integer >= {self.low}"
            if self.high is None
            else f"an integer in [{self.low}, {self.high}]"
        )
        return text + (" or None" if self.none_ok else "")

    def check(self, name, value):
        if value is None and self.none_ok:
            return
        if not _is_integer(value):
            self._fail(name, value)
        if value < self.low or (self.high is not None and value > self.high):
            self._fail(name, value)


@dataclass(frozen=True)
class Real(Rule):
    """A finite real number between ``low`` and ``high``; each end open or closed."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    none_ok: bool = False

    def describe(self) -> str:
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open or math.isinf(self.high) else "]"
        high = "inf" if math.isinf(self.high) else f"{self.high:g}"
        text = f"a finite number in {lo}{self.low:g}, {high}{hi}"
        return text + (" or None" if self.none_ok else "")

    def check(self, name, value):
        if value is None and self.none_ok:
            return
        if not _is_real(value):
            self._fail(name, value)
        if not math.isfinite(value):
            self._fail(name, value)
        below = value < self.low or (self.low_open and value == self.low)
        above = value > self.high or (self.high_open and value == self.high)
        if below or above:
            self._fail(name, value)


@dataclass(frozen=True)
class Boolean(Rule):
    """True or False (NumPy bools too); 0 and 1 are refused, as scikit-learn does."""

    def describe(self) -> str:
        return "True or False"

    def check(self, name, value):
        if not isinstance(value, bool | np.bool_):
            self._fail(name, value)


@dataclass(frozen=True)
class Options(Rule):
    """One of a fixed set of strings."""

    options: tuple[str, ...]
    none_ok: bool = False

    def describe(self) -> str:
        text = "one of " + ", ".join(repr(o) for o in self.options)
        return text + (" or None" if self.none_ok else "")

    def check(self, name, value):
        if value is None and self.none_ok:
            return
        if not isinstance(value, str) or value not in self.options:
            self._fail(name, value)


@dataclass(frozen=True)
class RandomState(Rule):
    """None, an integer >= 0, a ``numpy.random.Generator`` or a legacy ``RandomState``."""

    none_ok: bool = True

    def describe(self) -> str:
        return "None, an integer >= 0 or a numpy.random.Generator"

    def check(self, name, value):
        if value is None or isinstance(value, np.random.Generator | np.random.RandomState):
            return
        if not _is_integer(value) or value < 0:
            self._fail(name, value)


@dataclass(frozen=True)
class Custom(Rule):
    """Checked by ``function(name, value)``, which raises; ``text`` says what it accepts."""

    function: Callable
    text: str
    none_ok: bool = True

    def describe(self) -> str:
        return self.text

    def check(self, name, value):
        self.function(name, value)


@dataclass(frozen=True)
class Param:
    """One row of a parameter table: the rule and a one-line help text (the CLI shows it)."""

    rule: Rule
    help: str


def validate_params(estimator, table: Mapping[str, Param]) -> None:
    """Check every parameter of ``estimator`` named in ``table``; the first bad one raises."""
    for name, param in table.items():
        param.rule.check(name, getattr(estimator, name))


def as_generator(random_state) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a ``random_state`` that :class:`RandomState` accepts.

    A Generator is used as it is (so its stream continues), an int seeds a new one, None
    draws fresh entropy, and a legacy ``RandomState`` seeds a new one from its stream.
    """
    RandomState().check("random_state", random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


def options(names: Sequence[str] | Mapping) -> tuple[str, ...]:
    """The sorted option names of a registry (a dict or a sequence), for :class:`Options`."""
    return tuple(sorted(names))
