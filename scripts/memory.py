"""Peak memory of training on a big corpus: it must not grow with the corpus.

Writes a synthetic English-like corpus of ``--size-mb`` MB (deterministic for a seed, written
block by block so the script itself never holds it), encodes it once into a memory-mapped id
cache (:class:`charrnn.data.textfile.TextCorpus`), trains a small LSTM on it for ``--steps`` steps
and prints the peak resident memory of the process (``ru_maxrss``). The target of issue 6 is
under 1 GB for 500 MB of text; run it at two sizes to see the peak stay flat:

    .venv/bin/python scripts/memory.py                    # 500 MB, 300 steps (a few minutes)
    .venv/bin/python scripts/memory.py --size-mb 50

Note that ``ru_maxrss`` counts the pages of the id map that training has touched (they are
file-backed and the kernel can drop them at any time); a few hundred steps touch a few pages
per stream, a whole pass would touch all of them.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from threadpoolctl import threadpool_limits

from charrnn import CharRNNGenerator
from charrnn.data.textfile import TextCorpus

# Text is generated and written this many bytes at a time.
BLOCK_BYTES = 1 << 20

SYLLABLES = [c + v for c in "bcdfgklmnprstvw" for v in "aeiou"] + list("aeiou")
# a few non-ASCII words, so the corpus has multi-byte characters (and block boundaries
# fall inside some of them)
EXTRA_WORDS = ["café", "naïve", "über", "façade", "señor", "déjà", "coöperate"]
PUNCTUATION = np.array([" ", " ", " ", " ", " ", " ", " ", ", ", ". ", "; ", "! ", "? "])


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (ru_maxrss: KiB on Linux, bytes
    on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def make_words(rng: np.random.Generator, n_words: int = 3000) -> np.ndarray:
    """A fixed vocabulary of pseudo-words of 1-4 syllables, some capitalised."""
    words = []
    for _ in range(n_words):
        word = "".join(rng.choice(SYLLABLES, size=int(rng.integers(1, 5))))
        words.append(word.capitalize() if rng.random() < 0.1 else word)
    return np.array(words + EXTRA_WORDS, dtype=object)


def make_lines(rng: np.random.Generator, n_lines: int = 50_000) -> np.ndarray:
    """A pool of ``n_lines`` lines of about a dozen Zipf-distributed words with punctuation."""
    words = make_words(rng)
    freq = 1.0 / np.arange(1, len(words) + 1)  # Zipf-like word frequencies, as in real text
    n_words = rng.integers(4, 20, size=n_lines)
    picked = words[rng.choice(len(words), size=int(n_words.sum()), p=freq / freq.sum())]
    seps = PUNCTUATION[rng.integers(0, len(PUNCTUATION), size=len(picked))]
    ends = np.cumsum(n_words)
    seps[ends - 1] = "\n"
    parts = np.empty(2 * len(picked), dtype=object)  # word, separator, word, ...
    parts[0::2], parts[1::2] = picked, seps
    lines = []
    for start, stop in zip(ends - n_words, ends):
        lines.append("".join(parts[2 * start : 2 * stop].tolist()))
    return np.array(lines, dtype=object)


def write_corpus(path: Path, size_bytes: int, seed: int) -> None:
    """Write ``size_bytes`` bytes of lines drawn from a fixed pool to ``path``, block by block."""
    rng = np.random.default_rng(seed)
    lines = make_lines(rng)
    per_block = max(1, BLOCK_BYTES // 80)  # about 80 bytes per line
    written = 0
    with open(path, "wb") as f:
        while written < size_bytes:
            picked = lines[rng.integers(0, len(lines), size=per_block)]
            data = "".join(picked.tolist()).encode("utf-8")[: size_bytes - written]
            # never end the file in the middle of a multi-byte character
            data = data.decode("utf-8", "ignore").encode("utf-8")
            if not data:
                break
            f.write(data)
            written += len(data)


@click.command()
@click.option("--size-mb", type=click.FloatRange(0.1), default=500.0, show_default=True)
@click.option(
    "--path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="a temporary folder, deleted at the end",
    help="Where to write the corpus (its id cache goes next to it); kept at the end.",
)
@click.option("--steps", type=click.IntRange(1), default=300, show_default=True)
@click.option(
    "--cell", type=click.Choice(["rnn", "lstm", "gru"]), default="lstm", show_default=True
)
@click.option("--hidden-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--seq-length", type=click.IntRange(1), default=64, show_default=True)
@click.option(
    "--validation-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.001,
    show_default=True,
)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="BLAS threads for training (0 = leave as found); 1 keeps a shared machine usable.",
)
def main(
    size_mb,
    path,
    steps,
    cell,
    hidden_size,
    batch_size,
    seq_length,
    validation_fraction,
    seed,
    threads,
):
    """Generate a SIZE_MB corpus, train on it from its id cache, print the peak memory."""
    with tempfile.TemporaryDirectory(prefix="charrnn-memory-") as tmp:
        target = path if path is not None else Path(tmp) / "synthetic.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        size = int(size_mb * 1e6)
        click.echo(f"peak RSS after imports: {peak_rss_mb():,.0f} MB")

        t0 = time.perf_counter()
        write_corpus(target, size, seed)
        t_gen = time.perf_counter() - t0
        click.echo(
            f"corpus: {target} ({target.stat().st_size / 1e6:,.1f} MB) written in {t_gen:.1f} s"
            f"; peak RSS {peak_rss_mb():,.0f} MB"
        )

        corpus = TextCorpus(target)
        t0 = time.perf_counter()
        vocab = corpus.vocab()  # the scan pass: characters, length, hash
        t_scan = time.perf_counter() - t0
        t0 = time.perf_counter()
        ids = corpus.ids(vocab)  # the encode pass: writes the id cache
        t_encode = time.perf_counter() - t0
        click.echo(
            f"cache: {len(corpus):,} characters, {vocab.size} symbols, {ids.dtype} ids "
            f"({ids.nbytes / 1e6:,.1f} MB, {Path(ids.filename).name}); scan {t_scan:.1f} s + "
            f"encode {t_encode:.1f} s = {t_scan + t_encode:.1f} s "
            f"({len(corpus) / 1e6 / (t_scan + t_encode):,.0f} M chars/s); "
            f"peak RSS {peak_rss_mb():,.0f} MB"
        )
        del ids

        gen = CharRNNGenerator(
            cell=cell,
            hidden_size=hidden_size,
            num_layers=1,
            batch_size=batch_size,
            seq_length=seq_length,
            max_iter=1,
            validation_fraction=validation_fraction,
            lr_schedule="constant",
            random_state=seed,
        )
        losses: list[float] = []
        timing = {}

        def on_step(est, trainer, loss, grad_norm, lr):
            losses.append(loss)
            if len(losses) == 1:
                timing["first"] = time.perf_counter()
            return len(losses) >= steps

        t0 = time.perf_counter()
        with threadpool_limits(threads or None, user_api="blas"):
            gen.fit(corpus, on_step=on_step)
        t_fit = time.perf_counter() - t0
        t_steps = time.perf_counter() - timing["first"]
        rate = (len(losses) - 1) / t_steps if len(losses) > 1 else float("nan")
        chars = rate * batch_size * seq_length
        click.echo(
            f"training: {len(losses)} steps ({cell} 1x{hidden_size}, batch {batch_size}, "
            f"seq {seq_length}, {threads or 'default'} BLAS threads) in {t_fit:.1f} s, "
            f"{rate:.1f} steps/s = {chars:,.0f} chars/s; "
            f"loss {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f} (mean of the last 20)"
        )
        peak = peak_rss_mb()
        click.echo(f"PEAK RSS: {peak:,.0f} MB for a {size / 1e6:,.0f} MB corpus")
        if path is None:
            click.echo("(the temporary corpus and its cache are deleted now)")
        if peak >= 1024:
            raise SystemExit("peak RSS is over 1 GB")


if __name__ == "__main__":
    main()
