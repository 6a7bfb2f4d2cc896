"""Two cores on one LSTM layer: split the batch's streams, or split the hidden units?

charrnn's training step splits the batch's streams into one group per core
(:mod:`charrnn.parallel.groups`): on two cores each process runs the whole layer for half of the
streams, and they meet once per step. At the lstm 2x512 benchmark row (batch 32) that leaves 16
rows per recurrent GEMM ``h @ Wh`` (512 x 2048), where OpenBLAS's fixed cost per call (packing
the 4 MB weight) is about 40% of the call. Splitting the hidden units instead -- each process
runs all 32 streams for half of the units, i.e. half of the columns of every gate -- doubles
the rows and halves the weight of every call, at the price of meeting after *every time step*:
the forward pass needs the whole ``h_t`` before step ``t + 1``, and the backward pass sums the
two halves' ``dz_t @ Wh.T``.

This script measures both ways on one layer's forward pass, backpropagation through time and
``dWh`` (the part of a training step that the split changes), with the same element-wise code
(LSTMCell's own step functions), the inputs and weights sliced once before the timed passes,
in two forked processes of one BLAS thread each (Linux). It also times the unit split with its
per-step barrier removed -- the numbers are then wrong, but the time bounds what a perfect
barrier could give -- and charrnn's own :class:`~charrnn.engine.cells.LSTMCell` on half of the
streams for reference. Before timing it checks, in float64, that both splits reproduce
``LSTMCell``'s outputs and gradients.

    python scripts/split_probe.py                  # H 512, B 32, T 100 (the benchmark row)
    python scripts/split_probe.py --hidden-size 256 --batch-size 64 --seq-length 64
"""

from __future__ import annotations

import mmap
import os
import sys
import time
import traceback

import click
import numpy as np
from threadpoolctl import threadpool_limits

# the cell's own step arithmetic, so that the element-wise work is the cell's
from charrnn.engine.cells import LSTMCell, gate_major

MODES = ("streams", "units", "units without barrier", "LSTMCell on half the streams")


def shared_array(shape: tuple[int, ...], dtype) -> np.ndarray:
    """A zeroed array in anonymous shared memory: after ``os.fork`` both processes see it."""
    n_bytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
    buf = mmap.mmap(-1, n_bytes)
    return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class SpinBarrier:
    """A two-process barrier on shared counters, spinning (each process has a core to itself).

    Each side counts its arrivals in a cache line of its own and waits until the other side's
    count has caught up; no lock and no system call, so a wait costs well under a microsecond
    when the other side is already there.
    """

    def __init__(self) -> None:
        self.count = shared_array((2, 16), np.int64)  # 128-byte rows: one cache line each
        self.enabled = True

    def wait(self, me: int) -> None:
        count = self.count
        count[me, 0] += 1
        if not self.enabled:
            return
        target = count[me, 0]
        while count[1 - me, 0] < target:
            pass


def gate_columns(units: slice, H: int) -> np.ndarray:
    """Columns of a fused [i, f, o, g] weight that belong to ``units``, gate by gate."""
    idx = np.arange(H)[units]
    return np.concatenate([q * H + idx for q in range(4)])


class LayerPart:
    """One process's share of an LSTM layer: its streams (rows) and hidden units.

    The slices of the inputs and weights are taken once, outside the timed passes: in
    training each process would own its columns of the weights and compute its own columns
    of the input projections.

    Parameters
    ----------
    rows, units : slice
        The streams and hidden units this process computes.
    xw : ndarray, shape (T, B, 4H)
        Input projections of the whole batch.
    Wh : ndarray, shape (H, 4H)
    dhs : ndarray, shape (T, B, H)
        Gradient arriving at every output.
    """

    def __init__(self, rows: slice, units: slice, xw, Wh, dhs) -> None:
        H = Wh.shape[0]
        self.rows, self.units = rows, units
        self.cols = gate_columns(units, H)
        self.Wh = np.ascontiguousarray(Wh[:, self.cols])
        self.WhT = np.ascontiguousarray(self.Wh.T)
        self.xw = np.ascontiguousarray(xw[:, rows][:, :, self.cols])
        self.dhs = np.ascontiguousarray(dhs[:, rows][:, :, units])

    def run(self, me, h, partial, barrier, results=None) -> None:
        """Forward pass, BPTT and ``dWh`` of this share.

        Parameters
        ----------
        me : int
            0 or 1.
        h : ndarray, shape (T + 1, len(rows), H)
            States of this process's rows (shared between the processes for the unit split).
        partial : ndarray, shape (2, 2, B, H) or None
            Shared buffers for the two halves of ``dz_t @ Wh.T`` (unit split only),
            alternating by time step so that one barrier per step suffices.
        barrier : SpinBarrier or None
            Meet after every time step (unit split only).
        results : dict of shared arrays, optional
            ``hs`` (T, B, H), ``dxw`` (T, B, 4H), ``dWh0``/``dWh1`` (H, 4H): this process
            writes its part.
        """
        units, cols, Wh_k, WhT_k, xw_k, dhs_k = (
            self.units,
            self.cols,
            self.Wh,
            self.WhT,
            self.xw,
            self.dhs,
        )
        T, B, H = xw_k.shape[0], xw_k.shape[1], Wh_k.shape[0]
        U = Wh_k.shape[1] // 4
        dt = xw_k.dtype
        # The element-wise work is LSTMCell's own (its activate, update and backward_step on
        # this share's U units), so that the GEMMs and the barrier weigh here what they weigh
        # in training.
        scale = LSTMCell.preactivation_scale(U, dt)
        z = np.empty((B, 4 * U), dt)
        pre = gate_major(z, 4)
        gates = np.empty((T, 4, B, U), dt)
        c = np.zeros((T + 1, B, U), dt)
        tanh_c = np.empty((T, B, U), dt)
        ig = np.empty((B, U), dt)
        for t in range(T):
            np.matmul(h[t], Wh_k, out=z)
            z += xw_k[t]
            z *= scale
            LSTMCell.activate(pre, gates[t])
            LSTMCell.update(*gates[t], c[t], c[t + 1], tanh_c[t], h[t + 1][:, units], ig)
            if barrier is not None:
                barrier.wait(me)
        dz_all = np.empty((T, B, 4 * U), dt)
        dh = np.zeros((B, U), dt)
        dc = np.zeros((B, U), dt)
        tmp = np.empty((B, U), dt)
        m = np.empty((4, B, U), dt)
        for t in range(T - 1, -1, -1):
            dh += dhs_k[t]
            LSTMCell.backward_step(gates[t], c[t], tanh_c[t], dh, dc, dz_all[t], m, tmp)
            if barrier is None:
                np.matmul(dz_all[t], WhT_k, out=dh)
            else:
                buf = partial[t & 1]
                np.matmul(dz_all[t], WhT_k, out=buf[me])
                barrier.wait(me)
                np.add(buf[0][:, units], buf[1][:, units], out=dh)
        dWh_k = h[:T].reshape(-1, H).T @ dz_all.reshape(-1, 4 * U)
        if results is not None:
            results["hs"][:, self.rows, units] = h[1:, :, units]
            results["dxw"][:, self.rows, cols] = dz_all
            if barrier is None:  # each process has the whole dWh of its rows: add them
                results[f"dWh{me}"][:] = dWh_k
            else:
                results["dWh0"][:, cols] = dWh_k


def _split(mode: str, me: int, B: int, H: int) -> tuple[slice, slice]:
    if mode == "streams":
        return slice(me * B // 2, (me + 1) * B // 2), slice(0, H)
    return slice(0, B), slice(me * H // 2, (me + 1) * H // 2)


def run_pair(mode, xw, Wh, dhs, repeats, results=None) -> np.ndarray:
    """Run ``mode`` in this process and a forked one ``repeats`` times; seconds of the slower
    of the two processes per repeat."""
    T, B, _ = xw.shape
    H = Wh.shape[0]
    by_units = mode.startswith("units")
    h_shared = shared_array((T + 1, B, H), xw.dtype) if by_units else None
    partial = shared_array((2, 2, B, H), xw.dtype) if by_units else None
    barrier = SpinBarrier() if by_units else None
    if barrier is not None:
        barrier.enabled = mode == "units"
    start = SpinBarrier()  # both processes start each repeat together
    times = shared_array((2, repeats), np.float64)
    pid = os.fork()
    me = 0 if pid else 1
    try:
        rows, units = _split("streams" if mode.startswith("LSTMCell") else mode, me, B, H)
        n = rows.stop - rows.start
        if mode.startswith("LSTMCell"):
            xw_rows, dhs_rows = (
                np.ascontiguousarray(xw[:, rows]),
                np.ascontiguousarray(dhs[:, rows]),
            )
        else:
            part = LayerPart(rows, units, xw, Wh, dhs)
        for r in range(repeats):
            h = h_shared if by_units else np.zeros((T + 1, n, H), xw.dtype)
            start.wait(me)
            t0 = time.perf_counter()
            if mode.startswith("LSTMCell"):
                state = (np.zeros((n, H), xw.dtype), np.zeros((n, H), xw.dtype))
                _, _, cache = LSTMCell.forward(xw_rows, state, {"Wh": Wh})
                LSTMCell.backward(dhs_rows, None, cache)
            else:
                part.run(me, h, partial, barrier, results)
            times[me, r] = time.perf_counter() - t0
    except BaseException:
        if pid == 0:  # the forked process reports and leaves; the caller sees its status
            traceback.print_exc()
            os._exit(1)
        raise
    if pid == 0:
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"the forked process of mode {mode!r} failed (status {status})")
    return times.max(axis=0)


def check(H=8, B=4, T=6) -> float:
    """Largest difference between each split and ``LSTMCell`` (float64, central results)."""
    rng = np.random.default_rng(0)
    xw = rng.standard_normal((T, B, 4 * H))
    Wh = 0.5 * rng.standard_normal((H, 4 * H))
    dhs = rng.standard_normal((T, B, H))
    zeros = (np.zeros((B, H)), np.zeros((B, H)))
    hs, _, cache = LSTMCell.forward(xw, zeros, {"Wh": Wh})
    hs = hs.copy()
    dxw, grads, _ = LSTMCell.backward(dhs, None, cache)
    worst = 0.0
    for mode in ("streams", "units"):
        results = {
            "hs": shared_array((T, B, H), np.float64),
            "dxw": shared_array((T, B, 4 * H), np.float64),
            "dWh0": shared_array((H, 4 * H), np.float64),
            "dWh1": shared_array((H, 4 * H), np.float64),
        }
        run_pair(mode, xw, Wh, dhs, 1, results)
        dWh = results["dWh0"] + results["dWh1"]
        for got, want in ((results["hs"], hs), (results["dxw"], dxw), (dWh, grads["Wh"])):
            worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


@click.command()
@click.option("--hidden-size", type=click.IntRange(2), default=512, show_default=True)
@click.option("--batch-size", type=click.IntRange(2), default=32, show_default=True)
@click.option("--seq-length", type=click.IntRange(1), default=100, show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="The modes take turns this many times (a shared machine drifts).",
)
def main(hidden_size, batch_size, seq_length, repeats, rounds):
    if hidden_size % 2 or batch_size % 2:
        raise click.BadParameter("--hidden-size and --batch-size must be even")
    if not hasattr(os, "fork"):
        sys.exit("split_probe.py needs os.fork (Linux or macOS)")
    with threadpool_limits(1):
        error = check()
        click.echo(f"check against LSTMCell (float64): largest difference {error:.1e}")
        if error > 1e-10:
            sys.exit("the splits do not reproduce LSTMCell; not timing them")
        rng = np.random.default_rng(1)
        T, B, H = seq_length, batch_size, hidden_size
        xw = rng.standard_normal((T, B, 4 * H), dtype=np.float32)
        Wh = (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(np.float32)
        dhs = rng.standard_normal((T, B, H), dtype=np.float32)
        seconds = {m: [] for m in MODES}
        for _ in range(rounds):
            for mode in MODES:
                seconds[mode].extend(run_pair(mode, xw, Wh, dhs, repeats + 1)[1:].tolist())
    click.echo(
        f"one LSTM layer, H {H}, batch {B}, {T} steps, float32, 2 processes x 1 BLAS thread; "
        f"median of {rounds} x {repeats} (slower process of each pair)"
    )
    base = float(np.median(seconds["streams"]))
    for mode in MODES:
        ms = 1e3 * float(np.median(seconds[mode]))
        click.echo(f"  {mode:<30} {ms:8.1f} ms   {1e3 * base / ms:5.2f}x streams")


if __name__ == "__main__":
    main()
