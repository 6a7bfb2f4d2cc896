"""The pure-NumPy recurrent engine: cells, networks, optimisers, sampling, the training loop."""
