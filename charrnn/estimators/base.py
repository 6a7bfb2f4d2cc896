"""The base every charrnn estimator stands on: shared parameters, their rules, one fit loop.

:class:`RecurrentEstimator` holds what the generator and the classifier (and every later
estimator) share: the network's shape, the optimiser, the training budget, validation and
early stopping, and the table of parameter rules (:data:`SHARED_PARAMETERS`) that ``fit``
checks and ``charrnn train`` builds its options from.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from charrnn.engine.cells import CELLS
from charrnn.engine.network import DTYPES
from charrnn.engine.optim import OPTIMIZERS, SCHEDULES
from charrnn.estimators.params import (
    Boolean,
    Custom,
    Integer,
    Options,
    Param,
    RandomState,
    Real,
    as_generator,
    options,
    validate_params,
)

__all__ = ["SHARED_PARAMETERS", "RecurrentEstimator"]


def _check_verbose(name, value):
    # scikit-learn's estimators take verbose=True as 1
    if isinstance(value, bool | np.bool_):
        return
    Integer(0).check(name, value)


# The parameters every estimator has, with what each accepts. An estimator's own table is
# ``{**SHARED_PARAMETERS, ...}``; its defaults live in its ``__init__`` signature.
SHARED_PARAMETERS: dict[str, Param] = {
    "cell": Param(Options(options(CELLS)), "Recurrent cell."),
    "hidden_size": Param(Integer(1), "Units per recurrent layer."),
    "num_layers": Param(Integer(1), "Stacked recurrent layers."),
    "embedding_dim": Param(
        Integer(1, none_ok=True),
        "Size of a learned character embedding; None feeds one-hot vectors.",
    ),
    "dropout": Param(Real(0.0, 1.0, high_open=True), "Dropout on each recurrent layer's output."),
    "batch_size": Param(Integer(1), "Sequences per training step."),
    "learning_rate": Param(Real(0.0, low_open=True), "Peak learning rate."),
    "optimizer": Param(Options(options(OPTIMIZERS)), "Update rule (as in torch.optim)."),
    "weight_decay": Param(
        Real(0.0, none_ok=True),
        "Weight decay: an L2 penalty in the gradient, or decoupled for adamw; "
        "None keeps the optimiser's default.",
    ),
    "clip_norm": Param(
        Real(0.0, low_open=True, none_ok=True),
        "Clip the global gradient norm to this; None turns clipping off.",
    ),
    "lr_schedule": Param(Options(SCHEDULES), "Learning-rate schedule over the budget."),
    "max_iter": Param(Integer(1), "Passes over the training data."),
    "max_time": Param(
        Real(0.0, low_open=True, none_ok=True),
        "Training time budget in seconds; None means no limit.",
    ),
    "validation_fraction": Param(
        Real(0.0, 1.0, high_open=True),
        "Share of the training data held out for validation; 0 turns validation off.",
    ),
    "early_stopping": Param(
        Boolean(), "Stop when validation stops improving and keep the best weights."
    ),
    "n_iter_no_change": Param(Integer(1), "Passes without improvement before stopping."),
    "tol": Param(Real(0.0), "Smallest improvement that counts."),
    "warm_start": Param(Boolean(), "fit continues from the current weights."),
    "dtype": Param(Options(DTYPES), "Float precision."),
    "random_state": Param(RandomState(), "Random seed (initial weights, dropout, batches)."),
    "verbose": Param(
        Custom(_check_verbose, "an integer >= 0 or a bool", none_ok=False),
        "0 silent, 1 a progress bar, 2 also a line per pass.",
    ),
}


class RecurrentEstimator(BaseEstimator):
    """Base of charrnn's estimators: shared parameters and their rules.

    Subclasses set ``_parameter_constraints`` to ``{**SHARED_PARAMETERS, <their own>}``.
    """

    _parameter_constraints: dict[str, Param] = SHARED_PARAMETERS

    def _validate_params(self) -> None:
        """Check every parameter against the class's table (ValueError/TypeError naming it)."""
        validate_params(self, self._parameter_constraints)

    def _rng(self) -> np.random.Generator:
        """A Generator from ``random_state`` (the same object when it is one)."""
        return as_generator(self.random_state)
