"""From a foreground probability map to an instance label image.

Numpy/scipy/scikit-image only. Two methods:

* "components": connected components (face-connected: 4 in 2D, 6 in 3D) of p > threshold.
  Touching objects that the network did not separate stay one object.
* "watershed": a seeded watershed inside the mask p > threshold, to split touching objects.
  Seeds come either from the maxima of the mask's Euclidean distance transform
  (`seeds="distance"`: h-maxima, i.e. maxima that rise at least `h` pixels above the saddle
  to any higher maximum, so two touching disks give two seeds and a ragged border gives
  none) or from high-probability cores (`seeds="core"`: components of p > core_threshold).
  The landscape flooded is the negated distance transform, or 1 - p for core seeds. A mask
  component that holds no seed becomes one object on its own, so no foreground is lost.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed

logger = logging.getLogger(__name__)

METHODS = ("components", "watershed")
SEED_KINDS = ("distance", "core")


def probabilities_to_instances(prob_fg: np.ndarray, threshold: float = 0.5,
                               method: str = "components", min_size: int = 0, *,
                               seeds: str = "distance", h: float = 2.0,
                               core_threshold: float = 0.9) -> np.ndarray:
    """Instance labels from a foreground probability map.

    Args:
        prob_fg: (H, W) or (Z, H, W) probability of foreground (cell interior), in [0, 1].
        threshold: foreground mask is prob_fg > threshold.
        method: "components" or "watershed" (see the module docstring).
        min_size: objects with fewer pixels are removed (set to 0) after labelling; the
            default 0 keeps everything.
        seeds: for "watershed", "distance" (distance-transform h-maxima) or "core"
            (components of prob_fg > core_threshold).
        h: minimal height in pixels of a distance-transform maximum over its saddle.
        core_threshold: probability of the cores used as seeds; must exceed `threshold`.

    Returns:
        uint32 label image of the same shape: 0 = background, objects 1..N consecutive.
    """
    prob = _check_prob(prob_fg)
    _check_options(threshold, method, min_size, seeds, h, core_threshold)
    mask = prob > threshold
    structure = ndi.generate_binary_structure(prob.ndim, 1)
    components, _ = ndi.label(mask, structure=structure)
    if method == "components":
        labels = components
    elif seeds == "distance":
        distance = ndi.distance_transform_edt(mask)
        markers = _seed_labels(h_maxima(distance, h) > 0, components, structure)
        labels = watershed(-distance, markers, mask=mask, connectivity=1)
    else:
        labels = core_watershed(prob, mask, components, core_threshold)
    labels = _remove_small(labels, min_size)
    logger.debug("probabilities_to_instances: %d objects (%s)", labels.max(), method)
    return labels.astype(np.uint32)


def core_watershed(prob: np.ndarray, mask: np.ndarray, components: np.ndarray,
                   core_threshold: float, core_size: int = 0) -> np.ndarray:
    """The cores ``prob > core_threshold`` (face-connected, inside ``mask``) flooded over the
    mask, highest probability first (a watershed on ``1 - prob``); a mask component
    (``components``: its face-connected labels) without a core is an object of its own.
    Cores of fewer than ``core_size`` pixels seed nothing (they are flooded from a larger core
    of their component, or the component is one object): a textured object's few small peaks
    above the core threshold do not split it.  Touching objects touch in the result.  With one
    core per component there is nothing to split, and each component takes its core's label
    without a watershed."""
    structure = ndi.generate_binary_structure(prob.ndim, 1)
    cores = prob > core_threshold
    if core_size > 1:
        pieces, _ = ndi.label(cores, structure=structure)
        big = np.bincount(pieces.ravel()) >= core_size
        big[0] = False
        cores = big[pieces]
    markers = _seed_labels(cores, components, structure)
    if markers.max() == components.max():  # one core per component
        lut = np.zeros(components.max() + 1, markers.dtype)
        seeded = markers > 0
        lut[components[seeded]] = markers[seeded]
        return lut[components]
    return watershed(1.0 - prob, markers, mask=mask, connectivity=1)


def _check_prob(prob_fg: np.ndarray) -> np.ndarray:
    prob = np.asarray(prob_fg)
    if prob.ndim not in (2, 3):
        raise ValueError(f"prob_fg must be (H, W) or (Z, H, W), got shape {prob.shape}")
    if prob.dtype == bool or not np.issubdtype(prob.dtype, np.number):
        raise ValueError(f"prob_fg must be a numeric probability map, got dtype {prob.dtype}")
    prob = prob.astype(np.float64, copy=False)
    if np.isnan(prob).any():
        raise ValueError(f"prob_fg contains {int(np.isnan(prob).sum())} NaN values")
    if prob.size and (prob.min() < 0 or prob.max() > 1):
        raise ValueError(f"prob_fg must lie in [0, 1], got range [{prob.min()}, {prob.max()}]")
    return prob


def _check_options(threshold, method, min_size, seeds, h, core_threshold) -> None:
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    if seeds not in SEED_KINDS:
        raise ValueError(f"seeds must be one of {SEED_KINDS}, got {seeds!r}")
    if h <= 0:
        raise ValueError(f"h must be > 0, got {h}")
    if not threshold < core_threshold <= 1.0:
        raise ValueError(f"core_threshold must lie in (threshold={threshold}, 1], "
                         f"got {core_threshold}")


def _seed_labels(seed_mask: np.ndarray, components: np.ndarray,
                 structure: np.ndarray) -> np.ndarray:
    """Label the seeds; a mask component without a seed becomes a seed as a whole."""
    seed_mask = seed_mask & (components > 0)
    markers, n = ndi.label(seed_mask, structure=structure)
    seeded = np.zeros(components.max() + 1, bool)
    seeded[components[seed_mask]] = True
    seeded[0] = True
    orphan = ~seeded[components]  # pixels of seedless components
    if orphan.any():
        extra, _ = ndi.label(orphan, structure=structure)
        markers[orphan] = extra[orphan] + n
    return markers


def _remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Zero objects smaller than `min_size` pixels, then renumber 1..N."""
    if min_size > 0 and labels.max() > 0:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    return relabel_sequential(labels)[0]
