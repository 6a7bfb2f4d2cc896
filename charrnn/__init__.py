"""charrnn: character-level language models on a pure-NumPy RNN/LSTM/GRU engine.

Public API::

    from charrnn import CharRNNGenerator, CharRNNClassifier, RNNRegressor, RNNForecaster, load
"""

__version__ = "0.1.0"

__all__ = [
    "CharRNNClassifier",
    "CharRNNGenerator",
    "RNNForecaster",
    "RNNRegressor",
    "__version__",
    "load",
]

# The public names are imported on first use: `import charrnn.engine.network` (the engine alone, as
# the stream-group worker processes of charrnn.parallel.workers need it) then costs NumPy's import
# time, not scikit-learn's.
_LAZY = {
    "CharRNNGenerator": "charrnn.estimators.generator",
    "CharRNNClassifier": "charrnn.estimators.classifier",
    "RNNRegressor": "charrnn.estimators.regressor",
    "RNNForecaster": "charrnn.estimators.forecaster",
    "load": "charrnn.io",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
