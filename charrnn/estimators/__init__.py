"""The scikit-learn estimators, all built on one base and one training loop."""
