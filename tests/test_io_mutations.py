"""The model-file reader against damaged files: every mutation is refused cleanly or loads a
model that works.

Small saved models of every kind (generator with its training state, classifier, regressor,
forecaster, and the two files written by charrnn 0.1.0) are damaged by seeded random
mutations: byte flips, truncations, inserted bytes, zip members edited, swapped, dropped or
duplicated (written back with valid checksums, so the damage reaches NumPy's and charrnn's
own parsing), and JSON header fields replaced by hostile values or removed. Each damaged file
must either raise :class:`charrnn.io.ModelFileError` or load as a model that samples or
predicts without error; anything else escaping (``tokenize.TokenError``, ``KeyError``,
``AssertionError``, ``MemoryError``, ...) fails the test with the case's description.
"""

from __future__ import annotations

import collections
import copy
import io
import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from charrnn import (
    CharRNNClassifier,
    CharRNNGenerator,
    RNNForecaster,
    RNNRegressor,
    load,
)
from charrnn.cli.info import describe_model
from charrnn.io import HEADER_KEY, ModelFileError

DATA = Path(__file__).parent / "data"
TEXT = "to be or not to be, that is the question\n" * 8
FAST_CASES_PER_FILE = 54
SLOW_CASES_PER_FILE = 540
# Values an edited header field is set to: wrong types, huge and negative sizes, non-finite
# numbers, empty containers. Sizes like 10**12 must be refused without being allocated.
HOSTILE_VALUES = (
    None,
    True,
    -1,
    0,
    1,
    3,
    2**31,
    10**12,
    -(10**18),
    0.5,
    1e308,
    float("nan"),
    float("inf"),
    "",
    "lstm",
    "float16",
    "x" * 50,
    [],
    [1, 2],
    {},
    {"a": 1},
)


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function(*args, **kwargs)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    """One small file of each kind: name -> path."""
    folder = tmp_path_factory.mktemp("originals")
    files = {"generator_0.1.0": DATA / "generator_0.1.0.npz"}
    files["classifier_0.1.0"] = DATA / "classifier_0.1.0.npz"
    with threadpool_limits(1, user_api="blas"):
        gen = CharRNNGenerator(
            cell="gru", hidden_size=6, num_layers=2, embedding_dim=3, seq_length=8,
            batch_size=2, max_iter=1, random_state=0, verbose=0,
        )  # fmt: skip
        _quiet(gen.fit, TEXT)
        files["generator"] = folder / "generator.npz"
        gen.save(files["generator"])
        clf = CharRNNClassifier(
            hidden_size=4, embedding_dim=3, batch_size=8, max_iter=1, random_state=0,
            bidirectional=True, ema_momentum=0.9,
        )  # fmt: skip
        texts = ["a cat", "x y", "the dog", "xx", "ab", "yxz"] * 3
        _quiet(clf.fit, texts, [("x" in t) for t in texts])
        files["classifier"] = folder / "classifier.npz"
        clf.save(files["classifier"])
        rng = np.random.default_rng(0)
        reg = RNNRegressor(hidden_size=4, max_iter=1, random_state=0)
        _quiet(reg.fit, rng.standard_normal((20, 5, 2)), rng.standard_normal((20, 2)))
        files["regressor"] = folder / "regressor.npz"
        reg.save(files["regressor"])
        series = np.sin(np.arange(80) / 3.0)
        fc = RNNForecaster(
            RNNRegressor(hidden_size=4, max_iter=1, random_state=0, linear_skip=True),
            window=6,
            horizon=2,
        )
        _quiet(fc.fit, series)
        files["forecaster"] = folder / "forecaster.npz"
        fc.save(files["forecaster"])
    return files


# ---------------------------------------------------------------------------- mutations
def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _zip(members: dict[str, bytes] | list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    items = members.items() if isinstance(members, dict) else members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
        with zipfile.ZipFile(buf, "w") as zf:
            for name, content in items:
                zf.writestr(name, content)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _json_paths(node, prefix=()):
    """Every (path, value) in a JSON tree, containers included."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _json_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _json_paths(v, (*prefix, i))


def flip(data: bytes, rng) -> tuple[bytes, str]:
    out = bytearray(data)
    n = int(rng.integers(1, 5))
    at = rng.integers(0, len(out), size=n)
    for i in at:
        out[i] ^= int(rng.integers(1, 256))
    return bytes(out), f"flip bytes at {sorted(at.tolist())}"


def truncate(data: bytes, rng) -> tuple[bytes, str]:
    n = int(rng.integers(0, len(data)))
    return data[:n], f"truncate to {n} bytes"


def insert(data: bytes, rng) -> tuple[bytes, str]:
    at, n = int(rng.integers(0, len(data))), int(rng.integers(1, 9))
    return data[:at] + rng.bytes(n) + data[at:], f"insert {n} bytes at {at}"


def edit_member(data: bytes, rng) -> tuple[bytes, str]:
    members = _members(data)
    name = str(rng.choice(sorted(members)))
    content, how = flip(members[name], rng)
    if rng.random() < 0.3:
        content, how = truncate(members[name], rng)
    members[name] = content
    return _zip(members), f"member {name}: {how} (valid checksum)"


def swap_members(data: bytes, rng) -> tuple[bytes, str]:
    members = _members(data)
    names = sorted(members)
    kind = int(rng.integers(0, 3))
    if kind == 0 and len(names) > 1:
        a, b = rng.choice(names, size=2, replace=False)
        members[a], members[b] = members[b], members[a]
        return _zip(members), f"swap members {a} and {b}"
    name = str(rng.choice(names))
    if kind == 1:
        del members[name]
        return _zip(members), f"drop member {name}"
    return _zip([*members.items(), (name, members[name])]), f"duplicate member {name}"


def edit_header(data: bytes, rng) -> tuple[bytes, str]:
    members = _members(data)
    raw = np.lib.format.read_array(io.BytesIO(members[HEADER_KEY + ".npy"]))
    header = json.loads(raw.tobytes().decode())
    paths = [p for p, _ in _json_paths(header) if p and p[0] not in ("format", "format_version")]
    path = paths[int(rng.integers(0, len(paths)))]
    edited = copy.deepcopy(header)
    parent = edited
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[path[-1]]
        how = f"delete header field {list(path)}"
    else:
        value = HOSTILE_VALUES[int(rng.integers(0, len(HOSTILE_VALUES)))]
        parent[path[-1]] = value
        how = f"set header field {list(path)} to {value!r}"
    text = json.dumps(edited).encode()
    members[HEADER_KEY + ".npy"] = _npy(np.frombuffer(text, dtype=np.uint8))
    return _zip(members), how


MUTATIONS = (flip, truncate, insert, edit_member, swap_members, edit_header)


# ---------------------------------------------------------------------------- the check
def use(model) -> None:
    """Sample or predict with a loaded model, as a user would."""
    if isinstance(model, CharRNNGenerator):
        model.sample(2, 6, prime="to", random_state=0, stop_at_end=False)
        model.score("to be")
        describe_model(model, Path("m.npz"))  # what `charrnn info` prints
    elif isinstance(model, CharRNNClassifier):
        model.predict_proba(["a cat", "", "zz"])
    elif isinstance(model, RNNRegressor):
        steps = model.n_features_in_  # the sequence length it was fitted on
        if steps > 10_000:
            # an edited length no file can contradict (the network reads any length): a
            # clean refusal of other lengths is what the user sees
            with pytest.raises(ValueError, match="expecting"):
                model.predict(np.zeros((1, 5, model.n_inputs_)))
            return
        shape = (3, steps) if model.n_inputs_ == 1 else (3, steps, model.n_inputs_)
        model.predict(np.zeros(shape))
    elif isinstance(model, RNNForecaster):
        model.predict()
        if model.validation_errors_ is not None:
            model.predict_interval()
    else:  # pragma: no cover - load returns only the four
        raise AssertionError(f"load returned a {type(model).__name__}")


def run_cases(original: Path, folder: Path, n_cases: int, seed: int) -> collections.Counter:
    """Mutate ``original`` ``n_cases`` times; count outcomes; raise on anything escaping."""
    data = original.read_bytes()
    rng = np.random.default_rng(seed)
    counts: collections.Counter = collections.Counter()
    target = folder / f"mutated_{original.stem}.npz"
    for i in range(n_cases):
        mutation = MUTATIONS[i % len(MUTATIONS)]
        damaged, how = mutation(data, rng)
        target.write_bytes(damaged)
        try:
            model = load(target)
        except ModelFileError as exc:
            assert str(target) in str(exc), f"{how}: the error does not name the file: {exc}"
            counts["refused"] += 1
            continue
        except BaseException as exc:
            pytest.fail(f"{original.name}, case {i} ({how}): {type(exc).__name__}: {exc}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                use(model)
        except BaseException as exc:
            pytest.fail(
                f"{original.name}, case {i} ({how}) loaded but failed in use: "
                f"{type(exc).__name__}: {exc}"
            )
        counts["loaded"] += 1
    return counts


KINDS = (
    "generator",
    "classifier",
    "regressor",
    "forecaster",
    "generator_0.1.0",
    "classifier_0.1.0",
)


def test_the_originals_load_and_work(originals):
    for path in originals.values():
        use(load(path))


@pytest.mark.parametrize("kind", KINDS)
def test_mutated_files_are_refused_cleanly_or_work(originals, tmp_path, kind):
    with threadpool_limits(1, user_api="blas"):
        counts = run_cases(originals[kind], tmp_path, FAST_CASES_PER_FILE, seed=KINDS.index(kind))
    print(f"{kind}: {dict(counts)}")
    assert counts["refused"] > 0  # the mutations reach the reader's checks


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_many_mutated_files_are_refused_cleanly_or_work(originals, tmp_path, kind):
    with threadpool_limits(1, user_api="blas"):
        counts = run_cases(
            originals[kind], tmp_path, SLOW_CASES_PER_FILE, seed=1000 + KINDS.index(kind)
        )
    print(f"{kind}: {dict(counts)}")
    assert counts["refused"] > 0


def test_the_first_bytes_and_a_huge_header_size_are_refused(originals, tmp_path):
    """Two damages from the issue's list, made by hand: a .npy header that does not parse
    (tokenize.TokenError inside NumPy) and one promising a gigantic array."""
    members = _members(originals["generator"].read_bytes())
    name = next(n for n in members if n.startswith("param/"))
    good = members[name]
    for bad in (
        good.replace(b"'descr'", b"'descr\n", 1),  # an unterminated string literal
        good.replace(b"'shape': (", b"'shape': (99999999999, ", 1),
    ):
        path = tmp_path / "bad.npz"
        path.write_bytes(_zip({**members, name: bad}))
        with pytest.raises(ModelFileError, match=f"bad.npz.*{name[:-4]}"):
            load(path)


def test_a_huge_hidden_size_in_the_header_is_refused_without_allocating(originals, tmp_path):
    members = _members(originals["generator"].read_bytes())
    raw = np.lib.format.read_array(io.BytesIO(members[HEADER_KEY + ".npy"]))
    header = json.loads(raw.tobytes().decode())
    for field, value, says in (
        ("hidden_size", 10**9, r"'l0.Wx' of shape \(3, 18\).*says \(3, 3000000000\)"),
        ("num_layers", 10**12, r"num_layers=1000000000000 .* but only \d+ weight arrays"),
        ("vocab_size", -3, "vocab_size must be a positive integer, got -3"),
    ):
        edited = copy.deepcopy(header)
        edited["config"][field] = value
        members[HEADER_KEY + ".npy"] = _npy(np.frombuffer(json.dumps(edited).encode(), np.uint8))
        path = tmp_path / "big.npz"
        path.write_bytes(_zip(members))
        with pytest.raises(ModelFileError, match=f"big.npz.* {says}"):
            load(path)


def test_charrnn_sample_reports_a_corrupt_model_in_one_line(originals, tmp_path):
    from click.testing import CliRunner

    from charrnn.cli import cli

    members = _members(originals["generator"].read_bytes())
    name = next(n for n in members if n.startswith("param/"))
    path = tmp_path / "corrupted.npz"
    path.write_bytes(_zip({**members, name: members[name].replace(b"'descr'", b"'descr\n", 1)}))
    result = CliRunner().invoke(cli, ["sample", "--model", str(path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "corrupted.npz" in lines[0] and "Traceback" not in result.output
    shutil.rmtree(tmp_path, ignore_errors=True)
