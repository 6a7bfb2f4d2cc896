"""Tests for charrnn.engine.beam (beam search) and charrnn.engine.trace (states per character),
checked against brute-force enumeration and the whole-sequence forward pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose

from charrnn.engine.beam import beam_search
from charrnn.engine.network import NetworkConfig, forward_logits, init_params, init_state
from charrnn.engine.trace import trace_text

V = 5  # 0 ends a document, 1 is the unknown symbol, 2-4 are characters


def _net(cell="gru", layers=2, seed=0):
    config = NetworkConfig(cell, V, 6, layers, dtype="float64")
    params = init_params(config, np.random.default_rng(seed))
    params["Why"] *= 3.0  # distributions far from uniform, so the best sequence is clear
    params["by"][:] = np.random.default_rng(seed + 1).uniform(-1, 1, V)
    return params, config


def _logp_of(params, config, prime, cont):
    """Log-probability of ``cont`` after ``prime`` by the whole-sequence forward pass, and the
    log-distribution of the symbol after it."""
    seq = np.array([*prime, *cont])
    logits, _, _ = forward_logits(params, config, seq[:, None], init_state(config, 1))
    z = logits[:, 0].astype(np.float64)
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    steps = np.arange(len(prime) - 1, len(seq) - 1)
    return float(logp[steps, seq[steps + 1]].sum()), logp[-1]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_wide_beam_finds_the_most_likely_sequence_of_fixed_length(cell):
    params, config = _net(cell)
    prime = [0, 3, 2]
    grow = np.array([False, False, True, True, True])
    found = beam_search(params, config, prime, extend=grow, beam_width=27, n_best=4, max_steps=3)
    brute = sorted(
        (
            (_logp_of(params, config, prime, c)[0], c)
            for c in itertools.product([2, 3, 4], repeat=3)
        ),
        key=lambda e: -e[0],
    )
    assert [tuple(ids) for ids, _ in found] == [c for _, c in brute[:4]]
    assert_allclose([s for _, s in found], [s for s, _ in brute[:4]], rtol=1e-10)


def test_ending_symbols_are_summed_and_a_short_ending_can_win():
    params, config = _net("lstm", seed=3)
    prime = [0, 2]
    word = np.array([False, False, True, True, False])
    end = np.array([True, False, False, False, True])  # the end symbol and id 4 are boundaries
    found = beam_search(
        params,
        config,
        prime,
        extend=word,
        end=end,
        beam_width=16,
        n_best=30,
        max_steps=3,
        end_at_max=False,
        min_steps=1,
    )
    brute = []
    for n in (1, 2, 3):
        for c in itertools.product([2, 3], repeat=n):
            logp, last = _logp_of(params, config, prime, c)
            brute.append((logp + np.log(np.exp(last[end]).sum()), c))
    brute.sort(key=lambda e: -e[0])
    assert len(found) == len(brute) == 14  # every word of 1-3 symbols, each once
    assert [tuple(ids) for ids, _ in found] == [c for _, c in brute]
    assert_allclose([s for _, s in found], [s for s, _ in brute], rtol=1e-10)


def test_forced_symbols_count_but_are_not_returned():
    params, config = _net()
    grow = np.array([False, False, True, True, True])
    found = beam_search(
        params, config, [0, 2], forced_ids=[4], extend=grow, beam_width=9, max_steps=2
    )
    ids, score = found[0]
    assert len(ids) == 2
    assert_allclose(score, _logp_of(params, config, [0, 2], [4, *ids])[0], rtol=1e-10)


def test_a_narrow_beam_never_beats_a_wide_one_and_greedy_is_width_one():
    params, config = _net("rnn", seed=5)
    grow = np.array([False, False, True, True, True])
    greedy = beam_search(params, config, [0], extend=grow, beam_width=1, max_steps=6)[0]
    wide = beam_search(params, config, [0], extend=grow, beam_width=50, max_steps=6)[0]
    assert wide[1] >= greedy[1]
    # width one takes the most likely allowed symbol at every step
    ids = [0]
    for _ in range(6):
        seq = np.array(ids)
        logits, _, _ = forward_logits(params, config, seq[:, None], init_state(config, 1))
        ids.append(int(np.argmax(np.where(grow, logits[-1, 0], -np.inf))))
    assert greedy[0].tolist() == ids[1:]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_trace_matches_the_forward_pass(cell):
    params, config = _net(cell)
    ids = np.array([2, 3, 4, 4, 2, 3, 2], dtype=np.intp)
    tr = trace_text(params, config, ids, eod_id=0)
    n, L, H = len(ids), config.num_layers, config.hidden_size
    assert tr.hidden.shape == (L, n, H)
    assert (tr.cell is not None) == (cell == "lstm")
    seq = np.concatenate(([0], ids))
    for i in range(n):  # state and prediction after reading ids[: i + 1]
        logits, state, _ = forward_logits(params, config, seq[: i + 2, None], init_state(config, 1))
        z = logits[-1, 0]
        assert_allclose(tr.next_log_proba[i], z - z.max() - np.log(np.exp(z - z.max()).sum()))
        for k in range(L):
            assert_allclose(tr.hidden[k, i], state[k][0][0])
            if cell == "lstm":
                assert_allclose(tr.cell[k, i], state[k][1][0])
    surprise = [-_logp_of(params, config, [0], ids[: i + 1])[0] for i in range(n)]
    assert_allclose(np.cumsum(tr.surprise), surprise, rtol=1e-10)
