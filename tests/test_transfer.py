"""Tests for charrnn.estimators.transfer: a classifier starting from language models (init_from)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from charrnn import CharRNNGenerator
from charrnn.estimators.classifier import CharRNNClassifier, load_classifier

DOCS = ["the cat sat on the mat", "a dog ran far", "qz only the generator knows"] * 4
X = ["the cat", "a dog", "the mat", "a far dog"] * 8
Y = ["cat", "dog", "cat", "dog"] * 8
GEN = dict(cell="gru", hidden_size=8, num_layers=1, batch_size=4, seq_length=8, max_iter=2)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def generators():
    with threadpool_limits(1, user_api="blas"):
        fwd = CharRNNGenerator(**GEN, random_state=0).fit(DOCS)
        bwd = CharRNNGenerator(**GEN, random_state=1).fit([d[::-1] for d in DOCS])
    return fwd, bwd


def _classifier(init_from, **kw):
    kw = dict(
        dict(
            cell="gru",
            hidden_size=8,
            embedding_dim=None,
            batch_size=8,
            max_iter=1,
            # a vanishing step: the weights after fit are the starting weights
            learning_rate=1e-12,
            early_stopping=False,
            random_state=0,
            init_from=init_from,
        ),
        **kw,
    )
    return CharRNNClassifier(**kw)


def _row(model, ch):
    return model.vocab_.symbols.index(ch)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_both_directions_start_from_their_generators_character_by_character(generators):
    fwd, bwd = generators
    clf = _classifier((fwd, bwd), bidirectional=True).fit(X, Y)
    for d, gen in (("fwd", fwd), ("bwd", bwd)):
        for name in ("Wh", "b", "bhn"):
            assert_allclose(clf.params_[f"l0.{d}.{name}"], gen.params_[f"l0.{name}"], atol=1e-9)
        for ch in "tca":
            assert_allclose(
                clf.params_[f"l0.{d}.Wx"][_row(clf, ch)],
                gen.params_["l0.Wx"][_row(gen, ch)],
                atol=1e-9,
            )
    # "q" and "z" occur only in the generators' texts: the vocabulary is widened to hold them
    assert {"q", "z"} <= set(clf.vocab_.chars)
    assert_allclose(
        clf.params_["l0.fwd.Wx"][_row(clf, "q")], fwd.params_["l0.Wx"][_row(fwd, "q")], atol=1e-9
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_without_init_from_the_weights_are_random(generators):
    fwd, _ = generators
    clf = _classifier(None).fit(X, Y)
    assert not np.allclose(clf.params_["l0.fwd.Wh"], fwd.params_["l0.Wh"])
    assert "q" not in clf.vocab_.chars


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_one_generator_starts_the_forward_direction_only(generators):
    fwd, _ = generators
    clf = _classifier(fwd, bidirectional=True).fit(X, Y)
    assert_allclose(clf.params_["l0.fwd.Wh"], fwd.params_["l0.Wh"], atol=1e-9)
    assert not np.allclose(clf.params_["l0.bwd.Wh"], fwd.params_["l0.Wh"])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_saved_path_survives_clone_and_the_classifier_saves_and_loads(generators, tmp_path):
    fwd, _ = generators
    path = tmp_path / "lm.npz"
    fwd.save(path)
    clf = clone(_classifier(str(path), learning_rate=1e-2, max_iter=2))
    assert clf.get_params()["init_from"] == str(path)
    clf.fit(X, Y)
    assert_allclose(clf.params_["l0.fwd.Wh"], fwd.params_["l0.Wh"], atol=0.1)
    clf.save(tmp_path / "clf.npz")
    again = load_classifier(tmp_path / "clf.npz")
    assert again.init_from == str(path)
    assert_array_equal(again.predict_proba(X[:4]), clf.predict_proba(X[:4]))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fine_tuning_from_a_generator_learns_the_task(generators):
    fwd, _ = generators
    clf = _classifier(fwd, learning_rate=2e-2, max_iter=15, pooling="mean").fit(X, Y)
    assert clf.score(X, Y) == 1.0


@pytest.mark.parametrize(
    "init_from, kw, match",
    [
        ("missing.npz", {}, "no model file"),
        (3.5, {}, "init_from must be"),
        ("pair", {"bidirectional": False}, "bidirectional=False"),
        ("fwd", {"hidden_size": 9}, "hidden_size=8"),
        ("fwd", {"cell": "lstm"}, "cell='gru'"),
        ("fwd", {"embedding_dim": 4}, "embedding_dim"),
        ("unfitted", {}, "not fitted"),
        (("a", "b", "c"), {"bidirectional": True}, "a pair of these"),
    ],
)
def test_bad_init_from_is_named(generators, init_from, kw, match):
    fwd, bwd = generators
    source = {"fwd": fwd, "pair": (fwd, bwd), "unfitted": clone(fwd)}.get(init_from, init_from)
    with pytest.raises(ValueError, match=match):
        _classifier(source, **kw).fit(X, Y)
