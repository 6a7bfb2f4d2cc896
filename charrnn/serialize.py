"""Model files: a fitted estimator <-> one ``.npz`` with a JSON header, no pickle anywhere.

Layout of a file (see :mod:`charrnn.persist` for the container and its checks):

- header: ``estimator`` (class name), ``params`` (constructor parameters), ``vocab``,
  ``config``, ``fitted`` (history and counters), ``training`` (what an exact resume needs:
  epoch, chunk, step, elapsed time, generator states) or None;
- arrays: ``param/<name>`` the weights, ``train/<name>`` optimiser buffers, carried hidden
  state and best-validation weights.
"""

from __future__ import annotations

import math
import os

import numpy as np

from charrnn import network
from charrnn.persist import check_writable, load_arrays, save_arrays
from charrnn.vocab import CharVocab

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


def save_generator(est, path: str | os.PathLike) -> None:
    """Write a fitted :class:`~charrnn.estimator.CharRNNGenerator` to ``path`` atomically.

    Raises
    ------
    ValueError
        If any weight is not finite (a diverged model is never written) or the path cannot
        be written.
    """
    for name, value in est.params_.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(
                f"refusing to save {str(path)!r}: weight {name!r} holds NaN or infinity"
            )
    check_writable(path)  # a missing folder is a ValueError naming the path, not an OSError
    fitted = {name: getattr(est, name, None) for name in _FITTED_SCALARS}
    fitted["best_validation_score_"] = _finite_or_none(fitted["best_validation_score_"])
    header = {
        "estimator": "CharRNNGenerator",
        "params": _json_safe_params(est),
        "vocab": est.vocab_.to_dict(),
        "config": est.config_.to_dict(),
        "fitted": fitted,
        "train_rng": est._train_rng.bit_generator.state,
        "training": None,
    }
    arrays = {f"param/{k}": v for k, v in est.params_.items()}
    state = getattr(est, "_training_state", None)
    if state is not None:
        header["training"] = state[0]
        arrays.update({f"train/{k}": v for k, v in state[1].items()})
    save_arrays(path, header, arrays)


def load(path: str | os.PathLike):
    """Load a model saved by ``save`` (a generator or a classifier).

    Nothing in the file is executed: arrays are read with ``allow_pickle=False`` and the
    header is JSON.

    Raises
    ------
    ValueError
        For a missing, truncated, foreign or newer-format file, or one whose arrays do not
        match its own header.
    """
    header, arrays = load_arrays(path)
    kind = header.get("estimator")
    if kind == "CharRNNGenerator":
        return _load_generator(header, arrays, path)
    if kind == "CharRNNClassifier":
        from charrnn.classifier import CharRNNClassifier

        return CharRNNClassifier._from_saved(header, arrays)
    raise ValueError(f"{path}: unknown estimator {kind!r} in the model header")


def _load_generator(header: dict, arrays: dict, path):
    from charrnn.estimator import CharRNNGenerator

    try:
        est = CharRNNGenerator(**header["params"])
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
