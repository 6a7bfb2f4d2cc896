"""Tests for CharRNNGenerator's reading methods (charrnn.estimators.reading): complete, fill,
trace and sample(beam_width=...), checked against the model's own predict_proba and
score_samples, and their input errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import NotFittedError

from charrnn import CharRNNGenerator
from charrnn.data.vocab import is_word_char

ANIMALS = "the cat meows.\nthe dog barks.\n" * 30


def _fit(text, **params):
    base = dict(hidden_size=16, num_layers=1, seq_length=16, batch_size=4, learning_rate=2e-2)
    base.update(max_iter=2, validation_fraction=0, random_state=0, dtype="float64")
    base.update(params)
    return CharRNNGenerator(**base).fit(text)


@pytest.fixture(scope="module")
def tiny():
    """Words of 'a' and 'b' between spaces, dots and newlines: few enough to enumerate."""
    rng = np.random.default_rng(0)
    words = ["ab", "ba", "a", "bab", "abba"]
    lines = [" ".join(rng.choice(words, 4)) + rng.choice([".", ""]) for _ in range(40)]
    return _fit("\n".join(lines) + "\n", cell="lstm", num_layers=2, hidden_size=8)


@pytest.fixture(scope="module")
def animals():
    """Has learned that cats meow and dogs bark, after the same 'the '."""
    return _fit(ANIMALS, max_iter=12)


def _brute_force_words(gen, prefix, lead, max_chars):
    """Every word of the model's word characters, with its probability from predict_proba."""
    boundary = [not is_word_char(s) for s in gen.classes_]
    boundary[1] = False  # the unknown symbol
    word_chars = [c for c in gen.vocab_.chars if is_word_char(c)]
    words = [
        "".join(w) for n in range(1, max_chars + 1) for w in itertools.product(word_chars, repeat=n)
    ]
    contexts = sorted({prefix + lead + w[:i] for w in words for i in range(len(w) + 1)} | {prefix})
    proba = dict(zip(contexts, gen.predict_proba(contexts)))
    column = {s: j for j, s in enumerate(gen.classes_)}
    out = []
    for w in words:
        p = proba[prefix][column[lead]] if lead else 1.0
        for i, ch in enumerate(w):
            p *= proba[prefix + lead + w[:i]][column[ch]]
        p *= proba[prefix + lead + w][boundary].sum()
        out.append((w, p))
    return sorted(out, key=lambda e: -e[1])


@pytest.mark.parametrize("prefix, lead", [("ab ba", " "), ("ab ba ", "")])
def test_complete_matches_brute_force_enumeration(tiny, prefix, lead):
    # 2 word characters and words of up to 4: the default beam (64) holds every live word
    found = tiny.complete(prefix, top_k=5, max_chars=4)
    expected = _brute_force_words(tiny, prefix, lead, 4)[:5]
    assert [w for w, _ in found] == [w for w, _ in expected]
    assert_allclose([p for _, p in found], [p for _, p in expected], rtol=1e-9)


def test_a_prefix_without_a_trailing_space_counts_the_space(tiny):
    after_space = dict(tiny.complete("ab ba ", top_k=3))
    without = dict(tiny.complete("ab ba", top_k=3))
    p_space = tiny.predict_proba("ab ba")[0][list(tiny.classes_).index(" ")]
    assert after_space.keys() == without.keys()
    for word, p in without.items():
        assert p == pytest.approx(p_space * after_space[word], rel=1e-9)


def test_complete_probabilities_agree_with_score_samples(tiny):
    # the end of the document is a boundary too: a word then EOD is a whole document
    word, p = tiny.complete("ab ba ", top_k=1)[0]
    end = tiny.predict_proba("ab ba " + word)[0]
    boundary = np.array([not is_word_char(s) for s in tiny.classes_])
    boundary[1] = False
    # p = p(word | prefix) * p(boundary | prefix + word); score_samples adds the final EOD
    log_word = tiny.score_samples("ab ba " + word)[0] - tiny.score_samples("ab ba ")[0]
    log_word += math.log(tiny.predict_proba("ab ba ")[0][0]) - math.log(end[0])
    assert math.log(p) == pytest.approx(log_word + math.log(end[boundary].sum()), rel=1e-9)


def test_complete_finds_the_learned_word(animals):
    words = [w for w, _ in animals.complete("the dog barks.\nthe cat", top_k=2)]
    assert words[0] == "meows."[:-1]
    assert all(0 < p <= 1 for _, p in animals.complete("the", top_k=3))


def test_fill_uses_the_text_after_the_blank(animals):
    # the same left context, "the ": only what follows the blank can flip the order
    barks = animals.fill("the ___ barks.\n", [["cat", "dog"]])
    meows = animals.fill("the ___ meows.\n", [["cat", "dog"]])
    assert barks[0][0] == "the dog barks.\n"
    assert meows[0][0] == "the cat meows.\n"


def test_fill_ranks_every_combination_by_score_samples(animals):
    ranked = animals.fill("the ___ ___.\n", [["cat", "dog", "cow"], ["barks", "meows"]])
    assert len(ranked) == 6
    texts = [t for t, _ in ranked]
    assert sorted(texts) == sorted(
        f"the {a} {b}.\n" for a in ("cat", "dog", "cow") for b in ("barks", "meows")
    )
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    assert_allclose(scores, animals.score_samples(texts), rtol=1e-12)


def test_trace_agrees_with_predict_proba_score_samples_and_transform(animals):
    text = "the dog barks.\nthe c"
    tr = animals.trace(text)
    n = len(text)
    assert tr.surprise.shape == (n,)
    assert tr.next_log_proba.shape == (n, len(animals.classes_))
    prefixes = [text[: i + 1] for i in range(n)]
    assert_allclose(np.exp(tr.next_log_proba), animals.predict_proba(prefixes), atol=1e-12)
    total = -tr.surprise.sum() + tr.next_log_proba[-1, 0]  # and then the document ends
    assert total == pytest.approx(animals.score_samples(text)[0], rel=1e-10)
    assert_allclose(tr.hidden[:, -1].reshape(-1), animals.transform(text)[0], atol=1e-12)
    assert tr.cell is None


def test_trace_of_an_lstm_has_cell_states(tiny):
    tr = tiny.trace("ab ba")
    assert tr.cell.shape == tr.hidden.shape == (2, 5, 8)
    assert not np.allclose(tr.cell, tr.hidden)


def test_sample_with_beam_width_one_is_greedy(animals):
    beam = animals.sample(1, 40, prime="the", beam_width=1, stop_at_end=False)
    greedy = animals.sample(1, 40, prime="the", temperature=1e-30, stop_at_end=False)
    assert beam == greedy


def test_sample_with_a_beam_returns_the_best_first(animals):
    texts = animals.sample(3, 20, prime="the d", beam_width=4, stop_at_end=False)
    assert len(texts) == 3 and all(len(t) == 20 for t in texts)
    assert len(set(texts)) == 3
    # score of each continuation: log p(prime + text) minus log p(prime), EOD terms removed
    scores = [animals.trace("the d" + t).surprise[5:].sum() for t in texts]
    assert scores == sorted(scores)
    assert texts[0].startswith("og barks")


def test_sample_with_a_beam_stops_at_the_end_of_a_document():
    gen = _fit("ab.\n" * 50, max_iter=6)
    text = gen.sample(1, 50, beam_width=3)[0]
    assert len(text) < 50


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda g: g.complete(""), "prefix"),
        (lambda g: g.complete("the zebra"), "prefix"),
        (lambda g: g.complete(5), "prefix"),
        (lambda g: g.complete("the", top_k=0), "top_k"),
        (lambda g: g.complete("the", max_chars=0), "max_chars"),
        (lambda g: g.complete("the", beam_width=0), "beam_width"),
        (lambda g: g.fill("the cat", [["dog"]]), "template"),
        (lambda g: g.fill("the ___ and ___", [["dog"]]), "candidates"),
        (lambda g: g.fill("the ___", [["dog"], ["cat"]]), "candidates"),
        (lambda g: g.fill("the ___", [[]]), "candidates\\[0\\]"),
        (lambda g: g.fill("the ___", ["dog", "cat"]), "candidates\\[0\\]"),
        (lambda g: g.fill("the ___", [["dog", "zebra"]]), "candidates\\[0\\]\\[1\\]"),
        (lambda g: g.fill("the ___ Z", [["dog"]]), "template"),
        (lambda g: g.trace(""), "text"),
        (lambda g: g.trace("Zebra"), "text"),
        (lambda g: g.sample(2, 10, beam_width=1), "n_samples"),
        (lambda g: g.sample(1, 10, beam_width=2, temperature=0.5), "temperature"),
        (lambda g: g.sample(1, 10, beam_width=2, top_k=3), "top_k"),
        (lambda g: g.sample(1, 10, beam_width=0), "beam_width"),
    ],
)
def test_bad_input_names_the_argument(animals, call, name):
    with pytest.raises((ValueError, TypeError), match=name):
        call(animals)


def test_unseen_characters_are_named():
    gen = _fit(ANIMALS, max_iter=1)
    with pytest.raises(ValueError, match=r"prefix contains 2 character\(s\).*'Zz'"):
        gen.complete("the Zoo z")
    with pytest.raises(ValueError, match=r"candidates\[1\]\[0\].*'!'"):
        gen.fill("___ ___", [["the"], ["cat!"]])


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.complete("the"),
        lambda g: g.fill("the ___", [["cat"]]),
        lambda g: g.trace("the"),
    ],
)
def test_an_untrained_model_says_so(call):
    with pytest.raises(NotFittedError):
        call(CharRNNGenerator())
