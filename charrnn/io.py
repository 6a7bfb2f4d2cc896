"""Model files: saving and loading charrnn files safely.

A model or checkpoint is one ``.npz`` archive: every array is stored as a ``.npy`` member
written without pickle, and a JSON header travels in a uint8 array named ``__header__``. Loading
uses ``allow_pickle=False`` throughout, so opening an untrusted file can never run code.

Every file is written through :func:`atomic_write`: the bytes go to a temporary file in the same
folder, which is flushed, fsynced and renamed over the target. An interrupted save therefore
leaves either the old file or the new one, never a half-written mixture.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import secrets
import struct
import tempfile
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_KEY",
    "ModelFileError",
    "atomic_write",
    "check_network",
    "check_writable",
    "load_arrays",
    "load",
    "load_as",
    "save_arrays",
]

FORMAT_NAME = "charrnn"
FORMAT_VERSION = 1
HEADER_KEY = "__header__"

# The class named in a model file's header -> the module that defines it.
ESTIMATOR_MODULES = {
    "CharRNNGenerator": "charrnn.estimators.generator",
    "CharRNNClassifier": "charrnn.estimators.classifier",
    "RNNRegressor": "charrnn.estimators.regressor",
    "RNNForecaster": "charrnn.estimators.forecaster",
}

_WRITE_MODES = {"wb": {}, "w": {"encoding": "utf-8", "newline": ""}}
_WRITE_MODES["wt"] = _WRITE_MODES["w"]


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; its rename is already durable enough.
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_temp(folder: Path, name: str) -> tuple[int, Path]:
    """Create a new, empty temporary file next to the target and return ``(fd, path)``.

    ``os.open`` with mode 0o666 lets the process umask decide the final permissions, as for any
    ordinary file; ``tempfile.mkstemp`` would leave the result readable by its owner only.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` only when the block succeeds.

    Parameters
    ----------
    path : str or path-like
        The file to create or replace. Its folder must exist.
    mode : {"wb", "w", "wt"}
        Binary, or text encoded as UTF-8 with no newline translation.

    Yields
    ------
    file object
        Open on a temporary file in the same folder as ``path``. On normal exit it is flushed,
        fsynced and renamed onto ``path`` (then the folder is fsynced). If the block raises --
        including ``KeyboardInterrupt`` -- the temporary file is deleted and ``path`` is left
        as it was.

    Examples
    --------
    >>> with atomic_write(tmp_path / "notes.txt", "w") as f:  # doctest: +SKIP
    ...     f.write("hello")
    """
    if mode not in _WRITE_MODES:
        raise ValueError(f"mode must be one of {sorted(_WRITE_MODES)}, got {mode!r}")
    path = Path(path)
    folder = path.parent
    fd, tmp = _open_temp(folder, path.name)
    try:
        with os.fdopen(fd, mode, **_WRITE_MODES[mode]) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def check_writable(path: str | os.PathLike[str], make_parents: bool = False) -> None:
    """Fail early, with a clear message, if ``path`` could not be written.

    Meant to be called before a long computation (training) whose result goes to ``path``.

    Parameters
    ----------
    path : str or path-like
        The file that will be written.
    make_parents : bool, default=False
        Create missing parent folders instead of reporting them.

    Raises
    ------
    ValueError
        If ``path`` is a directory, its folder is missing (and ``make_parents`` is false) or is
        not a folder, or a file cannot be created in the folder.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output path {str(path)!r} is a directory; expected a file name")
    folder = path.parent
    if not folder.exists():
        if not make_parents:
            raise ValueError(f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"cannot write {str(path)!r}: could not create folder {str(folder)!r} ({exc})"
            ) from exc
    if not folder.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: {str(folder)!r} is not a folder")
    # Actually creating a file is the only reliable test: os.access ignores read-only mounts
    # and always says yes to root.
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(
            f"cannot write {str(path)!r}: folder {str(folder)!r} is not writable ({exc})"
        ) from exc


def _json_default(obj: Any) -> Any:
    """Let headers hold NumPy scalars and small arrays (e.g. a float32 loss)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_arrays(
    path: str | os.PathLike[str],
    header: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    *,
    compress: bool = False,
) -> None:
    """Atomically write ``arrays`` and a JSON ``header`` to one ``.npz`` file.

    Parameters
    ----------
    path : str or path-like
        Destination, used exactly as given (no ``.npz`` suffix is added).
    header : mapping
        JSON-serialisable metadata (NumPy scalars and arrays are converted). The keys
        ``"format"`` and ``"format_version"`` are set by this function.
    arrays : mapping of str to ndarray
        Numeric or boolean arrays of any shape. Object arrays are refused, so the file never
        needs pickle to be read.
    compress : bool, default=False
        Deflate the members; smaller files, slower saves.

    Raises
    ------
    TypeError
        If ``header`` cannot be written as JSON or an array key is not a string.
    ValueError
        If an array holds Python objects or a key is empty or reserved.
    """
    full_header = {**header, "format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    try:
        # ensure_ascii escapes everything, so lone surrogates in vocabularies survive UTF-8.
        header_json = json.dumps(full_header, ensure_ascii=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"header for {str(path)!r} is not JSON serialisable: {exc}") from exc

    members: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if not isinstance(key, str):
            raise TypeError(f"array names must be str, got {key!r} for {str(path)!r}")
        if not key or key == HEADER_KEY:
            raise ValueError(f"array name {key!r} is empty or reserved (saving {str(path)!r})")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ValueError(
                f"array {key!r} has dtype {arr.dtype}, which holds Python objects; only "
                f"numeric/boolean arrays can be saved to {str(path)!r}"
            )
        members[key] = arr
    members[HEADER_KEY] = np.frombuffer(header_json.encode("ascii"), dtype=np.uint8)

    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    # Writing the zip by hand (as np.savez does internally) avoids np.savez's keyword
    # arguments colliding with array names such as "file" or "allow_pickle".
    with (
        atomic_write(path, "wb") as f,
        zipfile.ZipFile(f, mode="w", compression=compression, allowZip64=True) as zf,
    ):
        for key, arr in members.items():
            with zf.open(key + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


class ModelFileError(ValueError):
    """A model file that cannot be used: missing, foreign, corrupt, or inconsistent with itself.

    Every failure to read a model file reaches the caller as this error (a ``ValueError``,
    so ``except ValueError`` keeps working), with a message naming the file and what is wrong.

    Attributes
    ----------
    path : str
        The file.
    problem : str
        What is wrong with it, e.g. ``"is truncated or corrupt (...)"``.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"model file {self.path!r} {problem}")


# What reading a damaged archive can raise, from zipfile, zlib, NumPy's .npy header parser
# (which evaluates the header as a Python literal: tokenize and syntax errors) and json.
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    OverflowError,
    MemoryError,
    SyntaxError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    NotImplementedError,
    RecursionError,
)


def _one_line(exc: BaseException) -> str:
    text = str(exc).split(". If you trust")[0] or type(exc).__name__
    return " ".join(text.split())


class _UnsafeEntry(ValueError):
    """An entry that could only be read by unpickling it."""


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member, refusing object arrays and sizes the member cannot hold.

    The header is read first, so a header promising more data than the member has (a flipped
    byte in a shape) is refused before anything is allocated for it.
    """
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        if dtype.hasobject:
            raise _UnsafeEntry("it holds Python objects (a pickle), which are never loaded")
        count = math.prod(shape)
        if count * dtype.itemsize > info.file_size:
            raise ValueError(
                f"its header promises {shape} {dtype} ({count * dtype.itemsize:,} bytes) but "
                f"the entry holds {info.file_size:,} bytes"
            )
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _read_archive(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with zipfile.ZipFile(path) as zf:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise ModelFileError(
                    path, f"has an entry {info.filename!r} that is not a .npy array"
                )
            key = info.filename[: -len(".npy")]
            if key in members:
                raise ModelFileError(path, f"has two entries named {info.filename!r}")
            members[key] = info
        if HEADER_KEY not in members:
            raise ModelFileError(
                path, f"is not a charrnn model file (it has no {HEADER_KEY} entry)"
            )
        arrays = {}
        for key, info in members.items():
            try:
                arrays[key] = _read_npy(zf, info)
            except _UnsafeEntry as exc:
                raise ModelFileError(
                    path, f"entry {key!r} could not be read safely ({exc})"
                ) from exc
            except _READ_ERRORS as exc:
                raise ModelFileError(
                    path, f"is truncated or corrupt (entry {key!r}: {_one_line(exc)})"
                ) from exc
    header = _parse_header(arrays.pop(HEADER_KEY), path)
    return header, arrays


def _parse_header(raw: np.ndarray, path: Path) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(path, f"is not a charrnn model file (malformed {HEADER_KEY} entry)")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(path, f"has a corrupt header: {_one_line(exc)}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelFileError(path, "is not a charrnn model file (header format is not charrnn)")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(path, f"has a corrupt header: format_version={version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            path,
            f"was written by a newer charrnn (file format version {version}; this version "
            f"reads up to {FORMAT_VERSION}); upgrade charrnn to load it",
        )
    return header


def load_arrays(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`save_arrays`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    header : dict
        The JSON header, including ``"format"`` and ``"format_version"``.
    arrays : dict of str to ndarray
        Every stored array, read fully into memory.

    Raises
    ------
    ModelFileError
        With a message naming ``path`` if it is missing, a directory, not an ``.npz`` archive,
        truncated or corrupt, lacks the charrnn header, comes from a newer format version, or
        contains pickled objects (which are refused without being unpickled).
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "does not exist")
    if path.is_dir():
        raise ModelFileError(path, "is a directory; expected a .npz file written by charrnn")
    # Only a zip archive can be a model file; anything else is refused before NumPy would
    # treat it as a pickle.
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read ({_one_line(exc)})") from exc
    if not is_zip:
        raise ModelFileError(
            path,
            "is not a charrnn model file (not an .npz archive: truncated, corrupt or another "
            "kind of file)",
        )
    # The one boundary: whatever a damaged archive makes zipfile, zlib or NumPy raise
    # becomes a ModelFileError naming the file.
    try:
        return _read_archive(path)
    except ModelFileError:
        raise
    except _READ_ERRORS as exc:
        raise ModelFileError(path, f"is truncated or corrupt ({_one_line(exc)})") from exc


# What building an estimator from a damaged (but readable) header can raise: a missing key,
# a value of the wrong type or out of range (bit generator states, vocabularies, labels).
_BUILD_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


def check_network(
    header: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    config_class: type,
    shapes_of: Callable[[Any], dict[str, tuple[int, ...]]],
    prefix: str = "param/",
) -> tuple[Any, dict[str, np.ndarray]]:
    """Check a saved network's configuration against its weights; build the configuration.

    Parameters
    ----------
    header : mapping
        Holds ``"config"``, the configuration's fields.
    arrays : mapping of str to ndarray
        The file's arrays; the weights are those named ``prefix + name``.
    config_class : type
        :class:`~charrnn.engine.network.NetworkConfig` or
        :class:`~charrnn.engine.seqclf.SeqClfConfig` (anything with ``field_problems``).
    shapes_of : callable
        ``config -> {name: shape}``, the module's ``param_shapes``.
    prefix : str

    Returns
    -------
    config
    params : dict of str to ndarray
        Every weight the configuration has, with its shape and dtype, all finite (copies).

    Raises
    ------
    ValueError
        If the configuration is invalid, a weight is missing, extra, of another shape or
        dtype, or not finite. Nothing the size of the configuration is allocated before
        its sizes have been checked against the arrays actually in the file.
    """
    fields = header.get("config")
    problems = config_class.field_problems(fields)
    if problems:
        raise ValueError(f"has an invalid network configuration: {'; '.join(problems)}")
    stored = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    # every layer has weights of its own, so a layer count beyond the stored arrays is corrupt
    # (and would make listing the expected shapes take forever)
    if fields["num_layers"] > len(stored):
        raise ValueError(
            f"has num_layers={fields['num_layers']} in its configuration but only "
            f"{len(stored)} weight arrays"
        )
    config = config_class(**fields)
    expected = shapes_of(config)
    dtype = np.dtype(config.dtype)
    params = {}
    for name, shape in expected.items():
        arr = stored.get(name)
        if arr is None:
            raise ValueError(f"is missing weight {name!r} (shape {shape})")
        if arr.shape != shape or arr.dtype != dtype:
            raise ValueError(
                f"has weight {name!r} of shape {arr.shape} {arr.dtype}; its configuration "
                f"says {shape} {dtype}"
            )
        params[name] = np.array(arr)
    if extra := sorted(stored.keys() - expected.keys()):
        raise ValueError(f"has weights its configuration does not have: {extra[:5]}")
    return config, params


def _check_finite(arrays: Mapping[str, np.ndarray]) -> None:
    for key, arr in arrays.items():
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise ValueError(f"has array {key!r} holding NaN or infinity")


def load(path: str | os.PathLike):
    """Load a model saved by ``save``: a generator, classifier, regressor or forecaster.

    Nothing in the file is executed: arrays are read with ``allow_pickle=False`` and the
    header is JSON. Every array must be finite and have the shape and dtype the header
    gives it, and the estimator's parameters must pass its own checks.

    Raises
    ------
    ModelFileError
        For a missing, truncated, foreign or newer-format file, or one whose arrays do not
        match its own header. It is a ``ValueError``.
    """
    return _build(path, *load_arrays(path))


def _build(path, header: dict[str, Any], arrays: dict[str, np.ndarray]):
    """The estimator a file's header and arrays describe, or a ModelFileError."""
    kind = header.get("estimator")
    if not isinstance(kind, str) or kind not in ESTIMATOR_MODULES:
        raise ModelFileError(path, f"names an unknown estimator {kind!r} in its header")
    # imported here, not at the top: the estimator modules import this one to save
    cls = getattr(importlib.import_module(ESTIMATOR_MODULES[kind]), kind)
    # The one boundary for building: a header that reads as JSON but describes no valid model
    # becomes a ModelFileError naming the file, whichever check found it.
    try:
        _check_finite(arrays)
        est = cls._from_saved(header, arrays, path)
    except ModelFileError:
        raise
    except _BUILD_ERRORS as exc:
        problem = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        if not problem.startswith(("has ", "is ")):
            problem = f"has an incomplete or invalid header ({problem})"
        raise ModelFileError(path, " ".join(problem.split())) from exc
    return est


def load_as(path: str | os.PathLike, cls: type):
    """:func:`load`, refusing a file that holds another kind of estimator than ``cls``.

    Raises
    ------
    ModelFileError
        As :func:`load`, or naming the estimator the file holds.
    """
    header, arrays = load_arrays(path)
    kind = header.get("estimator")
    if kind != cls.__name__ and isinstance(kind, str) and kind in ESTIMATOR_MODULES:
        raise ModelFileError(path, f"holds a {kind}, not a {cls.__name__}")
    est = _build(path, header, arrays)
    if not isinstance(est, cls):
        raise ModelFileError(path, f"holds a {type(est).__name__}, not a {cls.__name__}")
    return est
