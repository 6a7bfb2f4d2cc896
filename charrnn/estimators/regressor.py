"""RNNRegressor: real-valued targets from float sequences, on the classifier's network.

The numerics are :mod:`charrnn.engine.seqclf` with float input and a squared-error head, the
batches :class:`charrnn.engine.tasks.RegressionTask` and the training loop the base's
(:mod:`charrnn.estimators.base`); this module checks arrays, scales them, and implements what
predicting and saving mean for a regressor.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from charrnn.engine import seqclf
from charrnn.engine.tasks import RegressionTask
from charrnn.estimators.base import (
    FITTED_HISTORY,
    SHARED_PARAMETERS,
    RecurrentEstimator,
    check_saved_history,
)
from charrnn.estimators.params import (
    Boolean,
    Custom,
    InvalidParameterError,
    Options,
    Param,
)
from charrnn.io import check_network, load_as, save_arrays

__all__ = ["RNNRegressor", "load_regressor"]

ESTIMATOR_NAME = "RNNRegressor"


def _only_none(name, value):
    # a row of SHARED_PARAMETERS that float input has no use for
    if value is None:
        return
    raise InvalidParameterError(
        f"{name} must be None for RNNRegressor (float input has no embedding), got {value!r}"
    )


# ridge penalty of the skip path's starting point (standardised inputs)
_SKIP_RIDGE_ALPHA = 1.0

# rows predicted per forward pass: bounds the memory of the cells' caches
_PREDICT_BATCH = 512


class RNNRegressor(RegressorMixin, RecurrentEstimator):
    """Regression on sequences: (bidirectional) recurrent layers, pooling, a linear head.

    X holds ``n_samples`` sequences of ``n_steps`` steps, each step one value (2-D X) or a
    vector of ``n_features`` values (3-D X); y one value per sequence or several (multi-output).
    Every sequence is read step by step by the recurrent layers; the top layer's final state
    (or its mean or maximum over the steps) goes through a dense linear layer. Training
    minimises half the mean squared error.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}, default="gru"
    hidden_size : int, default=32
        Units per direction per recurrent layer.
    num_layers : int, default=1
    embedding_dim : None, default=None
        Shared with the text estimators; it must stay None here (float input feeds the
        first layer's input weights directly).
    bidirectional : bool, default=False
        Also read every sequence backwards and concatenate the two passes' states.
    pooling : {"last", "mean", "max"}, default="last"
        Feature vector per sequence: the final state of each direction, or the mean or
        element-wise maximum of the top layer's states over the steps.
    linear_skip : bool, default=False
        Add a linear map of the whole (standardised) input sequence to the outputs, beside
        the recurrent layers' head (LSTNet's autoregressive component): the network then
        learns what a linear model of the steps misses. It ties the model to sequences of
        the ``n_steps`` it was fitted on (as every estimator here is); its weights start at
        the ridge regression (alpha 1) of the training targets on the inputs and the
        recurrent head's output weights at zero, so training starts from the best linear
        model; they take ``weight_decay`` like the others.
    standardize : bool, default=True
        Scale the inputs (per feature, over samples and steps) and the targets (per output)
        to mean 0 and standard deviation 1 with the statistics of the first ``fit`` or
        ``partial_fit``'s data; predictions are returned in the targets' own units. Raw
        series then train well with the default learning rate. False feeds the data as given.
    dropout : float in [0, 1), default=0.0
        Inverted dropout between recurrent layers and on the pooled features.
    gate_init : {"zeros", "forget1", "chrono"}, default="forget1"
        How the gate biases start (:func:`charrnn.engine.network.gate_bias`): "forget1" the
        LSTM's forget-gate bias at 1 and every other bias 0 (the initialisation before this
        parameter existed); "zeros" every bias 0; "chrono" (Tallec & Ollivier 2018) the keep
        gates' biases (LSTM forget, GRU update) ``log(u)``, ``u ~ U[1, T - 1]`` with ``T`` the
        number of steps of a sequence, and the LSTM's input-gate bias ``-log(u)``, so memory
        spans start spread over the whole sequence. No effect on the vanilla RNN.
    batch_size : int, default=32
    learning_rate : float, default=3e-3
    optimizer : {"adam", "adamw", "rmsprop", "adagrad", "sgd"}, default="adam"
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's and AdamW's ``betas`` (as in ``torch.optim.Adam``); unused by other optimisers.
    weight_decay : float >= 0 or None, default=0.0
    lr_schedule : {"constant", "warmup_cosine", "warmup_linear"}, default="constant"
    clip_norm : float or None, default=5.0
    max_iter : int, default=200
        Maximum passes (epochs) over the training data.
    max_time : float or None, default=None
        Wall-clock training budget in seconds.
    validation_fraction : float in [0, 1), default=0.1
        Random share of the training samples held out and scored (R²) after every pass; 0
        turns validation off (unless ``fit`` gets ``validation_data``). For windows of one
        series, a chronological hold-out is better: :class:`RNNForecaster` makes one.
    early_stopping : bool, default=True
        Stop when the validation R² has not improved by ``tol`` for ``n_iter_no_change``
        passes and keep the best pass's weights; without validation data, stop when the
        training loss stalls the same way.
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    dtype : {"float32", "float64"}, default="float32"
    random_state : int, Generator or None, default=None
        Seeds initialisation, the validation split, batch order and dropout.
    warm_start : bool, default=False
    verbose : int, default=0

    Attributes
    ----------
    n_features_in_ : int
        Steps per sequence, ``X.shape[1]`` (scikit-learn's name for X's second axis).
    n_inputs_ : int
        Values per step: 1 for 2-D X, ``X.shape[2]`` for 3-D X.
    n_outputs_ : int
    x_mean_, x_scale_ : ndarray, shape (n_inputs_,)
        Input standardisation (zeros and ones with ``standardize=False``).
    y_mean_, y_scale_ : ndarray, shape (n_outputs_,)
        Target standardisation.
    config_ : SeqClfConfig
    params_ : dict of str to ndarray
    n_iter_, loss_curve_, validation_scores_, best_validation_score_, best_iteration_,
    n_chars_seen_, history_, stop_reason_, diverged_
        As for every charrnn estimator (:class:`~charrnn.estimators.base.RecurrentEstimator`);
        the loss is on standardised targets, validation scores are R², and
        ``n_chars_seen_`` counts the sequence steps read.

    Notes
    -----
    Training follows the rules every charrnn estimator shares: ``ConvergenceWarning`` when
    ``max_iter`` ends training before a stopping rule, when the loss stops being finite and
    when Ctrl-C or SIGTERM interrupts it; ``partial_fit`` is one pass at the constant
    ``learning_rate`` without validation.

    Scaling is built in rather than left to a ``Pipeline`` because a ``StandardScaler`` on
    2-D X would scale every step on its own, although the steps are one quantity read at
    different times; here one mean and one scale per feature cover every step.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 8))
    >>> y = X[:, -3:].sum(axis=1)
    >>> reg = RNNRegressor(hidden_size=16, max_iter=30, random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    _parameter_constraints = {
        **SHARED_PARAMETERS,
        "embedding_dim": Param(
            Custom(_only_none, "None (float input has no embedding)", none_ok=True),
            "Must be None: float input has no embedding.",
        ),
        "bidirectional": Param(Boolean(), "Read every sequence forwards and backwards."),
        "pooling": Param(Options(seqclf.POOLINGS), "Feature vector per sequence."),
        "linear_skip": Param(Boolean(), "Also map the whole input linearly to the outputs."),
        "standardize": Param(Boolean(), "Scale inputs and targets to mean 0, deviation 1."),
    }

    def __init__(
        self,
        *,
        cell="gru",
        hidden_size=32,
        num_layers=1,
        embedding_dim=None,
        bidirectional=False,
        pooling="last",
        linear_skip=False,
        standardize=True,
        dropout=0.0,
        gate_init="forget1",
        batch_size=32,
        learning_rate=3e-3,
        optimizer="adam",
        beta_1=0.9,
        beta_2=0.999,
        weight_decay=0.0,
        lr_schedule="constant",
        clip_norm=5.0,
        max_iter=200,
        max_time=None,
        validation_fraction=0.1,
        early_stopping=True,
        n_iter_no_change=10,
        tol=1e-4,
        dtype="float32",
        random_state=None,
        warm_start=False,
        verbose=0,
    ):
        super().__init__(**{k: v for k, v in locals().items() if k in SHARED_PARAMETERS})
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.linear_skip = linear_skip
        self.standardize = standardize

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = False
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.target_tags.multi_output = True
        return tags

    # -- input checks ---------------------------------------------------------------------
    def _check_X(self, X, y="no_validation", *, reset: bool, name: str = "X", n_inputs=None):
        """X as (n, T, F) float64 (and y, when given, as float64); scikit-learn's messages
        for bad input (y=None is refused as missing)."""
        if isinstance(y, str) and y == "no_validation":
            X = validate_data(self, X, reset=reset, allow_nd=True, dtype=np.float64)
        else:
            X, y = validate_data(
                self, X, y, reset=reset, allow_nd=True, multi_output=True, y_numeric=True,
                dtype=np.float64,
            )  # fmt: skip
        if X.ndim not in (2, 3):
            raise ValueError(
                f"{name} must have shape (n_samples, n_steps) or (n_samples, n_steps, "
                f"n_features), got shape {X.shape}"
            )
        seqs = X[:, :, None] if X.ndim == 2 else X
        if n_inputs is None and not reset:
            n_inputs = self.n_inputs_
        if n_inputs is not None and seqs.shape[2] != n_inputs:
            raise ValueError(
                f"{name} has {seqs.shape[2]} features per step, but {type(self).__name__} is "
                f"expecting {n_inputs} features per step"
            )
        if isinstance(y, str):
            return seqs
        y = np.asarray(y, dtype=np.float64)
        return seqs, y

    # -- fitting --------------------------------------------------------------------------
    def fit(self, X, y, validation_data=None):
        """Train on sequences ``X`` with targets ``y``. Returns self.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_steps) or (n_samples, n_steps, n_features)
        y : array-like, shape (n_samples,) or (n_samples, n_outputs)
        validation_data : (X_val, y_val), optional
            Scored after every pass instead of a random ``validation_fraction`` of ``X``;
            use it when a random split would leak, e.g. overlapping windows of one series.
        """
        return self._fit(X, y, validation_data=validation_data)

    def partial_fit(self, X, y):
        """One pass over ``(X, y)``, continuing from the current weights. Returns self.

        The first call fixes the scaling (``standardize``) and the shapes.
        """
        return self._fit(X, y, incremental=True)

    def _check_training_data(self, X, y, validation_data=None):
        reset = not hasattr(self, "params_") or not (
            self.warm_start or getattr(self, "_incremental_call", False)
        )
        seqs, y = self._check_X(X, y, reset=reset)
        data = {"X": seqs, "y": y, "validation": None, "y_1d": y.ndim == 1}
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            Xv, yv = validation_data
            Xv = self._check_X(Xv, reset=False, name="validation_data X", n_inputs=seqs.shape[2])
            yv = np.asarray(yv, dtype=np.float64)
            if len(yv) != len(Xv):
                raise ValueError(
                    f"validation_data X and y have different lengths: {len(Xv)} and {len(yv)}"
                )
            data["validation"] = (Xv, yv)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if not reset and n_outputs != self.n_outputs_:
            raise ValueError(
                f"y has {n_outputs} outputs, but the fitted model has {self.n_outputs_}"
            )
        return data

    def _fit(self, X, y=None, *, incremental=False, **kwargs):
        # _check_training_data needs to know whether this call continues a model (so that
        # n_features_in_ is checked, not reset); the base's signature does not say it
        self._incremental_call = incremental
        try:
            return super()._fit(X, y, incremental=incremental, **kwargs)
        finally:
            del self._incremental_call

    def _initialise_model(self, data, rng):
        X, y = data["X"], data["y"]
        y2 = y.reshape(len(y), -1)
        self.n_inputs_ = X.shape[2]
        self.n_outputs_ = y2.shape[1]
        self._y_1d = data["y_1d"]
        if self.standardize:
            self.x_mean_ = X.mean(axis=(0, 1))
            self.x_scale_ = _nonzero(X.std(axis=(0, 1)))
            self.y_mean_ = y2.mean(axis=0)
            self.y_scale_ = _nonzero(y2.std(axis=0))
        else:
            self.x_mean_, self.x_scale_ = np.zeros(self.n_inputs_), np.ones(self.n_inputs_)
            self.y_mean_, self.y_scale_ = np.zeros(self.n_outputs_), np.ones(self.n_outputs_)
        self.config_ = self._network_config(self.n_inputs_, self.n_outputs_, X.shape[1])
        # chrono prepares for dependencies as long as a sequence
        self.params_ = seqclf.init_params(
            self.config_, rng, gate_init=self.gate_init, t_max=int(X.shape[1])
        )
        # the skip path starts at the ridge fit of the training part, which _make_task knows
        self._skip_init_pending = bool(self.linear_skip)

    def _network_config(self, n_inputs: int, n_outputs: int, n_steps: int) -> seqclf.SeqClfConfig:
        return seqclf.SeqClfConfig(
            cell=self.cell,
            vocab_size=0,
            n_classes=n_outputs,
            hidden_size=int(self.hidden_size),
            num_layers=int(self.num_layers),
            bidirectional=bool(self.bidirectional),
            pooling=self.pooling,
            dropout=float(self.dropout),
            dtype=self.dtype,
            input_size=n_inputs,
            loss="squared_error",
            skip_size=n_steps * n_inputs if self.linear_skip else 0,
        )

    def _start_at_the_linear_fit(self, X: np.ndarray, y: np.ndarray) -> None:
        """Start the linear skip path at the ridge regression of ``y`` on the flattened
        ``X`` (scaled, training rows only) and the recurrent head at zero, so training
        begins at the best linear model and the recurrent layers learn what it misses.

        Parameters
        ----------
        X : ndarray, shape (n, T, F)
            Scaled training inputs.
        y : ndarray, shape (n, C)
            Scaled training targets.
        """
        flat = X.reshape(len(X), -1).astype(np.float64)
        x_mean, y_mean = flat.mean(axis=0), y.mean(axis=0)
        centred = flat - x_mean
        # alpha 1 on standardised inputs, as scikit-learn's Ridge() on such features
        gram = centred.T @ centred + _SKIP_RIDGE_ALPHA * np.eye(flat.shape[1])
        W = np.linalg.solve(gram, centred.T @ (y - y_mean))
        dt = self.params_["Wskip"].dtype
        self.params_["Wskip"][...] = W.astype(dt)
        self.params_["bout"][...] = (y_mean - x_mean @ W).astype(dt)
        self.params_["Wout"][...] = 0.0

    def _training_shape(self, data):
        X, y = data["X"], data["y"]
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        sizes = {
            "hidden_size": int(self.hidden_size),
            "num_layers": int(self.num_layers),
            "batch_size": min(int(self.batch_size), len(X)),
            "n_steps": X.shape[1],
        }
        return self._network_config(X.shape[2], n_outputs, X.shape[1]), X.shape[1], sizes

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        """(n, T, F) inputs standardised, in the network's dtype."""
        return ((X - self.x_mean_) / self.x_scale_).astype(self.config_.dtype)

    def _make_task(self, data, *, validation, rng):
        X, y = data["X"], data["y"].reshape(len(data["y"]), -1)
        n = len(X)
        train, val = np.arange(n), np.arange(0)
        if validation and data["validation"] is not None:
            Xv, yv = data["validation"]
            val = np.arange(n, n + len(Xv))
            X, y = np.concatenate([X, Xv]), np.concatenate([y, yv.reshape(len(yv), -1)])
        elif validation and self.validation_fraction > 0:
            n_val = int(np.ceil(n * self.validation_fraction))
            if n - n_val < 1:
                raise ValueError(
                    f"n_samples = {n} is too few for validation_fraction="
                    f"{self.validation_fraction}: no sample is left to train on; pass more "
                    "samples or set validation_fraction=0"
                )
            order = rng.permutation(n)
            train, val = np.sort(order[n_val:]), np.sort(order[:n_val])
        ys = ((y - self.y_mean_) / self.y_scale_).astype(self.config_.dtype)
        if getattr(self, "_skip_init_pending", False):
            self._start_at_the_linear_fit(self._scaled(X[train]), ys[train])
            self._skip_init_pending = False
        return RegressionTask(
            self.config_,
            self._scaled(X),
            ys,
            train,
            val,
            batch_size=self.batch_size,
            predict=self._outputs_with,
        )

    def _describe_record(self, record):
        text = f"pass {self.n_iter_}: loss {record['train_loss']:.4f}"
        if record["val_score"] is not None:
            text += f", validation R2 {record['val_score']:.4f}"
        return text

    # -- prediction -----------------------------------------------------------------------
    def _outputs_with(self, params: dict, X: np.ndarray) -> np.ndarray:
        """(n, C) standardised outputs of ``params`` for scaled (n, T, F) inputs."""
        out = np.empty((len(X), self.config_.n_classes), dtype=np.float64)
        T = X.shape[1]
        for lo in range(0, len(X), _PREDICT_BATCH):
            x = np.ascontiguousarray(X[lo : lo + _PREDICT_BATCH].transpose(1, 0, 2))
            lengths = np.full(x.shape[1], T, dtype=np.intp)
            out[lo : lo + x.shape[1]] = seqclf.forward(params, self.config_, x, lengths)[0]
        return out

    def predict(self, X) -> np.ndarray:
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs) as ``y`` was.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_steps) or (n_samples, n_steps, n_features)
        """
        check_is_fitted(self)
        seqs = self._check_X(X, reset=False)
        out = self._outputs_with(self.params_, self._scaled(seqs))
        out = out * self.y_scale_ + self.y_mean_
        return out[:, 0] if self._y_1d else out

    # -- persistence ----------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted model to ``path`` (.npz with a JSON header, no pickle), atomically."""
        save_arrays(path, *self.saved_state())

    def saved_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The JSON header and the arrays :meth:`save` writes (a forecaster embeds them).

        Returns
        -------
        header : dict
        arrays : dict of str to ndarray
        """
        check_is_fitted(self)
        params = self.get_params()
        if not (params["random_state"] is None or isinstance(params["random_state"], int)):
            params["random_state"] = None  # a Generator has no JSON form; the weights are saved
        header = {
            "estimator": ESTIMATOR_NAME,
            "params": params,
            "config": self.config_.to_dict(),
            "shape": {
                "n_features_in": int(self.n_features_in_),
                "n_inputs": int(self.n_inputs_),
                "n_outputs": int(self.n_outputs_),
                "y_1d": bool(self._y_1d),
            },
            "fitted": {name: getattr(self, name) for name in FITTED_HISTORY},
            "train_rng": self._train_rng.bit_generator.state,
        }
        arrays = {f"param/{k}": v for k, v in self.params_.items()}
        arrays |= {f"optim/{k}": v for k, v in (self._optim_state or {}).items()}
        for name in ("x_mean_", "x_scale_", "y_mean_", "y_scale_"):
            arrays[f"scale/{name}"] = getattr(self, name)
        return header, arrays

    @classmethod
    def from_saved_state(cls, header: dict, arrays: dict) -> RNNRegressor:
        """Rebuild a fitted regressor from :meth:`saved_state` output."""
        return cls._from_saved(header, arrays)

    @classmethod
    def _from_saved(cls, header: dict, arrays: dict, path=None) -> RNNRegressor:
        """Rebuild a fitted regressor from :func:`charrnn.io.load_arrays` output."""
        if header.get("estimator") != ESTIMATOR_NAME:
            raise ValueError(f"file holds a {header.get('estimator')!r}, not a {ESTIMATOR_NAME}")
        # a file from before gate_init was made with what is now "forget1"
        est = cls(**{"gate_init": "forget1", **header["params"]})
        est._validate_params()  # the saved parameters pass the same checks as fit's
        est.config_, est.params_ = check_network(
            header, arrays, seqclf.SeqClfConfig, seqclf.param_shapes
        )
        config, shape = est.config_, header["shape"]
        if not isinstance(shape, dict) or shape.keys() != {
            "n_features_in",
            "n_inputs",
            "n_outputs",
            "y_1d",
        }:
            raise ValueError(f"has a malformed 'shape' entry in its header: {shape!r:.80}")
        if config.loss != "squared_error" or config.input_size is None:
            raise ValueError("has a classifier's network configuration, not a regressor's")
        if (shape["n_inputs"], shape["n_outputs"]) != (config.input_size, config.n_classes):
            raise ValueError(
                f"has n_inputs={shape['n_inputs']!r}, n_outputs={shape['n_outputs']!r} but a "
                f"network of {config.input_size} inputs and {config.n_classes} outputs"
            )
        if not isinstance(shape["n_features_in"], int) or shape["n_features_in"] < 1:
            raise ValueError(f"has n_features_in={shape['n_features_in']!r}")
        if config.skip_size and config.skip_size != shape["n_features_in"] * config.input_size:
            raise ValueError(
                f"has a linear path over {config.skip_size} values but sequences of "
                f"{shape['n_features_in']} steps x {config.input_size} features"
            )
        if not isinstance(shape["y_1d"], bool) or (shape["y_1d"] and config.n_classes != 1):
            raise ValueError(f"has y_1d={shape['y_1d']!r} for {config.n_classes} outputs")
        est.n_features_in_ = shape["n_features_in"]
        est.n_inputs_, est.n_outputs_ = shape["n_inputs"], shape["n_outputs"]
        est._y_1d = shape["y_1d"]
        sizes = {"x": est.n_inputs_, "y": est.n_outputs_}
        for name in ("x_mean_", "x_scale_", "y_mean_", "y_scale_"):
            value = np.array(arrays[f"scale/{name}"], dtype=np.float64)
            if value.shape != (sizes[name[0]],) or not np.all(np.isfinite(value)):
                raise ValueError(
                    f"has {name} of shape {value.shape}; expected finite values of "
                    f"shape ({sizes[name[0]]},)"
                )
            if name.endswith("scale_") and not np.all(value > 0):
                raise ValueError(f"has {name} with values <= 0")
            setattr(est, name, value)
        if "fitted" in header:
            check_saved_history(header["fitted"])
        state = {k[len("optim/") :]: v for k, v in arrays.items() if k.startswith("optim/")}
        est._optim_state = state or None
        est._training_state = None
        est._train_rng = np.random.default_rng()
        est._train_rng.bit_generator.state = header["train_rng"]
        for name in FITTED_HISTORY:
            setattr(est, name, header["fitted"][name])
        return est


def _nonzero(scale: np.ndarray) -> np.ndarray:
    """A standard deviation to divide by: constant columns keep scale 1."""
    return np.where(scale > 0, scale, 1.0)


def load_regressor(path) -> RNNRegressor:
    """Load a regressor written by :meth:`RNNRegressor.save`.

    Raises
    ------
    charrnn.io.ModelFileError
        For a file that cannot be read or holds another kind of model (a ValueError).
    """
    return load_as(path, RNNRegressor)
