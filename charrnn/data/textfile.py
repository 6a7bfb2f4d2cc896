"""A text file used as one training document without ever holding it in memory.

:class:`TextCorpus` reads its file in blocks, decoding incrementally, to find the vocabulary
and the length of the text; then it encodes the text once into a compact id array (uint8 for
up to 256 symbols, else uint16) in a cache file and hands out a read-only ``np.memmap`` of it.
Training on a 500 MB text so holds a few blocks and a few pages of the map in memory, not the
text as a Python string (up to 4 bytes per character) nor its ids as an in-memory array.

Cache files live next to the corpus (or in a per-user cache folder if that folder cannot be
written), named after the corpus file:

* ``<name>.<file key>.cache.json`` -- the vocabulary, length and SHA-256 of the text;
* ``<name>.<file key>-<vocab key>.<dtype>.ids`` -- the ids, each document character's id
  followed by one end-of-document id, exactly ``CharVocab.encode_documents([text])``.

The file key hashes the corpus's size, modification time (in ns), encoding and error handler,
so editing the file gives new names (and the stale caches are deleted); the vocab key hashes
the vocabulary's characters, so a model with another vocabulary gets its own ids. Every cache
file is written atomically (:func:`charrnn.io.atomic_write`).
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from charrnn.data.vocab import CharVocab
from charrnn.io import atomic_write

__all__ = ["CACHE_ENV", "TextCorpus", "default_cache_dir"]

CACHE_ENV = "CHARRNN_CACHE_DIR"

# Bytes read and decoded at a time. 1 MiB already makes the per-block overhead negligible.
# Much larger blocks cost memory that grows with the file: with 16 MiB blocks, glibc's heap
# kept the freed blocks' memory and the resident size of a pass over a 200 MB file rose by
# ~170 MB (measured; 1 MiB blocks: flat).
BLOCK_BYTES = 1 << 20

# The scan marks code points seen this many characters at a time: indexing with a whole block
# would make an 8-byte-per-character index array (128 MB for a 16 MB block).
_SCAN_CHARS = 1 << 20

# Largest Unicode code point + 1 (size of the "seen" table used to collect the characters).
_N_CODE_POINTS = 0x110000

_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """Where caches go when the corpus's folder is not writable.

    ``$CHARRNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/charrnn``, else ``~/.cache/charrnn``.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "charrnn"


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _code_points(text: str) -> np.ndarray:
    """``(len(text),)`` uint32 code points (lone surrogates kept, as CharVocab does)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class TextCorpus:
    """A text file as one document, encoded once to a memory-mapped id cache.

    Pass it as ``X`` to :meth:`CharRNNGenerator.fit` (also ``partial_fit`` and ``score``) to
    train on a file of any size in bounded memory. The file is only read when needed, and
    what one pass finds (vocabulary, length, hash) is kept in the object and in a small
    cache file, so later objects for the same unchanged file do not read it again.

    Parameters
    ----------
    path : str or path-like
        The text file. Line endings are kept as stored, as :func:`charrnn.data.corpora.read_text`
        does.
    encoding : str, default="utf-8"
    errors : {"strict", "replace", ...}, default="strict"
        Codec error handler for undecodable bytes.
    cache_dir : str or path-like or None, default=None
        Folder for the cache files; None puts them next to the corpus, or in
        :func:`default_cache_dir` if the corpus's folder is not writable.
    block_size : int, default=1 MiB
        Bytes read and decoded at a time.

    Attributes
    ----------
    path : Path
    encoding, errors : str

    Raises
    ------
    ValueError
        If the file does not exist, is a folder or is empty, or ``encoding``/``errors`` is
        unknown. A decoding error (with its byte offset) is raised when the file is first read.

    Examples
    --------
    >>> corpus = TextCorpus("corpora/big.txt")  # doctest: +SKIP
    >>> CharRNNGenerator(max_iter=1).fit(corpus)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        encoding: str = "utf-8",
        errors: str = "strict",
        *,
        cache_dir: str | os.PathLike | None = None,
        block_size: int = BLOCK_BYTES,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a directory; expected a text file")
        if not self.path.is_file():
            raise ValueError(f"text file {self.path} does not exist")
        if self.path.stat().st_size == 0:
            raise ValueError(f"text file {self.path} is empty")
        try:
            codecs.getincrementaldecoder(encoding)
            codecs.lookup_error(errors)
        except (LookupError, TypeError) as exc:
            raise ValueError(f"encoding={encoding!r} / errors={errors!r}: {exc}") from None
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
        self.encoding = encoding
        self.errors = errors
        self.block_size = block_size
        self._cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self._scan: dict | None = None  # what the last pass found, with the file key it holds for

    def __repr__(self) -> str:
        return f"TextCorpus({str(self.path)!r}, encoding={self.encoding!r}, errors={self.errors!r})"

    # ------------------------------------------------------------------ reading
    def iter_text(self) -> Iterator[str]:
        """Yield the decoded text in consecutive pieces of about ``block_size`` bytes each.

        A character split between two blocks is decoded whole (the incremental decoder keeps
        the partial bytes), so ``"".join(self.iter_text())`` equals the file decoded at once.

        Raises
        ------
        ValueError
            If the bytes are not valid in ``encoding`` (with ``errors="strict"``); the message
            names the byte offset in the file, as :func:`charrnn.data.corpora.read_text` does.
        """
        decoder = codecs.getincrementaldecoder(self.encoding)(self.errors)
        consumed = 0  # file bytes handed to the decoder so far
        with open(self.path, "rb") as f:
            while True:
                block = f.read(self.block_size)
                # bytes of an unfinished character the decoder kept from earlier blocks
                pending = len(decoder.getstate()[0])
                try:
                    piece = decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    raise ValueError(
                        f"{self.path} is not valid {self.encoding}: byte offset "
                        f"{consumed - pending + exc.start} ({exc.reason}); give the file's real "
                        f"encoding with --encoding, or use --errors replace to substitute "
                        f"undecodable bytes"
                    ) from None
                consumed += len(block)
                if piece:
                    yield piece
                if not block:
                    return

    def _file_key(self) -> str:
        st = self.path.stat()
        ident = f"{st.st_size}:{st.st_mtime_ns}:{codecs.lookup(self.encoding).name}:{self.errors}"
        return hashlib.sha256(ident.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ cache locations
    def _folder_and_prefix(self) -> tuple[Path, str]:
        """The cache folder and the name every cache file of this corpus starts with."""
        if self._cache_dir is None and _writable(self.path.parent):
            return self.path.parent, self.path.name
        folder = self._cache_dir if self._cache_dir is not None else default_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        # a shared folder holds caches of many same-named files: tell them apart by location
        where = hashlib.sha256(str(self.path.resolve()).encode("utf-8", "surrogatepass"))
        return folder, f"{self.path.name}.{where.hexdigest()[:8]}"

    def _remove_stale(self, folder: Path, prefix: str, key: str) -> None:
        """Delete this corpus's cache files made for an earlier version of the file."""
        pattern = re.compile(
            rf"{re.escape(prefix)}\.([0-9a-f]{{16}})"
            rf"(?:\.cache\.json|-[0-9a-f]{{12}}\.uint(?:8|16|32)\.ids)"
        )
        for entry in folder.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and match.group(1) != key:
                with contextlib.suppress(OSError):
                    entry.unlink()

    # ------------------------------------------------------------------ the scan pass
    def _stats(self) -> dict:
        """Vocabulary code points, character count and text hash; one pass over the file."""
        key = self._file_key()
        if self._scan is not None and self._scan["key"] == key:
            return self._scan
        folder, prefix = self._folder_and_prefix()
        sidecar = folder / f"{prefix}.{key}.cache.json"
        stats = None
        with contextlib.suppress(OSError, ValueError):
            stored = json.loads(sidecar.read_text(encoding="utf-8"))
            if (
                stored.get("version") == _CACHE_VERSION
                and stored.get("key") == key
                and isinstance(stored.get("n_chars"), int)
                and isinstance(stored.get("sha256"), str)
                and isinstance(stored.get("code_points"), list)
            ):
                stats = stored
        if stats is None:
            stats = self._read_stats(key)
            self._remove_stale(folder, prefix, key)
            with contextlib.suppress(OSError), atomic_write(sidecar, "w") as f:
                json.dump(stats, f)
        self._scan = stats
        return stats

    def _read_stats(self, key: str) -> dict:
        seen = np.zeros(_N_CODE_POINTS, dtype=bool)
        digest = hashlib.sha256()
        n_chars = 0
        for piece in self.iter_text():
            for start in range(0, len(piece), _SCAN_CHARS):
                seen[_code_points(piece[start : start + _SCAN_CHARS])] = True
            # the hash of the text as UTF-8, as `charrnn train` fingerprints an in-memory text
            digest.update(piece.encode("utf-8", "surrogatepass"))
            n_chars += len(piece)
        if n_chars == 0:
            raise ValueError(f"text file {self.path} holds no characters once decoded")
        return {
            "version": _CACHE_VERSION,
            "key": key,
            "source": str(self.path),
            "n_chars": n_chars,
            "sha256": digest.hexdigest(),
            "code_points": np.flatnonzero(seen).tolist(),
        }

    def vocab(self) -> CharVocab:
        """The vocabulary of the file's characters, equal to ``CharVocab.fit([text])``."""
        return CharVocab(chr(c) for c in self._stats()["code_points"])

    def __len__(self) -> int:
        """Number of characters of the decoded text (the end-of-document symbol not counted)."""
        return self._stats()["n_chars"]

    @property
    def n_chars(self) -> int:
        return len(self)

    @property
    def sha256(self) -> str:
        """SHA-256 hex digest of the decoded text encoded as UTF-8."""
        return self._stats()["sha256"]

    # ------------------------------------------------------------------ the id cache
    def ids(self, vocab: CharVocab) -> np.memmap:
        """The text's ids under ``vocab``, memory-mapped read-only from the cache.

        Built on first use (one pass over the file); characters missing from ``vocab`` become
        ``CharVocab.UNK_ID``.

        Parameters
        ----------
        vocab : CharVocab

        Returns
        -------
        ids : np.memmap of shape (len(self) + 1,) and dtype ``vocab.dtype``
            Equal to ``vocab.encode_documents([text])``: the last id is ``CharVocab.EOD_ID``.
        """
        if not isinstance(vocab, CharVocab):
            raise TypeError(f"vocab must be a CharVocab, got {type(vocab).__name__}")
        stats = self._stats()
        folder, prefix = self._folder_and_prefix()
        points = np.asarray([ord(c) for c in vocab.chars], dtype="<u4")
        vkey = hashlib.sha256(points.tobytes()).hexdigest()[:12]
        dtype = np.dtype(vocab.dtype)
        path = folder / f"{prefix}.{stats['key']}-{vkey}.{dtype.name}.ids"
        n_bytes = (stats["n_chars"] + 1) * dtype.itemsize
        try:
            complete = path.stat().st_size == n_bytes
        except OSError:
            complete = False
        if not complete:
            self._write_ids(path, vocab, n_bytes)
        return np.memmap(path, dtype=dtype, mode="r", shape=(stats["n_chars"] + 1,))

    def _write_ids(self, path: Path, vocab: CharVocab, n_bytes: int) -> None:
        free = shutil.disk_usage(path.parent).free
        if free < n_bytes:
            raise ValueError(
                f"not enough free disk space for the id cache {path}: it needs "
                f"{n_bytes / 1e6:,.1f} MB, {path.parent} has {free / 1e6:,.1f} MB free"
            )
        written = 0
        with atomic_write(path, "wb") as f:
            for piece in self.iter_text():
                ids = vocab.encode(piece)
                f.write(ids.data)
                written += ids.nbytes
            f.write(np.array([CharVocab.EOD_ID], dtype=vocab.dtype).data)
            written += vocab.dtype.itemsize
            if written != n_bytes:
                # the file changed between the scan and now: keep no cache of a mixed text
                raise ValueError(
                    f"text file {self.path} changed while it was being read; try again"
                )
