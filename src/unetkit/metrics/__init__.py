"""Metrics, numpy only: ISBI 2012 errors (isbi), Rand/VI (rand_info), topology, instance matching,
evaluate_arrays (arrays) and the evaluate job over files (files)."""

from .arrays import evaluate_arrays, isbi_metrics, threshold_range
from .files import evaluate_files

__all__ = ["evaluate_arrays", "isbi_metrics", "threshold_range", "evaluate_files"]
