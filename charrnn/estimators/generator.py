"""CharRNNGenerator: a character-level language model as a scikit-learn estimator."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.utils import TransformerTags
from sklearn.utils.validation import check_is_fitted

from charrnn.data.batches import split_train_validation
from charrnn.data.corpus import fingerprint_mismatch, text_fingerprint
from charrnn.data.textfile import TextCorpus
from charrnn.data.vocab import CharVocab
from charrnn.engine import network
from charrnn.engine.optim import LRSchedule
from charrnn.engine.tasks import LanguageModelTask
from charrnn.engine.training import Trainer
from charrnn.estimators.base import (
    FITTED_HISTORY,
    SHARED_PARAMETERS,
    RecurrentEstimator,
    check_saved_history,
    evaluation_bar,
)
from charrnn.estimators.params import Integer, Param, Real, as_generator
from charrnn.estimators.reading import TextReadingMixin
from charrnn.io import check_network, check_writable, save_arrays
from charrnn.parallel import scoring_threads

# training_corpus_: {"source", "n_chars", "sha256"} of the text the last fit trained on, so a
# resume (fit(X, resume=True), `charrnn train --resume`) can check it is given the same text
_FITTED_SCALARS = (*FITTED_HISTORY, "training_corpus_", "final_stretch_")

# Characters scored per validation by default: 256 windows of 512. On the default 2 x 256 GRU
# that is a second or two of the 2-core development machine, a small share of a pass of
# any corpus whose held-out tenth is longer; the standard error it gives on Shakespeare is
# in docs/benchmarks.md. The same windows are scored every time, so the change from one
# evaluation to the next is measured far more precisely than the level.
MAX_VALIDATION_CHARS = 2**17


def _json_safe_params(est) -> dict:
    params = est.get_params(deep=False)
    if not isinstance(params.get("random_state"), int | type(None)):
        params["random_state"] = None  # a Generator object has no portable form
    return params


def _finite_or_none(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


__all__ = [
    "AUTO_DROPOUT",
    "AUTO_DROPOUT_CHARS_PER_WEIGHT",
    "CharRNNGenerator",
    "auto_dropout",
    "check_documents",
]

# dropout=None chooses by corpus size: AUTO_DROPOUT for a text of fewer than
# AUTO_DROPOUT_CHARS_PER_WEIGHT characters per weight of the network, none for a longer one
# (measured in docs/benchmarks.md, "Using all the text": a 2 x 256 GRU, 0.66 M weights,
# overfits a 1 M-character text in a 13-minute run without dropout, and learns a 4.8 M one
# faster without it).
AUTO_DROPOUT = 0.2
AUTO_DROPOUT_CHARS_PER_WEIGHT = 4.0


def auto_dropout(n_chars: int, n_weights: int) -> float:
    """The dropout ``dropout=None`` chooses for ``n_chars`` characters and ``n_weights``
    weights: :data:`AUTO_DROPOUT` below :data:`AUTO_DROPOUT_CHARS_PER_WEIGHT` characters per
    weight, else 0."""
    return AUTO_DROPOUT if n_chars < AUTO_DROPOUT_CHARS_PER_WEIGHT * n_weights else 0.0


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


class CharRNNGenerator(TextReadingMixin, RecurrentEstimator):
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
    dropout : float in [0, 1) or None, default=0.0
        Inverted dropout on every layer's output. None chooses by the size of the text for
        the model (:func:`auto_dropout`): 0.2 when the text has fewer than 4 characters per
        weight of the network, else 0 (``config_.dropout`` holds the choice); ``charrnn
        train`` uses None.
    gate_init : {"zeros", "forget1", "chrono"}, default="forget1"
        How the gate biases start (:func:`charrnn.engine.network.gate_bias`). "forget1": the
        LSTM's forget-gate bias at 1, every other bias 0 (the GRU's too: it has no forget
        gate) -- the initialisation charrnn always had. "zeros": every bias 0. "chrono"
        (Tallec & Ollivier 2018): the keep gate's bias (the LSTM's forget gate, the GRU's
        update gate) ``log(u)``, ``u ~ U[1, seq_length - 1]``, and the LSTM's input-gate bias
        ``-log(u)``, so the units' memory spans start spread from one step to
        ``seq_length``, the longest dependency truncated BPTT can learn. The default was chosen
        by measurement (docs/benchmarks.md, long memory): chrono kept the recall task's
        gradient at the key at initialisation but learned the recall no better, and learned
        Shakespeare more slowly. The vanilla RNN has no gates: every option gives it zero
        biases.
    seq_length : int, default=64
        Steps per truncated-BPTT chunk.
    batch_size : int, default=32
        Parallel streams over the text.
    learning_rate : float, default=5e-3
        Peak learning rate.
    optimizer : {"adam", "adamw", "rmsprop", "adagrad", "sgd"}, default="adam"
        Update rule, numerically as its namesake in ``torch.optim`` (:mod:`charrnn.engine.optim`).
        Measured (docs/benchmarks.md, long memory): an LSTM that must carry one character across
        100 steps found the read-out in 1,860 updates with "rmsprop" (or Adam with
        ``beta_1=0, beta_2=0.99``) where Adam's defaults needed about four times as many; the
        defaults stay because they learned Shakespeare better.
    beta_1 : float in [0, 1), default=0.9
        Decay of Adam's (and AdamW's) running average of the gradient, its momentum;
        ``beta1`` of ``torch.optim.Adam``'s ``betas``. Unused by the other optimisers.
    beta_2 : float in [0, 1), default=0.999
        Decay of Adam's (and AdamW's) running average of the squared gradient; ``beta2`` of
        ``betas``. Unused by the other optimisers.
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
    max_validation_chars : int or None, default=131072
        Characters scored per validation: 256 windows of 512 characters (each read after
        the 64 before it) evenly spread over the held-out text, the same ones every time;
        the whole held-out text, read as parallel streams, when it is no longer (or with
        None). So a validation costs the same on a 500 MB corpus as on a 5 MB one. Each
        history record holds the score's standard error (``val_stderr``, over the windows)
        and the characters scored (``val_chars``).
    refit_fraction : float in [0, 1), default=0.0
        Share of the training spent, at its end, on all the text, held-out part included:
        validation runs over the first ``1 - refit_fraction`` of the schedule and of
        ``max_time`` (choosing the stopping point and, with early stopping, the weights),
        then the final stretch continues from those weights on the whole text at the
        schedule's last learning rates, for ``refit_fraction / (1 - refit_fraction)``
        times the chosen number of steps (``final_stretch_``). 0 never trains on the
        held-out text. ``charrnn train`` uses 0.1.
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
        1 shows a tqdm progress bar (hidden when not on a terminal); 2 also prints a line
        per pass.

    Attributes
    ----------
    vocab_ : CharVocab
    classes_ : ndarray of str, shape (n_classes,)
        The symbols: index 0 is the end of a document (``""``), 1 the unknown symbol
        (``"\\ufffd"``), then the characters seen in training in code-point order.
    config_ : NetworkConfig
    params_ : dict of str to ndarray
    n_iter_ : int
        Passes over the training text: the complete ones, and one cut short by ``max_time``
        (counted once, also when a resumed ``fit`` completes it).
    loss_curve_ : list of float, length n_iter_
        Mean training loss (nats/char) of each pass.
    validation_scores_ : list of float or None
        Validation score of each validated pass: the mean log-likelihood per character of
        the held-out text (higher is better; ``-score`` is the loss in nats/char). None
        while no pass has been validated (``validation_fraction=0``, ``partial_fit``).
    best_validation_score_ : float or None
    best_iteration_ : int or None
        The pass (1-based, counting as ``n_iter_``) that scored ``best_validation_score_``;
        with ``early_stopping`` the weights are that pass's.
    n_chars_seen_ : int
        Training characters read, over every ``fit`` and ``partial_fit``.
    history_ : list of dict
        One record per pass: losses, characters seen, time, gradient norms before clipping.
    stop_reason_ : str
        What ended the last ``fit``: ``"max_iter"``, ``"max_time"``, ``"early_stopping"``,
        ``"training_loss_stalled"``, ``"diverged"``, ``"interrupted (SIGINT)"``, ...
    diverged_ : bool
        Whether the last ``fit`` stopped because the loss stopped being finite.
    training_progress_ : dict or None
        Where the last ``fit`` stopped (what ``fit(..., resume=True)`` continues from).
    final_stretch_ : dict or None
        The final stretch on all the text (``refit_fraction``): ``share``, ``steps``,
        ``planned_steps``, ``chars_seen``, ``seconds``, ``train_loss`` and ``stop_reason``
        (``"max_steps"``, ``"max_time"``, ``"interrupted ..."``); None when the last
        ``fit`` had none. Its characters count in ``n_chars_seen_``, not in ``n_iter_``,
        ``loss_curve_`` or ``history_``.
    training_corpus_ : dict
        ``{"source", "n_chars", "sha256"}`` of the text the last ``fit`` trained on
        (:func:`charrnn.data.corpus.text_fingerprint`); ``fit(X, resume=True)`` refuses
        another X.

    Notes
    -----
    Training follows the rules every charrnn estimator shares
    (:class:`~charrnn.estimators.base.RecurrentEstimator`): at most ``max_iter`` passes or
    ``max_time`` seconds; the tail ``validation_fraction`` of the text scored after each
    pass; with ``early_stopping``, a stop after ``n_iter_no_change`` passes that did not beat
    the best score by ``tol`` and the best pass's weights kept, otherwise a stop once the
    training loss stalls the same way. ``ConvergenceWarning`` when ``max_iter`` ends
    training first, when the loss stops being finite (the last finite step's weights are
    kept, ``diverged_`` is True) and when Ctrl-C or SIGTERM interrupts it (the weights so
    far are kept; ``fit(X, resume=True)`` continues exactly). ``partial_fit`` is one pass
    over all of X at the constant ``learning_rate``, without validation or stopping rules.

    Unknown characters: a character not seen in training is read as the unknown symbol (its
    embedding is untrained) and, as a target, gets the probability the model gives the
    unknown symbol, which training drives close to zero -- scoring text with unseen characters
    is finite but heavily penalised. ``sample(prime=...)`` refuses unseen characters, and
    ``sample`` never generates the unknown symbol.

    Reading (:class:`~charrnn.estimators.reading.TextReadingMixin`): ``complete(prefix)``
    gives the most likely next words with their probabilities, ``fill(template,
    candidates)`` ranks the ways to fill a template's blanks by the whole text's likelihood,
    ``trace(text)`` returns the hidden states and predictions at every character, and
    ``sample(beam_width=...)`` the most likely continuation instead of a random one.

    Examples
    --------
    >>> gen = CharRNNGenerator(hidden_size=32, num_layers=1, max_iter=2, random_state=0)
    >>> gen = gen.fit("hello world\\n" * 200)
    >>> len(gen.sample(n_samples=2, length=20, random_state=0))
    2
    """

    _parameter_constraints = {
        **SHARED_PARAMETERS,
        "dropout": Param(
            Real(0.0, 1.0, high_open=True, none_ok=True),
            "Dropout on each recurrent layer's output; None chooses by corpus size "
            f"({AUTO_DROPOUT:g} below {AUTO_DROPOUT_CHARS_PER_WEIGHT:g} characters per weight).",
        ),
        "seq_length": Param(Integer(1), "Characters per truncated-BPTT chunk."),
        "max_validation_chars": Param(
            Integer(1, none_ok=True),
            "Characters scored per validation: evenly spread windows of the held-out text "
            "(all of it when shorter); None scores all of it.",
        ),
        "refit_fraction": Param(
            Real(0.0, 1.0, high_open=True),
            "Share of the training, at its end, spent on all the text, held-out part "
            "included, at the schedule's last learning rates; 0 never trains on it.",
        ),
    }

    def __init__(
        self,
        *,
        cell="gru",
        hidden_size=256,
        num_layers=2,
        embedding_dim=None,
        dropout=0.0,
        gate_init="forget1",
        seq_length=64,
        batch_size=32,
        learning_rate=5e-3,
        optimizer="adam",
        beta_1=0.9,
        beta_2=0.999,
        weight_decay=None,
        clip_norm=5.0,
        max_iter=10,
        max_time=None,
        validation_fraction=0.1,
        max_validation_chars=MAX_VALIDATION_CHARS,
        refit_fraction=0.0,
        early_stopping=True,
        n_iter_no_change=3,
        tol=1e-4,
        lr_schedule="warmup_cosine",
        warm_start=False,
        dtype="float32",
        random_state=None,
        verbose=0,
    ):
        # the base stores the shared parameters (SHARED_PARAMETERS), this class its own
        super().__init__(**{k: v for k, v in locals().items() if k in SHARED_PARAMETERS})
        self.seq_length = seq_length
        self.max_validation_chars = max_validation_chars
        self.refit_fraction = refit_fraction

    # -- scikit-learn plumbing ---------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        # transform() gives features; no input dtype is carried through to them
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        return tags

    # -- fitting ----------------------------------------------------------------------------
    def fit(
        self,
        X,
        y=None,
        *,
        on_epoch=None,
        on_step=None,
        stop_flag=None,
        resume=False,
        evaluation_progress=None,
    ):
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
        evaluation_progress : callable(total) -> callable(int), optional
            Shows the progress of each validation: called with the characters it will score,
            it returns what is called with each scored piece's count (and closed, if it has
            ``close``, at the end); e.g. :func:`charrnn.estimators.base.evaluation_bar`.
            With ``verbose`` >= 1 and none given, that bar is used.
        """
        if evaluation_progress is None and self.verbose:
            evaluation_progress = evaluation_bar
        self._validation_progress = evaluation_progress
        try:
            return self._fit(
                X, y, resume=resume, on_epoch=on_epoch, on_step=on_step, stop_flag=stop_flag
            )
        finally:
            self._validation_progress = None

    def partial_fit(self, X, y=None):
        """One more pass over all of X at the constant ``learning_rate``. Returns self."""
        return self._fit(X, y, incremental=True)

    # -- what the base's training loop asks of a generator ---------------------------------
    def _check_training_data(self, X, y=None):
        # A TextCorpus (a file too big to hold as a str) gives its vocabulary and a read-only
        # memmap of its ids, so neither the text nor its ids are ever loaded whole.
        return X if isinstance(X, TextCorpus) else check_documents(X)

    def _initialise_model(self, data, rng):
        self.vocab_ = data.vocab() if isinstance(data, TextCorpus) else CharVocab.fit(data)
        self.classes_ = np.array(self.vocab_.symbols)
        self.config_ = self._network_config(self.vocab_.size)
        # chrono prepares for dependencies as long as a BPTT chunk, the longest it can learn
        self.params_ = network.init_params(
            self.config_, rng, gate_init=self.gate_init, t_max=int(self.seq_length)
        )
        if self.dropout is None:
            n_chars = len(data) if isinstance(data, TextCorpus) else sum(map(len, data))
            n_weights = sum(p.size for p in self.params_.values())
            self.config_ = dataclasses.replace(
                self.config_, dropout=auto_dropout(n_chars, n_weights)
            )

    def _network_config(self, vocab_size: int) -> network.NetworkConfig:
        return network.NetworkConfig(
            cell=self.cell,
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            embedding_dim=self.embedding_dim,
            dropout=0.0 if self.dropout is None else float(self.dropout),
            dtype=self.dtype,
        )

    def _training_shape(self, data):
        if hasattr(self, "params_"):
            vocab_size = self.vocab_.size  # a continued fit keeps its vocabulary
        else:
            vocab = data.vocab() if isinstance(data, TextCorpus) else CharVocab.fit(data)
            vocab_size = vocab.size
        sizes = {
            "hidden_size": int(self.hidden_size),
            "num_layers": int(self.num_layers),
            "batch_size": int(self.batch_size),
            "seq_length": int(self.seq_length),
            "vocabulary": vocab_size,
        }
        return self._network_config(vocab_size), int(self.seq_length), sizes

    def _record_training_data(self, data):
        current = text_fingerprint(data)
        recorded = getattr(self, "training_corpus_", None)
        # a fingerprint of the same text set by the caller keeps its source name
        if not isinstance(recorded, dict) or fingerprint_mismatch(recorded, current):
            self.training_corpus_ = current

    def _check_resume(self, data):
        recorded = getattr(self, "training_corpus_", None)
        if not isinstance(recorded, dict):
            return  # a model file from before fingerprints: nothing to compare with
        mismatch = fingerprint_mismatch(recorded, text_fingerprint(data))
        if mismatch is not None:
            raise ValueError(f"resume=True needs the X of the interrupted fit: {mismatch}")

    def _make_task(self, data, *, validation, rng):
        if isinstance(data, TextCorpus):
            ids = data.ids(self.vocab_)
        else:
            ids = self.vocab_.encode_documents(data)
        fraction = self.validation_fraction if validation else 0.0
        train_ids, val_ids = split_train_validation(ids, fraction)
        task = LanguageModelTask(
            self.config_,
            train_ids,
            val_ids,
            batch_size=self.batch_size,
            seq_length=self.seq_length,
            max_validation_chars=self.max_validation_chars,
        )
        task.validation_progress = getattr(self, "_validation_progress", None)
        return task

    def _final_stretch_share(self):
        return float(self.refit_fraction)

    def _describe_record(self, record):
        text = f"pass {self.n_iter_}: training loss {record['train_loss']:.4f} nats/char"
        if record["val_loss"] is not None:
            text += f", validation loss {record['val_loss']:.4f}"
        return text

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
        # (charrnn.parallel.scoring_threads)
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
        beam_width=None,
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
        beam_width : int or None
            None draws random texts. An integer returns the most likely texts instead, found
            by a beam search keeping that many candidates
            (:func:`charrnn.engine.beam.beam_search`): the ``n_samples`` (at most
            ``beam_width``) best, best first, scored by the model's own probabilities, so
            ``temperature`` must be 1 and ``top_k``, ``top_p`` None; ``random_state`` is
            not used. With ``stop_at_end`` a text ending at the end symbol competes with the
            full-length ones by its probability, end symbol included.

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
        Integer(1, none_ok=True).check("beam_width", beam_width)
        self._check_known("prime", prime)
        prime_ids = np.concatenate(([CharVocab.EOD_ID], self.vocab_.encode(prime))).astype(np.intp)
        if beam_width is not None:
            return self._beam_sample(
                n_samples, length, prime_ids, beam_width, stop_at_end, temperature, top_k, top_p
            )
        rng = as_generator(random_state)
        from charrnn.engine.sampling import generate

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
    def _from_saved(cls, header: dict, arrays: dict, path=None) -> CharRNNGenerator:
        """Rebuild a fitted generator from :func:`charrnn.io.load_arrays` output.

        Raises ValueError (KeyError, TypeError for a header missing parts), which
        :func:`charrnn.io.load` reports as a :class:`~charrnn.io.ModelFileError`.
        """
        # a file from before gate_init was made with what is now "forget1"
        est = cls(**{"gate_init": "forget1", **header["params"]})
        est._validate_params()  # the saved parameters pass the same checks as fit's
        est.vocab_ = CharVocab.from_dict(header["vocab"])
        est.config_, params = check_network(
            header, arrays, network.NetworkConfig, network.param_shapes
        )
        if est.config_.vocab_size != est.vocab_.size:
            raise ValueError(
                f"has a network for {est.config_.vocab_size} symbols but a vocabulary of "
                f"{est.vocab_.size}"
            )
        fitted = header["fitted"]
        check_saved_history(fitted)
        corpus = fitted.get("training_corpus_")
        if corpus is not None and not (
            isinstance(corpus, dict)
            and isinstance(corpus.get("source"), str | None)
            and isinstance(corpus.get("n_chars", 0), int)
        ):
            raise ValueError(f"has a malformed training_corpus_ entry: {corpus!r:.80}")
        train_rng_state = header["train_rng"]
        training = header.get("training")
        if training is not None:
            if problems := Trainer.state_header_problems(training):
                raise ValueError(f"has a corrupt training state: {'; '.join(problems)}")
            # what a resume will restore, tried now so that a corrupt state is found on loading
            np.random.default_rng().bit_generator.state = training["rng"]
            LRSchedule.from_dict(training["schedule"])
        est.params_ = params
        est.classes_ = np.array(est.vocab_.symbols)
        for name in _FITTED_SCALARS:
            setattr(est, name, fitted.get(name))
        est.loss_curve_ = list(est.loss_curve_ or [])
        # 0.1.0 wrote [] for a model never validated
        est.validation_scores_ = list(est.validation_scores_) if est.validation_scores_ else None
        est.history_ = list(est.history_ or [])
        est._train_rng = np.random.default_rng()
        est._train_rng.bit_generator.state = train_rng_state
        train = {k[len("train/") :]: v for k, v in arrays.items() if k.startswith("train/")}
        for key, value in train.items():
            # optimiser buffers ("optim/adam.m.l0.Wx") and best weights ("best/l0.Wx") are
            # shaped like the weight they belong to
            name = key.split(".", 2)[-1] if key.startswith("optim/") else key[len("best/") :]
            own = key.startswith(("optim/", "best/")) and name in params
            if own and value.shape != params[name].shape:
                raise ValueError(
                    f"has training state {key!r} of shape {value.shape}; weight {name!r} "
                    f"has {params[name].shape}"
                )
        if header.get("training") is not None:
            est._training_state = (header["training"], train)
            est._optim_state = {
                k[len("optim/") :]: v for k, v in train.items() if k.startswith("optim/")
            }
        else:
            est._training_state = None
            est._optim_state = None
        return est
