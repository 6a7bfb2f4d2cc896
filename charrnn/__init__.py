"""charrnn: character-level language models on a pure-NumPy RNN/LSTM/GRU engine.

Public API::

    from charrnn import CharRNNGenerator, CharRNNClassifier, load
"""

__version__ = "0.1.0"

from charrnn.estimator import CharRNNGenerator  # noqa: E402
from charrnn.serialize import load  # noqa: E402

__all__ = ["CharRNNClassifier", "CharRNNGenerator", "__version__", "load"]


def __getattr__(name):
    # The classifier is imported on first use so `import charrnn` stays light.
    if name == "CharRNNClassifier":
        from charrnn.classifier import CharRNNClassifier

        return CharRNNClassifier
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
