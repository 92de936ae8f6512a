"""The end-to-end demo: synthetic data, a short training run, prediction, metrics, an HTML report."""

from .run import DemoSettings, run_demo

__all__ = ["DemoSettings", "run_demo"]
