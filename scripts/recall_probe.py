"""Probe one recall-task training run as it goes: why does a cell (the LSTM) not learn the recall?

Trains ``recall_generator(cell, lag)`` (the settings of ``scripts/recall_bench.py``: one layer
of 64 units, ``seq_length = 4 * (lag + 2)``, batches of 32, Adam 1e-2, no validation) and after
every ``--every`` passes prints one JSON line, measured on 200 held-out documents read from
the zero state as ``predict`` reads them (an end-of-document symbol, then the document):

- ``acc_predict``: share of keys recalled after the cue;
- ``nll_key``, ``nll_cue``, ``nll_dots``: mean loss (nats) at the recalled key, at the cue
  ``?`` (which needs counting the dots) and at the dots (log 4 = 1.386 is a uniform guess of
  the key);
- ``key_info``: how far apart the four keys' states are (mean pairwise distance) after 0,
  ``lag / 2`` and ``lag`` dots, for ``h`` and (LSTM) ``c``. The dots are all the same, so the
  state is a function of the key alone: a distance that stays up is a key kept in the state;
- ``keep_mean``, ``keep_gt_095``, ``units_keep_gt_095``: the keep gate on the dot steps (LSTM
  forget gate, GRU update gate): mean, share of values above 0.95, units whose mean is above
  0.95;
- ``c_abs_median``, ``c_saturated`` (LSTM): the cell state at the cue step, median of ``|c|``
  and share of units with ``|tanh(c)| > 0.95``, where the read-out ``o * tanh(c)`` passes
  (almost) no gradient back to ``c``: a cell that counts the dots by integrating them grows
  ``|c|`` with the lag;
- ``grad_ratio``: :func:`charrnn.diagnostics.recall_gradient_ratio` (gradient reaching the key
  step over lag 1's);
- ``gradnorm_median``, ``gradnorm_max``, ``share_clipped``: the global gradient norm before
  clipping over the pass's steps, and the share of steps that ``clip_norm`` clipped.

    PYTHONPATH=. CHARRNN_PARALLEL=0 .venv/bin/python scripts/recall_probe.py --cell lstm \\
        --lag 50 --every 4 --set learning_rate=3e-3 --json probe.json
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
import warnings

import numpy as np

from charrnn.data.vocab import CharVocab
from charrnn.diagnostics import recall_documents, recall_generator, recall_gradient_ratio
from charrnn.engine import network

TEST_SEED = 10**6


def key_separation(states: np.ndarray, keys: np.ndarray) -> float:
    """Mean pairwise distance between the states of the distinct keys, (B, H) -> float."""
    first = [int(np.flatnonzero(keys == k)[0]) for k in np.unique(keys)]
    x = states[first].astype(np.float64)
    return float(np.mean([np.linalg.norm(x[i] - x[j]) for i in range(len(x)) for j in range(i)]))


def probe(model, test: list[str], lag: int) -> dict:
    """The measurements of the module docstring for a fitted or initialised model."""
    cfg, params = model.config_, model.params_
    ids = np.stack(
        [np.concatenate(([CharVocab.EOD_ID], model.vocab_.encode(s))) for s in test], axis=1
    ).astype(np.intp)
    inputs, targets = ids[:-1], ids[1:]  # (lag + 3, B): EOD key dots ? -> key dots ? key
    top, _, caches = network.forward(params, cfg, inputs, network.init_state(cfg, len(test)))
    logp = network.log_softmax(network.output_logits(params, top).astype(np.float64))
    nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # (T, B)
    keys = targets[0]
    cache = caches[0][1]
    states = cfg.cell_class.sequence_states(cache)  # (T, B, H) each; t: after inputs[t]
    info = {}
    for j in (0, lag // 2, lag):  # dots read after the key: step 1 + j
        info[f"h@{j}"] = key_separation(states[0][1 + j], keys)
        if len(states) > 1:
            info[f"c@{j}"] = key_separation(states[1][1 + j], keys)
    out = {
        "acc_predict": float(np.mean(logp[-1].argmax(-1) == targets[-1])),
        "nll_key": float(nll[-1].mean()),
        "nll_cue": float(nll[-2].mean()),
        "nll_dots": float(nll[1:-2].mean()),
        "key_info": info,
        "grad_ratio": recall_gradient_ratio(model, test[:32]),
    }
    keep = None
    if cfg.cell == "lstm":
        keep = cache[2][2 : lag + 2, 1]  # forget gate of the dot steps, (lag, B, H)
    elif cfg.cell == "gru":
        keep = cache[1][2 : lag + 2, 1]  # update gate
    if keep is not None:
        out["keep_mean"] = float(keep.mean())
        out["keep_gt_095"] = float((keep > 0.95).mean())
        out["units_keep_gt_095"] = int((keep.mean(axis=(0, 1)) > 0.95).sum())
    if len(states) > 1:
        cue_c = states[1][-1].astype(np.float64)  # (B, H): after reading the cue
        out["c_abs_median"] = float(np.median(np.abs(cue_c)))
        out["c_saturated"] = float(np.mean(np.abs(np.tanh(cue_c)) > 0.95))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cell", default="lstm")
    p.add_argument("--lag", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--passes", type=int, default=48)
    p.add_argument("--documents", type=int, default=2000)
    p.add_argument("--every", type=int, default=4)
    p.add_argument("--set", action="append", default=[], help="param=value (a Python literal)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    overrides = {}
    for kv in a.set:
        key, value = kv.split("=", 1)
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    train = recall_documents(a.documents, a.lag, np.random.default_rng([a.seed, a.lag]))
    test = recall_documents(200, a.lag, np.random.default_rng([TEST_SEED, a.lag]))
    model = recall_generator(a.cell, a.lag, max_iter=a.passes, random_state=a.seed, **overrides)
    norms: list[float] = []
    records = []

    def record(est, rec) -> None:
        done = 0 if rec is None else rec["epoch"]
        if done % a.every and done != a.passes:
            norms.clear()
            return
        r = {"pass": done, "train_loss": None if rec is None else rec.get("train_loss")}
        r |= probe(est, test, a.lag)
        if norms:
            g = np.array(norms)
            r["gradnorm_median"] = float(np.median(g))
            r["gradnorm_max"] = float(g.max())
            r["share_clipped"] = float(np.mean(g > est.clip_norm)) if est.clip_norm else 0.0
        norms.clear()
        records.append(r)
        print(json.dumps(r), flush=True)

    def on_step(est, trainer, loss, grad_norm, lr) -> None:
        norms.append(grad_norm)

    initial = recall_generator(a.cell, a.lag, random_state=a.seed, **overrides)
    record(initial.initialize(train), None)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter ending the run is the budget
        model.fit(train, on_epoch=record, on_step=on_step)
    seconds = time.perf_counter() - t0
    print(f"{seconds:.1f} s", file=sys.stderr)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(a), "seconds": seconds, "records": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
