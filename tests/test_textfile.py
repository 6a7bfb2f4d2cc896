"""Tests for charrnn.data.textfile: a text file read in blocks and encoded to a memory-mapped
cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from charrnn import CharRNNGenerator
from charrnn.data import textfile
from charrnn.data.textfile import CACHE_ENV, TextCorpus
from charrnn.data.vocab import CharVocab

# 1-, 2-, 3- and 4-byte UTF-8 characters, a CRLF and a BOM-like character in the middle
MIXED = "plain ascii, é ü ñ, € ♞ 中文, 𝄞 🐍 emoji\r\nzero\ufeffwidth\n" * 7


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def cache_files(folder, suffix: str = ".ids"):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(suffix))


@pytest.fixture
def mixed(tmp_path):
    return write(tmp_path / "mixed.txt", MIXED)


# --------------------------------------------------------------------------------------------
# Same vocabulary and ids as the in-memory path


@pytest.mark.parametrize("block_size", [1, 2, 3, 5, 7, 64, textfile.BLOCK_BYTES])
def test_vocab_ids_and_stats_equal_the_in_memory_path(mixed, block_size):
    corpus = TextCorpus(mixed, block_size=block_size)
    assert "".join(corpus.iter_text()) == MIXED
    vocab = CharVocab.fit([MIXED])
    assert corpus.vocab() == vocab
    ids = corpus.ids(vocab)
    assert isinstance(ids, np.memmap) and ids.dtype == vocab.dtype == np.uint8
    np.testing.assert_array_equal(ids, vocab.encode_documents([MIXED]))
    assert ids[-1] == CharVocab.EOD_ID and not ids.flags.writeable
    assert len(corpus) == corpus.n_chars == len(MIXED)
    assert corpus.sha256 == hashlib.sha256(MIXED.encode("utf-8")).hexdigest()


def test_ids_under_another_vocabulary_use_unk(mixed):
    vocab = CharVocab.fit(["plain ascii"])
    ids = TextCorpus(mixed, block_size=4).ids(vocab)
    np.testing.assert_array_equal(ids, vocab.encode_documents([MIXED]))
    assert (ids == CharVocab.UNK_ID).any()


def test_large_vocabulary_is_stored_as_uint16(tmp_path):
    text = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 400)) * 3
    corpus = TextCorpus(write(tmp_path / "cjk.txt", text), block_size=10)
    vocab = corpus.vocab()
    ids = corpus.ids(vocab)
    assert ids.dtype == np.uint16 and cache_files(tmp_path)[0].endswith(".uint16.ids")
    np.testing.assert_array_equal(ids, vocab.encode_documents([text]))


@pytest.mark.parametrize("block_size", [1, 3, 8])
def test_errors_replace_and_other_encodings_match_a_whole_decode(tmp_path, block_size):
    raw = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
    path = tmp_path / "noise.bin"
    path.write_bytes(b"ok " + raw + "é€𝄞".encode())
    corpus = TextCorpus(path, errors="replace", block_size=block_size)
    assert "".join(corpus.iter_text()) == path.read_bytes().decode("utf-8", "replace")
    # a codec with state (UTF-16 with its byte-order mark)
    utf16 = write(tmp_path / "utf16.txt", MIXED, "utf-16")
    corpus = TextCorpus(utf16, encoding="utf-16", block_size=block_size)
    assert "".join(corpus.iter_text()) == MIXED and corpus.vocab() == CharVocab.fit([MIXED])


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("block_size", [1, 2, 3, 4, 5, 100])
@pytest.mark.parametrize(
    "data",
    [b"caf\xc3\xa9 ok \xe9 end", "€€".encode() + b"\xe2\x82", b"ab\xff", b"\xf0\x9d\x84"],
)
def test_decode_error_names_the_byte_offset(tmp_path, data, block_size):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(UnicodeDecodeError) as whole:
        data.decode("utf-8")
    corpus = TextCorpus(path, block_size=block_size)
    with pytest.raises(ValueError, match="is not valid utf-8") as exc:
        corpus.vocab()
    message = str(exc.value)
    assert f"byte offset {whole.value.start} " in message
    assert str(path) in message and "--encoding" in message and "--errors replace" in message
    assert cache_files(tmp_path) == []


def test_empty_missing_folder_and_unknown_codec(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        TextCorpus(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="does not exist"):
        TextCorpus(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="is a directory"):
        TextCorpus(tmp_path)
    write(tmp_path / "a.txt", "abc")
    with pytest.raises(ValueError, match="encoding='klingon'"):
        TextCorpus(tmp_path / "a.txt", encoding="klingon")
    with pytest.raises(ValueError, match="errors='sometimes'"):
        TextCorpus(tmp_path / "a.txt", errors="sometimes")
    with pytest.raises(ValueError, match="block_size"):
        TextCorpus(tmp_path / "a.txt", block_size=0)
    with pytest.raises(TypeError, match="path"):
        TextCorpus(None)
    with pytest.raises(TypeError, match="vocab must be a CharVocab"):
        TextCorpus(tmp_path / "a.txt").ids(["a"])
    # bytes but no characters: a byte-order mark alone
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(ValueError, match="holds no characters"):
        len(TextCorpus(tmp_path / "bom.txt", encoding="utf-8-sig"))


# --------------------------------------------------------------------------------------------
# The cache: reuse, invalidation, location, atomic writes


def test_cache_is_reused_without_reading_the_file(mixed, tmp_path, monkeypatch):
    vocab = TextCorpus(mixed).vocab()
    first = TextCorpus(mixed).ids(vocab)
    (name,) = cache_files(tmp_path)
    before = (tmp_path / name).stat()
    (sidecar,) = cache_files(tmp_path, ".cache.json")

    def no_reading(self):
        raise AssertionError("the corpus file was read again")

    monkeypatch.setattr(TextCorpus, "iter_text", no_reading)
    again = TextCorpus(mixed)  # a new object: only the cache files can answer
    assert again.vocab() == vocab and len(again) == len(MIXED)
    second = again.ids(vocab)
    after = (tmp_path / name).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    np.testing.assert_array_equal(first, second)
    assert cache_files(tmp_path) == [name]
    assert cache_files(tmp_path, ".cache.json") == [sidecar]


def test_a_changed_file_gets_a_new_cache_and_the_old_one_goes(mixed, tmp_path):
    corpus = TextCorpus(mixed, block_size=5)
    corpus.ids(corpus.vocab())
    old = cache_files(tmp_path) + cache_files(tmp_path, ".cache.json")
    new_text = MIXED.upper()  # same length in characters and bytes
    write(mixed, new_text)
    st = mixed.stat()
    os.utime(mixed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    vocab = corpus.vocab()  # the same object notices the change
    assert vocab == CharVocab.fit([new_text])
    np.testing.assert_array_equal(corpus.ids(vocab), vocab.encode_documents([new_text]))
    new = cache_files(tmp_path) + cache_files(tmp_path, ".cache.json")
    assert len(new) == 2 and not set(old) & set(new)


def test_each_vocabulary_has_its_own_cache(mixed, tmp_path):
    corpus = TextCorpus(mixed)
    a, b = corpus.vocab(), CharVocab.fit(["abc"])
    ids_a, ids_b = corpus.ids(a), corpus.ids(b)
    assert len(cache_files(tmp_path)) == 2
    np.testing.assert_array_equal(ids_a, a.encode_documents([MIXED]))
    np.testing.assert_array_equal(ids_b, b.encode_documents([MIXED]))


def test_a_truncated_cache_is_rebuilt(mixed, tmp_path):
    corpus = TextCorpus(mixed)
    vocab = corpus.vocab()
    corpus.ids(vocab)
    (name,) = cache_files(tmp_path)
    with open(tmp_path / name, "r+b") as f:
        f.truncate(10)
    np.testing.assert_array_equal(TextCorpus(mixed).ids(vocab), vocab.encode_documents([MIXED]))


def test_failed_cache_write_leaves_nothing_behind(mixed, tmp_path, monkeypatch):
    corpus = TextCorpus(mixed, block_size=16)
    vocab = corpus.vocab()
    real = CharVocab.encode
    calls = {"n": 0}

    def failing(self, text):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # e.g. Ctrl-C half-way through the file
        return real(self, text)

    monkeypatch.setattr(CharVocab, "encode", failing)
    with pytest.raises(KeyboardInterrupt):
        corpus.ids(vocab)
    assert cache_files(tmp_path) == [] and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.setattr(CharVocab, "encode", real)
    np.testing.assert_array_equal(corpus.ids(vocab), vocab.encode_documents([MIXED]))


def test_unwritable_folder_uses_the_cache_dir(mixed, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.setattr(textfile, "_writable", lambda folder: folder != mixed.parent)
    corpus = TextCorpus(mixed)
    ids = corpus.ids(corpus.vocab())
    assert cache_files(tmp_path) == []
    (name,) = cache_files(cache)
    assert name.startswith("mixed.txt.") and Path(ids.filename) == cache / name
    # an explicit cache_dir wins over the folder of the corpus
    explicit = tmp_path / "explicit"
    TextCorpus(mixed, cache_dir=explicit).ids(corpus.vocab())
    assert len(cache_files(explicit)) == 1


def test_not_enough_disk_space_for_the_cache(mixed, tmp_path, monkeypatch):
    class Usage:
        free = 10

    monkeypatch.setattr(textfile.shutil, "disk_usage", lambda p: Usage)
    corpus = TextCorpus(mixed)
    with pytest.raises(ValueError, match="not enough free disk space for the id cache"):
        corpus.ids(corpus.vocab())


# --------------------------------------------------------------------------------------------
# The estimator


SMALL = dict(hidden_size=12, num_layers=1, batch_size=4, seq_length=16, max_iter=2)


def test_fit_on_a_corpus_equals_fit_on_its_text(mixed):
    from_text = CharRNNGenerator(**SMALL, random_state=0).fit(MIXED)
    from_file = CharRNNGenerator(**SMALL, random_state=0).fit(TextCorpus(mixed, block_size=64))
    assert from_file.vocab_ == from_text.vocab_
    for name, value in from_text.params_.items():
        np.testing.assert_array_equal(from_file.params_[name], value)
    assert from_file.loss_curve_ == from_text.loss_curve_
    assert from_file.validation_scores_ == from_text.validation_scores_
    # score streams the ids and gives the text's score
    assert from_file.score(TextCorpus(mixed)) == pytest.approx(from_text.score(MIXED), rel=1e-9)
    # partial_fit keeps the fitted vocabulary and continues the same way
    from_text.partial_fit(MIXED)
    from_file.partial_fit(TextCorpus(mixed))
    for name, value in from_text.params_.items():
        np.testing.assert_array_equal(from_file.params_[name], value)


def test_methods_that_need_strings_refuse_a_corpus(mixed):
    gen = CharRNNGenerator(**SMALL, random_state=0).fit(MIXED)
    corpus = TextCorpus(mixed)
    for method in (gen.score_samples, gen.predict, gen.predict_proba, gen.transform):
        with pytest.raises(TypeError, match="TextCorpus"):
            method(corpus)
