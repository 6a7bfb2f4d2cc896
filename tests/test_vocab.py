"""Tests for charrnn.data.vocab.CharVocab."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charrnn.data.vocab import CharVocab

# Any text, including astral-plane characters; lone surrogates get their own test below.
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
doc_lists = st.lists(texts, max_size=6)


# --------------------------------------------------------------------------- properties
@given(text=texts)
def test_encode_decode_round_trip(text):
    vocab = CharVocab.fit([text])
    ids = vocab.encode(text)
    assert ids.shape == (len(text),)
    assert ids.dtype == vocab.dtype
    assert vocab.UNK_ID not in ids
    assert vocab.EOD_ID not in ids
    assert vocab.decode(ids) == text


@given(train=texts, other=texts)
def test_unseen_chars_become_unk(train, other):
    vocab = CharVocab.fit([train])
    ids = vocab.encode(other)
    known = set(train)
    expected_unk = np.array([ch not in known for ch in other], dtype=bool)
    np.testing.assert_array_equal(ids == CharVocab.UNK_ID, expected_unk)
    expected_text = "".join(ch if ch in known else "\ufffd" for ch in other)
    assert vocab.decode(ids) == expected_text
    assert vocab.unknown_chars(other) == sorted(set(other) - known)


@given(docs=doc_lists)
def test_encode_documents_places_eod_after_each_doc(docs):
    vocab = CharVocab.fit(docs)
    ids = vocab.encode_documents(docs)
    assert ids.dtype == vocab.dtype
    assert len(ids) == sum(len(d) + 1 for d in docs)
    ends = np.cumsum([len(d) + 1 for d in docs]) - 1
    np.testing.assert_array_equal(np.flatnonzero(ids == CharVocab.EOD_ID), ends)
    # Each stretch between EODs decodes back to its document.
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(int)
    for doc, start, end in zip(docs, starts, ends):
        assert vocab.decode(ids[start:end]) == doc
        np.testing.assert_array_equal(ids[start:end], vocab.encode(doc))


@given(docs=doc_lists)
def test_dict_round_trip_through_json(docs):
    vocab = CharVocab.fit(docs)
    restored = CharVocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored == vocab
    assert restored.symbols == vocab.symbols
    text = "".join(docs)
    np.testing.assert_array_equal(restored.encode(text), vocab.encode(text))


@given(docs=doc_lists, data=st.data())
def test_symbol_order_ignores_input_order(docs, data):
    shuffled_docs = data.draw(st.permutations(docs))
    # Also scramble the characters themselves: only the set of characters may matter.
    scrambled = "".join(data.draw(st.permutations(list("".join(docs)))))
    a = CharVocab.fit(docs)
    assert CharVocab.fit(shuffled_docs) == a
    assert CharVocab.fit([scrambled]) == a
    assert a.chars == sorted(set("".join(docs)))
    assert [ord(c) for c in a.chars] == sorted(ord(c) for c in a.chars)


# --------------------------------------------------------------------------- specifics
def test_symbol_layout():
    vocab = CharVocab.fit(["cab", "ba"])
    assert vocab.EOD_ID == 0 and vocab.UNK_ID == 1
    assert vocab.symbols == ["", "\ufffd", "a", "b", "c"]
    assert vocab.chars == ["a", "b", "c"]
    assert vocab.size == len(vocab) == 5
    assert vocab.encode("abcz").tolist() == [2, 3, 4, 1]
    assert vocab.decode([0, 2, 1, 0, 4]) == "a\ufffdc"
    assert "a" in vocab and "z" not in vocab and "ab" not in vocab


@pytest.mark.parametrize(
    ("n_chars", "dtype"),
    [(1, np.uint8), (254, np.uint8), (255, np.uint16), (65534, np.uint16), (65535, np.uint32)],
)
def test_dtype_is_smallest_that_fits(n_chars, dtype):
    # Code points from 0 upwards include the surrogate block once n_chars > 0xD800.
    chars = [chr(c) for c in range(n_chars)]
    vocab = CharVocab(chars)
    assert vocab.size == n_chars + 2
    assert vocab.dtype == dtype
    text = "".join(chars)
    ids = vocab.encode(text)
    assert ids.dtype == dtype
    assert int(ids.max()) == vocab.size - 1
    assert vocab.decode(ids) == text


def test_lone_surrogates_round_trip():
    # \ud800 and \udc80 end up adjacent in the sorted vocabulary, where JSON would pair them.
    text = "ab\udc80c\ud800"
    vocab = CharVocab.fit([text])
    assert vocab.decode(vocab.encode(text)) == text
    assert CharVocab.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab


def test_code_points_beyond_the_largest_known_are_unk():
    vocab = CharVocab.fit(["abc"])
    assert vocab.encode("\U0010ffff\x00d").tolist() == [1, 1, 1]


def test_empty_inputs():
    vocab = CharVocab.fit([])
    assert vocab.size == 2 and vocab.chars == []
    assert vocab.encode("xy").tolist() == [1, 1]
    assert vocab.encode("").shape == (0,)
    assert vocab.encode_documents([]).shape == (0,)
    assert vocab.decode(np.array([], dtype=np.int64)) == ""


def test_long_text_spans_several_chunks(monkeypatch):
    # Shrink the chunk size so the chunked paths are exercised on a small string.
    monkeypatch.setattr("charrnn.data.vocab._CHUNK_CHARS", 7)
    text = "the quick brown fox jumps over the lazy dog \u00e9\U0001f600" * 5
    vocab = CharVocab.fit([text[:30]])
    expected = [ch if ch in vocab else "\ufffd" for ch in text]
    assert vocab.decode(vocab.encode(text)) == "".join(expected)
    assert CharVocab.fit([text]) == CharVocab(set(text))
    assert vocab.unknown_chars(text) == sorted(set(text) - set(text[:30]))
    ids = vocab.encode_documents([text, text[:9]])
    assert ids[len(text)] == 0 and ids[-1] == 0


def test_fit_accepts_a_single_string():
    assert CharVocab.fit("hello") == CharVocab.fit(["hello"])


def test_encode_documents_rejects_a_single_string():
    vocab = CharVocab.fit(["abc"])
    with pytest.raises(TypeError, match="docs"):
        vocab.encode_documents("abc")


@pytest.mark.parametrize("bad", [[b"bytes"], ["ok", 3]])
def test_non_string_documents_are_rejected(bad):
    with pytest.raises(TypeError, match=r"docs\[\d\]"):
        CharVocab.fit(bad)


def test_encode_rejects_non_string():
    with pytest.raises(TypeError, match="text"):
        CharVocab.fit(["a"]).encode(b"a")


def test_decode_rejects_bad_ids():
    vocab = CharVocab.fit(["ab"])
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        vocab.decode([0, 4])
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        vocab.decode([-1])
    with pytest.raises(ValueError, match="1-D"):
        vocab.decode(np.zeros((2, 2), dtype=int))
    with pytest.raises(TypeError, match="integers"):
        vocab.decode(np.array([1.0, 2.0]))


def test_constructor_rejects_multi_character_symbols():
    with pytest.raises(ValueError, match="single character"):
        CharVocab(["a", "bc"])
    with pytest.raises(ValueError, match="single character"):
        CharVocab(["a", ""])


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "Other", "eod_id": 0, "unk_id": 1, "code_points": [97, 98]},
        {"type": "CharVocab", "eod_id": 1, "unk_id": 0, "code_points": [97, 98]},
        {"type": "CharVocab", "eod_id": 0, "unk_id": 1, "code_points": "ab"},
        {"type": "CharVocab", "eod_id": 0, "unk_id": 1, "code_points": [98, 97]},
        {"type": "CharVocab", "eod_id": 0, "unk_id": 1, "code_points": [97, 97, 98]},
        {"type": "CharVocab", "eod_id": 0, "unk_id": 1, "code_points": [97, 0x110000]},
        {"type": "CharVocab", "eod_id": 0, "unk_id": 1, "code_points": [-1, 97]},
        {"type": "CharVocab", "eod_id": 0, "unk_id": 1, "code_points": [97.0]},
        "not a dict",
    ],
)
def test_from_dict_rejects_malformed(bad):
    with pytest.raises(ValueError, match="vocabulary dict"):
        CharVocab.from_dict(bad)


def test_equality_and_hash():
    a, b, c = CharVocab.fit(["ab"]), CharVocab(["b", "a", "a"]), CharVocab.fit(["abc"])
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert a != "ab"


def test_decode_can_write_document_ends_as_a_separator():
    vocab = CharVocab.fit(["abc"])
    ids = vocab.encode_documents(["ab", "", "c"])  # a b EOD EOD c EOD
    assert vocab.decode(ids) == "abc"
    assert vocab.decode(ids, eod="\n") == "ab\n\nc\n"
    assert vocab.decode(ids, eod=" | ") == "ab |  | c | "
    assert len(vocab.decode(ids, eod="\n")) == len(ids)
    assert vocab.decode([], eod="\n") == ""
