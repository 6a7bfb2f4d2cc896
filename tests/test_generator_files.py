"""Tests for CharRNNGenerator.save and charrnn.load: a fitted generator <-> one .npz file.

The container itself (atomic writes, corrupt and foreign archives) is tested in
test_io.py; here the subject is the model: what is saved, that a loaded model behaves
exactly as the saved one, and that a file whose arrays disagree with its header is refused.
"""

import copy
import json
import re
import zipfile

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from charrnn import CharRNNGenerator, load
from charrnn.io import load_arrays, save_arrays

DOCS = [
    "the cat sat on the mat. " * 3,
    "a dog ran to the red hat. " * 3,
    "the big cat ran to a dog. " * 3,
    "on the mat sat a red dog. " * 3,
]
FITTED_ATTRIBUTES = [
    "n_iter_",
    "n_chars_seen_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "history_",
    "stop_reason_",
    "diverged_",
]


@pytest.fixture(scope="module")
def model():
    est = CharRNNGenerator(
        cell="lstm",
        hidden_size=8,
        num_layers=2,
        embedding_dim=5,
        seq_length=8,
        batch_size=4,
        learning_rate=1e-2,
        max_iter=2,
        dropout=0.1,
        validation_fraction=0.2,
        random_state=0,
    )
    return est.fit(DOCS)


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "model.npz"
    model.save(path)
    return path


def _rewrite(src, dst, edit_header=None, edit_arrays=None):
    """Copy a model file, changing its header or arrays on the way."""
    header, arrays = load_arrays(src)
    if edit_header:
        edit_header(header)
    if edit_arrays:
        edit_arrays(arrays)
    save_arrays(dst, header, arrays)
    return dst


def _path_pattern(path):
    return re.escape(str(path))


# ----------------------------------------------------------------------------- round trip
def test_loaded_model_scores_and_samples_exactly_like_the_saved_one(model, saved):
    loaded = load(saved)
    assert type(loaded) is CharRNNGenerator
    assert loaded.get_params() == model.get_params()
    assert_array_equal(loaded.classes_, model.classes_)
    assert loaded.params_.keys() == model.params_.keys()
    for name, value in model.params_.items():
        assert loaded.params_[name].dtype == value.dtype
        assert_array_equal(loaded.params_[name], value)
    docs = ["the cat", "a red dog ran", ""]
    assert loaded.score(docs) == model.score(docs)
    assert_array_equal(loaded.score_samples(docs), model.score_samples(docs))
    assert_array_equal(loaded.predict_proba(docs), model.predict_proba(docs))
    assert_array_equal(loaded.transform(docs), model.transform(docs))
    for kw in [dict(n_samples=1), dict(n_samples=3, prime="the ", temperature=0.7, top_p=0.9)]:
        assert loaded.sample(length=50, random_state=4, **kw) == model.sample(
            length=50, random_state=4, **kw
        )


def test_loaded_model_keeps_its_history(model, saved):
    loaded = load(saved)
    for name in FITTED_ATTRIBUTES:
        assert getattr(loaded, name) == getattr(model, name), name
    assert len(loaded.history_) == 2
    assert loaded.history_[0]["grad_norm_max"] > 0


def test_loaded_model_trains_on_exactly_like_the_saved_one(model, saved):
    # optimiser buffers and the dropout generator travel with the file
    loaded = load(saved)
    original = copy.deepcopy(model)
    original.partial_fit(DOCS)
    loaded.partial_fit(DOCS)
    for name, value in original.params_.items():
        assert_array_equal(loaded.params_[name], value)


def test_model_file_needs_no_pickle(saved):
    with np.load(saved, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    assert not any(a.dtype.hasobject for a in arrays.values())
    header = json.loads(arrays["__header__"].tobytes().decode("utf-8"))
    assert header["format"] == "charrnn" and header["estimator"] == "CharRNNGenerator"
    assert header["params"]["cell"] == "lstm"
    assert {"param/embed", "param/l1.Wh", "param/Why"} <= arrays.keys()
    assert any(name.startswith("train/optim/") for name in arrays)
    with zipfile.ZipFile(saved) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())


def test_generator_random_state_is_saved_as_none(tmp_path):
    est = CharRNNGenerator(
        cell="rnn", hidden_size=4, num_layers=1, seq_length=4, batch_size=2, max_iter=1
    )
    est.set_params(random_state=np.random.default_rng(0)).fit(DOCS)
    est.save(tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").random_state is None


# ----------------------------------------------------------------------------- refusing to save
def test_save_refuses_nan_weights_and_leaves_the_old_file(model, saved):
    before = saved.read_bytes()
    broken = copy.deepcopy(model)
    broken.params_["l0.Wh"][1, 2] = np.nan
    with pytest.raises(ValueError, match="'l0.Wh'.*NaN") as info:
        broken.save(saved)
    assert str(saved) in str(info.value)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_save_failing_mid_write_leaves_the_old_file(model, saved, monkeypatch):
    before = saved.read_bytes()
    real_write = np.lib.format.write_array
    calls = []

    def disk_full_on_third_member(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", disk_full_on_third_member)
    with pytest.raises(OSError, match="No space"):
        model.save(saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]
    monkeypatch.undo()
    assert load(saved).score(DOCS) == model.score(DOCS)


def test_save_into_a_missing_folder_names_the_path(model, tmp_path):
    target = tmp_path / "no" / "such" / "model.npz"
    with pytest.raises(ValueError, match=_path_pattern(target)):
        model.save(target)


def test_save_before_fit_is_not_fitted_error(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CharRNNGenerator().save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


# ----------------------------------------------------------------------------- refusing to load
def _drop(name):
    return lambda arrays: arrays.pop(name)


def _reshape(name):
    return lambda arrays: arrays.__setitem__(name, arrays[name][:-1])


def _retype(name):
    return lambda arrays: arrays.__setitem__(name, arrays[name].astype(np.float16))


@pytest.mark.parametrize(
    "edit, weight",
    [
        (_drop("param/Why"), "Why"),
        (_drop("param/embed"), "embed"),
        (_reshape("param/l1.Wx"), "l1.Wx"),
        (_retype("param/by"), "by"),
    ],
    ids=["missing", "missing-embedding", "wrong-shape", "wrong-dtype"],
)
def test_malformed_weights_are_refused_naming_file_and_weight(saved, tmp_path, edit, weight):
    bad = _rewrite(saved, tmp_path / "bad.npz", edit_arrays=edit)
    with pytest.raises(ValueError, match=_path_pattern(bad)) as info:
        load(bad)
    assert repr(weight) in str(info.value)


@pytest.mark.parametrize("key", ["vocab", "config", "params", "fitted", "train_rng"])
def test_incomplete_header_is_refused_naming_the_file(saved, tmp_path, key):
    bad = _rewrite(saved, tmp_path / "bad.npz", edit_header=lambda h: h.pop(key))
    with pytest.raises(ValueError, match=_path_pattern(bad)):
        load(bad)


def test_header_with_an_unknown_parameter_is_refused(saved, tmp_path):
    def add_param(header):
        header["params"]["hidden_units"] = 12

    bad = _rewrite(saved, tmp_path / "bad.npz", edit_header=add_param)
    with pytest.raises(ValueError, match="incomplete or invalid"):
        load(bad)


def test_unknown_estimator_kind_is_refused(saved, tmp_path):
    bad = _rewrite(saved, tmp_path / "bad.npz", edit_header=lambda h: h.update(estimator="X"))
    with pytest.raises(ValueError, match="unknown estimator"):
        load(bad)


def test_another_programs_npz_is_refused(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, W=np.ones((3, 3)), b=np.zeros(3))
    with pytest.raises(ValueError, match="not a charrnn model file") as info:
        load(path)
    assert str(path) in str(info.value)


def test_file_from_a_future_format_version_is_refused(saved, tmp_path):
    header, arrays = load_arrays(saved)
    header["format_version"] = 99
    path = tmp_path / "future.npz"
    np.savez(
        path,
        __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        **{k.replace("/", "_"): v for k, v in arrays.items()},
    )
    with pytest.raises(ValueError, match="newer charrnn"):
        load(path)


class _Payload:
    """Unpickling this would create ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_payload_is_refused_and_never_run(saved, tmp_path):
    marker = tmp_path / "pwned"
    header, _ = load_arrays(saved)
    path = tmp_path / "evil.npz"
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    np.savez(
        path,
        __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        **{"param/Why": payload},
    )
    with pytest.raises(ValueError, match=_path_pattern(path)):
        load(path)
    assert not marker.exists()


def test_missing_file_is_a_value_error_naming_it(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(ValueError, match=_path_pattern(path)):
        load(path)
