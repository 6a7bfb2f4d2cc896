"""Time to quality: held-out loss after a fixed training budget, charrnn vs PyTorch.

    python scripts/quality.py --corpus shakespeare --minutes 15 [--torch] [training options]

Both models see the same training split (the first 90% of the corpus), the same batches
(char-rnn's parallel streams), the same optimiser (Adam, global-norm clipping, the same
learning-rate schedule over the same wall-clock budget) and are scored the same way on the
held-out last 10%: mean negative log-likelihood per character over parallel streams with
carried state (:func:`charrnn.engine.tasks.stream_loss`). They run one after the other on the
same
machine; run them on a quiet machine, since a shared CPU changes how much text each one sees.

    python scripts/quality.py --sizes 0.3M,1M,all --budget 780 [--variant NAME:key=value,...]

measures the loss on text never trained on, per training size: each size trains on the first
plays of the `shakespeare` corpus (whole plays, about that many characters; `all` = every play
but the test ones) and is scored on the corpus's last three plays, which no size trains on.
charrnn runs with `charrnn train`'s defaults (the budget as `--max-time`, overrides per
`--variant`), trained on the training plays as one text, as `charrnn train FILE` would; PyTorch
runs the standard configurations of `TORCH_CONFIGS` on ALL the training text for the same
budget. Runs go one after the other; the load average is printed with each.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import click
import numpy as np

from charrnn import CharRNNGenerator
from charrnn.data.batches import BPTTBatches, scoring_windows, split_train_validation
from charrnn.data.corpora import read_text, resolve_corpus, shakespeare_plays
from charrnn.data.vocab import CharVocab
from charrnn.engine.optim import LRSchedule
from charrnn.engine.tasks import held_out_score, stream_loss

LN2 = math.log(2.0)


def train_torch(train_ids, val_ids, vocab_size, opts, budget_s, seed):
    """Train the matching PyTorch model for ``budget_s`` seconds.

    With ``val_ids``, the held-out text is scored after every pass and the best pass's weights
    are kept; with None, the model trains on ``train_ids`` for the whole budget.

    Returns
    -------
    report : dict
    score : callable(ScoringWindows) -> float
        The trained model's mean loss on scoring windows
        (:func:`charrnn.data.batches.scoring_windows`), read as charrnn reads them.
    """
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

    def score(windows) -> float:
        modules.eval()
        total, state = 0.0, None
        with torch.no_grad():
            inp = torch.as_tensor(windows.inputs.T.astype(np.int64))  # (L, B)
            tgt = torch.as_tensor(windows.targets.T.astype(np.int64))
            for s in range(0, inp.shape[0], 256):
                out, state = rnn(encode(inp[s : s + 256]), state)
                logits = head(out)[max(0, windows.context - s) :]
                total += torch.nn.functional.cross_entropy(
                    logits.reshape(-1, vocab_size),
                    tgt[s : s + 256][max(0, windows.context - s) :].reshape(-1),
                    reduction="sum",
                ).item()
        modules.train()
        return total / windows.n_scored

    val_windows = scoring_windows(val_ids) if val_ids is not None else None
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
        if val_windows is not None:
            v = score(val_windows)
            if v < best:
                best = v
                best_state = {k: t.clone() for k, t in modules.state_dict().items()}
    if best_state is not None:
        modules.load_state_dict(best_state)
    report = {
        "val_nats": best,
        "val_bits": best / LN2,
        "chars_seen": chars,
        "passes": chars / max(len(train_ids), 1),
        "steps": step,
        "seconds": time.perf_counter() - t0,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    return report, score


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
        res, _ = train_torch(train_ids, val_ids, vocab.size, opts, budget, seed)
        report["torch"] = res
        click.echo(
            f"pytorch {res['torch']} ({res['threads']} threads): held-out {res['val_nats']:.4f} "
            f"nats/char ({res['val_bits']:.4f} bits/char), {res['chars_seen']:,} chars seen"
        )
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=float))


# --------------------------------------------------------------------------------------------
# Quality across corpus sizes: `--sizes`


# The PyTorch side of `--sizes`: standard char-rnn configurations, trained on ALL the training
# text for the whole budget (no hold-out, no early stopping), one-hot input, Adam, clipping at
# 5, the warm-up + cosine schedule over the budget; the best of them is the baseline.
TORCH_CONFIGS = {
    "lstm 2x256 dropout 0.1": {"dropout": 0.1},
    "lstm 2x256 dropout 0.2": {"dropout": 0.2},
    # charrnn's own default network, so the comparison is also cell for cell
    "gru 2x256 dropout 0.2": {"cell": "gru", "dropout": 0.2},
}
TORCH_BASE = {
    "cell": "lstm",
    "hidden_size": 256,
    "num_layers": 2,
    "embedding_dim": None,
    "batch_size": 32,
    "seq_length": 64,
    "learning_rate": 2e-3,
    "lr_schedule": "warmup_cosine",
    "clip_norm": 5.0,
}
# The plays scored: the last three of the corpus (Troilus and Cressida, Twelfth Night, The Two
# Gentlemen of Verona), never in any training text; every size trains on plays before them.
N_TEST_PLAYS = 3


def _parse_size(text: str) -> int | None:
    text = text.strip().lower()
    if text == "all":
        return None
    scale = {"k": 1e3, "m": 1e6}.get(text[-1], 1.0)
    number = text[:-1] if text[-1] in "km" else text
    return int(float(number) * scale)


def _split_plays(plays: list[str], size: int | None) -> tuple[list[str], list[str]]:
    """The training plays (the first ones, about ``size`` characters) and the test plays."""
    pool, test = plays[:-N_TEST_PLAYS], plays[-N_TEST_PLAYS:]
    if size is None:
        return pool, test
    chosen, total = [], 0
    for play in pool:
        # whole plays, stopping at the count nearest to the size asked for
        if chosen and abs(total + len(play) + 1 - size) > abs(total - size):
            break
        chosen.append(play)
        total += len(play) + 1
    return chosen, test


def _parse_variant(text: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` -> (name, overrides); values read as Python literals."""
    import ast

    name, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value.strip()
    return name.strip(), overrides


def run_charrnn(train_text, test_ids_fn, overrides, budget_s, seed) -> dict:
    """``charrnn train``'s defaults (the estimator's, then ``TRAIN_DEFAULTS``), the budget as
    ``max_time``, and ``overrides``; trained on ``train_text`` as one document (what
    ``charrnn train FILE`` does) and scored on the test plays."""
    from charrnn.cli.train import TRAIN_DEFAULTS

    params = {**TRAIN_DEFAULTS, "max_time": budget_s, **overrides}
    gen = CharRNNGenerator(**params, random_state=seed, verbose=0)
    t0 = time.perf_counter()
    gen.fit(train_text)
    seconds = time.perf_counter() - t0
    score = held_out_score(gen.params_, gen.config_, test_ids_fn(gen.vocab_))
    records = [r for r in gen.history_ if r.get("val_loss") is not None]
    best = min(records, key=lambda r: r["val_loss"], default=None)
    return {
        "test_nats": score.loss,
        "test_stderr": score.stderr,
        "chars_seen": gen.n_chars_seen_,
        "passes": gen.n_chars_seen_ / max(len(train_text), 1),
        "seconds": seconds,
        "stop_reason": gen.stop_reason_,
        "best_val_nats": best and best["val_loss"],
        "best_val_stderr": best and best.get("val_stderr"),
        "val_chars": best and best.get("val_chars"),
        "dropout_used": gen.config_.dropout,
        "n_iter": gen.n_iter_,
        "final_stretch": gen.final_stretch_,
        "params": {k: v for k, v in gen.get_params().items() if k in params},
    }


@click.command()
@click.option("--sizes", default="0.3M,1M,all", show_default=True, help="Training sizes.")
@click.option("--budget", type=float, default=780.0, show_default=True, help="Seconds per run.")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    help="charrnn runs as NAME:key=value,...; 'defaults' (no overrides) when none is given.",
)
@click.option(
    "--torch-config",
    "torch_configs",
    multiple=True,
    type=click.Choice(sorted(TORCH_CONFIGS)),
    help="PyTorch configurations to run (default: all).",
)
@click.option("--no-torch", is_flag=True, help="Skip PyTorch.")
@click.option("--no-charrnn", is_flag=True, help="Skip charrnn (PyTorch runs only).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def sizes_main(sizes, budget, variants, torch_configs, no_torch, no_charrnn, seed, json_path):
    """Loss on unseen plays after a fixed budget, per training size: charrnn vs PyTorch."""
    plays = [p.text for p in shakespeare_plays(build=False)]
    variants = [_parse_variant(v) for v in variants] or [("defaults", {})]
    if no_charrnn:
        variants = []
    if no_torch:
        torch_configs = ()
    elif not torch_configs:
        torch_configs = tuple(TORCH_CONFIGS)
    report = {"budget": budget, "seed": seed, "machine": {"cpu": _cpu_name()}, "runs": []}
    for size_text in sizes.split(","):
        train_plays, test_plays = _split_plays(plays, _parse_size(size_text))
        train_text = "\n".join(train_plays)
        test_text = "\n".join(test_plays)
        click.echo(
            f"size {size_text}: {len(train_plays)} plays, {len(train_text):,} characters; "
            f"test: {len(test_plays)} later plays, {len(test_text):,} characters; "
            f"load {os.getloadavg()[0]:.2f}"
        )

        def test_ids(vocab, text=test_text):
            return vocab.encode_documents([text])

        for name, overrides in variants:
            res = run_charrnn(train_text, test_ids, overrides, budget, seed)
            res |= {"size": size_text, "train_chars": len(train_text), "model": f"charrnn {name}"}
            res["load_after"] = os.getloadavg()[0]
            report["runs"].append(res)
            click.echo(
                f"  charrnn {name}: test {res['test_nats']:.4f} +/- {res['test_stderr']:.4f} "
                f"nats/char, {res['chars_seen']:,} chars seen ({res['passes']:.1f} passes), "
                f"stop {res['stop_reason']}, best val {res['best_val_nats']} "
                f"+/- {res['best_val_stderr']} ({res['val_chars']} chars), dropout "
                f"{res['dropout_used']}, stretch {res['final_stretch']}, "
                f"{res['seconds']:.0f} s, load {res['load_after']:.2f}"
            )
            _write(json_path, report)
        if torch_configs:
            vocab = CharVocab.fit([train_text])
            train_ids = vocab.encode_documents([train_text])
            windows = scoring_windows(test_ids(vocab))
            for name in torch_configs:
                opts = {**TORCH_BASE, **TORCH_CONFIGS[name]}
                res, score = train_torch(train_ids, None, vocab.size, opts, budget, seed)
                res["test_nats"] = score(windows)
                res |= {"size": size_text, "train_chars": len(train_text)}
                res |= {"model": f"pytorch {name}", "load_after": os.getloadavg()[0]}
                report["runs"].append(res)
                click.echo(
                    f"  pytorch {name}: test {res['test_nats']:.4f} nats/char, "
                    f"{res['chars_seen']:,} chars seen ({res['passes']:.1f} passes), "
                    f"load {res['load_after']:.2f}"
                )
                _write(json_path, report)


def _write(json_path, report) -> None:
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
    # `--sizes` is its own benchmark (see the module docstring); anything else is the 90/10 run
    if any(a == "--sizes" or a.startswith("--sizes=") for a in sys.argv[1:]):
        sizes_main()
    else:
        main()
