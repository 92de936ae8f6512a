"""Training (paper Sec. 3): the loop, the run's configuration, checkpoints, history and curves, the
weighted loss."""

from .checkpoint import (CHECKPOINT, CONFIG, CURVES, LAST_MODEL, METRICS, MODEL, load_checkpoint,
                         model_path)
from .loop import TrainingInterrupted, train
from .loss import WeightedCrossEntropy, weighted_cross_entropy
from .run_settings import UNLIMITED_ITERATIONS, learning_rate, run_config

__all__ = ["train", "TrainingInterrupted", "run_config", "learning_rate", "load_checkpoint",
           "model_path", "weighted_cross_entropy", "WeightedCrossEntropy", "UNLIMITED_ITERATIONS",
           "CHECKPOINT", "MODEL", "LAST_MODEL", "METRICS", "CURVES", "CONFIG"]
