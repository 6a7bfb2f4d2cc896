"""``charrnn train``: fit a CharRNNGenerator on a corpus, saving as it goes.

The command checks everything it can before the first step (the corpus reads and is long
enough, the model path is writable and no other run holds its lock, the memory and the disk
have room), then trains with a progress bar, saves
the model atomically at every pass end and when training stops (finished, time budget, early
stopping, Ctrl-C or SIGTERM), and never writes weights that are not finite. A file larger than
``STREAM_OVER_BYTES`` is never read into memory: it is read in blocks and trained on from a
memory-mapped id cache written next to it (:class:`charrnn.data.textfile.TextCorpus`).
"""

from __future__ import annotations

import contextlib
import math
import shlex
import shutil
import signal
import time
import warnings
from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource
from tqdm import tqdm

from charrnn.cli.common import (
    encoding_options,
    library_errors,
    load_generator,
    models_dir,
    read_corpus,
    remember_model,
)
from charrnn.cli.options import estimator_options
from charrnn.data.batches import split_sizes
from charrnn.data.corpus import CorpusText, fingerprint_mismatch
from charrnn.data.textfile import TextCorpus
from charrnn.engine import network
from charrnn.engine.training import StopFlag
from charrnn.estimators.base import evaluation_bar
from charrnn.estimators.evaluation import final_validation
from charrnn.estimators.generator import CharRNNGenerator
from charrnn.io import check_writable
from charrnn.locks import model_lock

__all__ = ["TRAIN_DEFAULTS", "train"]

# Where `charrnn train` deliberately differs from the estimator: a bare `charrnn train` (and so
# `make train`) must finish within 15 minutes, corpus build and final evaluation included, and
# the time budget governs rather than a pass count (so a small corpus is not stopped after 10
# quick passes: early stopping ends it when validation says so), the last tenth of the
# training is spent on all the text, held-out part included, dropout is chosen by the corpus
# size, and AdamW's decoupled weight decay of 0.1 regularises at every size (held-out loss
# 1.731 / 1.562 / 1.432 against Adam's 1.776 / 1.592 / 1.444 at 0.36 / 1.04 / 4.43 M
# characters; docs/benchmarks.md, "Using all the text" and "Weight decay").
TRAIN_DEFAULTS = {
    "max_time": 780.0,
    "max_iter": 1000,
    "refit_fraction": 0.1,
    "dropout": None,
    "optimizer": "adamw",
    "weight_decay": 0.1,
}

EPOCH_SAMPLE_LENGTH = 120
FINAL_SAMPLE_LENGTH = 200
SAMPLE_TEMPERATURE = 0.8
# Files bigger than this are not read into memory: they are streamed through a TextCorpus and
# trained on from a memory-mapped id cache, so memory does not grow with the corpus.
STREAM_OVER_BYTES = 64 << 20
# Without a terminal (CI logs, `nohup`) the bar is hidden; a plain progress line every so often
# shows the run is alive.
LOG_EVERY_SECONDS = 60.0

# Changing these on --resume would change the network or the data layout the saved state
# belongs to, so a resumed run refuses them.
_FIXED_ON_RESUME = (
    "cell",
    "hidden_size",
    "num_layers",
    "embedding_dim",
    "dropout",
    "seq_length",
    "batch_size",
    "optimizer",
    "validation_fraction",
    "max_validation_chars",
    "refit_fraction",
    "dtype",
    "random_state",
)


@click.command()
@click.argument("corpus_source", metavar="CORPUS_OR_PATH")
@click.option(
    "--model",
    "-m",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="models/<corpus name or file stem>.npz",
    help="Where the model is saved (at each pass end and when training stops).",
)
@click.option(
    "--resume",
    is_flag=True,
    default=False,
    show_default=True,
    help="Continue the --model file's interrupted training exactly where it stopped.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    default=False,
    show_default=True,
    help="Start a new model even if the --model file exists (it is replaced).",
)
@encoding_options
@estimator_options(CharRNNGenerator, TRAIN_DEFAULTS)
@click.pass_context
def train(ctx, corpus_source, model, resume, overwrite, encoding, errors, **hyper):
    """Train a model on CORPUS_OR_PATH: a corpus name (see `charrnn corpora`) or a text file.

    A named corpus is built on first use. The model is saved at the end of every pass over
    the text and when training stops; Ctrl-C stops after the current step, saves, and prints
    the command that resumes. While it runs, the model is locked (MODEL.lock): a second run
    on the same --model is refused.
    """
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite contradict each other; give one")
    corpus = read_corpus(corpus_source, encoding, errors, stream_over=STREAM_OVER_BYTES)
    model = model if model is not None else models_dir() / f"{corpus.label}.npz"
    with contextlib.ExitStack() as held:
        with library_errors():
            check_writable(model, make_parents=True)
            # held from before the model file is read until the last save: a second run on
            # the same file stops here, naming this one's process
            held.enter_context(model_lock(model))
        _train(ctx, corpus, model, resume, overwrite, encoding, errors, hyper)


def _train(ctx, corpus, model, resume, overwrite, encoding, errors, hyper) -> None:
    """The run, while the model's lock is held."""
    if resume:
        gen = _prepare_resume(ctx, model, corpus, hyper)
    else:
        if model.exists() and not overwrite:
            raise click.UsageError(
                f"{model} already exists; continue its training with --resume, or start "
                "over with --overwrite (or choose another --model)"
            )
        gen = CharRNNGenerator(**hyper)
        _check_length(corpus, gen)
    with library_errors():
        # first: a model too large for the memory would also be too large for the disk
        gen.check_memory(corpus.data)
        _check_disk_space(model, gen, corpus)
    if corpus.stream is not None:
        # build (or find) the id cache now, so the time it takes is not shown as training
        click.echo("Preparing the id cache (encoded once per file and vocabulary) ...")
        with library_errors():
            corpus.ids(gen.vocab_ if resume else corpus.stream.vocab())
    if resume:
        click.echo(f"Resuming {model} on {corpus.source} ({corpus.n_chars:,} characters)")
    else:
        click.echo(f"Training a new model on {corpus.source} ({corpus.n_chars:,} characters)")
        gen.training_corpus_ = corpus.fingerprint()
    run = _TrainingRun(gen, model, corpus.n_chars)
    run.fit(corpus.data, resume)
    _finish(ctx, run, corpus, encoding, errors)


# --------------------------------------------------------------------------------------------
# Checks before training


def _option_names(ctx) -> dict[str, str]:
    return {p.name: p.opts[0] for p in ctx.command.params if p.opts}


def _prepare_resume(ctx, model: Path, corpus: CorpusText, hyper: dict) -> CharRNNGenerator:
    """Load the model to resume, check it matches the corpus, apply allowed overrides."""
    if not model.exists():
        raise click.UsageError(
            f"nothing to resume: {model} does not exist (train without --resume first)"
        )
    gen = load_generator(model)
    progress = gen.training_progress_
    if progress is None:
        raise click.UsageError(f"{model} holds no training state to resume from")
    recorded = getattr(gen, "training_corpus_", None)
    current = corpus.fingerprint()
    if isinstance(recorded, dict):
        mismatch = fingerprint_mismatch(recorded, current)
        if mismatch is not None:
            raise click.UsageError(f"{model}: {mismatch}; --resume needs the same text")
    else:
        click.echo(
            f"warning: {model} does not record its training text; cannot check it is "
            f"{corpus.source!r}",
            err=True,
        )
        gen.training_corpus_ = current
    names = _option_names(ctx)
    saved = gen.get_params()
    overrides = {}
    for name, value in hyper.items():
        if ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None):
            continue
        if name in _FIXED_ON_RESUME:
            if value != saved[name]:
                raise click.UsageError(
                    f"{names[name]} cannot change on --resume: the model was trained with "
                    f"{saved[name]!r} (got {value!r})"
                )
        else:
            overrides[name] = value
    gen.set_params(**overrides)
    if progress["epoch"] >= gen.max_iter:
        raise click.UsageError(
            f"{model} has already completed {progress['epoch']} passes (--max-iter "
            f"{gen.max_iter}); give a larger --max-iter to train further"
        )
    # A run with a final stretch gives its validated part only the first share of max_time,
    # so a model stopped by the budget can record less elapsed time than max_time: what says
    # the budget is used is the stop itself, unless this resume gives a larger one.
    stopped_by_budget = getattr(gen, "stop_reason_", None) == "max_time" and (
        saved["max_time"] is not None
        and gen.max_time is not None
        and gen.max_time <= saved["max_time"]
    )
    if gen.max_time is not None and (progress["elapsed"] >= gen.max_time or stopped_by_budget):
        raise click.UsageError(
            f"{model} has used its time budget ({progress['elapsed']:.0f} s of --max-time "
            f"{gen.max_time:g}); give a larger --max-time (0 = no limit) to train further"
        )
    return gen


def _check_length(corpus: CorpusText, gen: CharRNNGenerator) -> None:
    """Refuse a corpus too short for one training chunk, in the CLI's own terms."""
    # + 1: the estimator appends an end-of-document symbol
    n_train, _ = split_sizes(corpus.n_chars + 1, gen.validation_fraction)
    need = gen.batch_size * gen.seq_length + 1
    if n_train < need:
        raise click.UsageError(
            f"corpus {corpus.source!r} is too short: {n_train:,} characters remain for training "
            f"(after --validation-fraction {gen.validation_fraction:g}), but one training chunk "
            f"needs --batch-size x --seq-length + 1 = {gen.batch_size} x {gen.seq_length} + 1 "
            f"= {need:,}; use a smaller --batch-size or --seq-length"
        )


def _check_disk_space(model: Path, gen: CharRNNGenerator, corpus: CorpusText) -> None:
    """Report a disk too full for the model file now, not after hours of training."""
    if hasattr(gen, "params_"):
        n_bytes = sum(p.nbytes for p in gen.params_.values())
    else:
        vocab_size = corpus.n_distinct + 2  # + end-of-document and unknown symbols
        config = network.NetworkConfig(
            cell=gen.cell,
            vocab_size=vocab_size,
            hidden_size=gen.hidden_size,
            num_layers=gen.num_layers,
            embedding_dim=gen.embedding_dim,
            dropout=float(gen.dropout or 0.0),  # no weight of its own: any value will do
            dtype=gen.dtype,
        )
        # the shapes only: the weights themselves are made by fit, once the memory is checked
        n_items = sum(math.prod(s) for s in network.param_shapes(config).values())
        n_bytes = n_items * np.dtype(gen.dtype).itemsize
    # weights + up to two optimiser buffers + the best-validation copy, plus a margin; the old
    # file stays until the new one is complete, so all of it must fit in the free space.
    needed = 4 * n_bytes + (1 << 20)
    free = shutil.disk_usage(model.parent).free
    if free < needed:
        raise click.ClickException(
            f"not enough free disk space for {model}: saving it needs about "
            f"{needed / 1e6:,.1f} MB, {model.parent} has {free / 1e6:,.1f} MB free"
        )


# --------------------------------------------------------------------------------------------
# The run


class _TrainingRun:
    """Callbacks for ``fit``: progress bar, saves and samples at pass ends."""

    def __init__(self, gen: CharRNNGenerator, model: Path, n_chars: int) -> None:
        self.gen = gen
        self.model = model
        self.n_symbols = n_chars + 1  # the text and its end-of-document symbol
        self.trainer = None
        self.validated_elapsed = 0.0
        self.flag = StopFlag()
        self.bar = None
        self.val_loss: float | None = None
        self.remembered = False
        seed = gen.random_state if isinstance(gen.random_state, int) else None
        # A generator of its own, so printing samples never changes the training's randomness.
        self.sample_rng = np.random.default_rng(seed)
        self.caught: list[warnings.WarningMessage] = []

    def write(self, text: str) -> None:
        # tqdm.write keeps a live progress bar below the printed lines
        if self.bar is not None:
            tqdm.write(text)
        else:
            click.echo(text)

    def save(self) -> bool:
        try:
            self.gen.save(self.model)
        except (ValueError, OSError) as exc:
            self.write(f"warning: could not save {self.model}: {exc}")
            return False
        if not self.remembered:
            remember_model(self.model)
            self.remembered = True
        return True

    def fit(self, text: str | TextCorpus, resume: bool) -> None:
        with warnings.catch_warnings(record=True) as caught, library_errors():
            warnings.simplefilter("default")
            try:
                self.gen.fit(
                    text,
                    on_epoch=self.on_epoch,
                    on_step=self.on_step,
                    stop_flag=self.flag,
                    resume=resume,
                    evaluation_progress=evaluation_bar,
                )
            finally:
                if self.bar is not None:
                    self.bar.close()
        self.caught = list(caught)

    def _open_bar(self, gen, trainer) -> None:
        """A bar for the validated part (passes x steps, or seconds under a time budget),
        or for the final stretch on all the text (its steps)."""
        p = trainer.progress
        if self.bar is not None:
            self.bar.close()
        if trainer.max_steps is not None:  # the final stretch
            self.write(
                f"Final stretch: all {self.n_symbols - 1:,} characters, held-out part "
                f"included, for up to {trainer.max_steps:,} steps at the schedule's last "
                "learning rates"
            )
            total, initial = trainer.max_steps, p.step - 1
        else:
            total = gen.max_iter * trainer.steps_per_pass
            initial = p.epoch * trainer.steps_per_pass + p.chunk - 1
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            disable=None,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
        )
        self.trainer = trainer
        self.start = (p.step - 1, p.elapsed, p.chars_seen - int(trainer.chars_per_step))
        self.last_log = time.monotonic()

    def on_step(self, gen, trainer, loss, grad_norm, lr) -> bool:
        p = trainer.progress
        if self.bar is None or trainer is not self.trainer:
            self._open_bar(gen, trainer)
        self.bar.update(1)
        if p.step % 10 and not self.bar.disable:
            return False
        steps = p.step - self.start[0]
        spent = max(p.elapsed - self.start[1], 1e-9)
        left = (self.bar.total - self.bar.n) * spent / steps
        if gen.max_time is not None:
            # the stretch's trainer counts its own seconds, after those of the validated part
            used = p.elapsed + (self.validated_elapsed if trainer.max_steps is not None else 0.0)
            left = min(left, max(0.0, gen.max_time - used))
        stats = {"loss": f"{loss:.3f}"}
        if self.val_loss is not None and trainer.max_steps is None:
            stats["val"] = f"{self.val_loss:.3f}"
        stats["chars/s"] = f"{(p.chars_seen - self.start[2]) / spent:,.0f}"
        stats["left"] = tqdm.format_interval(left)
        if not self.bar.disable:
            self.bar.set_postfix(stats, refresh=False)
        elif time.monotonic() - self.last_log >= LOG_EVERY_SECONDS:
            self.last_log = time.monotonic()
            line = ", ".join(f"{k} {v}" for k, v in stats.items())
            click.echo(f"step {self.bar.n:,}/{self.bar.total:,}: {line}")
        return False

    def on_epoch(self, gen, record) -> bool:
        self.val_loss = record["val_loss"]
        self.validated_elapsed = record["elapsed"]
        saved = self.save()
        line = f"pass {record['epoch']}/{gen.max_iter}: train loss {record['train_loss']:.4f}"
        if record["val_loss"] is not None:
            line += f", validation loss {_plus_minus(record['val_loss'], record)}"
        line += " nats/char; " + (f"saved {self.model}" if saved else "NOT saved")
        self.write(line)
        # from the weights just saved (item 5 of issue 17: what is shown is what is kept)
        sample = gen.sample(
            1,
            EPOCH_SAMPLE_LENGTH,
            temperature=SAMPLE_TEMPERATURE,
            random_state=self.sample_rng,
            stop_at_end=False,
        )[0]
        self.write(f"---\n{sample}\n---")
        return False


def _plus_minus(loss: float, record: dict) -> str:
    """``1.4523 +/- 0.0061`` (with the standard error of a validation score), or the loss."""
    stderr = record.get("val_stderr")
    return f"{loss:.4f}" if stderr is None else f"{loss:.4f} +/- {stderr:.4f}"


# --------------------------------------------------------------------------------------------
# After training


def _last_training_loss(gen: CharRNNGenerator) -> float:
    train_losses = [r["train_loss"] for r in gen.history_]
    return train_losses[-1] if train_losses else math.nan


def _describe_stop(gen: CharRNNGenerator) -> str:
    reason = gen.stop_reason_
    if reason == "max_iter":
        return f"finished {gen.max_iter} passes (--max-iter)"
    if reason == "max_time":
        return f"used the time budget (--max-time {gen.max_time:g})"
    if reason == "early_stopping":
        return (
            f"early stopping: no validation improvement in {gen.n_iter_no_change} passes; "
            "kept the best weights"
        )
    return reason


def _finish(ctx, run: _TrainingRun, corpus: CorpusText, encoding: str, errors: str) -> None:
    gen, model = run.gen, run.model
    messages = []
    for w in run.caught:
        text = str(w.message)
        if gen.diverged_ and "diverged" in text:
            messages.append(text)
        elif "interrupted" not in text:
            click.echo(f"warning: {text}", err=True)
    if gen.diverged_:
        saved = run.save()
        where = (
            f"the last finite weights are saved in {model}"
            if saved
            else f"{model} was not changed by this step"
        )
        detail = messages[0] if messages else "training diverged (loss or gradient not finite)"
        raise click.ClickException(f"{detail} (--learning-rate, --clip-norm); {where}")
    if not run.save():
        raise click.ClickException(f"training finished but {model} could not be saved")
    elapsed = gen.training_progress_["elapsed"]
    click.echo(
        f"Stopped: {_describe_stop(gen)}; {gen.n_chars_seen_:,} characters seen in "
        f"{tqdm.format_interval(elapsed)}. Model saved to {model}"
    )
    try:
        with library_errors():
            validation = final_validation(gen, corpus.data, progress=True)
            sample = gen.sample(
                1,
                FINAL_SAMPLE_LENGTH,
                temperature=SAMPLE_TEMPERATURE,
                random_state=run.sample_rng,
                stop_at_end=False,
            )[0]
    except KeyboardInterrupt:
        # the model is already saved: Ctrl-C here only skips the report
        click.echo(f"\nInterrupted during the final evaluation; {model} is saved.", err=True)
        ctx.exit(128 + int(signal.SIGINT))
    if gen.dropout is None:
        n_weights = sum(p.size for p in gen.params_.values())
        click.echo(
            f"Dropout {gen.config_.dropout:g}, chosen by corpus size ({corpus.n_chars:,} "
            f"characters for {n_weights:,} weights; --dropout sets it)."
        )
    for line in _describe_data(gen, corpus.n_chars + 1, validation):
        click.echo(line)
    click.echo(f"sample ({FINAL_SAMPLE_LENGTH} characters, temperature {SAMPLE_TEMPERATURE}):")
    click.echo(sample)
    command = ["charrnn", "train", corpus.source, "--model", str(model), "--resume"]
    if encoding != "utf-8":
        command += ["--encoding", encoding]
    if errors != "strict":
        command += ["--errors", errors]
    stretch = gen.final_stretch_
    if stretch is not None and stretch["stop_reason"].startswith("interrupted"):
        click.echo(
            "Training was interrupted during its final stretch on all the text; the weights "
            f"trained so far are saved in {model}."
        )
        ctx.exit(128 + int(getattr(signal, run.flag.signal_name, signal.SIGINT)))
    if gen.stop_reason_.startswith("interrupted"):
        click.echo(f"Training was interrupted. To resume:\n  {shlex.join(command)}")
        signum = getattr(signal, run.flag.signal_name, signal.SIGINT)
        ctx.exit(128 + int(signum))
    if gen.stop_reason_ == "max_time":
        budget = f"{2 * gen.max_time:g}"
        click.echo(f"To train longer:\n  {shlex.join([*command, '--max-time', budget])}")


def _describe_data(gen: CharRNNGenerator, n_symbols: int, validation: dict | None) -> list[str]:
    """What was held out, how it scored, and what the final model trained on.

    ``n_symbols`` counts the text's characters and its end-of-document symbol, as training does.
    """
    _, n_val = split_sizes(n_symbols, gen.validation_fraction)
    if validation is None:
        loss = _last_training_loss(gen)
        return [
            f"Nothing held out (--validation-fraction {gen.validation_fraction:g}): the model "
            f"trained on all {n_symbols - 1:,} characters.",
            f"training loss (no validation split): {loss:.4f} nats/char "
            f"({loss / math.log(2):.4f} bits/char)",
        ]
    lines = [
        f"Held out for validation: the last {gen.validation_fraction:.0%} of the text "
        f"({n_val:,} of {n_symbols:,} characters)"
        + (
            f"; each validation scored {validation['n_chars']:,} of them"
            + (" (evenly spread windows)" if validation["n_chars"] < n_val - 1 else "")
            if validation["n_chars"]
            else ""
        )
        + "."
    ]
    loss, stderr = validation["loss"], validation["stderr"]
    spread = "" if stderr is None else f", standard error {stderr:.4f}"
    chose = f" (pass {gen.best_iteration_})" if gen.early_stopping and gen.best_iteration_ else ""
    lines.append(
        f"validation loss: {loss:.4f} nats/char ({loss / math.log(2):.4f} bits/char){spread}; "
        f"the weights validation chose{chose}"
    )
    stretch = gen.final_stretch_
    if stretch is None:
        lines.append(
            "The final model never trained on the held-out part (--refit-fraction "
            f"{gen.refit_fraction:g})."
        )
    else:
        lines.append(
            f"The final model then trained on all {n_symbols - 1:,} characters, held-out part "
            f"included, for {tqdm.format_interval(stretch['seconds'])} "
            f"({stretch['steps']:,} steps, {stretch['chars_seen']:,} characters read, "
            "at the schedule's last learning rates); the validation loss above is of the "
            "weights it started from."
        )
    return lines
