"""Reports drawn from fitted models: self-contained files a person opens (no server, nothing
fetched). :mod:`charrnn.report.activations` writes the activation page of
``charrnn visualize``."""
