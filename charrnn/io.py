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
import os
import secrets
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_KEY",
    "atomic_write",
    "check_writable",
    "load_arrays",
    "load",
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


def _read_member(npz: Any, key: str, where: str) -> np.ndarray:
    """Read one array from an open archive, turning every failure into a ValueError."""
    try:
        arr = npz[key]
    except ValueError as exc:
        # read_array refuses object (pickled) arrays with a ValueError before unpickling.
        raise ValueError(f"{where} entry {key!r} could not be read safely ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{where} is truncated or corrupt (entry {key!r}: {exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{where} entry {key!r} is not a .npy array")
    return arr


def _read_header(npz: Any, where: str) -> dict[str, Any]:
    if HEADER_KEY not in npz.files:
        raise ValueError(f"{where} is not a charrnn model file (it has no {HEADER_KEY} entry)")
    raw = _read_member(npz, HEADER_KEY, where)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{where} is not a charrnn model file (malformed {HEADER_KEY} entry)")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where} has a corrupt header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ValueError(f"{where} is not a charrnn model file (header format is not charrnn)")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{where} has a corrupt header: format_version={version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{where} was written by a newer charrnn (file format version {version}; this "
            f"version reads up to {FORMAT_VERSION}); upgrade charrnn to load it"
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
    ValueError
        With a message naming ``path`` if it is missing, a directory, not an ``.npz`` archive,
        truncated or corrupt, lacks the charrnn header, comes from a newer format version, or
        contains pickled objects (which are refused without being unpickled).
    """
    path = Path(path)
    where = f"model file {str(path)!r}"
    if not path.exists():
        raise ValueError(f"{where} does not exist")
    if path.is_dir():
        raise ValueError(f"{where} is a directory; expected a .npz file written by charrnn")
    # Only a zip archive can be a model file; anything else is refused before NumPy would
    # treat it as a pickle (which allow_pickle=False refuses anyway, with advice to unpickle
    # the file -- the wrong advice for a file from an unknown source).
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{where} is not a charrnn model file (not an .npz archive: truncated, corrupt or "
            "another kind of file)"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        reason = str(exc).split(". If you trust")[0]
        raise ValueError(f"{where} is not a readable charrnn model file ({reason})") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{where} is not a charrnn model file (a single .npy array, not .npz)")

    with loaded as npz:
        header = _read_header(npz, where)
        arrays = {key: _read_member(npz, key, where) for key in npz.files if key != HEADER_KEY}
    return header, arrays


def load(path: str | os.PathLike):
    """Load a model saved by ``save`` (a generator or a classifier).

    Nothing in the file is executed: arrays are read with ``allow_pickle=False`` and the
    header is JSON.

    Raises
    ------
    ValueError
        For a missing, truncated, foreign or newer-format file, or one whose arrays do not
        match its own header.
    """
    header, arrays = load_arrays(path)
    kind = header.get("estimator")
    if kind not in ESTIMATOR_MODULES:
        raise ValueError(f"{path}: unknown estimator {kind!r} in the model header")
    # imported here, not at the top: the estimator modules import this one to save
    cls = getattr(importlib.import_module(ESTIMATOR_MODULES[kind]), kind)
    return cls._from_saved(header, arrays, path)
