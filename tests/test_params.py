"""Tests for charrnn.estimators.params: the parameter rules and the error they raise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from charrnn import CharRNNClassifier, CharRNNGenerator
from charrnn.estimators.base import SHARED_PARAMETERS
from charrnn.estimators.params import (
    Boolean,
    Custom,
    Integer,
    InvalidParameterError,
    Options,
    RandomState,
    Real,
    as_generator,
)

CASES = [
    # rule, accepted values, refused values
    (Integer(1), [1, 7, np.int64(3)], [0, -1, 1.5, "2", True, None, np.float64(2.0)]),
    (Integer(0, 2), [0, 2], [-1, 3]),
    (Integer(1, none_ok=True), [None, 4], [0]),
    (Real(0.0, 1.0, high_open=True), [0, 0.5, np.float32(0.25)], [1.0, -0.1, math.nan, "0.5"]),
    (Real(0.0, low_open=True), [1e-9, 3, math.pi], [0.0, -1, math.inf, math.nan, False]),
    (Real(0.0, low_open=True, none_ok=True), [None, 2.0], [0.0]),
    (Boolean(), [True, False, np.bool_(True)], [0, 1, "yes", None]),
    (Options(("a", "b")), ["a", "b"], ["c", None, 1, ("a",)]),
    (Options(("a",), none_ok=True), [None, "a"], ["b"]),
    (RandomState(), [None, 0, 42, np.random.default_rng(1), np.random.RandomState(2)], [-1, 1.5]),
]


@pytest.mark.parametrize("rule,good,bad", CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_rules_accept_and_refuse_naming_the_parameter(rule, good, bad):
    for value in good:
        rule.check("some_param", value)
    for value in bad:
        with pytest.raises(InvalidParameterError, match=r"^some_param must be ") as info:
            rule.check("some_param", value)
        assert rule.describe() in str(info.value)


def test_the_error_is_a_value_error_and_a_type_error():
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)


def test_descriptions_say_what_is_expected():
    assert Integer(1).describe() == "an integer >= 1"
    assert Integer(1, none_ok=True).describe() == "an integer >= 1 or None"
    assert Real(0.0, 1.0, high_open=True).describe() == "a finite number in [0, 1)"
    assert Real(0.0, low_open=True).describe() == "a finite number in (0, inf)"
    assert Options(("x", "y")).describe() == "one of 'x', 'y'"


def test_custom_rules_call_their_function():
    seen = []
    rule = Custom(lambda name, value: seen.append((name, value)), "anything")
    rule.check("p", 3)
    assert seen == [("p", 3)] and rule.describe() == "anything"


def test_as_generator_keeps_a_generator_and_seeds_the_rest():
    rng = np.random.default_rng(0)
    assert as_generator(rng) is rng
    assert as_generator(5).integers(1000) == np.random.default_rng(5).integers(1000)
    assert isinstance(as_generator(np.random.RandomState(0)), np.random.Generator)
    with pytest.raises(ValueError, match="random_state must be"):
        as_generator("seed")


@pytest.mark.parametrize("estimator", [CharRNNGenerator, CharRNNClassifier])
def test_every_constructor_parameter_has_exactly_one_rule(estimator):
    table = estimator.parameter_rules()
    assert set(table) == set(estimator().get_params())
    assert set(SHARED_PARAMETERS) <= set(table)
    for name, param in table.items():
        assert param.help, name
        # the default passes its own rule
        param.rule.check(name, getattr(estimator(), name))
