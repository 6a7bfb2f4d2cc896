"""The recall task of scripts/recall_bench.py trained with PyTorch: is the LSTM's failure charrnn's?

``torch.nn.LSTM`` / ``GRU`` / ``RNN`` (one layer of 64 units) on the same documents
(:func:`charrnn.diagnostics.recall_documents`, same seeds), with what charrnn's recall runs use:
Adam at 1e-2, charrnn's warm-up + cosine schedule (:class:`charrnn.engine.optim.LRSchedule`),
global-norm clipping at 5, the same number of updates. Each document is read from the zero state
(an end-of-document input, then the document), which is how charrnn's training now reads
documents (the state resets at every document start); a batch holds 128 documents, about the
32 streams x 4 documents of charrnn's ``seq_length = 4 * (lag + 2)`` chunks. The difference left
is that charrnn's chunks sometimes cut a document, so this side sees at least as many recalls.

``--init torch`` keeps PyTorch's own initialisation (uniform +-1/sqrt(64), biases too);
``--init charrnn`` ports charrnn's (Glorot input and output weights, an orthogonal block per gate,
zero biases) with ``--gate-init forget1`` (LSTM forget bias 1) or ``chrono``
(Tallec & Ollivier 2018, T = ``seq_length``), the biases from
:func:`charrnn.engine.network.gate_bias` itself.

Reported per run: accuracy of the argmax after the cue on 500 held-out documents (chance 0.25),
and for the LSTM the cell state at the cue: median ``|c|`` and the share of units with
``|tanh(c)| > 0.95`` (a saturated read-out, see scripts/recall_probe.py).

    .venv/bin/python scripts/recall_torch.py --cells lstm --lags 50,100 --seeds 0,1,2 \\
        --init charrnn --gate-init forget1 --json docs/recall_torch.json
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import click
import numpy as np

from charrnn.diagnostics import recall_documents
from charrnn.engine.cells import CELLS
from charrnn.engine.network import gate_bias
from charrnn.engine.optim import LRSchedule

TEST_SEED = 10_000
HIDDEN = 64
DOCS_PER_BATCH = 128
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _encode(docs: list[str]) -> tuple[np.ndarray, int]:
    """(n, lag + 4) ids: end-of-document (0), then each document; and the vocabulary size."""
    alphabet = sorted(set("".join(docs)))
    index = {ch: i + 1 for i, ch in enumerate(alphabet)}
    rows = [[0] + [index[ch] for ch in d] + [0] for d in docs]
    return np.array(rows, dtype=np.int64), len(alphabet) + 1


def _init_charrnn(torch, net, head, cell: str, gate_init: str, t_max: int, vocab: int) -> None:
    """charrnn's initialisation on a torch module (torch's gate order: i, f, g, o / r, z, n)."""
    H, G = HIDDEN, GATES[cell]
    with torch.no_grad():
        a = math.sqrt(6.0 / (vocab + G * H))
        net.weight_ih_l0.uniform_(-a, a)
        for g in range(G):
            torch.nn.init.orthogonal_(net.weight_hh_l0[g * H : (g + 1) * H])
        net.bias_ih_l0.zero_()
        net.bias_hh_l0.zero_()
        # charrnn's own biases (engine.network.gate_bias), moved from its fused gate order to
        # torch's: its keep gate is torch's f (LSTM) / z (GRU), its write gate torch's i
        bias = gate_bias(cell, H, gate_init, np.random.default_rng(), np.float32, t_max)
        cls = CELLS[cell]
        torch_block = {"lstm": {"keep": 1, "write": 0}, "gru": {"keep": 1}}.get(cell, {})
        for role, gate in (("keep", cls.keep_gate), ("write", cls.write_gate)):
            if gate is not None and role in torch_block:
                t = torch_block[role]
                net.bias_ih_l0[t * H : (t + 1) * H] = torch.from_numpy(
                    bias[gate * H : (gate + 1) * H]
                )
        a = math.sqrt(6.0 / (H + vocab))
        head.weight.uniform_(-a, a)
        head.bias.zero_()


def run_one(cell, lag, seed, *, documents, passes, init, gate_init) -> dict:
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, lag])
    train, vocab = _encode(recall_documents(documents, lag, rng))
    test, _ = _encode(recall_documents(500, lag, np.random.default_rng([TEST_SEED, lag])))
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    net, head = module(vocab, HIDDEN, batch_first=True), torch.nn.Linear(HIDDEN, vocab)
    if init == "charrnn":
        _init_charrnn(torch, net, head, cell, gate_init, 4 * (lag + 2), vocab)
    params = [*net.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    schedule = LRSchedule("warmup_cosine")
    per_pass = documents // DOCS_PER_BATCH
    total, step = passes * per_pass, 0
    x_all = torch.tensor(train)
    t0 = time.perf_counter()
    for _ in range(passes):
        order = torch.tensor(rng.permutation(documents))
        for b in range(per_pass):
            for group in opt.param_groups:
                group["lr"] = 1e-2 * schedule.factor(step / total)
            batch = x_all[order[b * DOCS_PER_BATCH : (b + 1) * DOCS_PER_BATCH]]
            inputs = torch.nn.functional.one_hot(batch[:, :-1], vocab).float()
            logits = head(net(inputs)[0])
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, vocab), batch[:, 1:].reshape(-1)
            )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            step += 1
    seconds = time.perf_counter() - t0
    result = {"cell": cell, "lag": lag, "seed": seed, "updates": step, "seconds": seconds}
    with torch.no_grad():
        x = torch.tensor(test)
        upto_cue = torch.nn.functional.one_hot(x[:, : lag + 3], vocab).float()  # EOD key dots ?
        out, state = net(upto_cue)
        result["accuracy"] = float((head(out[:, -1]).argmax(-1) == x[:, lag + 3]).float().mean())
        if cell == "lstm":
            c = state[1][0].double()
            result["c_abs_median"] = float(c.abs().median())
            result["c_saturated"] = float((c.tanh().abs() > 0.95).double().mean())
    return result


@click.command()
@click.option("--cells", default="lstm", show_default=True)
@click.option("--lags", default="50,100", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--documents", type=int, default=2000, show_default=True)
@click.option("--passes", type=int, default=48, show_default=True)
@click.option(
    "--init", type=click.Choice(["torch", "charrnn"]), default="charrnn", show_default=True
)
@click.option(
    "--gate-init",
    type=click.Choice(["zeros", "forget1", "chrono"]),
    default="forget1",
    show_default=True,
)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def main(cells, lags, seeds, documents, passes, init, gate_init, threads, json_path):
    """Recall accuracy of PyTorch's cells on charrnn's recall task."""
    import torch

    torch.set_num_threads(threads)
    report = {
        "settings": {
            "documents": documents,
            "passes": passes,
            "init": init,
            "gate_init": gate_init,
        },
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "runs": [],
    }
    for cell in cells.split(","):
        for lag in (int(v) for v in lags.split(",")):
            for seed in (int(v) for v in seeds.split(",")):
                res = run_one(
                    cell,
                    lag,
                    seed,
                    documents=documents,
                    passes=passes,
                    init=init,
                    gate_init=gate_init,
                )
                report["runs"].append(res)
                click.echo(json.dumps(res))
                if json_path:
                    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
