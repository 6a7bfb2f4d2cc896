"""One training run per model file: an advisory lock held for the whole run.

Two ``charrnn train ... --model m.npz`` started together would both train and both save, the
later writer silently replacing the other's work. :func:`model_lock` makes the second one
stop at once: it holds an exclusive ``flock`` on ``m.npz.lock`` (which records the holder's
process id) for as long as the run lasts. The kernel releases an ``flock`` when its process
ends in any way -- a SIGKILL, a crash, a power cut -- so a lock file left behind by a killed
run holds no lock, and the next run simply takes it over; nothing has to be cleaned up.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["ModelInUseError", "lock_path", "model_lock"]


class ModelInUseError(RuntimeError):
    """Another process holds the lock of the model file this run would write.

    Attributes
    ----------
    path : Path
        The model file.
    owner : int or None
        The process id recorded by the run holding the lock (None if it could not be read).
    """

    def __init__(self, path: Path, owner: int | None) -> None:
        self.path, self.owner = path, owner
        who = f"process {owner}" if owner is not None else "another process"
        super().__init__(
            f"{path} is in use: {who} is training it (lock file {lock_path(path)}); wait for "
            f"that run to finish or stop it, or choose another --model"
        )


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of a model file: ``<model>.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _read_owner(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, 32).decode("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; False if another process has it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    try:  # Windows: a byte-range lock on the first byte (untested)
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except ImportError:
        return True  # no locking primitive at all: run unprotected rather than not at all
    except OSError:
        return False
    return True


@contextlib.contextmanager
def model_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the lock of the model file ``path`` for the duration of the block.

    Parameters
    ----------
    path : str or path-like
        The model file a run will write. Its folder must exist.

    Yields
    ------
    Path
        The lock file, ``<path>.lock``, holding this process's id while the block runs; it
        is removed when the block ends.

    Raises
    ------
    ModelInUseError
        If another process holds the lock (a run training the same file). A lock file left by
        a run that was killed holds no lock and is taken over silently.

    Notes
    -----
    ``fcntl.flock`` on POSIX systems; on Windows a ``msvcrt`` byte-range lock, which is
    untested. The lock is advisory: it keeps charrnn runs apart, not other programs.
    """
    path = Path(path)
    where = lock_path(path)
    while True:
        fd = os.open(where, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            owner = _read_owner(fd)
            os.close(fd)
            raise ModelInUseError(path, owner)
        # The previous holder may have removed the file between our open and our lock: then
        # we hold a lock on a file nobody else can find, and must lock the new one instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(where))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield where
    finally:
        # removed while still locked, so a run waiting on the old file retries on a new one
        with contextlib.suppress(OSError):
            os.unlink(where)
        os.close(fd)
