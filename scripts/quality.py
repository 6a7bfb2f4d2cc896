"""Time to quality: held-out loss after a fixed training budget, charrnn vs PyTorch.

    python scripts/quality.py --corpus shakespeare --minutes 15 [--torch] [training options]

Both models see the same training split (the first 90% of the corpus), the same batches
(char-rnn's parallel streams), the same optimiser (Adam, global-norm clipping, the same
learning-rate schedule over the same wall-clock budget) and are scored the same way on the
held-out last 10%: mean negative log-likelihood per character over parallel streams with
carried state (:func:`charrnn.engine.tasks.stream_loss`). They run one after the other on the
same
machine; run them on a quiet machine, since a shared CPU changes how much text each one sees.
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import click
import numpy as np

from charrnn import CharRNNGenerator
from charrnn.data.batches import BPTTBatches, split_train_validation
from charrnn.data.corpora import read_text, resolve_corpus
from charrnn.data.vocab import CharVocab
from charrnn.engine.optim import LRSchedule
from charrnn.engine.tasks import stream_loss

LN2 = math.log(2.0)


def train_torch(train_ids, val_ids, vocab_size, opts, budget_s, seed):
    """Train the matching PyTorch model for ``budget_s`` seconds; return its report."""
    import torch

    torch.manual_seed(seed)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[opts["cell"]]
    H, L, E = opts["hidden_size"], opts["num_layers"], opts["embedding_dim"]
    embed = torch.nn.Embedding(vocab_size, E) if E else None
    rnn = cls(E or vocab_size, H, L, dropout=opts["dropout"] if L > 1 else 0.0)
    drop = torch.nn.Dropout(opts["dropout"])
    head = torch.nn.Linear(H, vocab_size)
    modules = torch.nn.ModuleList([m for m in (embed, rnn, head) if m is not None])
    optim = torch.optim.Adam(modules.parameters(), lr=opts["learning_rate"])
    schedule = LRSchedule(opts["lr_schedule"])

    def encode(x):
        x = torch.as_tensor(x)
        if embed is not None:
            return embed(x)
        return torch.nn.functional.one_hot(x, vocab_size).float()

    def val_loss():
        rnn.eval()
        with torch.no_grad():
            n = len(val_ids) - 1
            B = max(1, min(128, n // 256))
            Ls = n // B
            inp = torch.as_tensor(np.asarray(val_ids[: B * Ls]).reshape(B, Ls).T.astype(np.int64))
            tgt = torch.as_tensor(
                np.asarray(val_ids[1 : B * Ls + 1]).reshape(B, Ls).T.astype(np.int64)
            )
            state, total = None, 0.0
            for s in range(0, Ls, 256):
                out, state = rnn(encode(inp[s : s + 256]), state)
                logits = head(out)
                total += torch.nn.functional.cross_entropy(
                    logits.reshape(-1, vocab_size), tgt[s : s + 256].reshape(-1), reduction="sum"
                ).item()
        rnn.train()
        return total / (B * Ls)

    batches = BPTTBatches(train_ids, opts["batch_size"], opts["seq_length"])
    best, chars, step, epoch = math.inf, 0, 0, 0
    best_state = None
    t0 = time.perf_counter()
    done = False
    while not done:
        state = None
        for inputs, targets in batches:
            elapsed = time.perf_counter() - t0
            if elapsed >= budget_s:
                done = True
                break
            for group in optim.param_groups:
                group["lr"] = opts["learning_rate"] * schedule.factor(elapsed / budget_s)
            if state is not None:
                state = (
                    tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
                )
            out, state = rnn(encode(inputs.astype(np.int64)), state)
            logits = head(drop(out))
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, vocab_size),
                torch.as_tensor(targets.astype(np.int64)).reshape(-1),
            )
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(modules.parameters(), opts["clip_norm"])
            optim.step()
            chars += inputs.size
            step += 1
        epoch += 1
        v = val_loss()
        if v < best:
            best = v
            best_state = {k: t.clone() for k, t in modules.state_dict().items()}
    if best_state is not None:
        modules.load_state_dict(best_state)
    return {
        "val_nats": best,
        "val_bits": best / LN2,
        "chars_seen": chars,
        "steps": step,
        "seconds": time.perf_counter() - t0,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


@click.command()
@click.option("--corpus", default="shakespeare", show_default=True, help="Name or text file.")
@click.option("--minutes", type=float, default=15.0, show_default=True, help="Training budget.")
@click.option("--torch/--no-torch", "with_torch", default=False, show_default=True)
@click.option("--torch-only", is_flag=True, help="Only the PyTorch model.")
@click.option("--cell", type=click.Choice(["rnn", "lstm", "gru"]), default=None)
@click.option("--hidden-size", type=int, default=None)
@click.option("--num-layers", type=int, default=None)
@click.option("--embedding-dim", type=int, default=None)
@click.option("--dropout", type=float, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--seq-length", type=int, default=None)
@click.option("--learning-rate", type=float, default=None)
@click.option("--lr-schedule", default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Limit BLAS (charrnn) and intra-op (PyTorch) threads, e.g. 1 to run both side by side.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def main(corpus, minutes, with_torch, torch_only, json_path, seed, threads, **overrides):
    """Train for a fixed budget and report held-out nats/char (charrnn, optionally PyTorch)."""
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
        if with_torch or torch_only:
            import torch

            torch.set_num_threads(threads)
    defaults = CharRNNGenerator().get_params()
    opts = {k: (v if v is not None else defaults[k]) for k, v in overrides.items()}
    opts["clip_norm"] = defaults["clip_norm"]
    text = read_text(resolve_corpus(corpus))
    budget = minutes * 60.0
    vocab = CharVocab.fit([text])
    ids = vocab.encode_documents([text])
    train_ids, val_ids = split_train_validation(ids, 0.1)
    report = {
        "corpus": corpus,
        "chars": len(text),
        "minutes": minutes,
        "options": opts,
        "machine": {"cpu": _cpu_name(), "python": platform.python_version()},
        "threads": threads,
    }
    click.echo(f"corpus {corpus}: {len(text):,} chars, budget {minutes:g} min, options {opts}")
    if not torch_only:
        gen = CharRNNGenerator(
            **opts,
            max_iter=10_000,
            max_time=budget,
            validation_fraction=0.1,
            early_stopping=True,
            n_iter_no_change=10_000,
            random_state=seed,
            verbose=1,
        )
        t0 = time.perf_counter()
        gen.fit(text)
        seconds = time.perf_counter() - t0
        # the estimator scores this same split with stream_loss and keeps the best weights
        held_out = (
            -gen.best_validation_score_
            if gen.best_validation_score_ is not None
            else stream_loss(gen.params_, gen.config_, val_ids)
        )
        sample = gen.sample(1, 300, prime="\n", temperature=0.8, random_state=seed)[0]
        report["charrnn"] = {
            "val_nats": held_out,
            "val_bits": held_out / LN2,
            "chars_seen": gen.n_chars_seen_,
            "seconds": seconds,
            "history": gen.history_,
            "sample": sample,
        }
        click.echo(
            f"charrnn: held-out {held_out:.4f} nats/char ({held_out / LN2:.4f} bits/char), "
            f"{gen.n_chars_seen_:,} chars seen in {seconds:.0f} s"
        )
        click.echo("sample (temperature 0.8):\n" + sample)
    if with_torch or torch_only:
        res = train_torch(train_ids, val_ids, vocab.size, opts, budget, seed)
        report["torch"] = res
        click.echo(
            f"pytorch {res['torch']} ({res['threads']} threads): held-out {res['val_nats']:.4f} "
            f"nats/char ({res['val_bits']:.4f} bits/char), {res['chars_seen']:,} chars seen"
        )
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=float))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
