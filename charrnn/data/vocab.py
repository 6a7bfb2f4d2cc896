"""Character vocabulary: text <-> integer symbol ids.

Symbol ids are fixed by construction so that a vocabulary fitted on the same characters is
always the same, whatever order the text arrived in:

* ``0`` -- end of document (EOD), decoded as ``""``;
* ``1`` -- unknown character (UNK), decoded as ``"\\ufffd"``;
* ``2 ..`` -- the characters seen during fitting, sorted by Unicode code point.

All conversions are vectorised through NumPy: text is turned into an array of code points by
the UTF-32 codec and mapped through a dense lookup table, so encoding a 50 MB corpus never runs a
Python-level loop per character.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["CharVocab", "WORD_PUNCTUATION", "is_word_char"]

# Characters other than letters and digits that may stand inside a word: apostrophes ("o'er",
# "I'll", "it's") and the hyphen ("well-met"). Every other character ends a word.
WORD_PUNCTUATION = "'\u2019-"


def is_word_char(char: str) -> bool:
    """Whether ``char`` can be part of a word: a letter, a digit or one of ``WORD_PUNCTUATION``."""
    return len(char) == 1 and (char.isalnum() or char in WORD_PUNCTUATION)


# Largest Unicode code point + 1: the size of a dense code-point lookup table.
_N_CODE_POINTS = 0x110000

# Text is converted in slices of this many characters so the temporary UTF-32 buffer stays
# small (4 bytes per character) even for corpora of hundreds of megabytes.
_CHUNK_CHARS = 1 << 22


def _code_points(text: str) -> np.ndarray:
    """Return the Unicode code points of ``text`` as a ``(len(text),)`` uint32 array.

    ``surrogatepass`` keeps lone surrogates (which Python strings may hold, e.g. after a
    ``surrogateescape`` decode) as ordinary code points instead of failing.
    """
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _chunks(text: str) -> Iterable[tuple[int, str]]:
    """Yield ``(offset, piece)`` slices of ``text`` of at most ``_CHUNK_CHARS`` characters."""
    for start in range(0, len(text), _CHUNK_CHARS):
        yield start, text[start : start + _CHUNK_CHARS]


def _check_text(text: Any, name: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    return text


def _check_docs(docs: Any, name: str = "docs") -> list[str]:
    """Materialise an iterable of documents, checking each one is a string."""
    if isinstance(docs, str | bytes):
        raise TypeError(
            f"{name} must be an iterable of str documents, got a single {type(docs).__name__}; "
            f"wrap it in a list: [{name}]"
        )
    try:
        docs = list(docs)
    except TypeError:
        raise TypeError(
            f"{name} must be an iterable of str documents, got {type(docs).__name__}"
        ) from None
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(doc).__name__}")
    return docs


class CharVocab:
    """An immutable mapping between characters and integer symbol ids.

    Parameters
    ----------
    chars : iterable of str
        The real characters of the vocabulary, each a string of length 1. Duplicates are
        dropped and the order is normalised (sorted by code point), so any permutation of the
        same characters gives an equal vocabulary.

    Attributes
    ----------
    EOD_ID : int
        Id of the end-of-document symbol (0).
    UNK_ID : int
        Id of the unknown-character symbol (1).
    symbols : list of str
        All symbols indexed by id: ``["", "\\ufffd", *chars]``.
    chars : list of str
        Only the real characters, sorted by code point; ``chars[i]`` has id ``i + 2``.
    size : int
        Number of symbols, ``len(chars) + 2``.
    dtype : numpy.dtype
        Smallest unsigned integer type holding every id: uint8, uint16 or uint32.

    Examples
    --------
    >>> vocab = CharVocab.fit(["hello", "world"])
    >>> vocab.chars
    ['d', 'e', 'h', 'l', 'o', 'r', 'w']
    >>> vocab.encode("hold!").tolist()
    [4, 6, 5, 2, 1]
    >>> vocab.decode(vocab.encode_documents(["he", "lo"]))
    'helo'
    """

    EOD_ID = 0
    UNK_ID = 1
    EOD_SYMBOL = ""
    UNK_SYMBOL = "\ufffd"
    N_SPECIAL = 2

    def __init__(self, chars: Iterable[str]) -> None:
        if isinstance(chars, str):
            chars = list(chars)
        codes = []
        for i, ch in enumerate(chars):
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"chars[{i}] must be a single character, got {ch!r}")
            codes.append(ord(ch))
        # (n_chars,) sorted unique code points; the id of codes[i] is i + N_SPECIAL.
        self._codes = np.unique(np.asarray(codes, dtype=np.uint32))
        self._chars = tuple(chr(c) for c in self._codes.tolist())
        self._encode_table: np.ndarray | None = None
        self._decode_table: np.ndarray | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(cls, docs: Iterable[str] | str) -> CharVocab:
        """Build the vocabulary of every character occurring in ``docs``.

        Parameters
        ----------
        docs : iterable of str, or str
            The training documents. A single string is treated as one document.

        Returns
        -------
        CharVocab
        """
        if isinstance(docs, str):
            docs = [docs]
        seen = np.zeros(_N_CODE_POINTS, dtype=bool)
        for doc in _check_docs(docs):
            for _, piece in _chunks(doc):
                seen[_code_points(piece)] = True
        return cls(chr(c) for c in np.flatnonzero(seen).tolist())

    # ------------------------------------------------------------------ properties
    @property
    def chars(self) -> list[str]:
        return list(self._chars)

    @property
    def symbols(self) -> list[str]:
        return [self.EOD_SYMBOL, self.UNK_SYMBOL, *self._chars]

    @property
    def size(self) -> int:
        return len(self._chars) + self.N_SPECIAL

    @property
    def dtype(self) -> np.dtype:
        if self.size <= 1 << 8:
            return np.dtype(np.uint8)
        if self.size <= 1 << 16:
            return np.dtype(np.uint16)
        return np.dtype(np.uint32)

    def __len__(self) -> int:
        return self.size

    def __contains__(self, char: object) -> bool:
        if not isinstance(char, str) or len(char) != 1:
            return False
        i = np.searchsorted(self._codes, ord(char))
        return bool(i < len(self._codes) and self._codes[i] == ord(char))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CharVocab):
            return NotImplemented
        return self._chars == other._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        preview = "".join(self._chars[:20])
        more = "..." if len(self._chars) > 20 else ""
        return f"CharVocab(size={self.size}, chars={preview!r}{more})"

    # ------------------------------------------------------------------ lookup tables
    def _get_encode_table(self) -> np.ndarray:
        """Dense ``(max_code + 2,)`` table mapping a code point to its id.

        The last entry is UNK, so looking code points up with ``np.take(..., mode="clip")``
        sends every code point beyond the largest known one to UNK without a temporary array.
        """
        if self._encode_table is None:
            top = int(self._codes[-1]) + 1 if len(self._codes) else 0
            table = np.full(top + 1, self.UNK_ID, dtype=self.dtype)
            table[self._codes] = np.arange(self.N_SPECIAL, self.size, dtype=self.dtype)
            self._encode_table = table
        return self._encode_table

    def _get_decode_table(self) -> np.ndarray:
        """``(size,)`` uint32 table mapping an id to a code point (EOD's entry is unused)."""
        if self._decode_table is None:
            table = np.empty(self.size, dtype="<u4")
            table[self.EOD_ID] = 0
            table[self.UNK_ID] = ord(self.UNK_SYMBOL)
            table[self.N_SPECIAL :] = self._codes
            self._decode_table = table
        return self._decode_table

    def _encode_into(self, text: str, out: np.ndarray) -> None:
        """Write the ids of ``text`` into ``out``, a ``(len(text),)`` array of ``self.dtype``."""
        table = self._get_encode_table()
        for start, piece in _chunks(text):
            np.take(table, _code_points(piece), out=out[start : start + len(piece)], mode="clip")

    # ------------------------------------------------------------------ conversions
    def encode(self, text: str) -> np.ndarray:
        """Convert a string to symbol ids.

        Parameters
        ----------
        text : str

        Returns
        -------
        ids : ndarray of shape (len(text),) and dtype ``self.dtype``
            Characters not in the vocabulary become ``UNK_ID``.
        """
        _check_text(text, "text")
        out = np.empty(len(text), dtype=self.dtype)
        self._encode_into(text, out)
        return out

    def encode_documents(self, docs: Iterable[str]) -> np.ndarray:
        """Encode several documents into one id stream, each followed by ``EOD_ID``.

        Parameters
        ----------
        docs : iterable of str

        Returns
        -------
        ids : ndarray of shape (sum(len(d) + 1 for d in docs),) and dtype ``self.dtype``
        """
        docs = _check_docs(docs)
        out = np.empty(sum(len(d) + 1 for d in docs), dtype=self.dtype)
        pos = 0
        for doc in docs:
            self._encode_into(doc, out[pos : pos + len(doc)])
            pos += len(doc)
            out[pos] = self.EOD_ID
            pos += 1
        return out

    def word_mask(self) -> np.ndarray:
        """Which symbols can be part of a word (:func:`is_word_char`).

        Returns
        -------
        ndarray of bool, shape (size,)
            False for the end-of-document and unknown symbols.
        """
        mask = np.zeros(self.size, dtype=bool)
        mask[self.N_SPECIAL :] = [is_word_char(c) for c in self._chars]
        return mask

    def unknown_chars(self, text: str) -> list[str]:
        """Return the distinct characters of ``text`` missing from the vocabulary, sorted.

        Parameters
        ----------
        text : str

        Returns
        -------
        list of str
        """
        _check_text(text, "text")
        table = self._get_encode_table()
        missing: set[int] = set()
        for _, piece in _chunks(text):
            cps = _code_points(piece)
            unknown = np.take(table, cps, mode="clip") == self.UNK_ID
            missing.update(np.unique(cps[unknown]).tolist())
        return [chr(c) for c in sorted(missing)]

    def decode(self, ids: Sequence[int] | np.ndarray, eod: str = "") -> str:
        """Convert symbol ids back to a string.

        Parameters
        ----------
        ids : array-like of int, shape (n,)
            UNK becomes ``"\\ufffd"``; decoding does not stop at EOD.
        eod : str
            What each EOD becomes: ``""`` (the default) joins the documents, and a separator
            such as ``"\\n"`` keeps one character per symbol.

        Returns
        -------
        str
        """
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids must be a 1-D sequence of symbol ids, got shape {arr.shape}")
        if arr.size == 0:
            return ""
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"ids must hold integers, got dtype {arr.dtype}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= self.size:
            raise ValueError(
                f"ids must lie in [0, {self.size - 1}] for this vocabulary, got values in "
                f"[{lo}, {hi}]"
            )
        table = self._get_decode_table()
        if len(eod) == 1:  # one character per symbol: one table lookup
            table = table.copy()
            table[self.EOD_ID] = ord(eod)
            return table[arr].tobytes().decode("utf-32-le", "surrogatepass")
        docs = np.split(arr, np.flatnonzero(arr == self.EOD_ID))
        # every piece after the first starts with the EOD that split it off
        parts = [
            table[doc[k > 0 :]].tobytes().decode("utf-32-le", "surrogatepass")
            for k, doc in enumerate(docs)
        ]
        return eod.join(parts)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description; inverse of :meth:`from_dict`.

        Characters are stored as code points rather than as one string: JSON would merge two
        adjacent lone surrogates (both valid vocabulary entries) into a single character.
        """
        return {
            "type": "CharVocab",
            "eod_id": self.EOD_ID,
            "unk_id": self.UNK_ID,
            "code_points": self._codes.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharVocab:
        """Rebuild a vocabulary from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            If ``d`` does not describe a ``CharVocab`` or its code points are not strictly
            increasing valid code points (a sign the data was edited or corrupted).
        """
        if not isinstance(d, dict) or d.get("type") != "CharVocab":
            raise ValueError(f"vocabulary dict must have type 'CharVocab', got {d!r:.80}")
        if d.get("eod_id") != cls.EOD_ID or d.get("unk_id") != cls.UNK_ID:
            raise ValueError(
                f"vocabulary dict has eod_id={d.get('eod_id')!r}, unk_id={d.get('unk_id')!r}; "
                f"this version expects {cls.EOD_ID} and {cls.UNK_ID}"
            )
        codes = d.get("code_points")
        if not isinstance(codes, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c < _N_CODE_POINTS
            for c in codes
        ):
            raise ValueError("vocabulary dict 'code_points' must be a list of Unicode code points")
        if any(a >= b for a, b in zip(codes, codes[1:])):
            raise ValueError("vocabulary dict 'code_points' must be strictly increasing")
        return cls(chr(c) for c in codes)
