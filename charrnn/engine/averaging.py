"""Exponential moving average of a model's weights over training steps.

The weights an optimiser leaves after its last step sit wherever the last few noisy
mini-batches pushed them; their running average over the last few hundred steps usually
generalises better (Polyak averaging; Keras optimisers' ``use_ema``, PyTorch's
``torch.optim.swa_utils.AveragedModel``). :class:`WeightAverage` keeps that average beside the
training weights, which it never changes: the optimiser goes on from its own weights, and the
average is what a model predicts with.

The average starts at zero and is divided by ``1 - momentum ** steps`` when read (the bias
correction Adam applies to its moments), so from the first step on it is a weighted mean of
the weights seen so far, not pulled towards zero or towards the initial weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class WeightAverage:
    """Bias-corrected exponential moving average of a dict of arrays.

    Parameters
    ----------
    params : dict of str to ndarray
        The weights to average (shapes and dtypes are taken from them; they are not copied
        and not kept).
    momentum : float in [0, 1)
        Weight of the old average at each :meth:`update`; the average spans roughly the last
        ``1 / (1 - momentum)`` steps. 0 keeps just the latest weights.

    Attributes
    ----------
    steps : int
        Updates so far.
    """

    def __init__(self, params: Mapping[str, np.ndarray], momentum: float) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.steps = 0
        self._sums = {name: np.zeros_like(value) for name, value in params.items()}
        self._scratch = {name: np.empty_like(value) for name, value in params.items()}

    def update(self, params: Mapping[str, np.ndarray]) -> None:
        """Fold the current ``params`` (same names and shapes as at construction) in."""
        m = self.momentum
        for name, acc in self._sums.items():
            # acc = m * acc + (1 - m) * p. Not as acc += (1 - m) * (p - acc): early on, acc is
            # tiny next to p, and p - acc would round away most of the small increment in float32.
            step = np.multiply(params[name], 1.0 - m, out=self._scratch[name], casting="same_kind")
            acc *= m
            acc += step
        self.steps += 1

    def copy_into(self, out: Mapping[str, np.ndarray]) -> None:
        """Write the bias-corrected average into the arrays of ``out`` (same names and shapes).

        Raises
        ------
        ValueError
            Before the first :meth:`update`, when there is nothing to average.
        """
        if self.steps == 0:
            raise ValueError("the average has no steps yet; call update() first")
        scale = 1.0 / (1.0 - self.momentum**self.steps)
        for name, acc in self._sums.items():
            np.multiply(acc, scale, out=out[name], casting="same_kind")

    def averaged(self) -> dict[str, np.ndarray]:
        """The bias-corrected average as new arrays."""
        out = {name: np.empty_like(acc) for name, acc in self._sums.items()}
        self.copy_into(out)
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays from which :meth:`load_state_dict` restores this average exactly."""
        state = {f"sum/{name}": acc.copy() for name, acc in self._sums.items()}
        state["steps"] = np.array(self.steps, dtype=np.int64)
        state["momentum"] = np.array(self.momentum, dtype=np.float64)
        return state

    @classmethod
    def from_state_dict(
        cls, params: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]
    ) -> WeightAverage:
        """A new average for ``params`` restored from :meth:`state_dict` output, momentum
        included; ValueError naming what does not fit."""
        if "momentum" not in state:
            raise ValueError("average state is missing 'momentum'")
        average = cls(params, float(state["momentum"]))
        average.load_state_dict(state)
        return average

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the sums and step count from :meth:`state_dict` output (this average keeps
        its own momentum); ValueError naming what does not fit."""
        for name, acc in self._sums.items():
            value = state.get(f"sum/{name}")
            if value is None or np.shape(value) != acc.shape:
                raise ValueError(f"average state is missing {name!r} or has the wrong shape")
            np.copyto(acc, value, casting="same_kind")
        if "steps" not in state or int(state["steps"]) < 0:
            raise ValueError("average state is missing a non-negative 'steps'")
        self.steps = int(state["steps"])
