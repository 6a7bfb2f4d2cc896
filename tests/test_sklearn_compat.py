"""CharRNNGenerator as a scikit-learn citizen: tags, common checks, cloning, pickling,
GridSearchCV (sequential, loky, Dask), BLAS threads in workers, and pipelines.

What scikit-learn 1.9's common checks do for string input: ``estimator_checks_generator``
yields ``check_estimator_cloneable`` and then stops, because every other check builds a 2-D
numeric X (``_yield_all_checks`` returns early unless ``input_tags.two_d_array``). So:

1. ``parametrize_with_checks`` runs on the real estimator (that one check);
2. the checks that never look at X run directly, by name;
3. the full battery runs on a test-only subclass whose tags claim 2-D numeric input, with
   every check that feeds numbers as X listed in ``NUMERIC_X_CHECKS`` with its reason
   (strict xfail, so the list cannot go stale), and a test that each of them fails at
   CharRNNGenerator's own input validation, with an error that names X;
4. the properties those numeric checks guard are tested here with text.
"""

import copy
import pickle
import warnings

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError, SkipTestWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks, get_tags
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks
from threadpoolctl import threadpool_info

from charrnn import CharRNNGenerator

DOCS = [
    "the cat sat on the mat. " * 3,
    "a dog ran to the red hat. " * 3,
    "the big cat ran to a dog. " * 3,
    "on the mat sat a red dog. " * 3,
]


def tiny(**params) -> CharRNNGenerator:
    base = dict(cell="gru", hidden_size=8, num_layers=1, seq_length=8, batch_size=4)
    base.update(learning_rate=1e-2, max_iter=2, validation_fraction=0, random_state=0)
    base.update(params)
    return CharRNNGenerator(**base)


def _same_params(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def fitted():
    return tiny().fit(DOCS)


def _word_docs(n_docs, seed=0):
    """Documents of random words from a small vocabulary: learnable, never memorised."""
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "big", "red", "hat"]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=25)) + "." for _ in range(n_docs)]


# ----------------------------------------------------------------------------- tags and checks
def test_tags_declare_text_input():
    tags = get_tags(CharRNNGenerator())
    assert tags.input_tags.string is True
    assert tags.input_tags.two_d_array is False
    assert tags.target_tags.required is False
    assert tags.requires_fit is True
    assert tags.transformer_tags is not None  # it has transform()


with warnings.catch_warnings():
    # the warning that checks stop for string input is asserted in the next test
    warnings.simplefilter("ignore", SkipTestWarning)
    _COMMON_CHECKS = parametrize_with_checks([tiny()])


@_COMMON_CHECKS
def test_sklearn_common_checks(estimator, check):
    check(estimator)


def test_common_checks_for_text_input_stop_after_cloning():
    # if a future scikit-learn starts yielding text-aware checks, this says to use them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = check_estimator(tiny(), on_skip=None, on_fail=None)
    assert [r["check_name"] for r in results] == ["check_estimator_cloneable"]
    assert results[0]["status"] == "passed"
    assert any("string=True" in str(w.message) for w in caught)


# Checks that never build an X of numbers: they apply to a text estimator unchanged.
X_FREE_CHECKS = [
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_no_attributes_set_in_init",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    # these pass numbers, but only to see that they are refused before anything else
    "check_estimators_unfitted",
    "check_transformers_unfitted",
    "check_estimator_sparse_tag",
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
]


@pytest.mark.parametrize("name", X_FREE_CHECKS)
def test_sklearn_checks_that_do_not_need_numeric_X(name):
    getattr(estimator_checks, name)("CharRNNGenerator", tiny())


class _ClaimsNumericInput(CharRNNGenerator):
    """Test-only: tags that claim 2-D numeric X, so scikit-learn yields its whole battery."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.string = False
        return tags


_NUMBERS_AS_X = "builds a 2-D float array as X; CharRNNGenerator takes text"
NUMERIC_X_CHECKS = {
    "check_fit_score_takes_y": _NUMBERS_AS_X + " (text version: test_fit_and_score_take_y)",
    "check_estimators_overwrite_params": _NUMBERS_AS_X
    + " (text version: test_fit_leaves_parameters_and_X_alone)",
    "check_dont_overwrite_parameters": _NUMBERS_AS_X
    + " (text version: test_fit_leaves_parameters_and_X_alone)",
    "check_estimators_fit_returns_self": _NUMBERS_AS_X + " (text: test_generator.py)",
    "check_readonly_memmap_input": _NUMBERS_AS_X + "; read-only text is tested here",
    "check_n_features_in_after_fitting": "text has no features to count (no n_features_in_)",
    "check_positive_only_tag_during_fit": "feeds negative numbers as X",
    "check_estimators_dtypes": "feeds float32/int arrays as X",
    "check_complex_data": "feeds complex numbers as X",
    "check_dtype_object": "feeds an object array of numbers as X",
    "check_estimators_empty_data_messages": "expects numeric-shape wording for empty X; "
    "empty text is tested in test_generator.py",
    "check_pipeline_consistency": _NUMBERS_AS_X + " (text version: test_pipeline_*)",
    "check_estimators_nan_inf": "feeds NaN/inf numbers as X",
    "check_estimators_pickle": _NUMBERS_AS_X + " (text version: test_pickle_and_joblib_*)",
    "check_f_contiguous_array_estimator": "feeds a Fortran-ordered float array as X",
    "check_transformer_data_not_an_array": "feeds a wrapped numeric array as X",
    "check_transformer_general": _NUMBERS_AS_X + " (text version: test_transform_*)",
    "check_transformer_n_iter": _NUMBERS_AS_X + " (n_iter_ is tested in test_generator.py)",
    "check_methods_sample_order_invariance": _NUMBERS_AS_X
    + " (text version: test_methods_follow_document_order)",
    "check_methods_subset_invariance": _NUMBERS_AS_X
    + " (text version: test_methods_on_subsets_match_the_whole)",
    "check_fit2d_1sample": "expects numeric-shape wording for a 1-sample 2-D X",
    "check_fit2d_1feature": "expects numeric-shape wording for a 1-feature 2-D X",
    "check_dict_unchanged": _NUMBERS_AS_X + " (text version: test_methods_leave_state_alone)",
    "check_fit_idempotent": _NUMBERS_AS_X + " (text version: test_fit_is_idempotent)",
    "check_fit_check_is_fitted": _NUMBERS_AS_X + " (text version: test_not_fitted_*)",
    "check_n_features_in": "text has no features to count (no n_features_in_)",
    "check_fit1d": "feeds a 1-D float array as X",
    "check_fit2d_predict1d": _NUMBERS_AS_X,
}


@parametrize_with_checks(
    [_ClaimsNumericInput(**tiny().get_params())],
    expected_failed_checks=lambda est: NUMERIC_X_CHECKS,
    xfail_strict=True,
)
def test_sklearn_checks_claiming_numeric_input(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


def _root_cause(exc):
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return exc


def test_numeric_checks_fail_only_at_the_text_validation():
    # every expected failure must be our input check refusing numbers, not a crash elsewhere
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(
            _ClaimsNumericInput(**tiny().get_params()),
            expected_failed_checks=NUMERIC_X_CHECKS,
            on_fail=None,
            on_skip=None,
        )
    failed = {r["check_name"] for r in results if r["status"] in ("failed", "xfail")}
    assert failed == set(NUMERIC_X_CHECKS)
    for r in results:
        if r["status"] == "xfail":
            cause = _root_cause(r["exception"])
            assert isinstance(cause, TypeError | ValueError), r["check_name"]
            assert str(cause).startswith("X"), (r["check_name"], str(cause))


# ----------------------------------------------------------------------------- text versions
def test_clone_and_params_round_trip(fitted):
    params = fitted.get_params()
    twin = clone(fitted)
    assert twin.get_params() == params
    assert not hasattr(twin, "params_")
    est = CharRNNGenerator()
    assert est.set_params(**params) is est
    assert est.get_params() == params
    assert CharRNNGenerator(**params).get_params() == params
    with pytest.raises(ValueError, match="hidden_units"):
        est.set_params(hidden_units=3)


def test_init_only_stores_parameters():
    params = dict(cell="rnn", hidden_size=3, dropout=0.5, max_iter="not checked here")
    est = CharRNNGenerator(**params)
    assert set(vars(est)) == set(est.get_params())
    assert all(getattr(est, k) is v for k, v in params.items())


def test_fit_leaves_parameters_and_X_alone():
    est = tiny(random_state=np.random.default_rng(0))
    before = est.get_params()
    docs = list(DOCS)
    est.fit(docs)
    assert est.get_params() == before
    assert est.get_params()["random_state"] is before["random_state"]
    assert docs == DOCS


def test_fit_and_score_take_y(fitted):
    labels = np.arange(len(DOCS))
    assert tiny(max_iter=1).fit(DOCS, labels).n_iter_ == 1
    assert fitted.score(DOCS, labels) == fitted.score(DOCS)


def test_fit_is_idempotent():
    est = tiny(dropout=0.2, validation_fraction=0.2)
    first = copy.deepcopy(est.fit(DOCS).params_)
    history = list(est.loss_curve_)
    est.fit(DOCS)
    assert _same_params(first, est.params_)
    assert est.loss_curve_ == history  # a second fit starts over; it does not append


@pytest.mark.parametrize(
    "call",
    [
        lambda est: est.score(DOCS),
        lambda est: est.score_samples(DOCS),
        lambda est: est.predict(DOCS),
        lambda est: est.predict_proba(DOCS),
        lambda est: est.transform(DOCS),
        lambda est: est.sample(2, 10),
    ],
    ids=["score", "score_samples", "predict", "predict_proba", "transform", "sample"],
)
def test_not_fitted_error_before_fit(call):
    with pytest.raises(NotFittedError):
        call(tiny())


def test_methods_leave_state_alone(fitted):
    before = copy.deepcopy(vars(fitted))
    fitted.score(DOCS)
    fitted.score_samples(DOCS)
    fitted.predict(DOCS)
    fitted.predict_proba(DOCS)
    fitted.transform(DOCS)
    fitted.sample(3, 20, random_state=0)
    after = dict(vars(fitted))
    assert after.keys() == before.keys()
    assert _same_params(after.pop("params_"), before.pop("params_"))
    for name in ("_training_state", "_optim_state", "_train_rng"):
        after.pop(name), before.pop(name)
    assert_array_equal(after.pop("classes_"), before.pop("classes_"))
    assert after == before


def test_methods_follow_document_order(fitted):
    docs = ["the cat", "a dog ran", "", "red hat on the mat"]
    order = [2, 0, 3, 1]
    shuffled = [docs[i] for i in order]
    assert_allclose(fitted.score_samples(shuffled), fitted.score_samples(docs)[order], rtol=1e-5)
    assert_allclose(fitted.predict_proba(shuffled), fitted.predict_proba(docs)[order], rtol=1e-5)
    assert_allclose(fitted.transform(shuffled), fitted.transform(docs)[order], rtol=1e-5)


def test_methods_on_subsets_match_the_whole(fitted):
    docs = ["the cat", "a dog ran", "", "red hat on the mat"]
    for method in ("score_samples", "predict_proba", "transform"):
        whole = getattr(fitted, method)(docs)
        parts = np.concatenate(
            [getattr(fitted, method)(docs[:2]), getattr(fitted, method)(docs[2:])]
        )
        assert_allclose(parts, whole, rtol=1e-5, err_msg=method)


def test_readonly_text_array_is_accepted():
    docs = np.array(DOCS)
    docs.setflags(write=False)
    assert tiny(max_iter=1).fit(docs).n_iter_ == 1


@pytest.mark.parametrize("dumper", ["pickle", "joblib"])
def test_pickle_and_joblib_round_trips_score_identically(fitted, tmp_path, dumper):
    if dumper == "pickle":
        twin = pickle.loads(pickle.dumps(fitted))
    else:
        joblib.dump(fitted, tmp_path / "model.joblib")
        twin = joblib.load(tmp_path / "model.joblib")
    assert twin.score(DOCS) == fitted.score(DOCS)
    assert twin.sample(2, 30, random_state=1) == fitted.sample(2, 30, random_state=1)
    assert _same_params(twin.params_, fitted.params_)
    assert pickle.loads(pickle.dumps(tiny())).get_params() == tiny().get_params()


# ----------------------------------------------------------------------------- model selection
def test_grid_search_over_cell_and_hidden_size_finds_a_sensible_best():
    docs = _word_docs(30)
    est = CharRNNGenerator(
        num_layers=1, seq_length=16, batch_size=8, learning_rate=1e-2, max_iter=2
    ).set_params(validation_fraction=0, random_state=0)
    grid = {"cell": ["rnn", "lstm", "gru"], "hidden_size": [8, 32]}
    search = GridSearchCV(est, grid, cv=3).fit(docs)
    assert search.best_params_["hidden_size"] == 32
    scores = {
        (p["cell"], p["hidden_size"]): s
        for p, s in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])
    }
    for cell in grid["cell"]:
        assert scores[cell, 32] > scores[cell, 8], cell
    # every candidate beats guessing uniformly among the symbols
    assert min(scores.values()) > -np.log(len(search.best_estimator_.classes_))
    assert search.best_estimator_.n_iter_ == 2


def _record_blas_threads(est, trainer, loss, grad_norm, lr):
    est.blas_threads_ = max(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas")


def _blas_threads_during_fit(est, X, y=None):
    return est.blas_threads_


SMALL_GRID = {"cell": ["rnn", "gru"], "hidden_size": [4, 8]}


def _small_search(**kwargs):
    scoring = {"ll": lambda est, X, y=None: est.score(X), "blas": _blas_threads_during_fit}
    return GridSearchCV(tiny(max_iter=1), SMALL_GRID, cv=2, scoring=scoring, refit="ll", **kwargs)


@pytest.fixture(scope="module")
def sequential_search():
    return _small_search(n_jobs=1).fit(DOCS, on_step=_record_blas_threads)


@pytest.mark.slow  # spawns processes: make test-fast leaves it out
def test_grid_search_with_two_loky_workers_limits_blas_in_each(sequential_search):
    search = _small_search(n_jobs=2).fit(DOCS, on_step=_record_blas_threads)
    assert_allclose(
        search.cv_results_["mean_test_ll"], sequential_search.cv_results_["mean_test_ll"], rtol=1e-6
    )
    # joblib starts each loky worker with BLAS limited to cpu_count // n_jobs threads, and a
    # lone fit keeps that limit
    expected = max(1, joblib.cpu_count() // 2)
    seen = np.concatenate([search.cv_results_[f"split{i}_test_blas"] for i in range(2)])
    assert set(seen.tolist()) == {expected}
    assert search.best_estimator_.n_iter_ == 1


@pytest.mark.slow  # spawns processes: make test-fast leaves it out
def test_grid_search_on_a_dask_cluster(sequential_search):
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        search = _small_search().fit(DOCS, on_step=_record_blas_threads)
    assert_allclose(
        search.cv_results_["mean_test_ll"], sequential_search.cv_results_["mean_test_ll"], rtol=1e-6
    )
    assert search.best_params_ == sequential_search.best_params_


# ----------------------------------------------------------------------------- pipelines
def _lowercase(docs):
    return [doc.lower() for doc in docs]


def test_pipeline_with_a_text_normaliser():
    upper = [doc.upper() if i % 2 else doc for i, doc in enumerate(DOCS)]
    pipe = make_pipeline(FunctionTransformer(_lowercase), tiny()).fit(upper)
    gen = pipe[-1]
    assert not any(ch.isupper() for ch in gen.classes_)
    assert pipe.score(upper) == gen.score(_lowercase(upper))
    assert_array_equal(pipe.score_samples(upper), gen.score_samples(_lowercase(upper)))
    samples = gen.sample(3, 40, random_state=0)
    assert len(samples) == 3 and not any(ch.isupper() for ch in "".join(samples))


def test_pipeline_with_the_generator_as_feature_extractor():
    docs = [f"the cat {w}." for w in ("sat", "ran", "hid", "ate")] * 5
    docs += [f"a dog {w}!" for w in ("sat", "ran", "hid", "ate")] * 5
    labels = np.array([0] * 20 + [1] * 20)
    pipe = make_pipeline(tiny(max_iter=3, hidden_size=16), LogisticRegression()).fit(docs, labels)
    assert pipe[0].transform(docs).shape == (40, 16)
    assert pipe.predict(docs).shape == (40,)
    assert pipe.score(docs, labels) > 0.9  # "cat ... ." versus "dog ... !" is easy
