"""Model files written by charrnn 0.1.0 (before the estimator core) still load and agree."""

import json
from pathlib import Path

import numpy as np

from charrnn import CharRNNClassifier, CharRNNGenerator, load

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "models_0.1.0.json").read_text())


def test_a_generator_file_from_0_1_0_loads_and_scores_as_it_did():
    gen = load(DATA / "generator_0.1.0.npz")
    assert isinstance(gen, CharRNNGenerator)
    assert gen.cell == "lstm" and gen.num_layers == 2
    np.testing.assert_allclose(
        gen.score("to be or not"), REFERENCE["generator"]["score"], rtol=1e-6
    )
    (text,) = gen.sample(1, 25, random_state=0, stop_at_end=False)
    assert set(text) <= set("to be or not that is the question\n")


def test_a_classifier_file_from_0_1_0_loads_and_predicts_as_it_did():
    clf = load(DATA / "classifier_0.1.0.npz")
    assert isinstance(clf, CharRNNClassifier)
    assert clf.bidirectional and clf.pooling == "mean"
    np.testing.assert_allclose(
        clf.predict_proba(["a cat", "x y z"]), REFERENCE["classifier"]["proba"], rtol=1e-6
    )
    assert list(clf.classes_) == ["no", "x"]
