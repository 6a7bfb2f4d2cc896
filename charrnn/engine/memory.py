"""How much memory a training run needs, worked out from its shapes before anything is allocated.

A training step holds the weights, their gradients (two sets at the peak: the next step's are
made while the last step's are held), the optimiser's buffers (Adam two per weight) and its
scratch array, the divergence guard's copy of the last good weights, the transposed recurrent
weights of the backward loops, a copy of the best weights (keep-best), and the activations of
one batch: for every
layer, direction and time step of every sequence, the cell's cached gates and states
(:attr:`charrnn.engine.cells.RNNCell.scratch_per_unit` and its siblings: what ``forward``
caches and ``backward`` writes, per hidden unit), the layer's input projection, its dropout
mask and the gradient of its input; then the output layer's probabilities for every step
(the language model's vocabulary-sized softmax). Parallel stream groups
(:mod:`charrnn.parallel`) split the batch, so the activations are the same in total, but
every group beyond the first also holds the weights and its own gradients in the shared
buffer of its worker process.

The estimate counts arrays only, not the interpreter and NumPy themselves (tens of MiB per
process), and is compared with measured peak memory in ``scripts/memory_check.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.engine import network, seqclf
from charrnn.engine.cells import CELLS

__all__ = ["MemoryEstimate", "estimate_for", "format_bytes", "training_memory"]


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training run needs, by part.

    Attributes
    ----------
    weights, gradients, optimizer, copies, best_copy, activations, workers : int
        Bytes of each part: ``gradients`` counts two sets (a step's gradients are made while
        the last step's are still held), ``optimizer`` its buffers and its scratch array,
        ``copies`` the divergence guard's last good weights and the transposed recurrent
        weights of the backward loops, ``workers`` the parallel groups' extra weights and
        gradients.
    """

    weights: int
    gradients: int
    optimizer: int
    copies: int
    best_copy: int
    activations: int
    workers: int

    @property
    def total(self) -> int:
        """All parts together, in bytes."""
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.copies
            + self.best_copy
            + self.activations
            + self.workers
        )

    def describe(self) -> str:
        """The parts in words, e.g. ``"weights 1.2 GiB, gradients 1.2 GiB, ..."``."""
        parts = (
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimiser state", self.optimizer),
            ("working copies", self.copies),
            ("best-weights copy", self.best_copy),
            ("activations", self.activations),
            ("parallel workers", self.workers),
        )
        return ", ".join(f"{name} {format_bytes(n)}" for name, n in parts if n)


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it >= 1 (``"74.5 GiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def training_memory(
    shapes: dict[str, tuple[int, ...]],
    *,
    cell: str,
    hidden_size: int,
    num_layers: int,
    directions: int,
    first_input: int,
    outputs_per_step: int,
    batch_size: int,
    steps: int,
    itemsize: int,
    optimizer_slots: int,
    dropout: bool,
    keep_best: bool,
    n_groups: int = 1,
) -> MemoryEstimate:
    """Estimate the bytes of one training run of a network, without allocating any of it.

    Parameters
    ----------
    shapes : dict of str to tuple of int
        Every weight's shape (``network.param_shapes`` or ``seqclf.param_shapes``).
    cell : {"rnn", "lstm", "gru"}
    hidden_size, num_layers : int
    directions : int
        1, or 2 for a bidirectional network.
    first_input : int
        Width of the gradient kept for the first layer's input: the embedding size, the
        number of float features, 0 for one-hot rows (their gradient is a scatter into ``Wx``).
    outputs_per_step : int
        Values the head computes per time step and sequence: the vocabulary for the language
        model (and the classifier's auxiliary language model), 0 for a head on pooled states.
    batch_size, steps : int
        Sequences per step and time steps per sequence (``seq_length``, the longest text).
    itemsize : int
        Bytes per float (4 for float32).
    optimizer_slots : int
        Buffers the optimiser keeps per weight (Adam 2, RMSprop 1, SGD with momentum 1).
    dropout : bool
        Whether dropout masks are kept.
    keep_best : bool
        Whether a copy of the best weights is kept (early stopping).
    n_groups : int
        Parallel stream groups; each beyond the first holds weights and gradients of its own.

    Returns
    -------
    MemoryEstimate
    """
    n_weights = sum(_prod(s) for s in shapes.values())
    weights = n_weights * itemsize
    recurrent = sum(_prod(s) for name, s in shapes.items() if name.endswith(".Wh")) * itemsize
    G, H = CELLS[cell].n_gates, hidden_size
    per_layer = G * H + CELLS[cell].scratch_per_unit * H + (2 * H if dropout else 0)
    # + the gradient of each layer's input (H wide above the first layer) and of the top states
    per_step = num_layers * directions * per_layer
    per_step += (num_layers - 1) * directions * H + first_input + directions * H
    per_step += 2 * outputs_per_step  # probabilities and their gradient
    return MemoryEstimate(
        weights=weights,
        gradients=2 * weights,
        optimizer=(optimizer_slots + 1) * weights,
        copies=weights + recurrent,
        best_copy=weights if keep_best else 0,
        activations=per_step * batch_size * steps * itemsize,
        workers=2 * weights * (n_groups - 1),
    )


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for n in shape:
        out *= int(n)
    return out


def estimate_for(
    config,
    *,
    batch_size: int,
    steps: int,
    optimizer_slots: int,
    keep_best: bool,
    n_groups: int = 1,
) -> MemoryEstimate:
    """:func:`training_memory` for a language model's or a sequence network's configuration.

    Parameters
    ----------
    config : NetworkConfig or SeqClfConfig
    batch_size, steps : int
        Sequences per step and time steps per sequence.
    optimizer_slots : int
        Buffers per weight of the optimiser (``type(optimizer).slots``).
    keep_best : bool
        Whether the best weights are copied (early stopping with validation).
    n_groups : int
        Parallel stream groups (the language model's).

    Returns
    -------
    MemoryEstimate
    """
    if isinstance(config, seqclf.SeqClfConfig):
        directions = len(config.directions)
        shapes = seqclf.param_shapes(config)
        first_input = config.input_size or config.embedding_dim or 0
        outputs = directions * config.vocab_size if config.aux_lm_weight > 0 else 0
    else:
        directions = 1
        shapes = network.param_shapes(config)
        first_input = config.embedding_dim or 0
        outputs = config.vocab_size
    return training_memory(
        shapes,
        cell=config.cell,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        directions=directions,
        first_input=first_input,
        outputs_per_step=outputs,
        batch_size=batch_size,
        steps=steps,
        itemsize=np.dtype(config.dtype).itemsize,
        optimizer_slots=optimizer_slots,
        dropout=config.dropout > 0,
        keep_best=keep_best,
        n_groups=n_groups,
    )
