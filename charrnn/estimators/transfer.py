"""Start a classifier's recurrent layers from language models trained on unlabelled text.

A :class:`~charrnn.estimators.generator.CharRNNGenerator` learns, without labels, how the
characters of a
kind of text follow one another; its first recurrent layer is a character encoder that a
:class:`~charrnn.estimators.classifier.CharRNNClassifier` of the same cell and size can start from
and
fine-tune on few labels (the idea of ULMFiT, Howard & Ruder 2018, on characters). For a
bidirectional classifier the backward direction reads texts from their end, so its natural
starting point is a generator trained on reversed texts (``[t[::-1] for t in texts]``).

Weights are copied by character, not by row number: the two vocabularies differ, and a
character the classifier has not seen in its labelled texts but the language model knows keeps
the language model's input vector (the classifier's vocabulary is widened to include it).
"""

from __future__ import annotations

import os

import numpy as np

from charrnn.data.vocab import CharVocab
from charrnn.estimators.params import InvalidParameterError

SOURCE_HELP = (
    "init_from must be None, a fitted CharRNNGenerator or the path of one saved with "
    "CharRNNGenerator.save, or, for a bidirectional classifier, a pair (forward, backward) of "
    "these (the backward one trained on reversed texts)"
)


SOURCE_TYPES = "None, a CharRNNGenerator, a model file's path, or a pair of these"


def check_source_type(name: str, value) -> None:
    """The shallow check of ``init_from`` at the top of ``fit``: the right kind of value.

    Whether a path holds a generator that fits the classifier is checked when it is read
    (:func:`resolve_sources`).
    """
    from charrnn.estimators.generator import CharRNNGenerator

    single = (str, os.PathLike, CharRNNGenerator)
    if value is None or isinstance(value, single):
        return
    pair = isinstance(value, tuple | list) and len(value) == 2
    if pair and all(isinstance(v, single) for v in value):
        return
    raise InvalidParameterError(f"{name} must be {SOURCE_TYPES}, got {value!r:.80}")


def resolve_sources(init_from, bidirectional: bool) -> dict:
    """The generators to start each direction from: ``{"fwd": gen, "bwd": gen}`` (or fewer).

    A single source starts the forward direction only; a pair needs ``bidirectional=True``.
    Paths are loaded with :func:`charrnn.load`. Raises ValueError naming ``init_from``.
    """
    if init_from is None:
        return {}
    if isinstance(init_from, tuple | list):
        if len(init_from) != 2:
            raise ValueError(f"{SOURCE_HELP}; got a sequence of {len(init_from)} items")
        if not bidirectional:
            raise ValueError(
                "init_from is a (forward, backward) pair but bidirectional=False; pass one "
                "generator or set bidirectional=True"
            )
        pairs = zip(("fwd", "bwd"), init_from, strict=True)
        return {d: _fitted_generator(src) for d, src in pairs if src is not None}
    return {"fwd": _fitted_generator(init_from)}


def source_to_json(init_from):
    """``init_from`` as saved in a model file: paths as strings; objects as None (their weights
    are in the saved parameters already)."""
    if isinstance(init_from, tuple | list):
        return [source_to_json(s) for s in init_from]
    if isinstance(init_from, str | os.PathLike):
        return os.fspath(init_from)
    return None


def _fitted_generator(source):
    from charrnn.estimators.generator import CharRNNGenerator
    from charrnn.io import load

    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ValueError(f"init_from: no model file {path!r}")
        source = load(path)
    if not isinstance(source, CharRNNGenerator):
        raise ValueError(f"{SOURCE_HELP}; got {type(source).__name__}")
    if not hasattr(source, "params_"):
        raise ValueError(
            "init_from: the CharRNNGenerator is not fitted (scikit-learn's clone() unfits "
            "estimators given as parameters; pass the path of a saved model to search over "
            "a classifier that starts from it)"
        )
    return source


def check_compatible(generators: dict, cell: str, hidden_size: int, embedding_dim) -> None:
    """ValueError naming ``init_from`` unless every generator has the classifier's shape."""
    for direction, gen in generators.items():
        config = gen.config_
        theirs = (config.cell, config.hidden_size, config.embedding_dim)
        ours = (cell, hidden_size, embedding_dim)
        if theirs != ours:
            raise ValueError(
                f"init_from ({direction}): the generator has cell={theirs[0]!r}, "
                f"hidden_size={theirs[1]}, embedding_dim={theirs[2]}; the classifier has "
                f"cell={ours[0]!r}, hidden_size={ours[1]}, embedding_dim={ours[2]} -- set "
                "these three to the generator's values"
            )


def widen_vocab(vocab: CharVocab, generators: dict) -> CharVocab:
    """``vocab`` plus every character the generators know."""
    chars = set(vocab.chars)
    for gen in generators.values():
        chars.update(gen.vocab_.chars)
    return CharVocab(sorted(chars))


def copy_encoder(params: dict, vocab: CharVocab, generators: dict, num_layers: int) -> None:
    """Overwrite the classifier's recurrent weights with the generators', in place.

    Layer ``k`` of direction ``d`` takes the recurrent weights and biases of the generator's
    layer ``k`` (while it has one); the first layer's input weights (or the shared embedding,
    from the forward generator) are copied row by row for every character both vocabularies
    hold. Upper layers' input weights are copied when their shapes agree (unidirectional).
    The padding and unknown symbols keep their neutral zero input vectors.
    """
    ours = {c: i for i, c in enumerate(vocab.symbols) if i >= CharVocab.N_SPECIAL}
    for d, gen in generators.items():
        theirs = gen.params_
        rows_here, rows_there = [], []
        for i, c in enumerate(gen.vocab_.symbols):
            if c in ours:
                rows_here.append(ours[c])
                rows_there.append(i)
        for k in range(min(num_layers, gen.config_.num_layers)):
            for name in ("Wh", "b", "bhn"):
                if f"l{k}.{name}" in theirs:
                    np.copyto(params[f"l{k}.{d}.{name}"], theirs[f"l{k}.{name}"])
            Wx, src = params[f"l{k}.{d}.Wx"], theirs[f"l{k}.Wx"]
            if k == 0 and "embed" not in theirs:
                Wx[rows_here] = src[rows_there]
            elif Wx.shape == src.shape:
                np.copyto(Wx, src)
        if d == "fwd" and "embed" in theirs and "embed" in params:
            params["embed"][rows_here] = theirs["embed"][rows_there]
