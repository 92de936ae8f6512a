"""Training: the loop, checkpoints, history and curves, the weighted loss."""
