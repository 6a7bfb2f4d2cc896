"""CharRNNClassifier: text classification with (bidirectional) recurrent networks.

The numerics live in :mod:`charrnn.engine.seqclf`, the batches in
:class:`charrnn.engine.tasks.ClassificationTask` and the training loop in the base
(:mod:`charrnn.estimators.base`); this module checks texts and labels, builds the network, and
implements what predicting and saving mean for a classifier.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from charrnn.data import textbatch
from charrnn.data.vocab import CharVocab
from charrnn.engine import seqclf
from charrnn.engine.averaging import WeightAverage
from charrnn.engine.tasks import ClassificationTask
from charrnn.estimators import transfer
from charrnn.estimators.base import (
    FITTED_HISTORY,
    SHARED_PARAMETERS,
    RecurrentEstimator,
    check_saved_history,
)
from charrnn.estimators.params import Boolean, Custom, Options, Param, Real
from charrnn.io import check_network, load_as, save_arrays

__all__ = ["CharRNNClassifier", "load_classifier"]

ESTIMATOR_NAME = "CharRNNClassifier"


# dtype kinds of labels a model file can hold: str, signed and unsigned int, float, bool
_LABEL_KINDS = "Uiufb"


def _labels_to_json(classes: np.ndarray) -> tuple[list, str]:
    """``classes_`` as a JSON list plus its dtype; ValueError for labels JSON cannot hold."""
    kind = classes.dtype.kind
    if kind in _LABEL_KINDS:
        return classes.tolist(), classes.dtype.str
    if kind == "O":
        values = []
        for c in classes:
            if isinstance(c, np.generic):
                c = c.item()
            if not isinstance(c, str | int | float | bool):
                break
            values.append(c)
        else:
            return values, "object"
    raise ValueError(
        f"cannot save a classifier whose labels (classes_) are {classes.dtype} values such as "
        f"{classes[0]!r}: labels must be str, int, float or bool; encode them first (e.g. with "
        "sklearn.preprocessing.LabelEncoder)"
    )


class CharRNNClassifier(ClassifierMixin, RecurrentEstimator):
    """Text classifier on characters: embedding, (bidirectional) recurrent layers, pooling, dense.

    X is an iterable of strings of any lengths, y labels of any hashable type (binary or
    multiclass). Texts are batched by length and right-padded; padding never changes a text's
    prediction, so a text gets the same probabilities alone or in any batch.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}, default="gru"
    hidden_size : int, default=128
        Units per direction per recurrent layer.
    num_layers : int, default=1
    embedding_dim : int or None, default=32
        Size of the learned character embedding; None feeds one-hot vectors.
    bidirectional : bool, default=False
        Read every text forwards and backwards and concatenate the two passes' states.
    pooling : {"last", "mean", "max"}, default="last"
        Feature vector per text: the final state of each direction ("last"; for the backward
        pass that is its state after reading back to the first character), or the mean or
        element-wise maximum of the top layer's states over the text.
    dropout : float in [0, 1), default=0.0
        Inverted dropout between recurrent layers and on the pooled features.
    gate_init : {"zeros", "forget1", "chrono"}, default="forget1"
        How the gate biases start (:func:`charrnn.engine.network.gate_bias`): "forget1" the
        LSTM's forget-gate bias at 1 and every other bias 0 (the initialisation before this
        parameter existed); "zeros" every bias 0; "chrono" (Tallec & Ollivier 2018) the keep
        gates' biases (LSTM forget, GRU update) ``log(u)``, ``u ~ U[1, T - 1]`` with ``T`` the
        longest training text (in characters), and the LSTM's input-gate bias ``-log(u)``, so
        memory spans start spread over the whole text. No effect on the vanilla RNN.
    aux_lm_weight : float >= 0, default=0.0
        Also train the recurrent layers as language models of the training texts, with this
        weight on their loss: a small dense head per direction predicts each character from the
        top layer's state next to it (the next character going forwards, the previous one going
        backwards). It asks the states to describe the text rather than to memorise what tells
        the training texts apart, without any more labels; the heads are not used to predict.
        0 (default) trains on the labels alone. Like the network's shape it is set by ``fit``
        (``partial_fit`` keeps it). See :mod:`charrnn.engine.seqclf`.
    batch_size : int, default=32
    learning_rate : float, default=2e-3
        The optimiser's (peak) step size.
    optimizer : {"adam", "adamw", "rmsprop", "adagrad", "sgd"}, default="adam"
        Update rule, numerically as its namesake in ``torch.optim``.
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's and AdamW's ``betas`` (as in ``torch.optim.Adam``); unused by other optimisers.
    weight_decay : float >= 0 or None, default=0.0
        An L2 penalty: ``weight_decay * w`` added to every weight's gradient, as
        ``torch.optim.Adam(weight_decay=...)`` does (the role of ``alpha`` in scikit-learn's
        ``MLPClassifier``); decoupled for adamw. None keeps the optimiser's default. Read at
        every ``fit`` and ``partial_fit``.
    lr_schedule : {"constant", "warmup_cosine", "warmup_linear"}, default="constant"
        Learning-rate multiplier over a ``fit``'s budget -- ``max_iter`` epochs or ``max_time``
        seconds, whichever is used up first (see :class:`charrnn.engine.optim.LRSchedule`).
        ``partial_fit`` always uses ``learning_rate``.
    clip_norm : float or None, default=5.0
        Clip the global gradient norm to this value; None disables clipping.
    ema_momentum : float in [0, 1) or None, default=None
        Predict with an exponential moving average of the weights over the training steps
        (as Keras optimisers' ``use_ema``/``ema_momentum``; :mod:`charrnn.engine.averaging`)
        instead of the weights of the last step. The average spans about ``1 / (1 - ema_momentum)``
        batches, e.g. 0.998 about 500; training itself goes on from the optimiser's weights
        (``params_``), and validation scores, early stopping and every prediction use the
        average (``averaged_params_``). It carries over ``partial_fit`` calls. None
        (default) predicts with ``params_``.
    max_iter : int, default=20
        Maximum passes (epochs) over the training data.
    max_time : float or None, default=None
        Wall-clock training budget in seconds, checked after every batch.
    validation_fraction : float in [0, 1), default=0.1
        Stratified share of the training data held out and scored (accuracy) after every
        pass; 0 turns validation off (unless ``fit`` gets ``validation_data``).
    early_stopping : bool, default=True
        Stop when the validation accuracy has not improved by ``tol`` for ``n_iter_no_change``
        passes and keep the weights of the best pass. Without it (or without validation
        data) training stops when the training loss stalls the same way.
    n_iter_no_change : int, default=3
    tol : float, default=1e-4
    dtype : {"float32", "float64"}, default="float32"
    random_state : int, Generator or None, default=None
        Seeds initialisation, the validation split, batch order and dropout.
    warm_start : bool, default=False
        ``fit`` continues from the current weights, vocabulary and classes.
    verbose : int, default=0
        1 shows a tqdm progress bar (hidden when not on a terminal); 2 also prints a line
        per pass.
    init_from : CharRNNGenerator, path, pair of these, or None, default=None
        Start the recurrent layers from language models trained on unlabelled text instead of
        at random (:mod:`charrnn.estimators.transfer`): a fitted :class:`CharRNNGenerator` or
        the path of one saved with ``save`` (paths survive ``clone``, so use them with
        ``GridSearchCV``), or for ``bidirectional=True`` a pair ``(forward, backward)``, the
        backward generator trained on reversed texts. The generators must have this
        classifier's ``cell``, ``hidden_size`` and ``embedding_dim``; the vocabulary then also
        holds their characters. Weights are copied at the start of ``fit`` (and of the first
        ``partial_fit``) and then fine-tuned with the rest.

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
    vocab_ : CharVocab
        Characters seen by the first ``fit`` / ``partial_fit`` call.
    config_ : SeqClfConfig
    params_ : dict of str to ndarray
        The weights the optimiser trains.
    averaged_params_ : dict of str to ndarray or None
        With ``ema_momentum``, the averaged weights that predictions use; otherwise None.
    n_iter_ : int
        Passes over the training data (a pass cut short by ``max_time`` counts).
    loss_curve_ : list of float, length n_iter_
        Mean training cross-entropy of each pass.
    validation_scores_ : list of float or None
        Validation accuracy of each validated pass; None while no pass has been validated.
    best_validation_score_ : float or None
    best_iteration_ : int or None
        The pass (1-based) that scored ``best_validation_score_``; with ``early_stopping``
        the weights are that pass's.
    n_chars_seen_ : int
        Training characters read, over every ``fit`` and ``partial_fit``.
    history_ : list of dict
        One record per pass: training loss, validation accuracy, time, gradient norms.
    stop_reason_ : str
        What ended the last ``fit``: ``"max_iter"``, ``"max_time"``, ``"early_stopping"``,
        ``"training_loss_stalled"``, ``"diverged"``, ``"interrupted (SIGINT)"``, ...
    diverged_ : bool
        Whether the last ``fit`` stopped because the loss stopped being finite.

    Notes
    -----
    Training follows the rules every charrnn estimator shares
    (:class:`~charrnn.estimators.base.RecurrentEstimator`), as :class:`CharRNNGenerator`
    does: ``ConvergenceWarning`` when ``max_iter`` ends training before a stopping rule,
    when the loss stops being finite (the last finite step's weights, or the best pass's,
    are kept and ``diverged_`` is True) and when Ctrl-C or SIGTERM interrupts it (the
    weights so far are kept). ``partial_fit`` is one pass at the constant
    ``learning_rate``, without validation or stopping rules.

    Unknown characters (not seen when the vocabulary was built) are read as the unknown symbol,
    as in :class:`CharRNNGenerator`; here its input vector starts at zero and never receives a
    gradient, so an unseen character is a neutral input. An empty string is read as a single
    end-of-document symbol.

    Two routes to a text classifier: this estimator learns features for the labels end to end,
    and with ``bidirectional=True`` and ``"max"``/``"mean"`` pooling it picks up telling
    character patterns anywhere in a text; prefer it when labels are plentiful.
    ``make_pipeline(CharRNNGenerator(...), LogisticRegression())`` instead trains a language
    model without labels and classifies its final hidden state; prefer it when unlabelled text
    is plentiful and labels are few, or one language model serves several tasks.

    Examples
    --------
    >>> X = ["a cat", "the dog", "a xylophone", "x marks"] * 25
    >>> y = ["no", "no", "x", "x"] * 25
    >>> clf = CharRNNClassifier(hidden_size=16, max_iter=5, random_state=0).fit(X, y)
    >>> clf.predict_proba(["x"]).shape
    (1, 2)
    """

    _parameter_constraints = {
        **SHARED_PARAMETERS,
        "bidirectional": Param(Boolean(), "Read every text forwards and backwards."),
        "pooling": Param(Options(seqclf.POOLINGS), "Feature vector per text."),
        "aux_lm_weight": Param(Real(0.0), "Weight of the auxiliary language-modelling loss."),
        "ema_momentum": Param(
            Real(0.0, 1.0, high_open=True, none_ok=True),
            "Predict with an exponential moving average of the weights.",
        ),
        "init_from": Param(
            Custom(transfer.check_source_type, transfer.SOURCE_TYPES),
            "Start the recurrent layers from trained language models.",
        ),
    }

    def __init__(
        self,
        *,
        cell="gru",
        hidden_size=128,
        num_layers=1,
        embedding_dim=32,
        bidirectional=False,
        pooling="last",
        dropout=0.0,
        gate_init="forget1",
        aux_lm_weight=0.0,
        batch_size=32,
        learning_rate=2e-3,
        optimizer="adam",
        beta_1=0.9,
        beta_2=0.999,
        weight_decay=0.0,
        lr_schedule="constant",
        clip_norm=5.0,
        ema_momentum=None,
        max_iter=20,
        max_time=None,
        validation_fraction=0.1,
        early_stopping=True,
        n_iter_no_change=3,
        tol=1e-4,
        dtype="float32",
        random_state=None,
        warm_start=False,
        verbose=0,
        init_from=None,
    ):
        # the base stores the shared parameters (SHARED_PARAMETERS), this class its own
        super().__init__(**{k: v for k, v in locals().items() if k in SHARED_PARAMETERS})
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.aux_lm_weight = aux_lm_weight
        self.ema_momentum = ema_momentum
        self.init_from = init_from

    # -- scikit-learn plumbing ---------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags

    def _check_xy(self, X, y, name: str = "") -> tuple[list[str], np.ndarray]:
        texts = textbatch.check_texts(X, f"{name} X" if name else "X")
        y = column_or_1d(y, warn=True)
        if len(y) != len(texts):
            raise ValueError(
                f"{name + ' ' if name else ''}X and y have different lengths: {len(texts)} and "
                f"{len(y)} samples"
            )
        check_classification_targets(y)
        return texts, y

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        empty = np.array([CharVocab.EOD_ID], dtype=self.vocab_.dtype)
        return [self.vocab_.encode(t) if t else empty for t in texts]

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, X, y, validation_data=None):
        """Train on texts ``X`` (iterable of str) with labels ``y``. Returns self.

        Parameters
        ----------
        X : iterable of str
        y : array-like, shape (n_samples,)
        validation_data : (X_val, y_val), optional
            Texts and labels scored after every pass instead of a random
            ``validation_fraction`` of ``X`` (as Keras' ``fit(validation_data=...)``): use it
            when a random split would leak, e.g. texts from the same source on both sides.
            Its labels must occur in ``y``.
        """
        return self._fit(X, y, validation_data=validation_data)

    def partial_fit(self, X, y, classes=None):
        """One pass over ``(X, y)``, continuing from the current weights. Returns self.

        Parameters
        ----------
        X : iterable of str
        y : array-like, shape (n_samples,)
        classes : array-like, shape (n_classes,), optional
            Every label that will ever occur; required on the first call (as for
            ``SGDClassifier``), and if given later it must equal ``classes_``. The vocabulary
            is built from the first call's ``X``.
        """
        if classes is None and not hasattr(self, "classes_"):
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    @staticmethod
    def _label_indices(y: np.ndarray, classes: np.ndarray, name: str) -> np.ndarray:
        """Positions of the labels ``y`` in ``classes``; ValueError for any other label."""
        try:
            idx = np.searchsorted(classes, y)
        except TypeError:  # labels that cannot be compared with the classes
            raise ValueError(f"{name} holds labels not in classes: {y[:5].tolist()!r}") from None
        idx[idx == len(classes)] = 0
        unseen = classes[idx] != y
        if unseen.any():
            raise ValueError(
                f"{name} holds labels not in classes: {np.unique(y[unseen]).tolist()!r:.200}"
            )
        return idx

    # -- what the base's training loop asks of a classifier --------------------------------
    def _check_training_data(self, X, y, validation_data=None, classes=None):
        texts, y = self._check_xy(X, y)
        data = {"texts": texts, "y": y, "classes": None, "validation": None}
        if classes is not None:
            data["classes"] = np.unique(column_or_1d(classes))
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            data["validation"] = self._check_xy(*validation_data, name="validation_data")
        return data

    def _initialise_model(self, data, rng):
        classes = data["classes"] if data["classes"] is not None else np.unique(data["y"])
        if len(classes) < 2:
            raise ValueError(
                f"the classifier needs samples of at least 2 classes, got only {classes.tolist()!r}"
            )
        generators = transfer.resolve_sources(self.init_from, bool(self.bidirectional))
        transfer.check_compatible(generators, self.cell, int(self.hidden_size), self.embedding_dim)
        self.classes_ = classes
        self.vocab_ = transfer.widen_vocab(CharVocab.fit(data["texts"]), generators)
        self.config_ = self._network_config(self.vocab_.size, len(classes))
        # chrono prepares for dependencies as long as the longest training text
        longest = max(len(t) for t in data["texts"])
        self.params_ = seqclf.init_params(
            self.config_, rng, gate_init=self.gate_init, t_max=max(longest, 1)
        )
        transfer.copy_encoder(self.params_, self.vocab_, generators, int(self.num_layers))
        self._average = None
        self.averaged_params_ = None

    def _network_config(self, vocab_size: int, n_classes: int) -> seqclf.SeqClfConfig:
        return seqclf.SeqClfConfig(
            cell=self.cell,
            vocab_size=vocab_size,
            n_classes=n_classes,
            hidden_size=int(self.hidden_size),
            num_layers=int(self.num_layers),
            embedding_dim=None if self.embedding_dim is None else int(self.embedding_dim),
            bidirectional=bool(self.bidirectional),
            pooling=self.pooling,
            dropout=float(self.dropout),
            dtype=self.dtype,
            aux_lm_weight=float(self.aux_lm_weight),
        )

    def _training_shape(self, data):
        texts = data["texts"]
        classes = data["classes"] if data["classes"] is not None else np.unique(data["y"])
        # the vocabulary of the texts (init_from may widen it by a few characters)
        vocab_size = CharVocab.fit(texts).size
        longest = max((len(t) for t in texts), default=0) + 1  # + the end-of-text symbol
        sizes = {
            "hidden_size": int(self.hidden_size),
            "num_layers": int(self.num_layers),
            "batch_size": min(int(self.batch_size), len(texts)),
            "longest text": longest,
        }
        config = self._network_config(vocab_size, max(2, len(classes)))
        return config, longest, sizes

    def _check_warm_start(self, data):
        classes = data["classes"]
        if classes is not None and not np.array_equal(classes, self.classes_):
            raise ValueError(f"classes={classes!r} differs from classes_={self.classes_!r}")

    def _make_task(self, data, *, validation, rng):
        texts = data["texts"]
        y_idx = self._label_indices(data["y"], self.classes_, "y")
        train, val = np.arange(len(texts)), np.arange(0)
        if validation and data["validation"] is not None:
            val_texts, y_val = data["validation"]
            val_idx = self._label_indices(y_val, self.classes_, "validation_data")
            val = np.arange(len(texts), len(texts) + len(val_texts))
            texts, y_idx = texts + val_texts, np.concatenate([y_idx, val_idx])
        elif validation and self.validation_fraction > 0:
            train, val = textbatch.stratified_split(y_idx, self.validation_fraction, rng)
        return ClassificationTask(
            self.config_,
            self._encode(texts),
            y_idx,
            train,
            val,
            batch_size=self.batch_size,
            predict_logits=self._logits_with,
        )

    def _make_average(self):
        """Match the weight average to ``ema_momentum``, which ``set_params`` may have changed
        since the last fit: drop it, or start a new one from the next step on."""
        m = self.ema_momentum
        if m is None:
            self._average = self.averaged_params_ = None
        elif self._average is None or self._average.momentum != float(m):
            self._average = WeightAverage(self.params_, float(m))
        return self._average

    def _after_training(self, trainer):
        self._refresh_average()

    def _describe_record(self, record):
        text = f"pass {self.n_iter_}: loss {record['train_loss']:.4f}"
        if record["val_score"] is not None:
            text += f", validation accuracy {record['val_score']:.4f}"
        return text

    def _refresh_average(self) -> None:
        """Write the current average into ``averaged_params_`` (None without one)."""
        if self._average is None or self._average.steps == 0:
            self.averaged_params_ = None
            return
        if self.averaged_params_ is None:
            self.averaged_params_ = self._average.averaged()
        else:
            self._average.copy_into(self.averaged_params_)

    def _inference_params(self) -> dict:
        """The weights predictions use: the average when there is one."""
        return self.params_ if self.averaged_params_ is None else self.averaged_params_

    # -- prediction -------------------------------------------------------------------------
    def _logits(self, seqs: list[np.ndarray]) -> np.ndarray:
        """(n_samples, n_classes) logits of the weights predictions use."""
        return self._logits_with(self._inference_params(), seqs)

    def _logits_with(self, params: dict, seqs: list[np.ndarray]) -> np.ndarray:
        """(n_samples, n_classes) logits of ``params``, computed in length-sorted batches."""
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.intp, count=len(seqs))
        out = np.empty((len(seqs), len(self.classes_)), dtype=np.float64)
        for batch in textbatch.inference_batches(lengths):
            ids, lens = seqclf.pad_batch([seqs[i] for i in batch])
            out[batch] = seqclf.forward(params, self.config_, ids, lens)[0]
        return out

    def _texts_logits(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self._logits(self._encode(textbatch.check_texts(X)))

    def decision_function(self, X) -> np.ndarray:
        """Confidence scores: binary (n_samples,) logit of ``classes_[1]`` minus that of
        ``classes_[0]``; multiclass (n_samples, n_classes) logits."""
        logits = self._texts_logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        logits = self._texts_logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def predict_log_proba(self, X) -> np.ndarray:
        """Log of :meth:`predict_proba`, shape (n_samples, n_classes)."""
        return seqclf.log_softmax(self._texts_logits(X))

    def predict(self, X) -> np.ndarray:
        """Most probable label of each text, shape (n_samples,)."""
        check_is_fitted(self)
        return self.classes_[self._texts_logits(X).argmax(axis=1)]

    # -- persistence ------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted model to ``path`` (.npz with a JSON header, no pickle), atomically.

        Raises
        ------
        ValueError
            If the labels are not str, int, float or bool (they are stored as JSON).
        """
        check_is_fitted(self)
        labels, labels_dtype = _labels_to_json(self.classes_)
        params = self.get_params()
        if not (params["random_state"] is None or isinstance(params["random_state"], int)):
            params["random_state"] = None  # a Generator has no JSON form; the weights are saved
        params["init_from"] = transfer.source_to_json(params["init_from"])
        header = {
            "estimator": ESTIMATOR_NAME,
            "params": params,
            "config": self.config_.to_dict(),
            "vocab": self.vocab_.to_dict(),
            "classes": labels,
            "classes_dtype": labels_dtype,
            "fitted": {name: getattr(self, name) for name in FITTED_HISTORY},
            "train_rng": self._train_rng.bit_generator.state,
        }
        arrays = {f"param/{k}": v for k, v in self.params_.items()}
        arrays |= {f"optim/{k}": v for k, v in (self._optim_state or {}).items()}
        if self._average is not None:
            arrays |= {f"average/{k}": v for k, v in self._average.state_dict().items()}
        save_arrays(path, header, arrays)

    @classmethod
    def _from_saved(cls, header: dict, arrays: dict, path=None) -> CharRNNClassifier:
        """Rebuild a fitted classifier from :func:`charrnn.io.load_arrays` output."""
        if header.get("estimator") != ESTIMATOR_NAME:
            raise ValueError(f"file holds a {header.get('estimator')!r}, not a {ESTIMATOR_NAME}")
        # a file from before gate_init was made with what is now "forget1"
        est = cls(**{"gate_init": "forget1", **header["params"]})
        est._validate_params()  # the saved parameters pass the same checks as fit's
        est.config_, est.params_ = check_network(
            header, arrays, seqclf.SeqClfConfig, seqclf.param_shapes
        )
        est.vocab_ = CharVocab.from_dict(header["vocab"])
        dtype = header["classes_dtype"]
        if dtype != "object" and np.dtype(dtype).kind not in _LABEL_KINDS:
            raise ValueError(f"has classes_dtype={dtype!r}; labels are str, int, float or bool")
        est.classes_ = np.array(header["classes"], dtype=object if dtype == "object" else dtype)
        config = est.config_
        if config.input_size is not None or config.loss != "cross_entropy":
            raise ValueError("has a regressor's network configuration, not a classifier's")
        if config.vocab_size != est.vocab_.size:
            raise ValueError(
                f"has a network for {config.vocab_size} symbols but a vocabulary of "
                f"{est.vocab_.size}"
            )
        if est.classes_.shape != (config.n_classes,):
            raise ValueError(
                f"has {config.n_classes} outputs but classes of shape {est.classes_.shape}"
            )
        if "fitted" in header:
            check_saved_history(header["fitted"])
        state = {k[len("optim/") :]: v for k, v in arrays.items() if k.startswith("optim/")}
        est._optim_state = state or None
        est._training_state = None
        est._average = est.averaged_params_ = None
        average = {k[len("average/") :]: v for k, v in arrays.items() if k.startswith("average/")}
        if average:
            # the file's own momentum: set_params may have changed ema_momentum after the last
            # fit, which takes effect at the next one (_make_average)
            est._average = WeightAverage.from_state_dict(est.params_, average)
            est._refresh_average()
        est._train_rng = np.random.default_rng()
        if "train_rng" in header:
            est._train_rng.bit_generator.state = header["train_rng"]
        if "fitted" in header:
            for name in FITTED_HISTORY:
                setattr(est, name, header["fitted"][name])
        else:  # written by charrnn 0.1.0
            est.n_iter_ = int(header["n_iter"])
            est.loss_curve_ = list(header["loss_curve"])
            est.validation_scores_ = header["validation_scores"]
            est.best_validation_score_ = header["best_validation_score"]
            est.n_chars_seen_, est.best_iteration_, est.history_ = 0, None, []
            est.stop_reason_, est.diverged_ = "", False
        return est


def load_classifier(path) -> CharRNNClassifier:
    """Load a classifier written by :meth:`CharRNNClassifier.save`.

    Raises
    ------
    charrnn.io.ModelFileError
        For a file that cannot be read or holds another kind of model (a ValueError).
    """
    return load_as(path, CharRNNClassifier)
