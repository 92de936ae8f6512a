"""Training data: label kinds (label_kinds), label targets and weight maps (targets), augmentation
(augment), normalisation (normalize), the tile dataset (dataset), synthetic cell images
(synthetic)."""

from .augment import augment_tile
from .dataset import Prefetcher, Prepared, TileSampler, load_pairs, prepare
from .label_kinds import decide_kind
from .normalize import Normalization
from .synthetic import make_cells, make_dataset, write_dataset
from .targets import build_targets, detect_kind, instances_to_target, weight_map

__all__ = ["augment_tile", "Prefetcher", "Prepared", "TileSampler", "load_pairs", "prepare",
           "Normalization", "make_cells", "make_dataset", "write_dataset", "build_targets",
           "decide_kind", "detect_kind", "instances_to_target", "weight_map"]
