"""A training text as a command or a script opens it, and the fingerprint that identifies it.

:func:`open_corpus` turns what a user typed -- a corpus name (:data:`charrnn.data.corpora.CORPORA`)
or a path -- into a :class:`CorpusText`: the text held as a string, or, for a file too big
for that, left on disk behind a :class:`~charrnn.data.textfile.TextCorpus`. Either way it
gives what ``CharRNNGenerator.fit`` takes (:attr:`CorpusText.data`).

:func:`text_fingerprint` is what a model records about the text it was trained on (length and
SHA-256), so that continuing an interrupted training run can check it is given the same text
(:func:`fingerprint_mismatch`). A file streamed in blocks and the same text held in memory
have the same fingerprint.

(The class is not called ``Corpus``: :class:`charrnn.data.corpora.Corpus` already names an
entry of the registry of named corpora.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from charrnn.data.corpora import CORPORA, read_text, resolve_corpus
from charrnn.data.textfile import TextCorpus
from charrnn.data.vocab import CharVocab

__all__ = ["CorpusText", "fingerprint_mismatch", "open_corpus", "text_fingerprint"]

# Never part of UTF-8 output, so joining documents with it keeps their boundaries apart:
# ["ab", "c"] and ["a", "bc"] train differently and must not share a fingerprint.
_DOCUMENT_SEPARATOR = b"\xff"


def text_fingerprint(X: str | Iterable[str] | TextCorpus, source: str | None = None) -> dict:
    """What identifies a training text: its source, length and SHA-256.

    Parameters
    ----------
    X : str, iterable of str, or TextCorpus
        The training data as ``CharRNNGenerator.fit`` takes it. A TextCorpus is hashed from
        its cache (one pass over the file the first time), never loaded whole.
    source : str or None
        What the text was called (a corpus name or a path), kept for messages only; None
        takes a TextCorpus's path.

    Returns
    -------
    dict
        ``{"source": str or None, "n_chars": int, "sha256": str}``: ``n_chars`` counts the
        characters of all documents, ``sha256`` is the hex digest of the text as UTF-8 (lone
        surrogates passed through), documents joined by a byte UTF-8 never uses. One string,
        a list holding just that string and a file holding it give the same ``n_chars`` and
        ``sha256``.

    Raises
    ------
    TypeError
        If ``X`` is neither a string, an iterable of strings nor a TextCorpus.
    """
    if isinstance(X, TextCorpus):
        source = str(X.path) if source is None else source
        return {"source": source, "n_chars": len(X), "sha256": X.sha256}
    docs = [X] if isinstance(X, str) else list(X) if isinstance(X, Iterable) else None
    if docs is None or not all(isinstance(d, str) for d in docs):
        raise TypeError(
            f"X must be a string, an iterable of strings or a TextCorpus, got {type(X).__name__}"
        )
    digest = hashlib.sha256()
    for i, doc in enumerate(docs):
        if i:
            digest.update(_DOCUMENT_SEPARATOR)
        digest.update(doc.encode("utf-8", "surrogatepass"))
    return {"source": source, "n_chars": sum(map(len, docs)), "sha256": digest.hexdigest()}


def fingerprint_mismatch(recorded: Mapping, current: Mapping) -> str | None:
    """Why two fingerprints (from :func:`text_fingerprint`) are not the same text, or None.

    Parameters
    ----------
    recorded : mapping
        The fingerprint a model recorded (``CharRNNGenerator.training_corpus_``).
    current : mapping
        The fingerprint of the text given now.

    Returns
    -------
    str or None
        None for the same text; otherwise one sentence naming both texts, for example
        ``"the model was trained on 'a.txt' (1,000 characters), but 'b.txt' has 990"``.
    """
    if recorded.get("n_chars") != current.get("n_chars"):
        n = recorded.get("n_chars")
        size = f"{n:,} characters" if isinstance(n, int) else "unknown length"
        return (
            f"the model was trained on {recorded.get('source')!r} ({size}), but "
            f"{current.get('source')!r} has {current.get('n_chars'):,}"
        )
    if recorded.get("sha256") != current.get("sha256"):
        return (
            f"{current.get('source')!r} differs from the text the model was trained on "
            f"({recorded.get('source')!r}, same length)"
        )
    return None


class CorpusText:
    """A corpus opened for training or evaluation: its source, file and text.

    The text is either held as a string (``text``) or, for a big file, left on disk and read
    in blocks through a :class:`~charrnn.data.textfile.TextCorpus` (``stream``; ``text`` is
    None). :attr:`data`, :attr:`n_chars`, :attr:`n_distinct`, :meth:`ids` and
    :meth:`fingerprint` work for both. Usually made by :func:`open_corpus`.

    Parameters
    ----------
    source : str
        What the user gave: a corpus name or a path.
    path : Path
        The text file.
    text : str or None
    stream : TextCorpus or None
        Exactly one of ``text`` and ``stream``.

    Attributes
    ----------
    source : str
    path : Path
    named : bool
        True for a named corpus (``"shakespeare"``, ``"python"``).
    label : str
        The corpus name, or the file's stem (a default model name, say).
    text : str or None
    stream : TextCorpus or None

    Raises
    ------
    ValueError
        If not exactly one of ``text`` and ``stream`` is given.
    """

    def __init__(
        self, source: str, path: Path, text: str | None, stream: TextCorpus | None = None
    ) -> None:
        if (text is None) == (stream is None):
            raise ValueError("CorpusText needs exactly one of text and stream")
        self.source = source
        self.path = Path(path)
        self.named = source in CORPORA
        self.label = source if self.named else self.path.stem
        self.text = text
        self.stream = stream

    def __repr__(self) -> str:
        kind = "text" if self.stream is None else "stream"
        return f"CorpusText({self.source!r}, {str(self.path)!r}, {kind})"

    @property
    def data(self) -> str | TextCorpus:
        """What ``CharRNNGenerator.fit`` is given: the string or the TextCorpus."""
        return self.text if self.stream is None else self.stream

    @property
    def n_chars(self) -> int:
        """Number of characters (for a stream, the first call reads the whole file once)."""
        return len(self.data)

    @property
    def n_distinct(self) -> int:
        """Number of distinct characters in the text."""
        if self.stream is None:
            return len(set(self.text))
        return len(self.stream.vocab().chars)

    def ids(self, vocab: CharVocab) -> np.ndarray:
        """The text's ids under ``vocab`` with a final end-of-document id.

        Returns
        -------
        ndarray of int, shape (n_chars + 1,)
            Memory-mapped from the id cache for a stream, in memory otherwise.
        """
        if self.stream is None:
            return vocab.encode_documents([self.text])
        return self.stream.ids(vocab)

    def fingerprint(self) -> dict:
        """:func:`text_fingerprint` of the text, with this corpus's ``source``."""
        return text_fingerprint(self.data, self.source)


def open_corpus(
    source: str | os.PathLike,
    encoding: str = "utf-8",
    errors: str = "strict",
    *,
    stream_over: int | None = None,
    build: bool = True,
) -> CorpusText:
    """Open a corpus name or a text file path for training.

    Parameters
    ----------
    source : str or path-like
        A name of :data:`charrnn.data.corpora.CORPORA` (a name wins over a same-named file;
        give ``./name`` for the file) or a path.
    encoding, errors : str
        How the file's bytes are decoded.
    stream_over : int or None
        A file of more than this many bytes is not read into memory: it is left to a
        :class:`~charrnn.data.textfile.TextCorpus`, which is read in blocks and trained on
        from a memory-mapped id cache. None reads every file whole.
    build : bool
        Build a named corpus that is not built yet (without progress messages; call
        :func:`charrnn.data.corpora.build_corpus` first to see them).

    Returns
    -------
    CorpusText
        For a stream, nothing is read yet; ``n_chars`` (or training) reads the file once.

    Raises
    ------
    ValueError
        If the source is neither a corpus name nor an existing file, the file is a folder or
        empty, cannot be decoded (the message gives the byte offset), or a named corpus is
        not built and ``build`` is False.
    """
    path = resolve_corpus(source, build=build)
    label = os.fspath(source)
    if stream_over is not None and path.stat().st_size > stream_over:
        return CorpusText(label, path, None, TextCorpus(path, encoding=encoding, errors=errors))
    return CorpusText(label, path, read_text(path, encoding=encoding, errors=errors))
