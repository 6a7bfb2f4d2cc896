"""A training step over groups of streams, run one after another or in parallel.

NumPy runs element-wise arithmetic on one core, and at the batch sizes of character models
(B = 32-64) a BLAS pool of two threads speeds the per-step GEMMs up by far less than two.
Splitting the B parallel streams into groups and computing each group's loss and gradient on
a core of its own puts every core to work on the whole step, with one BLAS thread per group so
nothing oversubscribes. The first group runs in the calling thread, the others in worker
processes (:mod:`charrnn.parallel.workers`), or in threads when those cannot be started:
threads share the interpreter lock that each of the many small NumPy calls of a time step
takes, and ran two groups measurably slower than two processes.

The split into groups is fixed when a :class:`StreamGroups` is built (from the batch size and
the cores available), never by the timing, so a run gives the same numbers whether its groups
ran in parallel or one after another; :class:`charrnn.parallel.blas.BlasTuner` picks the
faster of these ways on the fly. Each group's gradient is the mean over its own characters, so the
batch's gradient is their average weighted by group size, which equals the unsplit gradient up
to floating-point rounding (tested in float64).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from charrnn.engine import network
from charrnn.engine.workspace import Workspace
from charrnn.parallel.workers import GroupWorker, WorkerError

MIN_STREAMS_PER_GROUP = 16
"""Smallest group worth a thread: below it per-step Python overhead outweighs the GEMM."""


def plan_groups(batch_size: int, cores: int, min_streams: int = MIN_STREAMS_PER_GROUP) -> int:
    """How many groups to split ``batch_size`` streams into on ``cores`` cores.

    One group per core, each of at least ``min_streams`` streams; 1 means "do not split".
    """
    return max(1, min(int(cores), int(batch_size) // int(min_streams)))


def group_slices(n_items: int, n_groups: int) -> list[slice]:
    """``n_groups`` contiguous slices covering ``range(n_items)``, sizes differing by at most 1."""
    edges = np.linspace(0, n_items, n_groups + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _group_resets(resets: np.ndarray | None, streams: slice) -> np.ndarray | None:
    """A group's columns of a (T, B) reset mask; None when the group has no reset, so a group
    without a document boundary runs the plain step."""
    if resets is None:
        return None
    part = resets[:, streams]
    return part if part.any() else None


class StreamGroups:
    """``network.loss_and_grads`` over contiguous groups of the batch's streams.

    Parameters
    ----------
    batch_size : int
        B, the number of parallel streams of every chunk passed in.
    n_groups : int
        Groups to split them into (``1 <= n_groups <= batch_size``); sizes differ by at most 1.
    processes : bool
        Run groups other than the first in worker processes (:mod:`charrnn.parallel.workers`) when
        ``parallel=True``, rather than in threads of this process, whose shared interpreter
        lock made two groups run at 0.75 of their speed in two processes (lstm 1x256).
        Threads are used when a worker process cannot be started.

    Attributes
    ----------
    backend : {"processes", "threads"}
        How parallel calls run their groups (known after the first one).

    Notes
    -----
    Each group has its own :class:`~charrnn.engine.workspace.Workspace`, so the gradients returned
    are valid only until the next call, as with a single workspace. With dropout, every group
    draws its masks from a generator seeded, at every step, by the caller's generator: the
    numbers depend on the generator's state and on ``n_groups``, not on the execution order.
    Call :meth:`close` (or use the object as a context manager) to stop the worker threads and
    processes.
    """

    def __init__(self, batch_size: int, n_groups: int = 1, processes: bool = True) -> None:
        if not 1 <= n_groups <= batch_size:
            raise ValueError(f"n_groups must be in [1, batch_size={batch_size}], got {n_groups}")
        self.batch_size = batch_size
        self.n_groups = n_groups
        self.slices = group_slices(batch_size, n_groups)
        self.weights = [(s.stop - s.start) / batch_size for s in self.slices]
        self.workspaces = [Workspace() for _ in self.slices]
        self._sum: dict[str, np.ndarray] = {}  # the combined gradients, reused
        self._pool: ThreadPoolExecutor | None = None
        self.backend = "processes" if processes and n_groups > 1 else "threads"
        self._workers: list[GroupWorker] = []

    def __enter__(self) -> StreamGroups:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker threads and processes (a later parallel call starts them again)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        workers, self._workers = self._workers, []
        for w in workers:
            w.close()

    def loss_and_grads(
        self,
        params: dict,
        config: network.NetworkConfig,
        inputs: np.ndarray,
        targets: np.ndarray,
        state: list,
        rng: np.random.Generator | None = None,
        train: bool = True,
        parallel: bool = False,
        resets: np.ndarray | None = None,
    ):
        """Mean cross-entropy per character, gradients and new state, as
        :func:`charrnn.engine.network.loss_and_grads` computes them for the whole batch.

        Parameters
        ----------
        inputs, targets : ndarray of int, shape (T, B)
        state : list over layers of tuples of (B, H)
        rng : Generator, used for dropout masks
        train : bool
            Apply dropout.
        parallel : bool
            Run the groups in parallel: in worker processes or threads (see ``processes``; the
            caller limits BLAS to one thread meanwhile); otherwise one after another in the
            calling thread.
        resets : ndarray of bool, shape (T, B), or None
            Where streams restart from the zero state (:func:`charrnn.engine.network.forward`);
            each group gets its own streams' columns, or None when they have no reset.

        Returns
        -------
        loss : float
        grads : dict of str to ndarray, shapes of ``params``
        new_state : list over layers of tuples of (B, H)
        """
        if inputs.shape[1] != self.batch_size:
            raise ValueError(
                f"inputs has {inputs.shape[1]} streams, these groups split {self.batch_size}"
            )
        if self.n_groups == 1:
            return network.loss_and_grads(
                params, config, inputs, targets, state, rng, train, self.workspaces[0], resets
            )
        seeds = self._group_seeds(config, rng, train)
        rngs = [rng if seed is None else np.random.default_rng(seed) for seed in seeds]
        group_states = [[tuple(a[s] for a in layer) for layer in state] for s in self.slices]
        group_resets = [_group_resets(resets, s) for s in self.slices]

        def run(k: int):
            s = self.slices[k]
            return network.loss_and_grads(
                params,
                config,
                inputs[:, s],
                targets[:, s],
                group_states[k],
                rngs[k],
                train,
                self.workspaces[k],
                group_resets[k],
            )

        results = None
        if parallel and self.backend == "processes" and self._start_workers(params, config, inputs):
            try:
                for k, w in enumerate(self._workers, start=1):
                    s = self.slices[k]
                    w.submit(
                        params,
                        inputs[:, s],
                        targets[:, s],
                        group_states[k],
                        train,
                        seeds[k],
                        group_resets[k],
                    )
                try:
                    first = run(0)
                finally:  # collect every reply even if this process's group failed
                    others = [w.result() for w in self._workers]
                results = [first] + others
            except WorkerError:
                # a worker died: go on in threads (the step is recomputed, to the same numbers)
                self.close()
                self.backend = "threads"
        if results is None and parallel:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.n_groups - 1, thread_name_prefix="charrnn-group"
                )
            futures = [self._pool.submit(run, k) for k in range(1, self.n_groups)]
            results = [run(0)] + [f.result() for f in futures]
        elif results is None:
            results = [run(k) for k in range(self.n_groups)]
        return self._combine(results)

    def _start_workers(self, params, config, inputs) -> bool:
        """Worker processes for groups 1.. that fit this step (started or restarted as needed);
        False, and threads from now on, when they cannot be started."""
        T = inputs.shape[0]
        sizes = [s.stop - s.start for s in self.slices[1:]]
        if len(self._workers) == len(sizes) and all(
            w.matches(params, config, T, n) for w, n in zip(self._workers, sizes)
        ):
            return True
        self.close()
        try:
            self._workers = [GroupWorker(params, config, T, n) for n in sizes]
        except WorkerError:
            self.close()
            self.backend = "threads"
            return False
        return True

    def _group_seeds(self, config, rng, train) -> list:
        """Per-group seeds of the dropout generators (None when there is no dropout)."""
        if not (train and config.dropout > 0.0 and rng is not None):
            return [None] * self.n_groups
        return [int(s) for s in rng.integers(0, 2**63 - 1, size=self.n_groups, dtype=np.int64)]

    def _combine(self, results: list):
        loss = sum(w * r[0] for w, r in zip(self.weights, results))
        equal = len(set(self.weights)) == 1
        grads = {}
        for name, first in results[0][1].items():
            out = self._sum.get(name)
            if out is None or out.shape != first.shape or out.dtype != first.dtype:
                out = self._sum[name] = np.empty_like(first)
            if equal:  # sum, then scale once: one pass fewer over every gradient
                np.add(first, results[1][1][name], out=out)
                for r in results[2:]:
                    out += r[1][name]
                out *= self.weights[0]
            else:
                np.multiply(first, self.weights[0], out=out)
                for w, r in zip(self.weights[1:], results[1:]):
                    out += w * r[1][name]
            grads[name] = out
        new_state = [
            tuple(np.concatenate(parts, axis=0) for parts in zip(*layers))
            for layers in zip(*(r[2] for r in results))
        ]
        return float(loss), grads, new_state
