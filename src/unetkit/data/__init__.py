"""Training data: label targets and weight maps, augmentation, normalisation, the tile dataset, synthetic images."""
