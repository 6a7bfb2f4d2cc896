"""Tests for charrnn.cli.options: ``charrnn train``'s options agree with the parameter table.

The checks iterate the estimator's table, so a parameter added to it is checked (and must
appear on the command line) without any edit here.
"""

from __future__ import annotations

import inspect
import math

import click
import pytest
from click.testing import CliRunner

from charrnn import CharRNNGenerator
from charrnn.cli import cli
from charrnn.cli.options import (
    HIDDEN,
    FiniteFloat,
    RuleType,
    estimator_options,
    parameter_table,
    zero_means_none,
)
from charrnn.cli.train import TRAIN_DEFAULTS
from charrnn.estimators.params import (
    Boolean,
    Custom,
    Integer,
    Options,
    Param,
    RandomState,
    Real,
)

TABLE = parameter_table(CharRNNGenerator)
SIGNATURE = inspect.signature(CharRNNGenerator).parameters
TRAIN = {p.name: p for p in cli.commands["train"].params if isinstance(p, click.Option)}
EXPOSED = sorted(set(TABLE) - HIDDEN)


def _accepted_by_click(option: click.Option, text: str):
    """(True, value) if the option's type and callback take ``text``, else (False, None)."""
    ctx = click.Context(click.Command("probe"))
    try:
        value = option.type.convert(text, option, ctx)
    except click.BadParameter:
        return False, None
    if option.callback is not None:
        value = option.callback(ctx, option, value)
    return True, value


def _accepted_by_rule(rule, name: str, value) -> bool:
    try:
        rule.check(name, value)
    except (ValueError, TypeError):
        return False
    return True


def _probes(rule) -> list[str]:
    """Command-line texts around the edges of what ``rule`` accepts."""
    texts = ["0", "-1", "1", "nan", "inf", "-inf", "x", "0.5"]
    if isinstance(rule, Integer | Real):
        for bound in (rule.low, rule.high):
            if bound is not None and math.isfinite(bound):
                texts += [repr(bound), repr(bound + 1), repr(bound - 1)]
                if isinstance(rule, Real):
                    texts += [repr(bound + 1e-9), repr(bound - 1e-9)]
                else:
                    texts += [str(int(bound))]
    if isinstance(rule, Options):
        texts += [*rule.options, "foo", rule.options[0].upper()]
    return texts


def test_every_parameter_but_the_hidden_ones_has_an_option():
    assert set(TABLE) == set(SIGNATURE)
    assert set(TABLE) & set(TRAIN) == set(EXPOSED)
    assert not HIDDEN & set(TRAIN)


@pytest.mark.parametrize("name", EXPOSED)
def test_option_matches_the_table(name):
    option, param = TRAIN[name], TABLE[name]
    rule = param.rule
    assert option.default == TRAIN_DEFAULTS.get(name, SIGNATURE[name].default)
    assert option.show_default not in (None, False)
    assert option.help.startswith(param.help)
    if isinstance(rule, Boolean):
        assert option.is_flag and option.secondary_opts == [f"--no-{option.opts[0][2:]}"]
        return
    if isinstance(rule, Options):
        assert isinstance(option.type, click.Choice)
        assert tuple(option.type.choices) == tuple(rule.options)
    if isinstance(rule, Integer | RandomState):
        assert isinstance(option.type, click.IntRange)
    if isinstance(rule, Real):
        assert isinstance(option.type, FiniteFloat)
    if isinstance(rule, Custom):
        assert isinstance(option.type, RuleType)
    # what the command line takes is exactly what the estimator takes, with 0 for None where
    # the rule says so
    for text in _probes(rule):
        ok, value = _accepted_by_click(option, text)
        if ok:
            assert _accepted_by_rule(rule, name, value), (name, text, value)
            if value is None:
                assert zero_means_none(rule) and float(text) == 0, (name, text)
        else:
            for parse in (int, float):
                try:
                    parsed = parse(text)
                except ValueError:
                    continue
                assert not _accepted_by_rule(rule, name, parsed), (name, text)
            if isinstance(rule, Options):
                assert not _accepted_by_rule(rule, name, text), (name, text)


def test_zero_stands_for_none_where_the_rule_allows():
    exposed = {name for name in EXPOSED if zero_means_none(TABLE[name].rule)}
    assert exposed == {"embedding_dim", "clip_norm", "max_time", "max_validation_chars"}
    assert zero_means_none(Integer(1, none_ok=True))
    assert not zero_means_none(Integer(1))
    assert not zero_means_none(Integer(2, none_ok=True))  # 1 would be let through
    assert not zero_means_none(Real(0.0, none_ok=True))  # 0 is a value of its own
    assert zero_means_none(Real(0.0, low_open=True, none_ok=True))


@pytest.mark.parametrize(
    "args",
    [
        ["--dropout", "1.5"],
        ["--cell", "foo"],
        ["--lr", "nan"],
        ["--learning-rate", "-inf"],
        ["--hidden-size", "0"],
        ["--embedding-dim", "-1"],
        ["--clip-norm", "-0.5"],
        ["--tol", "nan"],
        ["--n-iter-no-change", "2.5"],
    ],
)
def test_bad_values_are_refused_by_click_naming_the_option(tmp_path, args):
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "never-read.txt"), *args])
    assert result.exit_code == 2, result.output
    flag = args[0] if args[0] != "--lr" else "--learning-rate"
    assert f"'{flag}" in result.output, result.output
    assert not (tmp_path / "models").exists()


def _odd(name, value):
    if not (isinstance(value, int) and value % 2):
        raise ValueError(f"{name} must be an odd integer, got {value!r}")


class _Extended(CharRNNGenerator):
    """A generator with two parameters more, added to the table only.

    (``**kwargs`` keeps the example short; options are made for named parameters only.)
    """

    _parameter_constraints = {
        **parameter_table(CharRNNGenerator),
        "momentum_dampening": Param(Real(0.0, 1.0), "A new number in [0, 1]."),
        "stride": Param(Custom(_odd, "an odd integer", none_ok=False), "A custom rule."),
    }

    def __init__(self, *, momentum_dampening=0.5, stride=3, **kwargs):
        super().__init__(**kwargs)
        self.momentum_dampening = momentum_dampening
        self.stride = stride


@click.command()
@estimator_options(_Extended)
def _extended_command(**params):
    click.echo(f"{params['momentum_dampening']!r} {params['stride']!r}")


def test_a_parameter_added_to_the_table_needs_no_cli_edit():
    runner = CliRunner()
    help_text = " ".join(runner.invoke(_extended_command, ["--help"]).output.split())
    assert "--momentum-dampening FLOAT RANGE A new number in [0, 1]." in help_text
    assert "[default: 0.5; 0<=x<=1]" in help_text
    assert "--stride VALUE A custom rule. [default: 3]" in help_text
    ok = runner.invoke(_extended_command, ["--momentum-dampening", "1", "--stride", "5"])
    assert ok.exit_code == 0 and ok.output.split() == ["1.0", "5"]
    for args in (["--momentum-dampening", "1.1"], ["--stride", "4"], ["--stride", "x"]):
        bad = runner.invoke(_extended_command, args)
        assert bad.exit_code == 2 and f"'{args[0]}'" in bad.output, bad.output
    assert "an odd integer" in bad.output
