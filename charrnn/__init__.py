"""charrnn: character-level recurrent language models in pure NumPy.

The package provides a NumPy RNN/LSTM/GRU engine, a scikit-learn estimator and a Click command-line
tool (``charrnn``).
"""

# The public API (CharRNNGenerator, CharRNNClassifier, load) is imported here
# once those modules exist.

__version__ = "0.1.0"
