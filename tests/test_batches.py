"""Tests for charrnn.data.batches: train/validation split and parallel-stream BPTT batches."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.data.batches import BPTTBatches, split_sizes, split_train_validation


def _expected_positions(n, B, T, k):
    """Index into ids of inputs[t, b] for chunk k: b*L + k*T + t, shape (T, B)."""
    L = (n - 1) // B
    return np.arange(B)[None, :] * L + k * T + np.arange(T)[:, None]


# --------------------------------------------------------------------------- BPTTBatches


def test_chunks_on_arange_are_the_expected_slices():
    n, B, T = 53, 3, 4
    batches = BPTTBatches(np.arange(n), B, T)
    L = 52 // 3  # 17 characters per stream
    assert batches.stream_length == L
    assert len(batches) == batches.n_chunks == L // T == 4
    assert batches.chars_per_chunk == B * T
    for k in range(batches.n_chunks):
        inputs, targets = batches[k]
        assert inputs.shape == targets.shape == (T, B)
        assert inputs.dtype == targets.dtype == np.intp
        assert inputs.flags.c_contiguous and targets.flags.c_contiguous
        for b in range(B):
            start = b * L + k * T
            np.testing.assert_array_equal(inputs[:, b], np.arange(start, start + T))
            np.testing.assert_array_equal(targets[:, b], np.arange(start + 1, start + T + 1))


def test_docstring_layout_small_case():
    inputs, targets = BPTTBatches(np.arange(21), batch_size=2, seq_length=3)[0]
    assert inputs.T.tolist() == [[0, 1, 2], [10, 11, 12]]
    assert targets.T.tolist() == [[1, 2, 3], [11, 12, 13]]


def test_targets_are_inputs_shifted_and_state_continues_across_chunks():
    rng = np.random.default_rng(0)
    ids = rng.permutation(200).astype(np.uint8)
    B, T = 4, 5
    batches = BPTTBatches(ids, B, T)
    L = batches.stream_length
    chunks = list(batches)
    assert len(chunks) == batches.n_chunks
    for k, (inputs, targets) in enumerate(chunks):
        # Within a chunk, each stream's target is its next input.
        np.testing.assert_array_equal(targets[:-1], inputs[1:])
        if k + 1 < len(chunks):
            nxt_inputs, _ = chunks[k + 1]
            # The next chunk's first input is this chunk's last target, stream by stream,
            # so carrying the hidden state over is correct.
            np.testing.assert_array_equal(nxt_inputs[0], targets[-1])
    # Concatenated over chunks, column b is exactly the start of stream b.
    all_inputs = np.concatenate([c[0] for c in chunks])  # (n_chunks*T, B)
    for b in range(B):
        np.testing.assert_array_equal(all_inputs[:, b], ids[b * L : b * L + len(chunks) * T])


def test_indexing_and_iter_from():
    batches = BPTTBatches(np.arange(100), 3, 4)
    n = batches.n_chunks
    np.testing.assert_array_equal(batches[-1][0], batches[n - 1][0])
    with pytest.raises(IndexError):
        batches[n]
    with pytest.raises(IndexError):
        batches[-n - 1]
    resumed = list(batches.iter_from(2))
    assert [k for k, _, _ in resumed] == list(range(2, n))
    for k, inputs, targets in resumed:
        np.testing.assert_array_equal(inputs, batches[k][0])
        np.testing.assert_array_equal(targets, batches[k][1])
    assert list(batches.iter_from(n)) == []
    assert len(list(batches.iter_from())) == n
    with pytest.raises(ValueError, match="start"):
        list(batches.iter_from(n + 1))


def test_memmap_gives_same_chunks_without_copying(tmp_path):
    ids = np.random.default_rng(1).integers(0, 300, size=500).astype(np.uint16)
    path = tmp_path / "ids.bin"
    mm = np.memmap(path, dtype=np.uint16, mode="w+", shape=ids.shape)
    mm[:] = ids
    mm.flush()
    del mm
    mm = np.memmap(path, dtype=np.uint16, mode="r", shape=ids.shape)
    train, val = split_train_validation(mm, 0.1)
    assert isinstance(train, np.memmap) and np.shares_memory(train, mm)
    from_disk = BPTTBatches(train, 6, 7)
    in_memory = BPTTBatches(ids[: len(train)], 6, 7)
    # The batcher keeps views of the memmap, not a copy of it.
    assert np.shares_memory(from_disk._inputs, mm)
    assert len(from_disk) == len(in_memory)
    for (a_in, a_tg), (b_in, b_tg) in zip(from_disk, in_memory):
        np.testing.assert_array_equal(a_in, b_in)
        np.testing.assert_array_equal(a_tg, b_tg)
    np.testing.assert_array_equal(val, ids[len(train) :])


def test_too_short_text_raises_helpful_error():
    B, T = 4, 8
    with pytest.raises(ValueError, match="batch_size") as info:
        BPTTBatches(np.arange(B * T), B, T)
    assert "seq_length" in str(info.value) and "shorter than one training chunk" in str(info.value)
    with pytest.raises(ValueError, match="seq_length"):
        BPTTBatches(np.arange(0), B, T)
    # Exactly one chunk's worth of text is enough.
    assert len(BPTTBatches(np.arange(B * T + 1), B, T)) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        BPTTBatches(np.arange(100), 0, 4)
    with pytest.raises(ValueError, match="seq_length"):
        BPTTBatches(np.arange(100), 2, -1)
    with pytest.raises(TypeError, match="seq_length"):
        BPTTBatches(np.arange(100), 2, 1.5)
    with pytest.raises(TypeError, match="batch_size"):
        BPTTBatches(np.arange(100), True, 4)
    with pytest.raises(TypeError, match="ids"):
        BPTTBatches(np.linspace(0, 1, 100), 2, 4)
    with pytest.raises(TypeError, match="ids"):
        BPTTBatches(np.zeros((10, 10), dtype=np.int64), 2, 4)


@settings(max_examples=60, deadline=None)
@given(
    B=st.integers(1, 8),
    T=st.integers(1, 10),
    extra=st.integers(0, 200),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_chunk_matches_its_stream_positions(B, T, extra, seed):
    n = B * T + 1 + extra
    ids = np.random.default_rng(seed).permutation(n)
    batches = BPTTBatches(ids, B, T)
    L = (n - 1) // B
    assert batches.n_chunks == L // T >= 1
    for k in range(batches.n_chunks):
        inputs, targets = batches[k]
        pos = _expected_positions(n, B, T, k)
        np.testing.assert_array_equal(inputs, ids[pos])
        np.testing.assert_array_equal(targets, ids[pos + 1])
    # Every target index stays inside its own stream: ids[b*L : (b+1)*L + 1].
    last = _expected_positions(n, B, T, batches.n_chunks - 1)[-1] + 1
    assert np.all(last <= np.arange(1, B + 1) * L)


# --------------------------------------------------------------------------- split


def test_split_fraction_zero_gives_empty_validation():
    ids = np.arange(50, dtype=np.uint8)
    train, val = split_train_validation(ids, 0)
    assert val.shape == (0,) and val.dtype == ids.dtype
    np.testing.assert_array_equal(train, ids)
    assert np.shares_memory(train, ids)


def test_split_tenth_is_contiguous_tail_of_views():
    ids = np.arange(100)
    train, val = split_train_validation(ids, 0.1)
    np.testing.assert_array_equal(train, np.arange(90))
    np.testing.assert_array_equal(val, np.arange(90, 100))
    assert np.shares_memory(train, ids) and np.shares_memory(val, ids)
    # Rounding never takes the whole text.
    train, val = split_train_validation(np.arange(1), 0.9)
    assert len(train) == 1 and len(val) == 0
    train, val = split_train_validation(np.arange(100), 0.29)
    assert (len(train), len(val)) == (71, 29)  # 100 * 0.29 is 28.999...96


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_split_rejects_bad_fractions(bad):
    with pytest.raises(ValueError, match="validation_fraction"):
        split_train_validation(np.arange(10), bad)


def test_split_rejects_bad_types():
    with pytest.raises(TypeError, match="validation_fraction"):
        split_train_validation(np.arange(10), "0.1")
    with pytest.raises(TypeError, match="ids"):
        split_train_validation(np.ones((2, 2), dtype=np.int32), 0.1)


@pytest.mark.parametrize("n", [0, 1, 2, 10, 101])
@pytest.mark.parametrize("fraction", [0, 0.1, 0.5, 0.99])
def test_split_sizes_are_the_split_lengths(n, fraction):
    train, val = split_train_validation(np.arange(n), fraction)
    assert split_sizes(n, fraction) == (len(train), len(val))
