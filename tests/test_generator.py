"""Tests for charrnn.estimators.generator: the CharRNNGenerator contract (issue 3) and its input
checks.

Models are tiny (one layer, 8-32 units) and texts a few hundred characters, so each fit takes
well under a second; the two fixtures shared by many tests are built once per module.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from charrnn import CharRNNGenerator
from charrnn.data.batches import split_train_validation
from charrnn.engine.cells import CELLS
from charrnn.engine.optim import OPTIMIZERS, SCHEDULES
from charrnn.engine.tasks import stream_loss
from charrnn.engine.training import StopFlag
from charrnn.estimators.generator import check_documents

FOX = "the quick brown fox jumps over the lazy dog.\n"
DOCS = [
    "the cat sat on the mat. " * 3,
    "a dog ran to the red hat. " * 3,
    "the big cat ran to a dog. " * 3,
    "on the mat sat a red dog. " * 3,
]


def tiny(**params) -> CharRNNGenerator:
    """A GRU small enough to fit DOCS in a fraction of a second."""
    base = dict(
        cell="gru",
        hidden_size=16,
        num_layers=1,
        seq_length=8,
        batch_size=4,
        learning_rate=1e-2,
        max_iter=2,
        random_state=0,
    )
    base.update(params)
    return CharRNNGenerator(**base)


def _val_ids(est, docs):
    """The validation tail ``fit`` held out, as symbol ids."""
    ids = est.vocab_.encode_documents(docs)
    return split_train_validation(ids, est.validation_fraction)[1]


@pytest.fixture(scope="module")
def memorised():
    """A GRU that has learned FOX by heart (40 copies, no validation)."""
    est = CharRNNGenerator(
        cell="gru",
        hidden_size=32,
        num_layers=1,
        seq_length=16,
        batch_size=8,
        learning_rate=2e-2,
        max_iter=10,
        validation_fraction=0,
        random_state=0,
    )
    return est.fit(FOX * 40)


@pytest.fixture(scope="module")
def fitted():
    """Two layers of 8 units, validation on, every pass kept (no early stopping)."""
    est = tiny(num_layers=2, hidden_size=8, max_iter=3, validation_fraction=0.2)
    return est.set_params(early_stopping=False).fit(DOCS)


# ----------------------------------------------------------------------------- fit and state
def test_fit_returns_self():
    est = tiny(max_iter=1)
    assert est.fit(DOCS) is est
    assert est.partial_fit(DOCS) is est


def test_fitted_attributes(fitted):
    chars = sorted(set("".join(DOCS)))
    assert isinstance(fitted.classes_, np.ndarray)
    assert fitted.classes_.tolist() == ["", "\ufffd", *chars]
    assert fitted.n_iter_ == 3
    assert fitted.stop_reason_ == "max_iter"
    assert fitted.diverged_ is False
    assert len(fitted.loss_curve_) == 3
    assert all(0 < loss < 10 for loss in fitted.loss_curve_)
    assert len(fitted.validation_scores_) == 3
    assert fitted.best_validation_score_ == max(fitted.validation_scores_)
    assert len(fitted.history_) == 3
    steps_per_pass = fitted.history_[0]["step"]
    assert steps_per_pass > 0
    chars_per_step = fitted.batch_size * fitted.seq_length
    assert fitted.n_chars_seen_ == 3 * steps_per_pass * chars_per_step
    for i, rec in enumerate(fitted.history_):
        assert rec["epoch"] == i + 1
        assert rec["partial"] is False
        assert rec["step"] == (i + 1) * steps_per_pass
        assert rec["train_loss"] == fitted.loss_curve_[i]
        assert rec["val_loss"] == -fitted.validation_scores_[i]
        assert 0 < rec["grad_norm_mean"] <= rec["grad_norm_max"] < math.inf


def test_partial_fit_runs_one_more_pass_keeping_weights_and_optimizer(tmp_path):
    est = tiny(validation_fraction=0)
    est.partial_fit(DOCS)
    steps_per_pass = est.history_[0]["step"]
    score_after_one = est.score(DOCS)
    est.partial_fit(DOCS)
    assert est.n_iter_ == 2
    assert len(est.loss_curve_) == 2
    assert est.score(DOCS) > score_after_one  # training went on from the first pass's weights
    # a kept optimiser counts its steps across calls (a fresh one would restart at 0)
    est.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert int(z["train/optim/adam.step"]) == 2 * steps_per_pass


def test_warm_start_continues_and_cold_start_restarts(tmp_path):
    warm = tiny(validation_fraction=0, warm_start=True).fit(DOCS)
    steps_per_pass = warm.history_[0]["step"]
    first = warm.score(DOCS)
    warm.fit(DOCS)
    assert warm.n_iter_ == 4
    assert warm.score(DOCS) > first
    warm.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert int(z["train/optim/adam.step"]) == 4 * steps_per_pass

    cold = tiny(validation_fraction=0).fit(DOCS).fit(DOCS)
    once = tiny(validation_fraction=0).fit(DOCS)
    assert cold.n_iter_ == 2
    for name in once.params_:
        assert_array_equal(cold.params_[name], once.params_[name])


def _weight_norm(est) -> float:
    return float(np.sqrt(sum(np.sum(w.astype(np.float64) ** 2) for w in est.params_.values())))


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_weight_decay_shrinks_the_weights(optimizer):
    kw = dict(optimizer=optimizer, validation_fraction=0, max_iter=3, random_state=0)
    free = tiny(weight_decay=0.0, **kw).fit(DOCS)
    decayed = tiny(weight_decay=0.5, **kw).fit(DOCS)
    assert _weight_norm(decayed) < 0.97 * _weight_norm(free)
    assert decayed._optim_state[f"{optimizer}.weight_decay"] == 0.5


@pytest.mark.parametrize(("optimizer", "default"), [("adam", 0.0), ("adamw", 0.01)])
def test_weight_decay_none_is_the_optimizers_default(optimizer, default):
    est = tiny(optimizer=optimizer, max_iter=1, validation_fraction=0).fit(DOCS)
    assert est.weight_decay is None
    assert est._optim_state[f"{optimizer}.weight_decay"] == default


def test_a_changed_weight_decay_wins_over_the_saved_optimizer_state():
    est = tiny(optimizer="adamw", weight_decay=0.2, validation_fraction=0).partial_fit(DOCS)
    assert est._optim_state["adamw.weight_decay"] == 0.2
    est.set_params(weight_decay=0.05).partial_fit(DOCS)
    assert est._optim_state["adamw.weight_decay"] == 0.05
    est.set_params(weight_decay=None).partial_fit(DOCS)  # None: keep what the state holds
    assert est._optim_state["adamw.weight_decay"] == 0.05


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_betas_reach_adam_and_change_training(optimizer):
    kw = dict(optimizer=optimizer, validation_fraction=0, max_iter=2, random_state=0)
    default = tiny(**kw).fit(DOCS)
    assert (
        default._optim_state[f"{optimizer}.beta1"],
        default._optim_state[f"{optimizer}.beta2"],
    ) == (
        0.9,
        0.999,
    )
    plain = tiny(beta_1=0.0, beta_2=0.99, **kw).fit(DOCS)
    assert (plain._optim_state[f"{optimizer}.beta1"], plain._optim_state[f"{optimizer}.beta2"]) == (
        0.0,
        0.99,
    )
    assert not np.array_equal(plain.params_["Why"], default.params_["Why"])


def test_betas_are_unused_by_the_other_optimizers():
    kw = dict(optimizer="rmsprop", validation_fraction=0, max_iter=1, random_state=0)
    a = tiny(**kw).fit(DOCS)
    b = tiny(beta_1=0.0, beta_2=0.5, **kw).fit(DOCS)
    for name in a.params_:
        assert_array_equal(a.params_[name], b.params_[name])


def test_changed_betas_win_over_the_saved_optimizer_state():
    est = tiny(validation_fraction=0).partial_fit(DOCS)
    est.set_params(beta_1=0.5, beta_2=0.9).partial_fit(DOCS)
    assert (est._optim_state["adam.beta1"], est._optim_state["adam.beta2"]) == (0.5, 0.9)


@pytest.mark.parametrize(("name", "value"), [("beta_1", 1.0), ("beta_2", -0.1), ("beta_2", "x")])
def test_bad_betas_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=name):
        tiny(**{name: value}).fit(DOCS)


def test_warm_start_refuses_a_different_architecture():
    est = tiny(warm_start=True, max_iter=1).fit(DOCS)
    est.set_params(hidden_size=8)
    with pytest.raises(ValueError, match="hidden_size"):
        est.fit(DOCS)


def test_same_random_state_gives_the_same_model():
    kw = dict(dropout=0.2, dtype="float64", validation_fraction=0.2)
    a, b = tiny(**kw).fit(DOCS), tiny(**kw).fit(DOCS)
    c = tiny(**kw, random_state=1).fit(DOCS)
    for name in a.params_:
        assert_array_equal(a.params_[name], b.params_[name])
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.params_["Why"], c.params_["Why"])


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_tiny_corpus_is_learned_to_near_zero_loss(cell):
    est = CharRNNGenerator(
        cell=cell,
        hidden_size=32,
        num_layers=1,
        seq_length=16,
        batch_size=8,
        learning_rate=2e-2,
        max_iter=12,
        validation_fraction=0,
        random_state=0,
    ).fit("abcdefgh" * 60)
    # a uniform guess over the 10 symbols costs ln(10) = 2.3 nats per character
    assert est.loss_curve_[0] > 1.0
    assert est.loss_curve_[-1] < 0.1


def test_memorised_text_loss_is_near_zero(memorised):
    assert memorised.loss_curve_[-1] < 0.05
    assert memorised.score(FOX * 3) > -0.3


def test_float64_model_keeps_its_dtype():
    est = tiny(dtype="float64", max_iter=1).fit(DOCS)
    assert all(p.dtype == np.float64 for p in est.params_.values())
    assert est.transform(DOCS[:2]).dtype == np.float64


# ----------------------------------------------------------------------------- validation
def test_early_stopping_keeps_the_best_validation_weights():
    # training text and validation tail differ, so validation worsens as training overfits
    docs = ["hello world. " * 30, "a cat sat on a mat. " * 5]
    est = tiny(
        learning_rate=3e-2,
        lr_schedule="constant",
        max_iter=8,
        validation_fraction=0.25,
        n_iter_no_change=8,
    ).fit(docs)
    scores = est.validation_scores_
    assert est.n_iter_ == 8
    assert scores[-1] < est.best_validation_score_ == max(scores)
    kept = -stream_loss(est.params_, est.config_, _val_ids(est, docs))
    assert_allclose(kept, est.best_validation_score_, rtol=1e-7)


def test_early_stopping_stops_after_n_iter_no_change():
    docs = ["hello world. " * 30, "a cat sat on a mat. " * 5]
    est = tiny(
        learning_rate=3e-2,
        lr_schedule="constant",
        max_iter=30,
        validation_fraction=0.25,
        n_iter_no_change=2,
    ).fit(docs)
    best_at = int(np.argmax(est.validation_scores_))
    assert est.stop_reason_ == "early_stopping"
    assert est.n_iter_ == best_at + 1 + 2 < 30


def test_without_early_stopping_the_last_weights_are_kept(fitted):
    last = -stream_loss(fitted.params_, fitted.config_, _val_ids(fitted, DOCS))
    assert_allclose(last, fitted.validation_scores_[-1], rtol=1e-7)


def test_validation_fraction_zero_turns_validation_off():
    est = tiny(validation_fraction=0, early_stopping=True, max_iter=3).fit(DOCS)
    assert est.n_iter_ == 3
    assert est.validation_scores_ is None
    assert est.best_validation_score_ is None
    assert all(rec["val_loss"] is None for rec in est.history_)


def test_max_time_stops_training_early():
    est = tiny(max_iter=100_000, max_time=0.05).fit(DOCS)
    assert est.stop_reason_ == "max_time"
    assert est.n_iter_ < 100_000
    assert est.history_[-1]["partial"] is True


def test_verbose_zero_prints_nothing(capsys):
    est = tiny(max_iter=1, verbose=0).fit(DOCS)
    est.score(DOCS)
    est.sample(2, 10, random_state=0)
    assert capsys.readouterr() == ("", "")


def test_verbose_progress_bar_is_hidden_off_a_terminal(capsys):
    tiny(max_iter=1, verbose=1).fit(DOCS)  # pytest's captured stderr is not a terminal
    assert capsys.readouterr() == ("", "")


# ----------------------------------------------------------------------------- scoring
def test_score_is_score_samples_over_character_count(fitted):
    docs = ["the cat", "", "a red dog ran"]
    per_doc = fitted.score_samples(docs)
    assert per_doc.shape == (3,)
    assert np.all(per_doc < 0)
    expected = per_doc.sum() / sum(len(d) + 1 for d in docs)
    assert_allclose(fitted.score(docs), expected, rtol=1e-12)
    assert fitted.score("the cat") == fitted.score(["the cat"])


def test_score_samples_does_not_depend_on_batching(fitted):
    rng = np.random.default_rng(0)
    text = "".join(DOCS)
    docs = [text[s : s + n] for s, n in zip(rng.integers(0, 50, 70), rng.integers(0, 40, 70))]
    together = fitted.score_samples(docs)  # 70 documents: two length-sorted batches
    alone = np.array([fitted.score_samples([d])[0] for d in docs])
    assert_allclose(together, alone, rtol=1e-5)


def test_score_samples_in_threads_equal_score_samples_in_one(fitted):
    from threadpoolctl import threadpool_info, threadpool_limits

    rng = np.random.default_rng(1)
    text = "".join(DOCS)
    docs = [text[s : s + n] for s, n in zip(rng.integers(0, 50, 200), rng.integers(0, 40, 200))]
    with threadpool_limits(limits=2, user_api="blas"):
        if max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas") < 2:
            pytest.skip("BLAS pool cannot be set to 2 threads here")
        threaded = fitted.score_samples(docs)  # 4 batches, scored two at a time
    with threadpool_limits(limits=1, user_api="blas"):
        sequential = fitted.score_samples(docs)
    assert_array_equal(threaded, sequential)


def test_score_samples_is_the_chain_of_predict_proba(fitted):
    # log p(doc) = sum_i log p(doc[i] | doc[:i]) + log p(end | doc): this pins down that the
    # columns of predict_proba follow classes_
    doc = "the red cat"
    column = {sym: j for j, sym in enumerate(fitted.classes_)}
    proba = fitted.predict_proba([doc[:i] for i in range(len(doc) + 1)])
    nexts = [column[ch] for ch in doc] + [column[""]]
    chain = np.log(proba[np.arange(len(doc) + 1), nexts]).sum()
    assert_allclose(chain, fitted.score_samples([doc])[0], rtol=1e-5)


def test_predict_proba_rows_are_distributions(fitted):
    docs = ["the", "a dog", "", "on the m"]
    proba = fitted.predict_proba(docs)
    assert proba.shape == (4, len(fitted.classes_))
    assert np.all(proba >= 0)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_array_equal(fitted.predict(docs), fitted.classes_[proba.argmax(axis=1)])


def test_predict_gives_the_next_character_of_a_memorised_text(memorised):
    prefixes = ["the quick brown fox jumps over the lazy do", "the quick brown fox jumps ov"]
    predicted = memorised.predict(prefixes)
    assert predicted.shape == (2,)
    assert predicted.tolist() == ["g", "e"]


def test_unknown_characters_are_scored_without_crashing(fitted):
    unseen = "xyz\u20ac\U0001f600"
    assert fitted.vocab_.unknown_chars(unseen) == sorted(unseen)
    score = fitted.score(unseen)
    assert math.isfinite(score)
    assert score < fitted.score("the cat")
    assert np.all(np.isfinite(fitted.score_samples([unseen, "the" + unseen])))
    assert_allclose(fitted.predict_proba([unseen]).sum(), 1.0)
    assert np.all(np.isfinite(fitted.transform([unseen])))


# ----------------------------------------------------------------------------- transform
def test_transform_gives_final_hidden_states(fitted):
    feats = fitted.transform(["ab", "the cat", "ab", ""])
    assert feats.shape == (4, fitted.num_layers * fitted.hidden_size)
    assert feats.dtype == np.float32
    assert_allclose(feats[0], feats[2], rtol=1e-6)
    assert_allclose(feats[1], fitted.transform(["the cat"])[0], rtol=1e-6)
    assert np.all(np.abs(feats) < 1)  # GRU states stay inside tanh's range
    assert not np.allclose(feats[0], feats[1])


# ----------------------------------------------------------------------------- sampling
def test_sample_returns_n_strings_of_at_most_length(memorised):
    out = memorised.sample(n_samples=4, length=30, random_state=0)
    assert isinstance(out, list) and len(out) == 4
    allowed = set(memorised.vocab_.chars)
    for text in out:
        assert isinstance(text, str)
        assert len(text) <= 30
        assert set(text) <= allowed


def test_sample_is_reproducible_from_random_state(memorised):
    kw = dict(n_samples=3, length=40, temperature=1.5)
    a = memorised.sample(**kw, random_state=7)
    assert memorised.sample(**kw, random_state=7) == a
    assert memorised.sample(**kw, random_state=np.random.default_rng(7)) == a
    assert memorised.sample(**kw, random_state=8) != a


def test_sample_continues_the_prime(memorised):
    out = memorised.sample(1, 5, prime="the quick brown fox jumps over the lazy", top_k=1)
    assert out == [" dog."]


def test_sample_never_produces_the_unknown_symbol():
    # barely trained, so close to uniform: unmasked, about 1 in 20 characters would be it
    est = tiny(max_iter=1, learning_rate=1e-6).fit(DOCS)
    kw = dict(length=300, temperature=2.0, random_state=0, stop_at_end=False)
    out = est.sample(n_samples=4, **kw) + est.sample(n_samples=1, **kw)
    assert sum(map(len, out)) > 1000
    assert not any("\ufffd" in text for text in out)


def test_sample_length_counts_every_character_when_not_stopping_at_document_ends():
    # barely trained, so document ends (EOD) are drawn often; DOCS hold no newline, so every
    # newline in a sample is a document end, written as one character
    est = tiny(max_iter=1, learning_rate=1e-6).fit(DOCS)
    kw = dict(length=50, random_state=7, stop_at_end=False)
    for out in (est.sample(n_samples=2, **kw), est.sample(n_samples=1, **kw)):
        assert [len(text) for text in out] == [50] * len(out)
    texts = est.sample(n_samples=4, length=300, random_state=0, stop_at_end=False)
    assert all(len(text) == 300 for text in texts)
    assert sum(text.count("\n") for text in texts) > 10
    stopped = est.sample(n_samples=4, length=300, random_state=0)
    for text, cut in zip(texts, stopped):  # same draws: each stops at its first end
        assert cut == text.split("\n")[0]


def test_sample_refuses_a_prime_with_unseen_characters(fitted):
    with pytest.raises(ValueError, match="prime"):
        fitted.sample(1, 10, prime="the Q")


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"temperature": float("inf")}, ValueError, "temperature"),
        ({"temperature": "hot"}, TypeError, "temperature"),
        ({"top_k": 0}, ValueError, "top_k"),
        ({"top_k": 2.5}, ValueError, "top_k"),
        ({"top_p": 0.0}, ValueError, "top_p"),
        ({"top_p": 1.5}, ValueError, "top_p"),
        ({"top_p": float("nan")}, ValueError, "top_p"),
        ({"n_samples": 0}, ValueError, "n_samples"),
        ({"length": -1}, ValueError, "length"),
        ({"random_state": -1}, ValueError, "random_state"),
        ({"random_state": "seed"}, ValueError, "random_state"),
        ({"prime": 5}, TypeError, "prime"),
    ],
)
def test_sample_validates_its_arguments(fitted, kwargs, error, name):
    with pytest.raises(error, match=name):
        fitted.sample(**{"n_samples": 2, "length": 5, **kwargs})


# ----------------------------------------------------------------------------- parameters
INVALID = [
    ("cell", "cnn"),
    ("cell", None),
    ("hidden_size", 0),
    ("hidden_size", -3),
    ("hidden_size", 2.5),
    ("hidden_size", "8"),
    ("hidden_size", True),
    ("num_layers", 0),
    ("embedding_dim", 0),
    ("embedding_dim", 1.5),
    ("dropout", -0.1),
    ("dropout", 1.0),
    ("dropout", float("nan")),
    ("seq_length", 0),
    ("batch_size", 0),
    ("learning_rate", 0.0),
    ("learning_rate", -1e-3),
    ("learning_rate", float("inf")),
    ("learning_rate", None),
    ("optimizer", "lamb"),
    ("weight_decay", -0.1),
    ("weight_decay", float("inf")),
    ("weight_decay", "1e-2"),
    ("clip_norm", 0.0),
    ("clip_norm", -1.0),
    ("max_iter", 0),
    ("max_iter", 1.5),
    ("max_time", 0.0),
    ("max_time", -5.0),
    ("validation_fraction", 1.0),
    ("validation_fraction", -0.1),
    ("early_stopping", "yes"),
    ("n_iter_no_change", 0),
    ("tol", -1e-3),
    ("tol", float("nan")),
    ("lr_schedule", "cosine"),
    ("warm_start", None),
    ("dtype", "float16"),
    ("random_state", -1),
    ("random_state", "seed"),
    ("verbose", -1),
    ("verbose", 0.5),
]


@pytest.mark.parametrize("name, value", INVALID)
def test_invalid_parameter_is_named_at_fit(name, value):
    est = tiny(**{name: value})  # __init__ only stores
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        est.fit(DOCS)
    assert not hasattr(est, "params_")


def test_boundary_values_are_accepted():
    est = tiny(
        max_iter=1,
        dropout=0.0,
        clip_norm=None,
        embedding_dim=4,
        hidden_size=np.int64(8),
        validation_fraction=0.0,
        tol=0.0,
        verbose=False,
        random_state=np.random.default_rng(0),
    )
    assert est.fit(DOCS).n_iter_ == 1


def _bad_int(low):
    return st.integers(max_value=low - 1) | st.floats(allow_nan=True) | st.text(max_size=3)


def _bad_real(low, high=None):
    bad = st.floats(max_value=low, exclude_max=False) | st.just(float("nan"))
    bad |= st.just(float("inf")) | st.text(max_size=3) | st.booleans()
    return bad | st.floats(min_value=high) if high is not None else bad


def _bad_choice(options):
    return st.text(max_size=8).filter(lambda s: s not in options) | st.integers()


# for each parameter: (valid values, invalid values)
PARAM_SPACE = {
    "cell": (st.sampled_from(sorted(CELLS)), _bad_choice(CELLS)),
    "hidden_size": (st.integers(1, 6), _bad_int(1) | st.booleans() | st.none()),
    "num_layers": (st.integers(1, 2), _bad_int(1) | st.none()),
    "embedding_dim": (st.none() | st.integers(1, 4), _bad_int(1)),
    "dropout": (st.floats(0.0, 0.9), _bad_real(-1e-9, 1.0)),  # None: chosen by corpus size
    "seq_length": (st.integers(1, 6), _bad_int(1) | st.none()),
    "batch_size": (st.integers(1, 3), _bad_int(1) | st.none()),
    "learning_rate": (st.floats(1e-4, 0.05), _bad_real(0.0) | st.none()),
    "optimizer": (st.sampled_from(sorted(OPTIMIZERS)), _bad_choice(OPTIMIZERS)),
    "clip_norm": (st.none() | st.floats(0.1, 10.0), _bad_real(0.0)),
    "max_iter": (st.just(1), _bad_int(1) | st.none()),
    "max_time": (st.none() | st.floats(10.0, 100.0), _bad_real(0.0)),
    "validation_fraction": (st.floats(0.0, 0.5), _bad_real(-1e-9, 1.0) | st.none()),
    "early_stopping": (st.booleans(), st.integers() | st.text(max_size=3) | st.none()),
    "n_iter_no_change": (st.integers(1, 5), _bad_int(1) | st.none()),
    "tol": (st.floats(0.0, 1.0), _bad_real(-1e-9) | st.none()),
    "lr_schedule": (st.sampled_from(SCHEDULES), _bad_choice(SCHEDULES)),
    "warm_start": (st.booleans(), st.integers() | st.text(max_size=3) | st.none()),
    "dtype": (st.sampled_from(["float32", "float64"]), _bad_choice(["float32", "float64"])),
    "random_state": (st.none() | st.integers(0, 2**32), st.integers(max_value=-1) | st.text()),
    "verbose": (st.just(0), _bad_int(0) | st.none()),
}


@st.composite
def _parameters(draw):
    params = {name: draw(valid) for name, (valid, _) in PARAM_SPACE.items()}
    bad = draw(st.none() | st.sampled_from(sorted(PARAM_SPACE)))
    if bad is not None:
        params[bad] = draw(PARAM_SPACE[bad][1])
    return params, bad


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_parameters())
def test_property_fit_accepts_valid_and_names_invalid_parameters(drawn):
    params, bad = drawn
    est = CharRNNGenerator(**params)
    if bad is not None:
        with pytest.raises(ValueError, match=rf"^{bad}\b"):
            est.fit(DOCS)
        return
    est.fit(DOCS)
    assert est.n_iter_ <= 1
    assert all(np.all(np.isfinite(p)) for p in est.params_.values())
    assert math.isfinite(est.score(DOCS[0]))


# ----------------------------------------------------------------------------- X validation
@pytest.mark.parametrize(
    "X",
    [b"raw bytes", bytearray(b"raw"), None, 3, 2.5, ["ok", None], ["ok", 3], ["ok", b"x"]],
    ids=["bytes", "bytearray", "None", "int", "float", "None-inside", "int-inside", "bytes-in"],
)
@pytest.mark.parametrize(
    "method", ["fit", "score", "score_samples", "predict", "predict_proba", "transform"]
)
def test_non_text_X_is_a_type_error_naming_X(fitted, method, X):
    est = tiny() if method == "fit" else fitted
    with pytest.raises(TypeError, match=r"^X"):
        getattr(est, method)(X)


def test_sparse_X_is_refused_by_name():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="sparse"):
        tiny().fit(sparse.csr_matrix(np.eye(3)))


@pytest.mark.parametrize("X", [[], (), np.array([], dtype=str)])
def test_no_documents_is_a_value_error(X):
    with pytest.raises(ValueError, match=r"^X holds no documents"):
        tiny().fit(X)


def test_two_dimensional_array_is_a_value_error():
    with pytest.raises(ValueError, match=r"^X must be 1-D"):
        tiny().fit(np.array([["ab", "cd"], ["ef", "gh"]]))


def test_text_shorter_than_one_chunk_names_batch_size_and_seq_length():
    est = tiny(batch_size=16, seq_length=32, validation_fraction=0)
    with pytest.raises(ValueError, match="batch_size") as info:
        est.fit("far too short")
    assert "seq_length" in str(info.value)


@pytest.mark.parametrize(
    "X",
    [DOCS, tuple(DOCS), iter(DOCS), np.array(DOCS), "".join(DOCS)],
    ids=["list", "tuple", "iterator", "ndarray", "str"],
)
def test_text_containers_are_accepted(X):
    assert tiny(max_iter=1).fit(X).n_iter_ == 1


def test_check_documents_returns_plain_strings():
    docs = check_documents(np.array(["ab", "c"]))
    assert docs == ["ab", "c"]
    assert all(type(d) is str for d in docs)
    assert check_documents("one document") == ["one document"]


def test_resume_refuses_another_text_and_partial_fit_takes_any():
    est = tiny(max_iter=3)
    flag = StopFlag()

    def stop_after_two_steps(est_, trainer, loss, grad_norm, lr):
        return trainer.progress.step >= 2

    est.fit(DOCS, on_step=stop_after_two_steps, stop_flag=flag)
    assert est.training_corpus_["n_chars"] == sum(map(len, DOCS))
    with pytest.raises(ValueError, match="resume=True needs the X of the interrupted fit"):
        est.fit(DOCS[::-1], resume=True)
    with pytest.raises(ValueError, match="but None has"):
        est.fit(DOCS[:2], resume=True)
    est.fit(DOCS, resume=True)  # the same text continues
    est.partial_fit(["new text, new data. " * 3])  # scikit-learn's meaning: any data
    est.set_params(warm_start=True).fit(DOCS[:2])
    assert est.training_corpus_["n_chars"] == sum(map(len, DOCS[:2]))
