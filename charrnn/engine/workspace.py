"""Scratch arrays reused from one training step to the next.

Large NumPy arrays are allocated with ``mmap`` and freed back to the system, so a fresh
``(T, B, 4H)`` buffer on every step pays a page fault for each 4 KiB page it touches -- on the
virtual machines this library is measured on, that cost as much as the arithmetic. A
:class:`Workspace` hands out the same arrays again when the shapes repeat, as they do in every
truncated-BPTT step. It is passed explicitly (never a global); ``None`` means "allocate fresh".

Arrays from a workspace are only valid until the next call that uses the same workspace: the
training loop consumes each step's caches and gradients before starting the next step.
"""

from __future__ import annotations

import numpy as np


class Workspace:
    """A pool of named scratch arrays, keyed by name, shape and dtype."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def empty(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array for ``name``; the same one again while shape and dtype match."""
        dtype = np.dtype(dtype)
        arr = self._arrays.get(name)
        if arr is None or arr.shape != tuple(shape) or arr.dtype != dtype:
            arr = np.empty(shape, dtype=dtype)
            self._arrays[name] = arr
        return arr

    def zeros(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """Like :meth:`empty`, filled with zeros."""
        arr = self.empty(name, shape, dtype)
        arr.fill(0)
        return arr

    def clear(self) -> None:
        """Release every array."""
        self._arrays.clear()

    def nbytes(self) -> int:
        """Total size of the arrays held."""
        return sum(a.nbytes for a in self._arrays.values())


def scratch(ws: Workspace | None, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """``ws.empty(...)`` or a fresh ``np.empty`` when there is no workspace."""
    if ws is None:
        return np.empty(shape, dtype=dtype)
    return ws.empty(name, shape, dtype)
