"""Fill-in-the-blank templates: ``"I love this ___. It's so ___."`` and the options per blank.

Only text handling: checking a template and its candidates, and writing out every filled text.
The ranking is the model's (:meth:`charrnn.CharRNNGenerator.fill` scores the filled texts).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

__all__ = ["BLANK", "MAX_FILLED_TEXTS", "check_candidates", "fill_template", "template_parts"]

BLANK = "___"
# Filled texts scored at most in one call: the combinations multiply, and each is one document
# to score (a typo such as 12 blanks of 5 options would otherwise ask for 244 million).
MAX_FILLED_TEXTS = 100_000


def template_parts(template) -> list[str]:
    """The text around the blanks: ``len(parts) - 1`` blanks, ``parts[i]`` before blank ``i``.

    Raises
    ------
    TypeError
        If ``template`` is not a string.
    ValueError
        If it holds no blank (three underscores, ``___``).
    """
    if not isinstance(template, str):
        raise TypeError(f"template must be a string, got {type(template).__name__}")
    parts = template.split(BLANK)
    if len(parts) < 2:
        raise ValueError(f"template must hold at least one blank, {BLANK!r}; got {template!r:.80}")
    return parts


def check_candidates(candidates, n_blanks: int) -> list[list[str]]:
    """One non-empty list of strings per blank.

    Raises
    ------
    TypeError
        If ``candidates`` is not a sequence of sequences of strings (a single list of strings
        gets a hint to wrap it).
    ValueError
        If the number of lists differs from ``n_blanks``, a list is empty, or the
        combinations number more than ``MAX_FILLED_TEXTS``.
    """
    if isinstance(candidates, str) or not isinstance(candidates, Sequence):
        raise TypeError(
            f"candidates must be a list with one list of options per blank, got "
            f"{type(candidates).__name__}"
        )
    lists = []
    for i, options in enumerate(candidates):
        if isinstance(options, str):
            raise TypeError(
                f"candidates[{i}] must be a list of options, got the string {options!r:.40}; "
                f"for a single blank write [[{options!r:.20}, ...]]"
            )
        if not isinstance(options, Sequence):
            raise TypeError(
                f"candidates[{i}] must be a list of strings, got {type(options).__name__}"
            )
        for j, option in enumerate(options):
            if not isinstance(option, str):
                raise TypeError(
                    f"candidates[{i}][{j}] must be a string, got {type(option).__name__}"
                )
        if not options:
            raise ValueError(f"candidates[{i}] is empty: give at least one option for blank {i}")
        lists.append(list(options))
    if len(lists) != n_blanks:
        raise ValueError(
            f"candidates holds {len(lists)} list(s) of options but the template has "
            f"{n_blanks} blank(s); give one list per blank"
        )
    total = 1
    for options in lists:
        total *= len(options)
    if total > MAX_FILLED_TEXTS:
        raise ValueError(
            f"candidates give {total:,} filled texts, more than the {MAX_FILLED_TEXTS:,} "
            "scored at once; give fewer options"
        )
    return lists


def fill_template(parts: list[str], candidates: list[list[str]]) -> list[str]:
    """Every filled text, the last blank's options varying fastest.

    Parameters
    ----------
    parts : list of str
        From :func:`template_parts`.
    candidates : list of list of str
        From :func:`check_candidates`.

    Returns
    -------
    list of str, length ``prod(len(c) for c in candidates)``
    """
    texts = []
    for choice in itertools.product(*candidates):
        pieces = [parts[0]]
        for word, after in zip(choice, parts[1:]):
            pieces += [word, after]
        texts.append("".join(pieces))
    return texts
