"""Tests for charrnn.data.corpus: opening a training text and fingerprinting it."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from charrnn.data.corpora import CORPORA, CORPORA_ENV
from charrnn.data.corpus import CorpusText, fingerprint_mismatch, open_corpus, text_fingerprint
from charrnn.data.textfile import TextCorpus
from charrnn.data.vocab import CharVocab

TEXT = "Hwæt! We Gardena\nin geardagum,\r\nþeodcyninga þrym gefrunon.\n" * 20


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "beowulf.txt"
    path.write_bytes(TEXT.encode("utf-8"))
    return path


@pytest.fixture
def corpora_dir(tmp_path, monkeypatch):
    folder = tmp_path / "corpora"
    monkeypatch.setenv(CORPORA_ENV, str(folder))
    return folder


# --------------------------------------------------------------------------------------------
# text_fingerprint


def test_fingerprint_of_a_string_is_its_length_and_utf8_hash():
    fp = text_fingerprint(TEXT, "beowulf")
    assert fp == {
        "source": "beowulf",
        "n_chars": len(TEXT),
        "sha256": hashlib.sha256(TEXT.encode("utf-8")).hexdigest(),
    }
    assert text_fingerprint([TEXT], "beowulf") == fp
    assert text_fingerprint(iter([TEXT]))["sha256"] == fp["sha256"]


def test_fingerprint_of_a_streamed_file_equals_the_text_in_memory(text_file, tmp_path):
    stream = TextCorpus(text_file, cache_dir=tmp_path / "cache", block_size=7)
    assert text_fingerprint(stream, "beowulf") == text_fingerprint(TEXT, "beowulf")
    assert text_fingerprint(stream)["source"] == str(text_file)


def test_fingerprint_tells_document_boundaries_and_contents_apart():
    digests = {
        text_fingerprint(docs)["sha256"] for docs in (["ab", "c"], ["a", "bc"], ["abc"], ["cba"])
    }
    assert len(digests) == 4
    assert text_fingerprint(["ab", "c"])["n_chars"] == 3
    # a lone surrogate (which open(errors="surrogateescape") can produce) is hashed, not refused
    assert text_fingerprint("a\udcff")["n_chars"] == 2


@pytest.mark.parametrize("bad", [b"bytes", 3, ["ok", 4], None])
def test_fingerprint_refuses_what_fit_refuses(bad):
    with pytest.raises(TypeError, match="X must be"):
        text_fingerprint(bad)


def test_fingerprint_mismatch_names_both_texts():
    recorded = text_fingerprint(TEXT, "beowulf.txt")
    assert fingerprint_mismatch(recorded, text_fingerprint(TEXT, "copy.txt")) is None
    shorter = fingerprint_mismatch(recorded, text_fingerprint(TEXT[:-1], "short.txt"))
    assert "'beowulf.txt'" in shorter and "'short.txt'" in shorter
    assert f"{len(TEXT):,} characters" in shorter and f"{len(TEXT) - 1:,}" in shorter
    changed = fingerprint_mismatch(recorded, text_fingerprint(TEXT[::-1], "reversed.txt"))
    assert "differs" in changed and "same length" in changed
    # a recorded fingerprint missing a field is a mismatch, not a crash
    assert "unknown length" in fingerprint_mismatch({}, recorded)


# --------------------------------------------------------------------------------------------
# CorpusText and open_corpus


def test_corpus_text_needs_exactly_one_of_text_and_stream(text_file):
    with pytest.raises(ValueError, match="exactly one"):
        CorpusText("x", text_file, None)
    with pytest.raises(ValueError, match="exactly one"):
        CorpusText("x", text_file, TEXT, TextCorpus(text_file))


def test_open_a_path_in_memory_and_streamed_alike(text_file, tmp_path):
    whole = open_corpus(str(text_file))
    streamed = open_corpus(text_file, stream_over=0)
    assert whole.text == TEXT and whole.stream is None and whole.data is whole.text
    assert streamed.text is None and isinstance(streamed.data, TextCorpus)
    vocab = CharVocab.fit([TEXT])
    for corpus in (whole, streamed):
        assert corpus.path == text_file and not corpus.named
        assert corpus.label == "beowulf" and corpus.source == str(text_file)
        assert corpus.n_chars == len(TEXT)
        assert corpus.n_distinct == len(set(TEXT))
        np.testing.assert_array_equal(corpus.ids(vocab), vocab.encode_documents([TEXT]))
    assert whole.fingerprint() == streamed.fingerprint() == text_fingerprint(TEXT, str(text_file))
    # a file under the limit is read whole
    assert open_corpus(text_file, stream_over=10**9).stream is None
    assert "stream" in repr(streamed) and "beowulf" in repr(whole)


def test_open_a_named_corpus(corpora_dir, monkeypatch):
    with pytest.raises(ValueError, match="not built yet"):
        open_corpus("python", build=False)
    built = []

    def builder(path, progress):
        built.append(path)
        path.write_text(TEXT, encoding="utf-8")

    monkeypatch.setitem(CORPORA, "python", dataclasses.replace(CORPORA["python"], builder=builder))
    corpus = open_corpus("python")
    assert built == [corpora_dir / "python.txt"]
    assert corpus.named and corpus.label == "python" and corpus.text == TEXT
    assert corpus.fingerprint()["source"] == "python"
    open_corpus("python")
    assert len(built) == 1  # built once


def test_open_errors_are_value_errors_a_user_can_act_on(tmp_path, corpora_dir):
    with pytest.raises(ValueError, match="neither a known corpus name"):
        open_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="is a directory"):
        open_corpus(tmp_path)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match="byte offset 3"):
        open_corpus(latin)
    assert open_corpus(latin, "latin-1").text == "café\n"
    assert open_corpus(latin, errors="replace").text == "caf\ufffd\n"
    # a streamed file is decoded when first read, with the same message
    streamed = open_corpus(latin, stream_over=0)
    with pytest.raises(ValueError, match="byte offset 3"):
        streamed.n_chars  # noqa: B018
