"""Speed benchmark: charrnn's training and generation throughput, next to PyTorch's.

Every figure comes from one run on one machine. For each model the charrnn and PyTorch
windows alternate (charrnn, torch, charrnn, torch, ...) so both see the same background load,
and the table reports the median over ``--repeats`` timed windows taken after a warm-up.
Training throughput covers the whole update -- forward, backward, gradient clipping and the
Adam step -- with hidden state carried from chunk to chunk as in real training.

    .venv/bin/python scripts/bench.py                 # everything (about 2 minutes)
    .venv/bin/python scripts/bench.py --quick         # smoke run
    .venv/bin/python scripts/bench.py --threads 1     # on a busy shared machine (see --help)
    .venv/bin/python scripts/bench.py --rows lstm-1x256 --no-torch --json bench.json
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from charrnn.engine.network import NetworkConfig, init_params, init_state
from charrnn.engine.optim import clip_grad_norm, make_optimizer
from charrnn.engine.sampling import generate
from charrnn.io import atomic_write
from charrnn.parallel import ParallelSteps

try:  # PyTorch is optional: without it the torch columns read "n/a".
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

VOCAB = 65
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
CLIP = 5.0
LR = 2e-3
# Pause between windows so the previous framework's spinning worker threads (OpenMP,
# OpenBLAS) have gone idle before the next window starts.
SETTLE = 0.05


@dataclass(frozen=True)
class Model:
    name: str
    cell: str
    layers: int
    hidden: int
    batch: int = 1
    seq: int = 1


TRAIN = [
    Model("rnn-1x256", "rnn", 1, 256, 64, 64),
    Model("lstm-1x256", "lstm", 1, 256, 64, 64),
    Model("gru-1x256", "gru", 1, 256, 64, 64),
    Model("lstm-2x512", "lstm", 2, 512, 32, 100),
]
GENERATE = [Model("lstm-1x256", "lstm", 1, 256), Model("lstm-2x512", "lstm", 2, 512)]
ROW_NAMES = sorted({m.name for m in TRAIN + GENERATE})


def train_flops_per_char(m: Model) -> int:
    """Forward + backward GEMM flops per character.

    Per layer the recurrent product runs three times (forward ``h @ Wh``, ``dh = dz @ Wh.T``,
    ``dWh = h.T @ dz``), and so does an upper layer's input projection; the first layer's
    one-hot projection is a gather (0 flops); the output layer adds three ``H x V`` products.
    """
    gh = GATES[m.cell] * m.hidden
    per_layer = 3 * 2 * m.hidden * gh
    return per_layer * m.layers + per_layer * (m.layers - 1) + 3 * 2 * m.hidden * VOCAB


# --------------------------------------------------------------------------- workloads
# Each workload's run(units) does `units` of work and returns the characters processed.


class CharrnnTrain:
    """The training step as :class:`charrnn.engine.training.Trainer` runs it.

    The step's loss and gradients come from :class:`charrnn.parallel.ParallelSteps`, the
    trainer's own: the batch is split into groups of streams (one per core) and a
    :class:`~charrnn.parallel.blas.BlasTuner` keeps the fastest of one BLAS thread, the full pool
    and parallel groups, re-timing them every 300 steps; its probes are part of the figures.
    Then gradient clipping and the Adam update, as in training. ``modes`` counts the steps run
    in each mode (``off`` with ``CHARRNN_PARALLEL=0``).
    """

    unit_name = "step"

    def __init__(self, m: Model, seed: int, mode: int | str | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.config = NetworkConfig(m.cell, VOCAB, m.hidden, m.layers)
        self.params = init_params(self.config, rng)
        self.opt = make_optimizer("adam", self.params, LR)
        self.steps = ParallelSteps(m.batch).start()
        if mode is not None and self.steps.tuner is not None:
            self.steps.tuner.modes = [mode]  # one fixed mode, for comparing them (--each-mode)
        self.modes: dict[str, int] = {}
        self.state = init_state(self.config, m.batch)
        self.data = rng.integers(0, VOCAB, size=(8, m.seq + 1, m.batch)).astype(np.intp)
        self.k = 0
        self.chars = m.batch * m.seq

    @property
    def settled(self) -> bool:
        return self.steps.settled

    def run(self, units: int) -> int:
        steps = self.steps
        for _ in range(units):
            chunk = self.data[self.k % len(self.data)]
            self.k += 1
            _, grads, self.state = steps.loss_and_grads(
                self.params, self.config, chunk[:-1], chunk[1:], self.state
            )
            mode = "off" if steps.tuner is None else str(steps.tuner.mode)
            clip_grad_norm(grads, CLIP)
            self.opt.step(grads)
            steps.step_done()
            self.modes[mode] = self.modes.get(mode, 0) + 1
        # the GEMM-rate and PyTorch windows in between see the BLAS pool as configured
        steps.release()
        return units * self.chars


class TorchTrain:
    unit_name = "step"

    def __init__(self, m: Model, seed: int) -> None:
        torch.manual_seed(seed)
        rnn_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[m.cell]
        self.rnn = rnn_class(VOCAB, m.hidden, m.layers)
        self.head = torch.nn.Linear(m.hidden, VOCAB)
        self.params = list(self.rnn.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(self.params, lr=LR)
        ids = np.random.default_rng(seed).integers(0, VOCAB, size=(8, m.seq + 1, m.batch))
        self.data = torch.from_numpy(ids)
        self.state = None
        self.k = 0
        self.chars = m.batch * m.seq

    def run(self, units: int) -> int:
        F = torch.nn.functional
        for _ in range(units):
            chunk = self.data[self.k % len(self.data)]
            self.k += 1
            x = F.one_hot(chunk[:-1], VOCAB).float()  # (T, B, V)
            out, state = self.rnn(x, self.state)
            logits = self.head(out)
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), chunk[1:].reshape(-1))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, CLIP)
            self.opt.step()
            # Truncated BPTT: carry the state, cut the graph (LSTM state is an (h, c) tuple).
            if isinstance(state, tuple):
                self.state = tuple(s.detach() for s in state)
            else:
                self.state = state.detach()
        return units * self.chars


GEN_UNIT = 50  # characters per generation unit


class CharrnnGenerate:
    unit_name = f"{GEN_UNIT} chars"

    def __init__(self, m: Model, seed: int) -> None:
        self.config = NetworkConfig(m.cell, VOCAB, m.hidden, m.layers)
        self.params = init_params(self.config, np.random.default_rng(seed))
        self.rng = np.random.default_rng(seed + 1)

    def run(self, units: int) -> int:
        n = units * GEN_UNIT
        out = generate(
            self.params, self.config, length=n, temperature=1.0, rng=self.rng, stop_at_eod=False
        )
        return len(out[0])


class TorchGenerate:
    unit_name = f"{GEN_UNIT} chars"

    def __init__(self, m: Model, seed: int) -> None:
        torch.manual_seed(seed)
        rnn_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[m.cell]
        self.rnn = rnn_class(VOCAB, m.hidden, m.layers).eval()
        self.head = torch.nn.Linear(m.hidden, VOCAB).eval()
        self.gen = torch.Generator().manual_seed(seed + 1)

    def run(self, units: int) -> int:
        n = units * GEN_UNIT
        # One thread, like charrnn's batch-1 generation loop (see charrnn.engine.sampling): at
        # batch 1 a second thread buys little and stalls every step when the machine is busy.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._run(n)
        finally:
            torch.set_num_threads(threads)

    def _run(self, n: int) -> int:
        with torch.no_grad():
            x = torch.zeros(1, 1, VOCAB)
            state, idx = None, 0
            for _ in range(n):
                x.zero_()
                x[0, 0, idx] = 1.0
                out, state = self.rnn(x, state)
                probs = torch.softmax(self.head(out[0, 0]) / 1.0, dim=-1)
                idx = int(torch.multinomial(probs, 1, generator=self.gen))
        return n


class Gemm:
    """float32 ``(B, H) @ (H, G*H)``: the recurrent product of a training step."""

    unit_name = "gemm"

    def __init__(self, m: Model, seed: int) -> None:
        rng = np.random.default_rng(seed)
        gh = GATES[m.cell] * m.hidden
        self.a = rng.standard_normal((m.batch, m.hidden)).astype(np.float32)
        self.b = rng.standard_normal((m.hidden, gh)).astype(np.float32)
        self.out = np.empty((m.batch, gh), dtype=np.float32)
        self.flops = 2 * m.batch * m.hidden * gh

    def run(self, units: int) -> int:
        for _ in range(units):
            np.dot(self.a, self.b, out=self.out)
        return units * self.flops


# --------------------------------------------------------------------------- timing


def calibrate(work, warmup: float, window: float) -> int:
    """Warm ``work`` up for ``warmup`` seconds (at least two units); units per ``window``."""
    # charrnn's training first times its ways of running a step (BlasTuner): not in the rate
    while not getattr(work, "settled", True):
        work.run(1)
    done, start = 0, time.perf_counter()
    while done < 2 or time.perf_counter() - start < warmup:
        work.run(1)
        done += 1
    per_unit = (time.perf_counter() - start) / done
    return max(1, math.ceil(window / per_unit))


def timed(work, units: int) -> float:
    """Throughput of one window: characters (or flops) per second."""
    time.sleep(SETTLE)
    start = time.perf_counter()
    amount = work.run(units)
    return amount / (time.perf_counter() - start)


def interleaved(works: dict, repeats: int, warmup: float, window: float) -> dict:
    """Median and range of each workload's throughput; windows alternate between workloads."""
    units = {name: calibrate(w, warmup, window) for name, w in works.items()}
    rates: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, w in works.items():
            rates[name].append(timed(w, units[name]))
    return {
        name: {
            "median": statistics.median(r),
            "min": min(r),
            "max": max(r),
            "windows": r,
            "units_per_window": units[name],
        }
        for name, r in rates.items()
    }


# --------------------------------------------------------------------------- reporting


def machine_info() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    blas = [
        {k: lib.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": affinity,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "torch": torch.__version__ if torch is not None else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
    }


def _fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def _fmt_spread(r: dict | None) -> str:
    return "" if r is None else f"±{50 * (r['max'] - r['min']) / r['median']:.0f}%"


def _mode_name(mode: str) -> str:
    if mode == "parallel":
        return "parallel stream groups"
    if mode == "off":
        return "CHARRNN_PARALLEL=0"
    return f"{mode} BLAS thread" + ("" if mode == "1" else "s")


def print_report(info: dict, results: list[dict]) -> None:
    click.echo(f"\nCPU: {info['cpu']} ({info['cpu_count']} cpus, {info['usable_cpus']} usable)")
    blas = ", ".join(
        f"{b['internal_api']} {b['version']} ({b['architecture']}, threads={b['num_threads']})"
        for b in info["blas"]
    )
    click.echo(f"Python {info['python']}, NumPy {info['numpy']}, BLAS: {blas or 'unknown'}")
    if info["torch"]:
        click.echo(f"PyTorch {info['torch']} (threads={info['torch_threads']})")
    else:
        click.echo("PyTorch: not installed")
    la, lb = info["load_before"], info["load_after"]
    click.echo(
        f"Load average (1/5/15 min) before: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}, "
        f"after: {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}"
    )
    click.echo(
        f"Median of {info['repeats']} windows of ~{info['window']} s, float32, vocab {VOCAB}"
    )
    header = (
        f"{'task':9} {'model':18} {'charrnn ch/s':>13} {'':>5} {'torch ch/s':>11} {'':>5} "
        f"{'ratio':>6} {'GEMM GF/s':>10} {'charrnn %':>9} {'torch %':>8}"
    )
    click.echo("\n" + header)
    click.echo("-" * len(header))
    for r in results:
        c, t = r["charrnn"], r["torch"]
        ratio = "n/a" if t is None else f"{c['median'] / t['median']:.2f}"
        shape = f"{r['model']} b{r['batch']}" + (f"x{r['seq']}" if r["task"] == "train" else "")
        gemm = "" if r.get("gemm") is None else f"{r['gemm']['median'] / 1e9:.1f}"
        cp = (
            ""
            if r.get("charrnn_peak_fraction") is None
            else f"{100 * r['charrnn_peak_fraction']:.0f}%"
        )
        tp = r.get("torch_peak_fraction")
        tp = "" if tp is None else f"{100 * tp:.0f}%"
        click.echo(
            f"{r['task']:9} {shape:18} {_fmt_rate(c['median']):>13} {_fmt_spread(c):>5} "
            f"{_fmt_rate(t and t['median']):>11} {_fmt_spread(t):>5} {ratio:>6} {gemm:>10} "
            f"{cp:>9} {tp:>8}"
        )
    modes = [
        f"{r['model']}: "
        + ", ".join(f"{_mode_name(k)} {v}" for k, v in m.items())
        + (f" (groups in {r['charrnn_group_backend']})" if r.get("charrnn_group_backend") else "")
        for r in results
        if (m := r.get("charrnn_modes"))
    ]
    if modes:
        click.echo("\ncharrnn training steps per mode (BlasTuner): " + "; ".join(modes))
    for r in results:
        if r.get("charrnn_each_mode"):
            fixed = ", ".join(
                f"{_mode_name(k)} {_fmt_rate(v['median'])}"
                for k, v in r["charrnn_each_mode"].items()
            )
            click.echo(f"{r['model']} chars/s in each fixed mode: {fixed}")
    click.echo(
        "\nratio = charrnn / PyTorch; ± = half the min-max range of the windows; "
        "% = model GEMM flops/char x chars/s\nover the measured float32 GEMM rate at the "
        "recurrent shape (B, H) @ (H, G*H).\nGeneration runs with one BLAS/PyTorch thread in "
        "both libraries (charrnn.engine.sampling limits it at batch 1)."
    )


# --------------------------------------------------------------------------- command


@click.command()
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Timed windows per workload; the median is reported.",
)
@click.option(
    "--window",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Approximate length of one timed window, seconds.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0.0),
    default=0.5,
    show_default=True,
    help="Warm-up before timing each workload, seconds.",
)
@click.option("--quick", is_flag=True, help="Smoke run: 2 windows of 0.1 s, short warm-up.")
@click.option(
    "--rows",
    type=click.Choice(ROW_NAMES),
    multiple=True,
    help="Only these models (repeatable); default all.",
)
@click.option(
    "--train/--no-train", default=True, show_default=True, help="Measure training throughput."
)
@click.option(
    "--generate/--no-generate",
    "do_generate",
    default=True,
    show_default=True,
    help="Measure generation throughput.",
)
@click.option(
    "--torch/--no-torch",
    "use_torch",
    default=True,
    show_default=True,
    help="Also run PyTorch when it is installed.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="BLAS and PyTorch threads for training (default: the libraries' own). On a busy "
    "machine multi-threaded small GEMMs stall on descheduled workers; 1 gives stable figures.",
)
@click.option(
    "--each-mode",
    is_flag=True,
    help="Also time charrnn's training step in each fixed mode (1 BLAS thread, the full pool, "
    "parallel stream groups), interleaved with the rest.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the figures to this JSON file.",
)
def main(
    repeats,
    window,
    warmup,
    quick,
    rows,
    train,
    do_generate,
    use_torch,
    threads,
    each_mode,
    seed,
    json_path,
):
    """Measure charrnn's training and generation speed (characters per second)."""
    if threads is not None:
        threadpool_limits(limits=threads, user_api="blas")  # for the rest of the process
        if torch is not None:
            torch.set_num_threads(threads)
    if quick:
        repeats, window, warmup = 2, 0.1, 0.05
    if json_path is not None and not json_path.parent.is_dir():
        raise click.BadParameter(f"folder {json_path.parent} does not exist", param_hint="--json")
    with_torch = use_torch and torch is not None
    info = machine_info()
    info.update(repeats=repeats, window=window, load_before=os.getloadavg())
    selected = set(rows) or set(ROW_NAMES)
    plan = [("train", m) for m in TRAIN if train and m.name in selected]
    plan += [("generate", m) for m in GENERATE if do_generate and m.name in selected]
    if not plan:
        raise click.UsageError("nothing to measure: check --rows, --train and --generate")

    results = []
    for task, m in plan:
        click.echo(f"{task} {m.name} ...", err=True)
        if task == "train":
            works = {"gemm": Gemm(m, seed), "charrnn": CharrnnTrain(m, seed)}
            if with_torch:
                works["torch"] = TorchTrain(m, seed)
            if each_mode:
                tuner = works["charrnn"].steps.tuner
                for mode in [] if tuner is None else tuner.modes:
                    works[f"mode {mode}"] = CharrnnTrain(m, seed, mode)
        else:
            works = {"charrnn": CharrnnGenerate(m, seed)}
            if with_torch:
                works["torch"] = TorchGenerate(m, seed)
        measured = interleaved(works, repeats, warmup, window)
        row = {
            "task": task,
            "model": m.name,
            "cell": m.cell,
            "layers": m.layers,
            "hidden": m.hidden,
            "batch": m.batch,
            "seq": m.seq,
            "charrnn": measured["charrnn"],
            "torch": measured.get("torch"),
        }
        if task == "train":
            flops = train_flops_per_char(m)
            gemm = measured["gemm"]["median"]
            row.update(gemm=measured["gemm"], flops_per_char=flops)
            row["charrnn_modes"] = works["charrnn"].modes  # steps per BlasTuner mode
            # how parallel groups ran: "processes" (charrnn.parallel.workers) or "threads"
            groups = works["charrnn"].steps.groups
            row["charrnn_group_backend"] = groups.backend if groups.n_groups > 1 else None
            row["charrnn_each_mode"] = {
                name[len("mode ") :]: measured[name] for name in works if name.startswith("mode ")
            }
            for work in works.values():
                if isinstance(work, CharrnnTrain):
                    work.steps.close()
            row["charrnn_peak_fraction"] = flops * measured["charrnn"]["median"] / gemm
            if row["torch"] is not None:
                row["torch_peak_fraction"] = flops * row["torch"]["median"] / gemm
        results.append(row)
    info["load_after"] = os.getloadavg()
    print_report(info, results)
    if json_path is not None:
        with atomic_write(json_path, "w") as f:
            json.dump({"machine": info, "results": results}, f, indent=2)
        click.echo(f"wrote {json_path}")


if __name__ == "__main__":
    sys.exit(main())
