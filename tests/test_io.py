"""Tests for charrnn.io: atomic writes, the .npz model format, and files of earlier versions."""

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from charrnn import CharRNNClassifier, CharRNNGenerator, load
from charrnn import io as persist
from charrnn.io import (
    FORMAT_VERSION,
    atomic_write,
    check_writable,
    load_arrays,
    save_arrays,
)


def _sample_arrays():
    rng = np.random.default_rng(0)
    return {
        "l0.Wx": rng.standard_normal((5, 12)).astype(np.float32),
        "l0.b": rng.standard_normal(12),
        "ids": np.arange(7, dtype=np.uint16),
        "mask": np.array([True, False, True]),
        "step": np.array(42, dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        # Names that would collide with np.savez's own keyword arguments.
        "file": np.ones(2),
        "allow_pickle": np.zeros(1, dtype=np.int8),
    }


def _write_npz(path, **members):
    """Write an .npz whose members are given as raw .npy bytes."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)


def _npy_bytes(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _header_bytes(header):
    return _npy_bytes(np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# --------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_is_bitwise(tmp_path, compress):
    path = tmp_path / "model.npz"
    header = {
        "cell": "lstm",
        "vocab": {"chars": "ab\udc80\u00e9\U0001f600"},
        "loss": np.float32(1.25),
        "history": [1.0, float("nan")],
    }
    arrays = _sample_arrays()
    save_arrays(path, header, arrays, compress=compress)
    loaded_header, loaded = load_arrays(path)

    assert loaded_header["format"] == "charrnn"
    assert loaded_header["format_version"] == FORMAT_VERSION
    assert loaded_header["cell"] == "lstm"
    assert loaded_header["vocab"]["chars"] == "ab\udc80\u00e9\U0001f600"
    assert loaded_header["loss"] == 1.25
    assert np.isnan(loaded_header["history"][1])
    assert set(loaded) == set(arrays)
    for key, arr in arrays.items():
        assert loaded[key].dtype == arr.dtype
        assert loaded[key].shape == arr.shape
        assert loaded[key].tobytes() == arr.tobytes()
    assert _leftovers(tmp_path, {"model.npz"}) == []


def test_save_uses_path_exactly_and_overwrites(tmp_path):
    path = tmp_path / "weights.bin"
    save_arrays(path, {"n": 1}, {"a": np.zeros(3)})
    save_arrays(path, {"n": 2}, {"a": np.ones(3)})
    header, arrays = load_arrays(path)
    assert header["n"] == 2
    np.testing.assert_array_equal(arrays["a"], np.ones(3))
    assert _leftovers(tmp_path, {"weights.bin"}) == []


def test_save_refuses_object_arrays(tmp_path):
    path = tmp_path / "m.npz"
    with pytest.raises(ValueError, match="'bad'.*Python objects"):
        save_arrays(path, {}, {"bad": np.array([{"a": 1}], dtype=object)})
    assert not path.exists()
    assert _leftovers(tmp_path, set()) == []


@pytest.mark.parametrize("key", ["", "__header__"])
def test_save_refuses_reserved_names(tmp_path, key):
    with pytest.raises(ValueError, match="reserved"):
        save_arrays(tmp_path / "m.npz", {}, {key: np.zeros(1)})


def test_save_refuses_unserialisable_header(tmp_path):
    with pytest.raises(TypeError, match="header.*JSON"):
        save_arrays(tmp_path / "m.npz", {"x": object()}, {})
    assert _leftovers(tmp_path, set()) == []


# --------------------------------------------------------------------------- atomicity
def test_atomic_write_replaces_on_success(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with atomic_write(path, "w") as f:
        f.write("new\r\nline")
        # Nothing is visible at the target until the block finishes.
        assert path.read_text() == "old"
    assert path.read_bytes() == b"new\r\nline"
    assert _leftovers(tmp_path, {"out.txt"}) == []


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_crash_mid_write_keeps_old_file(tmp_path, exc_type):
    path = tmp_path / "model.npz"
    save_arrays(path, {"version": "old"}, {"w": np.arange(1000.0)})
    before = path.read_bytes()
    with pytest.raises(exc_type), atomic_write(path) as f:
        f.write(b"half of a new file")
        raise exc_type("simulated crash")
    assert path.read_bytes() == before
    assert load_arrays(path)[0]["version"] == "old"
    assert _leftovers(tmp_path, {"model.npz"}) == []


def test_crash_inside_save_arrays_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    save_arrays(path, {"version": "old"}, {"w": np.arange(10.0)})
    before = path.read_bytes()
    calls = []
    real_write_array = np.lib.format.write_array

    def write_then_crash(*args, **kwargs):
        # The first member is written, then the "process dies" mid-archive.
        if calls:
            raise OSError("disk full")
        calls.append(1)
        return real_write_array(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save_arrays(path, {"version": "new"}, {"a": np.ones(5), "b": np.ones(5)})
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, {"model.npz"}) == []


def test_failed_rename_removes_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(persist.os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"), atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path, {"model.npz"}) == []


def test_atomic_write_rejects_read_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "rb"):
        pass


def test_atomic_write_new_file_gets_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(umask)
    if os.name == "posix":
        assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- refusals
def test_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(ValueError, match="nope.npz.*does not exist"):
        load_arrays(path)


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_arrays(tmp_path)


@pytest.mark.parametrize("keep", [0, 10, 0.5, -30])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "model.npz"
    save_arrays(path, {}, _sample_arrays())
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:n])
    with pytest.raises(ValueError, match="model.npz"):
        load_arrays(path)


def test_corrupted_member(tmp_path):
    path = tmp_path / "model.npz"
    save_arrays(path, {}, {"w": np.zeros(4096)})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the zero-filled array: only the CRC can notice
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.npz.*corrupt"):
        load_arrays(path)


@pytest.mark.parametrize("prefix", [b"", b"PK\x03\x04", b"\x93NUMPY"])
def test_random_bytes(tmp_path, prefix):
    path = tmp_path / "junk.npz"
    path.write_bytes(prefix + np.random.default_rng(1).bytes(2000))
    with pytest.raises(ValueError, match="junk.npz"):
        load_arrays(path)


def test_another_programs_npz(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.arange(3))
    with pytest.raises(ValueError, match="other.npz.*not a charrnn model file"):
        load_arrays(path)


def test_plain_npy_file(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.arange(3))
    with pytest.raises(ValueError, match="array.npy.*not a charrnn model file"):
        load_arrays(path)


@pytest.mark.parametrize(
    "header",
    [{"format": "something-else", "format_version": 1}, ["charrnn", 1], {"format": "charrnn"}],
)
def test_foreign_or_malformed_header(tmp_path, header):
    path = tmp_path / "m.npz"
    _write_npz(path, __header__=_header_bytes(header))
    with pytest.raises(ValueError, match="m.npz"):
        load_arrays(path)


def test_header_that_is_not_json(tmp_path):
    path = tmp_path / "m.npz"
    _write_npz(path, __header__=_npy_bytes(np.frombuffer(b"\xff{not json", dtype=np.uint8)))
    with pytest.raises(ValueError, match="m.npz.*corrupt header"):
        load_arrays(path)


def test_future_format_version(tmp_path):
    path = tmp_path / "future.npz"
    header = {"format": "charrnn", "format_version": FORMAT_VERSION + 1}
    _write_npz(path, __header__=_header_bytes(header), w=_npy_bytes(np.zeros(3)))
    with pytest.raises(ValueError, match="future.npz.*newer charrnn"):
        load_arrays(path)


class _Payload:
    """Unpickling this object opens (and so creates) the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_array_is_refused_without_running_it(tmp_path):
    header = {"format": "charrnn", "format_version": FORMAT_VERSION}
    path = tmp_path / "evil.npz"
    marker = tmp_path / "pwned"
    payload = _npy_bytes(np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    _write_npz(path, __header__=_header_bytes(header), weights=payload)

    with pytest.raises(ValueError, match="evil.npz.*'weights'"):
        load_arrays(path)
    assert not marker.exists()

    # The payload is live: loading it the unsafe way does create a marker. This guards the
    # test above against passing only because the payload was inert.
    control = tmp_path / "control"
    unsafe = tmp_path / "unsafe.npz"
    _write_npz(unsafe, w=_npy_bytes(np.array([_Payload(control)], dtype=object), True))
    with np.load(unsafe, allow_pickle=True) as npz:
        npz["w"][0].close()
    assert control.exists()


def test_member_that_is_not_an_array(tmp_path):
    path = tmp_path / "m.npz"
    header = {"format": "charrnn", "format_version": FORMAT_VERSION}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__header__.npy", _header_bytes(header))
        zf.writestr("notes.txt", b"hello")
    with pytest.raises(ValueError, match="m.npz.*not a .npy array"):
        load_arrays(path)


# --------------------------------------------------------------------------- check_writable
def test_check_writable_accepts_new_and_existing_files(tmp_path):
    check_writable(tmp_path / "new.npz")
    (tmp_path / "old.npz").write_bytes(b"x")
    check_writable(tmp_path / "old.npz")
    assert _leftovers(tmp_path, {"old.npz"}) == []


def test_check_writable_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        check_writable(tmp_path)


def test_check_writable_missing_folder(tmp_path):
    target = tmp_path / "a" / "b" / "m.npz"
    with pytest.raises(ValueError, match="does not exist"):
        check_writable(target)
    assert not (tmp_path / "a").exists()
    check_writable(target, make_parents=True)
    assert (tmp_path / "a" / "b").is_dir()
    assert not target.exists()


def test_check_writable_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        check_writable(tmp_path / "file" / "m.npz")
    with pytest.raises(ValueError, match="could not create folder"):
        check_writable(tmp_path / "file" / "sub" / "m.npz", make_parents=True)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="permission bits do not stop root (or are absent on this OS)",
)
def test_check_writable_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="not writable"):
            check_writable(folder / "m.npz")
    finally:
        folder.chmod(0o755)


def test_check_writable_unwritable_folder_via_failing_create(tmp_path, monkeypatch):
    # Root ignores permission bits, so simulate the OS refusing to create a file.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(persist.tempfile, "TemporaryFile", refuse)
    with pytest.raises(ValueError, match="not writable.*Permission denied"):
        check_writable(tmp_path / "m.npz")


# ------------------------------------------------- files written by charrnn 0.1.0
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
