"""Refusing a training run the machine's memory cannot hold, before allocating any of it.

:func:`check_training_memory` compares :mod:`charrnn.engine.memory`'s estimate of a run with
the memory available now (:func:`available_memory`) and raises :class:`InsufficientMemoryError`,
which names the parameters that set the size, the estimate and what the machine has, instead
of letting NumPy fail partway through with a traceback (or the system start swapping).
"""

from __future__ import annotations

import os
from pathlib import Path

from charrnn.engine.memory import MemoryEstimate, format_bytes

__all__ = ["MEMORY_ENV", "InsufficientMemoryError", "available_memory", "check_training_memory"]

#: Environment variable that overrides the available memory, in bytes (tests, or to leave room
#: for other programs): ``CHARRNN_AVAILABLE_MEMORY=2e9``.
MEMORY_ENV = "CHARRNN_AVAILABLE_MEMORY"


class InsufficientMemoryError(ValueError):
    """A configuration whose training needs more memory than the machine has available."""


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available(folder: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What a cgroup v2 memory limit leaves (a container's limit), or None without one."""
    try:
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((folder / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes of memory a new allocation can use now, or None when it cannot be told.

    ``$CHARRNN_AVAILABLE_MEMORY`` if set; else the smaller of Linux's ``MemAvailable``
    (free memory plus caches that can be dropped) and what a cgroup memory limit leaves;
    else the free physical pages ``os.sysconf`` reports (other Unixes).
    """
    override = os.environ.get(MEMORY_ENV)
    if override:
        try:
            return int(float(override))
        except ValueError:
            raise ValueError(f"{MEMORY_ENV} must be a number of bytes, got {override!r}") from None
    found = [n for n in (_meminfo_available(), _cgroup_available()) if n is not None]
    if found:
        return min(found)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None  # Windows: no check


def check_training_memory(estimate: MemoryEstimate, sizes: dict[str, int], what: str) -> None:
    """Raise :class:`InsufficientMemoryError` if ``estimate`` exceeds the available memory.

    Parameters
    ----------
    estimate : MemoryEstimate
    sizes : dict of str to int
        The parameters (and data sizes) that set the estimate, named as the user knows them,
        e.g. ``{"hidden_size": 100000, "num_layers": 2, "batch_size": 64, "seq_length": 64}``.
    what : str
        The estimator's name, for the message.
    """
    available = available_memory()
    if available is None or estimate.total <= available:
        return
    given = ", ".join(f"{name}={value:,}" for name, value in sizes.items())
    raise InsufficientMemoryError(
        f"{what} with {given} needs about {format_bytes(estimate.total)} of memory to train "
        f"({estimate.describe()}), but this machine has {format_bytes(available)} available; "
        f"reduce hidden_size, num_layers, batch_size or the sequence length"
    )
