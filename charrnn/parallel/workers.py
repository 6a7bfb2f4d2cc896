"""Worker processes that compute one group of streams' loss and gradients beside the caller.

Threads of one process share CPython's global interpreter lock, and a recurrent training step
makes tens of small NumPy calls per time step, each holding the lock for its Python-level
dispatch. Two threads running groups of streams (:mod:`charrnn.parallel.groups`) therefore
wait on each other: on the 2-core VM of the benchmarks, two lstm 1x256 groups of 32 streams
ran at 0.75 of the speed of one alone, and a tiny model's two groups took three times as long
as one -- while the same two groups in separate processes kept 0.92-1.0 of it.

A :class:`GroupWorker` is such a separate process (:func:`main` in a new interpreter, started
with :mod:`subprocess` rather than :mod:`multiprocessing`, so a user's script is never re-imported
and needs no ``if __name__ == "__main__"`` guard). It shares its arrays with the caller through
one memory-mapped file, unlinked as soon as both sides have mapped it: per step the caller
writes the weights, the group's ids and state into it, sends a few bytes down the worker's
stdin, computes its own group meanwhile, and reads the worker's loss from its stdout and the
gradients and new state in place. The worker runs the in-process code
(:func:`charrnn.engine.network.loss_and_grads`, one BLAS thread), so its numbers are the same
bit for bit; it ignores Ctrl-C (the caller decides when training stops) and exits when its stdin
closes, so it never outlives the caller.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

from charrnn.engine import network
from charrnn.engine.workspace import Workspace

_ALIGN = 64  # bytes; every shared array starts on a cache line


class WorkerError(RuntimeError):
    """A worker process could not be started or stopped answering."""


def _layout(entries: list[tuple[str, tuple[int, ...], str]]):
    """Byte offsets of named arrays packed into one buffer.

    Returns ``[(name, shape, dtype, offset), ...]`` and the buffer size in bytes.
    """
    out, offset = [], 0
    for name, shape, dtype in entries:
        offset = -(-offset // _ALIGN) * _ALIGN
        out.append((name, tuple(shape), dtype, offset))
        offset += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return out, max(offset, 1)


def _views(buf, layout) -> dict[str, np.ndarray]:
    return {
        name: np.ndarray(shape, dtype=dtype, buffer=buf, offset=offset)
        for name, shape, dtype, offset in layout
    }


def _shared_dir() -> str | None:
    """A RAM-backed directory when the system has one (Linux), else the default temp dir."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class GroupWorker:
    """A process that computes ``network.loss_and_grads`` for one group of streams.

    Parameters
    ----------
    params : dict of str to ndarray
        The weights' names, shapes and dtypes (their values are sent at every step).
    config : NetworkConfig
    max_steps : int
        Longest chunk ``T`` the worker accepts.
    n_streams : int
        Streams in the group ``Bg``.

    Raises
    ------
    WorkerError
        When the process cannot be started or does not come up.
    """

    def __init__(self, params: dict, config: network.NetworkConfig, max_steps: int, n_streams: int):
        self.config = config
        self.max_steps, self.n_streams = max_steps, n_streams
        self.param_specs = {k: (v.shape, v.dtype.str) for k, v in params.items()}
        H, L, S = config.hidden_size, config.num_layers, config.cell_class.n_states
        entries = [(f"param/{k}", s, d) for k, (s, d) in self.param_specs.items()]
        entries += [(f"grad/{k}", s, d) for k, (s, d) in self.param_specs.items()]
        ids = (max_steps, n_streams)
        entries += [(k, ids, np.dtype(np.intp).str) for k in ("inputs", "targets")]
        entries += [("resets", ids, np.dtype(np.bool_).str)]
        for io in ("state_in", "state_out"):
            entries += [
                (f"{io}/{k}.{j}", (n_streams, H), np.dtype(config.dtype).str)
                for k in range(L)
                for j in range(S)
            ]
        layout, size = _layout(entries)
        self._proc: subprocess.Popen | None = None
        self._buf: mmap.mmap | None = None
        fd, path = tempfile.mkstemp(prefix="charrnn-group-", dir=_shared_dir())
        try:
            try:
                os.ftruncate(fd, size)
                self._buf = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            self.arrays = _views(self._buf, layout)
            self._start(path, layout)
        except Exception as exc:
            self.close()
            if isinstance(exc, WorkerError):
                raise
            raise WorkerError(f"could not start a stream-group worker process: {exc}") from exc
        finally:
            # both sides have it mapped, or it failed: nothing is left behind (a system that
            # cannot remove a mapped file keeps it in its temp directory)
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _start(self, path: str, layout) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from charrnn.parallel.workers import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            # same session as the caller: where the kernel shares CPU time between sessions
            # (Linux's autogroup), the workers take their caller's share, as threads would
        )
        self._send(("open", path, layout, self.config.to_dict()))
        self._receive()

    def matches(self, params: dict, config: network.NetworkConfig, steps: int, n_streams: int):
        """Whether this worker can run a step of this shape."""
        return (
            config == self.config
            and n_streams == self.n_streams
            and steps <= self.max_steps
            and {k: (v.shape, v.dtype.str) for k, v in params.items()} == self.param_specs
        )

    def submit(
        self, params, inputs, targets, state, train: bool, seed: int | None, resets=None
    ) -> None:
        """Start a step: ``inputs``/``targets`` (T, Bg) ids, ``state`` per layer (Bg, H) tuples;
        ``seed`` seeds the dropout generator (None: no dropout); ``resets`` (T, Bg) bool or
        None, where streams restart from the zero state. Collect with :meth:`result`."""
        a = self.arrays
        for name, value in params.items():
            np.copyto(a[f"param/{name}"], value)
        T = inputs.shape[0]
        np.copyto(a["inputs"][:T], inputs)
        np.copyto(a["targets"][:T], targets)
        if resets is not None:
            np.copyto(a["resets"][:T], resets)
        for k, layer in enumerate(state):
            for j, s in enumerate(layer):
                np.copyto(a[f"state_in/{k}.{j}"], s)
        self._send(("step", T, bool(train), seed, resets is not None))

    def result(self):
        """``(loss, grads, new_state)`` of the submitted step; the arrays are shared views,
        valid until the next :meth:`submit`."""
        loss = self._receive()[1]
        a = self.arrays
        grads = {name: a[f"grad/{name}"] for name in self.param_specs}
        S = self.config.cell_class.n_states
        state = [
            tuple(a[f"state_out/{k}.{j}"] for j in range(S)) for k in range(self.config.num_layers)
        ]
        return loss, grads, state

    def close(self) -> None:
        """Stop the process (it also stops by itself when the caller exits)."""
        proc, self._proc = getattr(self, "_proc", None), None
        if proc is not None:
            try:
                proc.stdin.close()  # end of input: the worker returns
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            proc.stdout.close()
        buf, self._buf = getattr(self, "_buf", None), None
        self.arrays = {}
        if buf is not None:
            # BufferError: a caller still holds a view; the mapping then goes with it
            with contextlib.suppress(BufferError):
                buf.close()

    def __del__(self):
        self.close()

    def _send(self, message) -> None:
        try:
            pickle.dump(message, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except (OSError, ValueError, AttributeError) as exc:
            raise WorkerError(f"stream-group worker process is gone: {exc}") from exc

    def _receive(self):
        try:
            reply = pickle.load(self._proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError, AttributeError) as exc:
            code = None if self._proc is None else self._proc.poll()
            raise WorkerError(
                f"stream-group worker process ended unexpectedly (exit code {code})"
            ) from exc
        if reply[0] == "error":
            exc, tb = reply[1], reply[2]
            raise exc from WorkerError(f"in the stream-group worker process:\n{tb}")
        return reply


def _serve(channel_in, channel_out) -> None:
    """The worker's loop: map the shared file, then run steps until the input ends."""
    message = pickle.load(channel_in)
    _, path, layout, config_dict = message
    with open(path, "r+b") as f:
        buf = mmap.mmap(f.fileno(), 0)
    a = _views(buf, layout)
    config = network.NetworkConfig(**config_dict)
    names = [name[len("param/") :] for name in a if name.startswith("param/")]
    params = {name: a[f"param/{name}"] for name in names}
    S = config.cell_class.n_states
    workspace = Workspace()

    def reply(message) -> None:
        pickle.dump(message, channel_out, protocol=pickle.HIGHEST_PROTOCOL)
        channel_out.flush()

    reply(("ready",))
    while True:
        try:
            message = pickle.load(channel_in)
        except EOFError:
            return
        _, T, train, seed, has_resets = message
        try:
            rng = None if seed is None else np.random.default_rng(seed)
            state = [
                tuple(a[f"state_in/{k}.{j}"] for j in range(S)) for k in range(config.num_layers)
            ]
            resets = a["resets"][:T] if has_resets else None
            loss, grads, new_state = network.loss_and_grads(
                params,
                config,
                a["inputs"][:T],
                a["targets"][:T],
                state,
                rng,
                train,
                workspace,
                resets,
            )
            for name in names:
                np.copyto(a[f"grad/{name}"], grads[name])
            for k, layer in enumerate(new_state):
                for j, s in enumerate(layer):
                    np.copyto(a[f"state_out/{k}.{j}"], s)
            reply(("ok", loss))
        except Exception as exc:  # sent back and raised in the caller
            tb = traceback.format_exc()
            try:
                pickle.dumps(exc)
            except Exception:
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            reply(("error", exc, tb))


def main() -> None:
    """Entry point of a worker process (reads its instructions from stdin)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel_in = sys.stdin.buffer
    # the protocol owns the real stdout; anything printed goes to stderr instead
    channel_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(channel_in, channel_out)
