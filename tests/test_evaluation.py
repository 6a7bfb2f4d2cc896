"""Tests for charrnn.estimators.evaluation: the streamed loss a fit reports, on any text."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from charrnn import CharRNNGenerator
from charrnn.data.textfile import TextCorpus
from charrnn.estimators.evaluation import (
    encode_text,
    final_validation_loss,
    held_out_loss,
    text_loss,
)

SMALL = dict(hidden_size=8, num_layers=1, batch_size=4, seq_length=8, random_state=0)


def words(n_lines: int = 120, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    vocab = ("the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it")
    return "\n".join(" ".join(rng.choice(vocab, 6)) for _ in range(n_lines)) + "\n"


@pytest.fixture(scope="module")
def text():
    return words()


@pytest.fixture(scope="module")
def fitted(text):
    return CharRNNGenerator(max_iter=2, early_stopping=False, **SMALL).fit(text)


def test_encode_text_is_fits_encoding(fitted, text, tmp_path):
    ids = encode_text(fitted, text)
    np.testing.assert_array_equal(ids, fitted.vocab_.encode_documents([text]))
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    np.testing.assert_array_equal(encode_text(fitted, TextCorpus(path)), ids)
    assert len(encode_text(fitted, ["the", "cat"])) == 3 + 1 + 3 + 1


def test_held_out_loss_is_what_training_reported(fitted, text):
    n, loss = held_out_loss(fitted, encode_text(fitted, text), fitted.validation_fraction)
    assert n == round((len(text) + 1) * fitted.validation_fraction)
    assert loss == pytest.approx(fitted.history_[-1]["val_loss"], abs=1e-5)
    assert held_out_loss(fitted, encode_text(fitted, text), 0.0) is None


def test_text_loss_is_finite_and_nan_for_nothing(fitted, text):
    ids = encode_text(fitted, text)
    assert 0 < text_loss(fitted, ids) < math.log(fitted.vocab_.size) + 1
    assert math.isnan(text_loss(fitted, ids[:1]))


def test_final_validation_loss(fitted, text):
    # no early stopping: the last evaluation's loss, already measured
    assert final_validation_loss(fitted, text) == fitted.history_[-1]["val_loss"]
    best = CharRNNGenerator(max_iter=2, **SMALL).fit(text)
    assert final_validation_loss(best, text) == -best.best_validation_score_
    # after an interruption partway through a pass the weights are scored again
    interrupted = copy.deepcopy(fitted)
    interrupted.stop_reason_ = "interrupted (SIGINT)"
    assert final_validation_loss(interrupted, text) == pytest.approx(
        fitted.history_[-1]["val_loss"], abs=1e-5
    )
    none = CharRNNGenerator(max_iter=1, validation_fraction=0.0, **SMALL).fit(text)
    assert final_validation_loss(none, text) is None


def test_needs_a_fitted_generator(text):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        final_validation_loss(CharRNNGenerator(), text)
