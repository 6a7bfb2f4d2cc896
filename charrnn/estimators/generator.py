"""CharRNNGenerator: a character-level language model as a scikit-learn estimator."""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import TransformerTags
from sklearn.utils.validation import check_is_fitted

from charrnn.data.batches import split_train_validation
from charrnn.data.textfile import TextCorpus
from charrnn.data.vocab import CharVocab
from charrnn.engine import network
from charrnn.engine.optim import LRSchedule
from charrnn.engine.training import DivergedError, StopFlag, Trainer, graceful_interrupts
from charrnn.estimators.base import SHARED_PARAMETERS, RecurrentEstimator
from charrnn.estimators.params import Integer, Param, as_generator
from charrnn.io import check_writable, save_arrays
from charrnn.parallel.blas import scoring_threads

_FITTED_SCALARS = (
    "n_iter_",
    "n_chars_seen_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "history_",
    "stop_reason_",
    "diverged_",
    # set by `charrnn train`: {"source", "n_chars", "sha256"} of the text, so --resume can
    # check it is given the same corpus; None for models fitted through the Python API
    "training_corpus_",
)


def _json_safe_params(est) -> dict:
    params = est.get_params(deep=False)
    if not isinstance(params.get("random_state"), int | type(None)):
        params["random_state"] = None  # a Generator object has no portable form
    return params


def _finite_or_none(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


__all__ = ["CharRNNGenerator", "check_documents"]


def check_documents(X, name: str = "X") -> list[str]:
    """Validate text input: one string (one document) or an iterable of strings.

    Raises
    ------
    TypeError
        For bytes, numbers, None, or an iterable holding anything but strings.
    ValueError
        For no documents at all.
    """
    if isinstance(X, str):
        return [X]
    if isinstance(X, TextCorpus):
        raise TypeError(
            f"{name} is a TextCorpus (a file read in blocks); only fit, partial_fit and score "
            "accept one -- pass the text itself (a string) here"
        )
    if isinstance(X, bytes | bytearray):
        raise TypeError(f"{name} must be str or an iterable of str, got bytes; decode it first")
    if hasattr(X, "tocsr") and hasattr(X, "nnz"):  # scipy.sparse, without importing scipy
        raise TypeError(f"{name} must be text; sparse matrices are not supported")
    if X is None or isinstance(X, numbers.Number) or not isinstance(X, Iterable):
        raise TypeError(
            f"{name} must be a string or an iterable of strings, got {type(X).__name__}"
        )
    if isinstance(X, np.ndarray) and X.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one string per document), got shape {X.shape}")
    docs = list(X)
    for i, doc in enumerate(docs):
        if isinstance(doc, np.str_):
            continue
        if not isinstance(doc, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(doc).__name__} ({doc!r:.40})")
    if not docs:
        raise ValueError(f"{name} holds no documents")
    return [str(d) for d in docs]


class CharRNNGenerator(RecurrentEstimator):
    """Character-level recurrent language model (RNN, LSTM or GRU) trained by truncated BPTT.

    X is a string (one document) or an iterable of strings. Documents are joined with an
    end-of-document symbol, which the model learns to predict, so generation can stop there.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}, default="gru"
        The defaults (a 2 x 256 GRU, batch 32, learning rate 5e-3, warm-up then cosine decay)
        were chosen by a timed sweep on Shakespeare (docs/quality.md): at a budget of minutes the
        GRU learns much faster than the LSTM.
    hidden_size : int, default=256
        Units per recurrent layer.
    num_layers : int, default=2
    embedding_dim : int or None, default=None
        Size of a learned character embedding; None feeds one-hot vectors.
    dropout : float in [0, 1), default=0.0
        Inverted dropout on every layer's output.
    seq_length : int, default=64
        Steps per truncated-BPTT chunk.
    batch_size : int, default=32
        Parallel streams over the text.
    learning_rate : float, default=5e-3
        Peak learning rate.
    optimizer : {"adam", "adamw", "rmsprop", "adagrad", "sgd"}, default="adam"
        Update rule, numerically as its namesake in ``torch.optim`` (:mod:`charrnn.engine.optim`).
    weight_decay : float >= 0 or None, default=None
        Weight decay: ``weight_decay * w`` added to every gradient (an L2 penalty) for adam,
        rmsprop, adagrad and sgd; the weights shrunk by ``learning_rate * weight_decay`` at
        every step, apart from the gradient, for adamw. None keeps the optimiser's default: 0,
        and 0.01 for adamw (PyTorch's defaults). It applies to every weight, biases included.
    clip_norm : float or None, default=5.0
        Clip the global gradient norm to this value; None disables clipping.
    max_iter : int, default=10
        Passes over the training text.
    max_time : float or None, default=None
        Wall-clock training budget in seconds; training stops at the first of max_iter and
        max_time, and the learning-rate schedule spans whichever ends first. A step's place in
        the schedule is the larger of its share of the steps and the share of the budget spent
        by the steps before it, so a budget that does not bind changes nothing; one that does
        makes the rates follow the clock, and the run is no longer exactly repeatable.
    validation_fraction : float in [0, 1), default=0.1
        Tail of the text held out to measure validation loss; 0 turns validation and early
        stopping off.
    early_stopping : bool, default=True
        Stop after ``n_iter_no_change`` passes without a validation improvement of ``tol`` and
        keep the weights of the best validation score.
    n_iter_no_change : int, default=3
    tol : float, default=1e-4
    lr_schedule : {"constant", "warmup_cosine", "warmup_linear"}, default="warmup_cosine"
        Learning-rate schedule over the budget (warm-up, then decay to a tenth).
    warm_start : bool, default=False
        ``fit`` continues from the current weights (and vocabulary) instead of starting over.
    dtype : {"float32", "float64"}, default="float32"
    random_state : int, Generator or None, default=None
        Seeds initialisation, dropout and nothing else. The same value gives the same model on
        the same machine; training splits each batch into one group of streams per core
        (:mod:`charrnn.parallel.groups`), so machines with different core counts agree up to
        floating-point rounding.
    verbose : int, default=0
        1 shows a tqdm progress bar (hidden when not on a terminal).

    Attributes
    ----------
    vocab_ : CharVocab
    classes_ : ndarray of str, shape (n_classes,)
        The symbols: index 0 is the end of a document (``""``), 1 the unknown symbol
        (``"\\ufffd"``), then the characters seen in training in code-point order.
    config_ : NetworkConfig
    params_ : dict of str to ndarray
    n_iter_ : int
        Completed passes over the training text.
    loss_curve_ : list of float
        Mean training loss (nats/char) of each pass.
    validation_scores_ : list of float
        Validation score (mean log-likelihood per character, higher is better) per evaluation.
    best_validation_score_ : float or None
    n_chars_seen_ : int
    history_ : list of dict
        One record per evaluation: losses, characters seen, time, gradient norms before clipping.
    stop_reason_ : str

    Notes
    -----
    Unknown characters: a character not seen in training is read as the unknown symbol (its
    embedding is untrained) and, as a target, gets the probability the model gives the
    unknown symbol, which training drives close to zero -- scoring text with unseen characters
    is finite but heavily penalised. ``sample(prime=...)`` refuses unseen characters, and
    ``sample`` never generates the unknown symbol.

    Examples
    --------
    >>> gen = CharRNNGenerator(hidden_size=32, num_layers=1, max_iter=2, random_state=0)
    >>> gen = gen.fit("hello world\\n" * 200)
    >>> len(gen.sample(n_samples=2, length=20, random_state=0))
    2
    """

    _parameter_constraints = {
        **SHARED_PARAMETERS,
        "seq_length": Param(Integer(1), "Characters per truncated-BPTT chunk."),
    }

    def __init__(
        self,
        *,
        cell="gru",
        hidden_size=256,
        num_layers=2,
        embedding_dim=None,
        dropout=0.0,
        seq_length=64,
        batch_size=32,
        learning_rate=5e-3,
        optimizer="adam",
        weight_decay=None,
        clip_norm=5.0,
        max_iter=10,
        max_time=None,
        validation_fraction=0.1,
        early_stopping=True,
        n_iter_no_change=3,
        tol=1e-4,
        lr_schedule="warmup_cosine",
        warm_start=False,
        dtype="float32",
        random_state=None,
        verbose=0,
    ):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.seq_length = seq_length
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.max_iter = max_iter
        self.max_time = max_time
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.lr_schedule = lr_schedule
        self.warm_start = warm_start
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # -- scikit-learn plumbing ---------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.target_tags.required = False
        tags.non_deterministic = False
        # transform() gives features; no input dtype is carried through to them
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        return tags

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, X, y=None, *, on_epoch=None, on_step=None, stop_flag=None, resume=False):
        """Train on X (a string or an iterable of strings). Returns self.

        Parameters
        ----------
        X : str, iterable of str, or TextCorpus
            A :class:`charrnn.data.textfile.TextCorpus` is one document trained on from its
            memory-mapped id cache, so memory does not grow with the file.
        y : ignored
        on_epoch : callable(estimator, record) -> bool, optional
            Called after each pass (the CLI saves the model and prints a sample there);
            returning True stops training.
        on_step : callable(estimator, trainer, loss, grad_norm, lr) -> bool, optional
        stop_flag : charrnn.engine.training.StopFlag, optional
            Set ``stop_flag.requested = True`` (from another thread, say) to stop after the
            current step. SIGINT/SIGTERM set it too while ``fit`` runs in the main thread.
        resume : bool
            Continue an interrupted ``fit`` exactly where it stopped (same X): optimiser state,
            schedule position, epoch and chunk, carried state and random generator.
        """
        return self._fit(
            X, False, on_epoch=on_epoch, on_step=on_step, stop_flag=stop_flag, resume=resume
        )

    def partial_fit(self, X, y=None):
        """One more pass over X, keeping weights and optimiser state. Returns self."""
        return self._fit(X, incremental=True)

    def _fit(self, X, incremental, on_epoch=None, on_step=None, stop_flag=None, resume=False):
        self._validate_params()
        # A TextCorpus (a file too big to hold as a str) gives its vocabulary and a read-only
        # memmap of its ids, so neither the text nor its ids are ever loaded whole; the rest of
        # training only slices ``ids`` and runs the same either way.
        corpus = X if isinstance(X, TextCorpus) else None
        docs = check_documents(X) if corpus is None else None
        resuming = resume and getattr(self, "_training_state", None) is not None
        continuing = resuming or ((incremental or self.warm_start) and hasattr(self, "params_"))
        if continuing:
            self._check_compatible()
        else:
            self._initialise(docs, vocab=None if corpus is None else corpus.vocab())
        ids = self.vocab_.encode_documents(docs) if corpus is None else corpus.ids(self.vocab_)
        train_ids, val_ids = split_train_validation(ids, self.validation_fraction)
        use_val = self.validation_fraction > 0 and len(val_ids) >= 2
        early = bool(self.early_stopping and use_val)
        schedule = LRSchedule("constant") if incremental else LRSchedule(self.lr_schedule)
        trainer = Trainer(
            self.params_,
            self.config_,
            train_ids,
            val_ids if use_val else val_ids[:0],
            batch_size=self.batch_size,
            seq_length=self.seq_length,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            clip_norm=self.clip_norm,
            schedule=schedule,
            rng=self._train_rng,
        )
        if resuming:
            trainer.load_state(*self._training_state)
        elif continuing and self._optim_state is not None:
            # another optimiser than last time: its state starts afresh
            with contextlib.suppress(ValueError):
                trainer.optimizer.load_state_dict(self._optim_state)
        if continuing and self.weight_decay is not None:
            # a loaded state brings back the decay it was saved with; the parameter wins
            trainer.optimizer.weight_decay = self.weight_decay
        epochs = 1 if incremental else self.max_iter
        if incremental:
            trainer.progress.epoch = 0
        run = {"consumed": 0, "chars_base": self.n_chars_seen_ - trainer.progress.chars_seen}
        bar = self._progress_bar(trainer, epochs)
        flag = stop_flag if stop_flag is not None else StopFlag()
        self.diverged_ = False

        def step_cb(tr, loss, gnorm, lr):
            if bar is not None:
                bar.update(1)
                if tr.progress.step % 10 == 0:
                    rate = tr.progress.chars_seen / max(tr.progress.elapsed, 1e-9)
                    bar.set_postfix(loss=f"{loss:.3f}", chars_s=f"{rate:,.0f}", refresh=False)
            return on_step is not None and on_step(self, tr, loss, gnorm, lr)

        def epoch_cb(tr, record):
            self._absorb(tr, run)
            self._keep_training_state(tr)
            if bar is not None and record["val_loss"] is not None:
                bar.set_postfix(val=f"{record['val_loss']:.3f}", refresh=False)
            return on_epoch is not None and on_epoch(self, record)

        try:
            with graceful_interrupts(flag):
                trainer.run(
                    max_epochs=epochs,
                    max_time=self.max_time,
                    early_stopping=early,
                    n_iter_no_change=self.n_iter_no_change,
                    tol=self.tol,
                    stop_flag=flag,
                    on_step=step_cb,
                    on_epoch=epoch_cb,
                )
            self.stop_reason_ = trainer.progress.stop_reason
        except DivergedError as exc:
            self.diverged_ = True
            self.stop_reason_ = "diverged"
            warnings.warn(str(exc), ConvergenceWarning, stacklevel=3)
        except KeyboardInterrupt:
            trainer.progress.stop_reason = self.stop_reason_ = "interrupted"
        finally:
            if bar is not None:
                bar.close()
        self._absorb(trainer, run)
        self._keep_training_state(trainer)
        if early and not self.diverged_ and not self.stop_reason_.startswith("interrupted"):
            trainer.restore_best()
        if self.stop_reason_.startswith("interrupted"):
            warnings.warn(
                "Training interrupted; the weights trained so far are kept "
                "(fit(..., resume=True) or `charrnn train --resume` continues).",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _initialise(self, docs: list[str] | None, vocab: CharVocab | None = None) -> None:
        """Vocabulary (``vocab``, else fitted on ``docs``), network and empty history."""
        rng = self._rng()
        self.vocab_ = vocab if vocab is not None else CharVocab.fit(docs)
        self.classes_ = np.array(self.vocab_.symbols)
        self.config_ = network.NetworkConfig(
            cell=self.cell,
            vocab_size=self.vocab_.size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            embedding_dim=self.embedding_dim,
            dropout=float(self.dropout),
            dtype=self.dtype,
        )
        self.params_ = network.init_params(self.config_, rng)
        self._train_rng = np.random.default_rng(rng.integers(2**63))
        self._optim_state = None
        self._training_state = None
        self.n_iter_ = 0
        self.n_chars_seen_ = 0
        self.loss_curve_ = []
        self.validation_scores_ = []
        self.history_ = []
        self.best_validation_score_ = None
        self.stop_reason_ = ""
        self.diverged_ = False

    @property
    def training_progress_(self) -> dict | None:
        """Where the last ``fit`` stopped, or None when there is nothing to resume.

        A dict with ``epoch`` (complete passes), ``chunk`` (next step of the current pass),
        ``step`` (optimiser steps), ``elapsed`` (seconds of training) and ``chars_seen``:
        what ``fit(..., resume=True)`` continues from.
        """
        check_is_fitted(self)
        state = getattr(self, "_training_state", None)
        if state is None:
            return None
        keys = ("epoch", "chunk", "step", "elapsed", "chars_seen")
        return {k: state[0][k] for k in keys}

    def _keep_training_state(self, trainer) -> None:
        """Remember what an exact resume needs (saved with the model)."""
        self._optim_state = trainer.optimizer.state_dict()
        self._training_state = (trainer.state_header(), trainer.state_arrays())

    def _absorb(self, trainer, run: dict) -> None:
        """Copy the trainer's new history records and counters into fitted attributes."""
        p = trainer.progress
        new = p.history[run["consumed"] :]
        run["consumed"] = len(p.history)
        self.history_.extend(new)
        for rec in new:
            if not rec["partial"]:
                self.n_iter_ += 1
                self.loss_curve_.append(rec["train_loss"])
            if rec["val_loss"] is not None:
                score = -rec["val_loss"]
                self.validation_scores_.append(score)
                if self.best_validation_score_ is None or score > self.best_validation_score_:
                    self.best_validation_score_ = score
        self.n_chars_seen_ = run["chars_base"] + p.chars_seen

    def _check_compatible(self) -> None:
        fixed = ("cell", "hidden_size", "num_layers", "embedding_dim", "dtype")
        for name in fixed:
            current = getattr(self.config_, name)
            if getattr(self, name) != current:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} differs from the fitted model's {current!r}; "
                    "set warm_start=False to train a new model"
                )

    def _progress_bar(self, trainer, epochs):
        if not self.verbose:
            return None
        from tqdm.auto import tqdm

        total = epochs * trainer.batches.n_chunks
        return tqdm(total=total, unit="step", disable=None, dynamic_ncols=True, leave=True)

    # -- scoring ----------------------------------------------------------------------------
    def _loglik(self, docs: list[str]) -> np.ndarray:
        """Total log-likelihood of each document, read as [EOD] + doc and predicting doc + [EOD].

        Documents are batched by length; padding after a document's end cannot change its
        earlier states, and padded positions are left out of the sums.
        """
        eod = CharVocab.EOD_ID
        seqs = [np.concatenate(([eod], self.vocab_.encode(d), [eod])).astype(np.intp) for d in docs]
        order = np.argsort([len(s) for s in seqs], kind="stable")
        batches = [order[start : start + 64] for start in range(0, len(seqs), 64)]

        def batch_loglik(idx: np.ndarray) -> np.ndarray:
            lens = np.array([len(seqs[i]) - 1 for i in idx])  # predictions per document
            T = int(lens.max())
            inp = np.zeros((T, len(idx)), dtype=np.intp)
            tgt = np.zeros((T, len(idx)), dtype=np.intp)
            for j, i in enumerate(idx):
                inp[: lens[j], j] = seqs[i][:-1]
                tgt[: lens[j], j] = seqs[i][1:]
            state = network.init_state(self.config_, len(idx))
            out = np.zeros(len(idx))
            for t0 in range(0, T, 256):
                sl = slice(t0, min(T, t0 + 256))
                logits, state, _ = network.forward_logits(
                    self.params_, self.config_, inp[sl], state
                )
                logp = network.log_softmax(logits.astype(np.float64))
                picked = np.take_along_axis(logp, tgt[sl][..., None], axis=-1)[..., 0]
                valid = np.arange(sl.start, sl.stop)[:, None] < lens[None, :]
                out += np.where(valid, picked, 0.0).sum(axis=0)
            return out

        lik = np.zeros(len(seqs))
        # the batches are independent: one per core at a time
        # (charrnn.parallel.blas.scoring_threads)
        with scoring_threads() as threads:
            if threads > 1 and len(batches) > 1:
                with ThreadPoolExecutor(threads) as pool:
                    results = list(pool.map(batch_loglik, batches))
            else:
                results = [batch_loglik(idx) for idx in batches]
        for idx, values in zip(batches, results):
            lik[idx] = values
        return lik

    def score_samples(self, X) -> np.ndarray:
        """Total log-likelihood (nats) of each document, from a fresh state, end symbol included.

        Returns
        -------
        ndarray of float, shape (n_docs,)
        """
        check_is_fitted(self)
        return self._loglik(check_documents(X))

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per character (nats; higher is better) over all of X.

        Each document counts ``len(doc) + 1`` predictions (its characters and its end), so
        ``score == score_samples(X).sum() / sum(len(d) + 1)`` and perplexity is
        ``exp(-score)``. A :class:`~charrnn.data.textfile.TextCorpus` is scored as one document
        streamed from its id cache (same value as its text, read one character at a time).
        """
        check_is_fitted(self)
        if isinstance(X, TextCorpus):
            return self._score_ids(X.ids(self.vocab_))
        docs = check_documents(X)
        total = self._loglik(docs).sum()
        return float(total / sum(len(d) + 1 for d in docs))

    def _score_ids(self, ids: np.ndarray) -> float:
        """Mean log-likelihood per symbol of one document's ``(n,)`` ids (ending with EOD).

        The same computation as :meth:`_loglik` for a single document -- read [EOD] + ids[:-1]
        from a fresh state, 256 steps at a time -- but taking the ids piece by piece, so a
        memory-mapped corpus is never loaded whole.
        """
        total, prev = 0.0, CharVocab.EOD_ID
        state = network.init_state(self.config_, 1)
        for t0 in range(0, len(ids), 256):
            tgt = np.asarray(ids[t0 : t0 + 256], dtype=np.intp)  # (T,)
            inp = np.concatenate(([prev], tgt[:-1]))
            prev = tgt[-1]
            logits, state, _ = network.forward_logits(
                self.params_, self.config_, inp[:, None], state
            )
            logp = network.log_softmax(logits.astype(np.float64))  # (T, 1, V)
            total += float(np.take_along_axis(logp[:, 0], tgt[:, None], axis=-1).sum())
        return total / len(ids)

    def _final(self, docs):
        """Logits of the next symbol and hidden states after each whole document."""
        n = len(docs)
        V, H, L = self.config_.vocab_size, self.config_.hidden_size, self.config_.num_layers
        logits_out = np.zeros((n, V), dtype=self.config_.dtype)
        feats = np.zeros((n, L * H), dtype=self.config_.dtype)
        eod = CharVocab.EOD_ID
        # group documents of equal length so each group runs as one batch without padding
        seqs = [np.concatenate(([eod], self.vocab_.encode(d).astype(np.intp))) for d in docs]
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(seqs):
            by_len.setdefault(len(s), []).append(i)
        for length, idx in by_len.items():
            for s0 in range(0, len(idx), 256):
                part = idx[s0 : s0 + 256]
                inp = np.stack([seqs[i] for i in part], axis=1)  # (T, B)
                state = network.init_state(self.config_, len(part))
                for t0 in range(0, length, 512):
                    logits, state, _ = network.forward_logits(
                        self.params_, self.config_, inp[t0 : t0 + 512], state
                    )
                logits_out[part] = logits[-1]
                feats[part] = np.concatenate([st[0] for st in state], axis=1)
        return logits_out, feats

    def predict_proba(self, X) -> np.ndarray:
        """Distribution of the character following each document.

        Returns
        -------
        ndarray, shape (n_docs, n_classes)
            Columns in ``classes_`` order; rows sum to 1.
        """
        check_is_fitted(self)
        logits, _ = self._final(check_documents(X))
        logp = network.log_softmax(logits.astype(np.float64))
        return np.exp(logp)

    def predict(self, X) -> np.ndarray:
        """The most likely next character of each document (``""`` = the document ends).

        Returns
        -------
        ndarray of str, shape (n_docs,)
        """
        check_is_fitted(self)  # before self.classes_ is read
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def transform(self, X) -> np.ndarray:
        """Final hidden state of each document, every layer's ``h`` side by side.

        Returns
        -------
        ndarray, shape (n_docs, num_layers * hidden_size)
        """
        check_is_fitted(self)
        _, feats = self._final(check_documents(X))
        return feats

    # -- generation -------------------------------------------------------------------------
    def sample(
        self,
        n_samples=1,
        length=200,
        *,
        prime="",
        temperature=1.0,
        top_k=None,
        top_p=None,
        random_state=None,
        stop_at_end=True,
    ) -> list[str]:
        """Generate ``n_samples`` texts together, each of at most ``length`` characters.

        Parameters
        ----------
        n_samples : int
        length : int
            Characters to generate after the prime: each text has exactly ``length``
            characters, fewer only when ``stop_at_end`` and a document end is drawn.
        prime : str
            Text to condition on, read from the start of a document; not repeated in the output.
        temperature : float > 0
        top_k : int or None
        top_p : float in (0, 1] or None
        random_state : int, Generator or None
            The same value gives the same texts.
        stop_at_end : bool
            Stop a sample at the end-of-document symbol. When False the sample goes on into a
            new document, and each document end is written as a newline (it counts in
            ``length``).

        Returns
        -------
        list of str, length n_samples
        """
        check_is_fitted(self)
        from charrnn.estimators.params import Real

        Integer(1).check("n_samples", n_samples)
        Integer(0).check("length", length)
        Real(0.0, low_open=True).check("temperature", temperature)
        Integer(1, none_ok=True).check("top_k", top_k)
        Real(0.0, 1.0, low_open=True, none_ok=True).check("top_p", top_p)
        if not isinstance(prime, str):
            raise TypeError(f"prime must be a string, got {type(prime).__name__}")
        unknown = self.vocab_.unknown_chars(prime)
        if unknown:
            raise ValueError(
                f"prime contains characters the model never saw in training: {unknown!r:.80}"
            )
        rng = as_generator(random_state)
        from charrnn.engine.sampling import generate

        prime_ids = np.concatenate(([CharVocab.EOD_ID], self.vocab_.encode(prime))).astype(np.intp)
        # The unknown symbol stands for characters the model never saw; it is never generated
        # (a -inf output bias gives it probability 0 at every step).
        params = dict(self.params_)
        params["by"] = params["by"].copy()
        params["by"][CharVocab.UNK_ID] = -np.inf
        outs = generate(
            params,
            self.config_,
            n_samples=n_samples,
            length=length,
            prime_ids=prime_ids,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            rng=rng,
            eod_id=CharVocab.EOD_ID,
            stop_at_eod=stop_at_end,
        )
        # a document end inside a sample is one character, a newline, as char-rnn's corpora
        # separate their documents
        return [self.vocab_.decode(o, eod="\n") for o in outs]

    # -- persistence ------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the model to ``path`` (.npz with a JSON header; no pickle), atomically.

        Raises
        ------
        ValueError
            If any weight is not finite (a diverged model is never written) or the path cannot
            be written.
        """
        check_is_fitted(self)
        for name, value in self.params_.items():
            if not np.all(np.isfinite(value)):
                raise ValueError(
                    f"refusing to save {str(path)!r}: weight {name!r} holds NaN or infinity"
                )
        check_writable(path)  # a missing folder is a ValueError naming the path, not an OSError
        fitted = {name: getattr(self, name, None) for name in _FITTED_SCALARS}
        fitted["best_validation_score_"] = _finite_or_none(fitted["best_validation_score_"])
        header = {
            "estimator": "CharRNNGenerator",
            "params": _json_safe_params(self),
            "vocab": self.vocab_.to_dict(),
            "config": self.config_.to_dict(),
            "fitted": fitted,
            "train_rng": self._train_rng.bit_generator.state,
            "training": None,
        }
        arrays = {f"param/{k}": v for k, v in self.params_.items()}
        state = getattr(self, "_training_state", None)
        if state is not None:
            header["training"] = state[0]
            arrays.update({f"train/{k}": v for k, v in state[1].items()})
        save_arrays(path, header, arrays)

    @classmethod
    def _from_saved(cls, header: dict, arrays: dict, path) -> CharRNNGenerator:
        """Rebuild a fitted generator from :func:`charrnn.io.load_arrays` output."""
        try:
            est = cls(**header["params"])
            est.vocab_ = CharVocab.from_dict(header["vocab"])
            est.config_ = network.NetworkConfig(**header["config"])
            fitted = header["fitted"]
            train_rng_state = header["train_rng"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: the model header is incomplete or invalid ({exc})") from None
        expected = network.init_params(est.config_, np.random.default_rng(0))
        params = {}
        for name, ref in expected.items():
            arr = arrays.get(f"param/{name}")
            if arr is None or arr.shape != ref.shape or arr.dtype != ref.dtype:
                got = None if arr is None else (arr.shape, str(arr.dtype))
                raise ValueError(
                    f"{path}: weight {name!r} is missing or malformed "
                    f"(expected {ref.shape} {ref.dtype}, found {got})"
                )
            params[name] = np.array(arr)
        est.params_ = params
        est.classes_ = np.array(est.vocab_.symbols)
        for name in _FITTED_SCALARS:
            setattr(est, name, fitted.get(name))
        est.loss_curve_ = list(est.loss_curve_ or [])
        est.validation_scores_ = list(est.validation_scores_ or [])
        est.history_ = list(est.history_ or [])
        est._train_rng = np.random.default_rng()
        est._train_rng.bit_generator.state = train_rng_state
        train = {k[len("train/") :]: v for k, v in arrays.items() if k.startswith("train/")}
        if header.get("training") is not None:
            est._training_state = (header["training"], train)
            est._optim_state = {
                k[len("optim/") :]: v for k, v in train.items() if k.startswith("optim/")
            }
        else:
            est._training_state = None
            est._optim_state = None
        return est
