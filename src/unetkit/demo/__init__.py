"""The end-to-end demo: synthetic data, a short training run, prediction, metrics and an HTML report."""
