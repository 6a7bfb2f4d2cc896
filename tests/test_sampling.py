"""Tests for charrnn.engine.sampling: sample_next and generate."""

import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from charrnn.engine import sampling
from charrnn.engine.network import NetworkConfig, forward_logits, init_params, init_state, step
from charrnn.engine.sampling import generate, sample_next
from charrnn.parallel.blas import shared_blas_threads

V = 7


def _net(cell="lstm", layers=1, embedding=None, dtype="float64", hidden=8, seed=0):
    config = NetworkConfig(cell, V, hidden, layers, embedding_dim=embedding, dtype=dtype)
    params = init_params(config, np.random.default_rng(seed))
    # Larger output weights than the initialiser's make the distributions far from uniform.
    params["Why"] *= 4.0
    params["by"][:] = np.linspace(-1.0, 1.0, V)
    # Non-zero recurrent biases, so a path that drops one (e.g. the GRU's bhn) shows up.
    bias_rng = np.random.default_rng(seed + 100)
    for key in params:
        if key.endswith((".b", ".bhn")):
            params[key][:] = bias_rng.uniform(-0.5, 0.5, params[key].shape)
    return params, config


def _reference_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """Straightforward (slow) truncated softmax of one row, written independently."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = sorted(range(len(p)), key=lambda j: -p[j])
    keep = order[:top_k] if top_k is not None else order
    if top_p is not None:
        q = p[keep] / p[keep].sum()
        total, nucleus = 0.0, []
        for j, qj in zip(keep, q):
            nucleus.append(j)
            total += qj
            if total >= top_p:
                break
        keep = nucleus
    out = np.zeros_like(p)
    out[keep] = p[keep]
    return out / out.sum()


def _chi_square(ids, probs, n):
    counts = np.bincount(ids, minlength=len(probs))
    assert counts[probs == 0].sum() == 0, "a symbol with probability 0 was drawn"
    expected = probs[probs > 0] * n
    return float(((counts[probs > 0] - expected) ** 2 / expected).sum())


# --------------------------------------------------------------------------- validation
# What a user passes is checked by CharRNNGenerator.sample (tests/test_estimator.py); the
# engine only asserts programming errors, and raises for logits gone non-finite.


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 0},
        {"temperature": np.inf},
        {"temperature": "hot"},
        {"top_k": 0},
        {"top_k": 1.5},
        {"top_p": 1.01},
        {"top_p": True},
    ],
)
def test_bad_sampling_options_are_programming_errors(kwargs):
    with pytest.raises(AssertionError, match=next(iter(kwargs))):
        sample_next(np.zeros((1, 3)), np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize("row", [[-np.inf, -np.inf], [0.0, np.nan]])
def test_logits_without_finite_maximum_are_rejected(row):
    with pytest.raises(ValueError, match="logits"):
        sample_next(np.array([row]), np.random.default_rng(0))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_samples": 0}, "n_samples"),
        ({"length": -1}, "length"),
        ({"eod_id": V}, "eod_id"),
        ({"prime_ids": np.array([0, V])}, "prime_ids"),
        ({"prime_ids": np.array([1.0, 2.0])}, "prime_ids"),
        ({"top_p": 2.0}, "top_p"),
    ],
)
def test_generate_asserts_its_arguments(kwargs, name):
    params, config = _net()
    with pytest.raises(AssertionError, match=name):
        generate(params, config, rng=np.random.default_rng(0), **kwargs)


# --------------------------------------------------------------------------- sample_next


def test_small_temperature_approaches_argmax():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((500, 10))
    best = logits.argmax(axis=1)
    # Logit gaps of a standard normal sample are > 1e-3 here, so at T = 1e-5 every other
    # symbol has probability below exp(-100).
    assert np.diff(np.sort(logits, axis=1)[:, -2:], axis=1).min() > 1e-3
    np.testing.assert_array_equal(sample_next(logits, rng, temperature=1e-5), best)
    # 1/T overflows float32 and float64 here: the greedy limit, not NaN.
    for dtype in (np.float32, np.float64):
        got = sample_next(logits.astype(dtype), rng, temperature=1e-320)
        np.testing.assert_array_equal(got, best)


def test_moderate_temperature_is_not_greedy():
    logits = np.tile([0.0, 0.5, 1.0], (2000, 1))
    ids = sample_next(logits, np.random.default_rng(2), temperature=1.0)
    assert set(np.unique(ids)) == {0, 1, 2}


def test_top_k_one_is_greedy():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((300, 12)).astype(np.float32)
    ids = sample_next(logits, rng, temperature=5.0, top_k=1)
    np.testing.assert_array_equal(ids, logits.argmax(axis=1))


def test_tiny_top_p_is_greedy():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((300, 12))
    ids = sample_next(logits, rng, temperature=3.0, top_p=1e-9)
    np.testing.assert_array_equal(ids, logits.argmax(axis=1))


def test_top_k_larger_than_vocabulary_keeps_everything():
    logits = np.zeros((3000, 4))
    ids = sample_next(logits, np.random.default_rng(5), top_k=50)
    assert set(np.unique(ids)) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"temperature": 0.7},
        {"temperature": 2.0},
        {"top_k": 3},
        {"top_p": 0.8},
        {"temperature": 1.5, "top_k": 4, "top_p": 0.6},
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empirical_frequencies_match_probabilities(settings, dtype):
    logits = np.array([1.2, -0.3, 0.0, 2.0, 0.4, -1.5], dtype=dtype)
    probs = _reference_probs(logits, **settings)
    n = 60_000
    ids = sample_next(np.tile(logits, (n, 1)), np.random.default_rng(6), **settings)
    # Chi-square with <= 5 degrees of freedom: 30 is far in the tail (p < 1e-5) for a correct
    # sampler, while a wrong distribution (e.g. temperature ignored) gives hundreds.
    assert _chi_square(ids, probs, n) < 30.0


def test_frequency_check_detects_a_wrong_temperature():
    # Guards the test above: the same statistic is large when the probabilities are wrong.
    logits = np.array([1.2, -0.3, 0.0, 2.0, 0.4, -1.5])
    n = 60_000
    ids = sample_next(np.tile(logits, (n, 1)), np.random.default_rng(6), temperature=1.3)
    assert _chi_square(ids, _reference_probs(logits), n) > 100.0


def test_minus_infinity_is_never_drawn_and_1d_logits_give_a_scalar():
    rng = np.random.default_rng(7)
    logits = np.array([0.0, -np.inf, 0.5, -np.inf])
    ids = [int(sample_next(logits, rng)) for _ in range(200)]
    assert set(ids) <= {0, 2}
    assert sample_next(logits, rng).shape == ()


def test_same_seed_same_draws():
    logits = np.random.default_rng(8).standard_normal((50, 9))
    a = sample_next(logits, np.random.default_rng(9), temperature=1.3, top_p=0.9)
    b = sample_next(logits, np.random.default_rng(9), temperature=1.3, top_p=0.9)
    c = sample_next(logits, np.random.default_rng(10), temperature=1.3, top_p=0.9)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_inverse_cdf_edges_never_pick_zero_weight():
    below_one = np.nextafter(1.0, 0.0)
    w = np.array([[1.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    np.testing.assert_array_equal(sampling._inverse_cdf(w, np.array([below_one, 0.0])), [1, 1])


# --------------------------------------------------------------------------- generate


def test_generate_returns_int_arrays_up_to_length():
    params, config = _net()
    out = generate(params, config, n_samples=3, length=25, rng=np.random.default_rng(0))
    assert len(out) == 3
    for ids in out:
        assert ids.dtype == np.intp and ids.ndim == 1 and len(ids) <= 25
        assert ids.size == 0 or (ids.min() >= 0 and ids.max() < V)
    assert generate(params, config, length=0, rng=np.random.default_rng(0))[0].size == 0


@pytest.mark.parametrize("n_samples", [1, 3])
def test_generate_is_deterministic_given_the_rng(n_samples):
    params, config = _net("gru", layers=2)
    kwargs = {"n_samples": n_samples, "length": 40, "temperature": 1.2, "stop_at_eod": False}
    a = generate(params, config, rng=np.random.default_rng(11), **kwargs)
    b = generate(params, config, rng=np.random.default_rng(11), **kwargs)
    c = generate(params, config, rng=np.random.default_rng(12), **kwargs)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


@pytest.mark.parametrize("n_samples", [1, 5])
def test_stop_at_eod_cuts_each_sample_before_its_first_eod(n_samples):
    params, config = _net("rnn")
    params["by"][2] = 6.0  # make symbol 2, used as EOD here, frequent
    kwargs = {"n_samples": n_samples, "length": 60, "eod_id": 2}
    full = generate(params, config, rng=np.random.default_rng(13), stop_at_eod=False, **kwargs)
    cut = generate(params, config, rng=np.random.default_rng(13), **kwargs)
    assert any(2 in f[1:] for f in full)  # some sample stops after a non-empty prefix
    for f, c in zip(full, cut):
        assert len(f) == 60
        first = np.flatnonzero(f == 2)
        expected = f[: first[0]] if first.size else f
        np.testing.assert_array_equal(c, expected)


def _greedy_by_hand(params, config, prime, length):
    """Greedy continuation with network.step, one symbol at a time."""
    state = init_state(config, 1)
    for i in prime:
        logits, state = step(params, config, np.array([i]), state)
    out = []
    for _ in range(length):
        nxt = int(logits[0].argmax())
        out.append(nxt)
        logits, state = step(params, config, np.array([nxt]), state)
    return out


@pytest.mark.parametrize("n_samples", [1, 2])
def test_prime_conditions_the_continuation(n_samples):
    params, config = _net("lstm", layers=2)
    prime = np.array([3, 1, 4, 1, 5])
    out = generate(
        params,
        config,
        n_samples=n_samples,
        length=15,
        prime_ids=prime,
        top_k=1,
        stop_at_eod=False,
        rng=np.random.default_rng(0),
    )
    expected = _greedy_by_hand(params, config, prime, 15)
    for ids in out:
        assert ids.tolist() == expected


def test_no_prime_starts_from_eod_and_empty_prime_means_none():
    params, config = _net("gru")
    kwargs = {"length": 12, "top_k": 1, "stop_at_eod": False, "eod_id": 0}
    expected = _greedy_by_hand(params, config, [0], 12)
    assert generate(params, config, rng=np.random.default_rng(0), **kwargs)[0].tolist() == expected
    empty = generate(params, config, prime_ids=[], rng=np.random.default_rng(0), **kwargs)
    assert empty[0].tolist() == expected


# --------------------------------------------------------------------------- fast path


CASES = [
    (cell, layers, emb) for cell in ("rnn", "lstm", "gru") for layers in (1, 2) for emb in (None, 5)
]


@pytest.mark.parametrize(("cell", "layers", "embedding"), CASES)
def test_fast_step_matches_network_step(cell, layers, embedding):
    params, config = _net(cell, layers, embedding)
    rng = np.random.default_rng(14)
    state = [tuple(rng.uniform(-0.5, 0.5, a.shape) for a in st) for st in init_state(config, 1)]
    fast = sampling.Batch1Stepper(params, config, state)
    for i in rng.integers(0, V, size=60):
        logits, state = step(params, config, np.array([i]), state)
        np.testing.assert_allclose(fast.advance(int(i)), logits[0], rtol=0, atol=1e-6)


def test_fast_step_float32_stays_close():
    params, config = _net("lstm", 2, dtype="float32")
    fast = sampling.Batch1Stepper(params, config, init_state(config, 1))
    state = init_state(config, 1)
    for i in np.random.default_rng(15).integers(0, V, size=40):
        logits, state = step(params, config, np.array([i]), state)
        got = fast.advance(int(i))
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, logits[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("cell", "layers", "embedding"), CASES)
@pytest.mark.parametrize(
    "settings", [{}, {"temperature": 0.6}, {"top_k": 3, "top_p": 0.9, "temperature": 1.4}]
)
def test_fast_generation_equals_generic_generation(cell, layers, embedding, settings):
    params, config = _net(cell, layers, embedding)
    prime = np.array([2, 5, 1])
    all_logits, state, _ = forward_logits(params, config, prime[:, None], init_state(config, 1))
    logits = all_logits[-1]  # (1, V)
    sampling_args = sampling._sampling_options(
        settings.get("temperature", 1.0), settings.get("top_k"), settings.get("top_p")
    )
    fast = sampling._generate_one(
        sampling.Batch1Stepper(params, config, state),
        logits[0],
        80,
        np.random.default_rng(16),
        sampling_args,
        0,
        True,
    )
    generic = sampling._generate_batch(
        params, config, logits, state, 1, 80, np.random.default_rng(16), sampling_args, 0, True
    )[0]
    np.testing.assert_array_equal(fast, generic)


def test_generate_without_the_fast_path_gives_the_same_text(monkeypatch):
    params, config = _net("lstm", 2)
    kwargs = {"length": 50, "prime_ids": np.array([1, 2]), "stop_at_eod": False}
    fast = generate(params, config, rng=np.random.default_rng(17), **kwargs)[0]
    monkeypatch.setattr(sampling, "_MAX_TABLE_BYTES", 0)
    assert not sampling.Batch1Stepper.supported(config)
    generic = generate(params, config, rng=np.random.default_rng(17), **kwargs)[0]
    np.testing.assert_array_equal(fast, generic)


# --------------------------------------------------------------------------- BLAS threads


def _blas_threads():
    sizes = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    if not sizes:
        pytest.skip("no BLAS library that threadpoolctl can control")
    return max(sizes)


def _threads_seen_by_the_batch1_loop(monkeypatch):
    seen = []
    real = sampling._generate_one

    def spy(*args, **kwargs):
        seen.append(_blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "_generate_one", spy)
    params, config = _net()
    with threadpool_limits(limits=2, user_api="blas"):
        if _blas_threads() != 2:
            pytest.skip("BLAS cannot be set to 2 threads here")
        generate(params, config, length=5, rng=np.random.default_rng(0))
        after = _blas_threads()
    return seen, after


def test_batch1_generation_runs_blas_single_threaded_then_restores(monkeypatch):
    seen, after = _threads_seen_by_the_batch1_loop(monkeypatch)
    assert seen == [1]
    assert after == 2


def test_blas_threads_are_left_alone_while_a_fit_shares_them(monkeypatch):
    with shared_blas_threads():
        seen, after = _threads_seen_by_the_batch1_loop(monkeypatch)
    assert seen == [2]
    assert after == 2


def test_two_threads_sampling_at_once_leave_the_pool_at_its_size(monkeypatch):
    """Interleave two batch-1 generations as enter A, enter B, leave A, leave B: each resizing
    on its own would save 1 as B's "previous size" and restore it last."""
    real = sampling._generate_one
    b_entered, a_left = threading.Event(), threading.Event()
    seen = {}

    def spy(*args, **kwargs):
        name = threading.current_thread().name
        seen[name] = _blas_threads()
        if name == "A":
            assert b_entered.wait(10)
        else:
            b_entered.set()
            assert a_left.wait(10)
            seen["B after A left"] = _blas_threads()
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "_generate_one", spy)
    params, config = _net()

    def run():
        generate(params, config, length=5, rng=np.random.default_rng(0))
        if threading.current_thread().name == "A":
            a_left.set()

    with threadpool_limits(limits=2, user_api="blas"):
        if _blas_threads() != 2:
            pytest.skip("BLAS cannot be set to 2 threads here")
        a = threading.Thread(target=run, name="A")
        b = threading.Thread(target=run, name="B")
        a.start()
        while not seen:  # A is inside its loop, with the pool cut
            time.sleep(0.001)
        b.start()
        a.join(10)
        b.join(10)
        after = _blas_threads()
    assert seen == {"A": 1, "B": 1, "B after A left": 1}
    assert after == 2


def test_many_overlapping_generations_in_threads_restore_the_pool():
    params, config = _net()

    def run(seed):
        for k in range(30):
            generate(params, config, length=3, rng=np.random.default_rng(seed + k))

    with threadpool_limits(limits=2, user_api="blas"):
        if _blas_threads() != 2:
            pytest.skip("BLAS cannot be set to 2 threads here")
        threads = [threading.Thread(target=run, args=(100 * i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert _blas_threads() == 2
