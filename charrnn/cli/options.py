"""Click options built from an estimator's parameter table.

Each estimator declares what every parameter accepts once, as a
:class:`~charrnn.estimators.params.Param` (a rule and a help line) in its
``_parameter_constraints`` table; its defaults live in its ``__init__`` signature. This module
turns both into Click options, so the command line checks a value exactly as ``fit`` would,
before any work starts:

============================== ===========================================================
rule                           Click type
============================== ===========================================================
``Integer(low, high)``         ``IntRange(low, high)``
``Real(low, high, ...)``       :class:`FiniteFloat` with the same open or closed ends
``Boolean()``                  a ``--name/--no-name`` flag
``Options(options)``           ``Choice(options)``
``RandomState()``              ``IntRange(0)`` (a seed)
``Custom(function, text)``     :class:`RuleType`: the text parsed as a number or a string,
                               then checked by the rule itself
============================== ===========================================================

A command line has no None. Where a rule takes None and 0 lies just below its range
(``Integer(1, none_ok=True)``, ``Real(0, low_open=True, none_ok=True)``), the option accepts
0 and passes None on (:func:`zero_means_none`). What stays here is presentation only: flag
names, the parameters a command line does not need, and some wording.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Collection, Mapping

import click

from charrnn.estimators.params import (
    Boolean,
    Integer,
    Options,
    Param,
    RandomState,
    Real,
    Rule,
)

__all__ = [
    "EXTRA_HELP",
    "FLAGS",
    "HIDDEN",
    "NONE_SHOWN",
    "FiniteFloat",
    "RuleType",
    "click_type",
    "estimator_defaults",
    "estimator_option",
    "estimator_options",
    "parameter_table",
    "zero_means_none",
]

# Parameters with no option: the command shows its own progress (verbose), and continuing a
# saved model is `charrnn train --resume` (warm_start).
HIDDEN = frozenset({"verbose", "warm_start"})

# Flag names other than the parameter's own name with dashes.
FLAGS: dict[str, tuple[str, ...]] = {
    "random_state": ("--seed",),
    "learning_rate": ("--learning-rate", "--lr"),
}

# How a default of None is shown, where plain "None" would say less than it could.
NONE_SHOWN: dict[str, str] = {
    "embedding_dim": "0 = one-hot",
    "dropout": "auto by corpus size",
    "max_time": "0 = no limit",
    "weight_decay": "the optimiser's: 0, adamw 0.01",
    "random_state": "random",
}

# What a parameter means on the command line beyond its meaning in Python: the budget of a
# resumed run counts what the run did before it was interrupted.
EXTRA_HELP: dict[str, str] = {
    "max_iter": "Counts the passes made before a --resume.",
    "max_time": "Counts the time spent before a --resume.",
}


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and infinity (which compare false with any bound)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class RuleType(click.ParamType):
    """A value checked by a parameter's rule itself, for rules with no Click equivalent.

    The text is read as an integer, else as a float, else kept as a string, and then given
    to ``rule.check``; the rule's message becomes Click's usage error.
    """

    name = "value"

    def __init__(self, rule: Rule, parameter: str) -> None:
        self.rule = rule
        self.parameter = parameter

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            for parse in (int, float):
                try:
                    value = parse(value)
                    break
                except ValueError:
                    continue
        try:
            self.rule.check(self.parameter, value)
        except (ValueError, TypeError):
            self.fail(f"{value!r} is not {self.rule.describe()}.", param, ctx)
        return value


def zero_means_none(rule: Rule) -> bool:
    """Whether a command line gives this rule's None as 0.

    True when the rule takes None and 0 is the value just below its range, so that widening
    the range to 0 lets 0 stand for None without hiding any value the rule accepts.
    """
    if not rule.none_ok:
        return False
    if isinstance(rule, Integer):
        return rule.low == 1
    if isinstance(rule, Real):
        return rule.low == 0 and rule.low_open
    return False


def _bound(value: float) -> float | int | None:
    """A Real rule's bound for FloatRange: None for no bound, an int where it is whole
    (so that help shows ``0<=x<1``, not ``0.0<=x<1.0``)."""
    if math.isinf(value):
        return None
    return int(value) if float(value).is_integer() else value


def click_type(rule: Rule, parameter: str) -> click.ParamType:
    """The Click type that accepts what ``rule`` accepts (with 0 for None, see the module)."""
    zero = zero_means_none(rule)
    if isinstance(rule, Boolean):
        return click.BOOL
    if isinstance(rule, Integer):
        return click.IntRange(0 if zero else rule.low, rule.high)
    if isinstance(rule, Real):
        return FiniteFloat(
            _bound(rule.low),
            _bound(rule.high),
            min_open=rule.low_open and not zero,
            max_open=rule.high_open,
        )
    if isinstance(rule, Options):
        return click.Choice(rule.options)
    if isinstance(rule, RandomState):
        return click.IntRange(0)
    return RuleType(rule, parameter)


def parameter_table(estimator: type) -> dict[str, Param]:
    """The estimator's parameter table: name -> :class:`~charrnn.estimators.params.Param`."""
    return estimator.parameter_rules()


def estimator_defaults(estimator: type) -> dict:
    """The defaults of the estimator's ``__init__``, read from its signature."""
    return {
        name: p.default
        for name, p in inspect.signature(estimator).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _none_for_zero(ctx, param, value):
    return None if value == 0 else value


def estimator_option(name: str, param: Param, default) -> Callable:
    """The Click option for one estimator parameter (a decorator).

    The value reaches the command under the parameter's own name (``--seed`` as
    ``random_state``), already converted to what the estimator takes (0 to None where
    :func:`zero_means_none`).
    """
    rule = param.rule
    flags = FLAGS.get(name, ("--" + name.replace("_", "-"),))
    if isinstance(rule, Boolean):
        flags = tuple(f"{flag}/--no-{flag[2:]}" for flag in flags)
    zero = zero_means_none(rule)
    help_text = param.help
    if zero:
        help_text += " On the command line, 0 means None."
    if name in EXTRA_HELP:
        help_text += " " + EXTRA_HELP[name]
    shown = True
    if default is None:
        shown = NONE_SHOWN.get(name, "0 = None" if zero else "None")
    return click.option(
        *flags,
        name,
        type=click_type(rule, name),
        default=default,
        show_default=shown,
        help=help_text,
        callback=_none_for_zero if zero else None,
    )


def estimator_options(
    estimator: type, defaults: Mapping | None = None, exclude: Collection[str] = ()
) -> Callable:
    """A decorator adding one option per parameter of ``estimator`` (except :data:`HIDDEN`
    and ``exclude``, parameters a command has no use for).

    Options come in the order of the estimator's signature; their types, ranges, choices and
    help come from its parameter table and their defaults from its signature, overridden by
    ``defaults`` where a command deliberately differs.

    Raises
    ------
    KeyError
        If a parameter of the signature has no row in the table.
    """
    table = parameter_table(estimator)
    values = {**estimator_defaults(estimator), **(defaults or {})}
    names = [
        name
        for name, p in inspect.signature(estimator).parameters.items()
        if name not in HIDDEN and name not in exclude and p.kind is not p.VAR_KEYWORD
    ]
    missing = [n for n in names if n not in table]
    if missing:
        raise KeyError(f"{estimator.__name__} parameters without a rule: {', '.join(missing)}")
    options = [estimator_option(n, table[n], values[n]) for n in names]

    def decorate(f):
        # Click lists options in the reverse order of application
        for option in reversed(options):
            f = option(f)
        return f

    return decorate
