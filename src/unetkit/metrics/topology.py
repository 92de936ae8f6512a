"""Digital topology in 2D: simple points and topology-preserving warping.

Numpy only. This module backs the warping error of Jain et al., "Boundary Learning by
Optimization with Topological Constraints", CVPR 2010.

Conventions (the same as Fiji's Trainable Weka Segmentation warping error):

* A binary image has *foreground* (True, cell interior) and *background* (False, membrane).
* Foreground is **4-connected**, background **8-connected** (the (4, 8) pair). So a one-pixel
  wide membrane drawn as an 8-connected line still separates two cells.
* Pixels outside the image count as background.

A pixel p is *simple* when flipping it changes neither the number of foreground components, nor
the number of background components, nor how they nest. In 2D this is decided by the 3x3
neighbourhood alone (Bertrand's topological numbers): p is simple iff T4(p, X) == 1 and
T8(p, X') == 1, where X is the foreground and X' the background, T4(p, X) counts the
4-connected components of X within the 8 neighbours of p that contain a 4-neighbour of p, and
T8(p, X') counts the 8-connected components of X' within the 8 neighbours. The test does not
depend on the value of p itself, so one table of the 256 neighbourhood configurations serves
both directions (adding and removing a pixel).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

_FOUR = ndi.generate_binary_structure(2, 1)
_EIGHT = np.ones((3, 3), bool)

# Neighbour k of p sits at NEIGHBOUR_OFFSETS[k] = (dy, dx) and sets bit k of the configuration
# code; clockwise from the top-left corner. Odd k are the 4-neighbours (edge-adjacent).
NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = (
    (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1),
)


def _components(members: list[int], adjacent) -> list[set[int]]:
    """Connected components of `members` (neighbour indices) under the relation `adjacent`."""
    left = set(members)
    comps = []
    while left:
        stack = [left.pop()]
        comp = set(stack)
        while stack:
            k = stack.pop()
            for m in list(left):
                if adjacent(k, m):
                    left.remove(m)
                    comp.add(m)
                    stack.append(m)
        comps.append(comp)
    return comps


def _adjacent4(k: int, m: int) -> bool:
    (y1, x1), (y2, x2) = NEIGHBOUR_OFFSETS[k], NEIGHBOUR_OFFSETS[m]
    return abs(y1 - y2) + abs(x1 - x2) == 1


def _adjacent8(k: int, m: int) -> bool:
    (y1, x1), (y2, x2) = NEIGHBOUR_OFFSETS[k], NEIGHBOUR_OFFSETS[m]
    return max(abs(y1 - y2), abs(x1 - x2)) == 1


@lru_cache(maxsize=1)
def topological_numbers() -> tuple[np.ndarray, np.ndarray]:
    """Tables of the topological numbers over the 256 neighbourhood configurations.

    Returns:
        (t4_fg, t8_bg), each of shape (256,) and dtype uint8: for configuration code c (bit k set
        when neighbour k is foreground), t4_fg[c] = T4(p, X) and t8_bg[c] = T8(p, X').
    """
    t4 = np.zeros(256, np.uint8)
    t8 = np.zeros(256, np.uint8)
    for code in range(256):
        fg = [k for k in range(8) if code >> k & 1]
        bg = [k for k in range(8) if not code >> k & 1]
        t4[code] = sum(1 for c in _components(fg, _adjacent4) if any(k % 2 for k in c))
        t8[code] = len(_components(bg, _adjacent8))
    return t4, t8


@lru_cache(maxsize=1)
def simple_point_lut() -> np.ndarray:
    """Boolean table (256,): True where the 3x3 configuration makes the centre a simple point."""
    t4, t8 = topological_numbers()
    lut = (t4 == 1) & (t8 == 1)
    lut.setflags(write=False)
    return lut


def neighbourhood_codes(image: np.ndarray) -> np.ndarray:
    """Configuration code of every pixel's 3x3 neighbourhood.

    Args:
        image: (H, W) boolean image; outside pixels count as background.

    Returns:
        (H, W) uint8 codes, bit k set when neighbour NEIGHBOUR_OFFSETS[k] is foreground.
    """
    binary = _check_binary(image, "image")
    padded = np.pad(binary, 1).astype(np.uint8)  # (H + 2, W + 2)
    h, w = binary.shape
    codes = np.zeros((h, w), np.uint8)
    for k, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
        codes |= padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] << k
    return codes


def simple_points(image: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool mask of the simple points of `image` under the (4, 8) pair."""
    return simple_point_lut()[neighbourhood_codes(image)]


def _check_binary(image: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2D (H, W) array, got shape {array.shape}")
    if array.dtype != bool:
        values = np.unique(array)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"{name} must be binary (bool or 0/1), got values {values[:10]}")
        array = array.astype(bool)
    return array


def warp_towards(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Warp `source` towards `target` by flipping only simple points.

    Greedy topology-preserving warping (Jain et al. 2010) for binary targets: every flip of a
    simple pixel where source and target disagree lowers the disagreement by one, and flips
    continue until no disagreeing pixel is simple. The result has the topology of `source`
    (same foreground and background components, same nesting) and agrees with `target`
    wherever topology allows; what is left differs from `target` only at topological errors
    (splits, mergers, missing or extra objects and holes).

    The image is swept in four passes over the sublattices (y % 2, x % 2). Two pixels of one
    sublattice are never 8-neighbours, so flipping all simple pixels of a pass at once equals
    flipping them one after another. After the first sweep only disagreeing neighbours of
    pixels that flipped are re-examined (a pixel's simplicity changes only when a neighbour
    flips), so the work is proportional to the number of flips, not to image size x sweeps.

    Args:
        source: (H, W) binary image to warp (foreground True), e.g. the ground truth.
        target: (H, W) binary image to warp towards, e.g. a thresholded prediction.

    Returns:
        (H, W) bool warped copy of `source`.
    """
    src = _check_binary(source, "source")
    tgt = _check_binary(target, "target")
    if src.shape != tgt.shape:
        raise ValueError(f"source shape {src.shape} != target shape {tgt.shape}")
    h, w = src.shape
    wp = w + 2
    # Flat views of the padded images: the zero border is background in both, so it never
    # disagrees and is never flipped; every gather of 8 neighbours stays inside the array.
    cur = np.pad(src, 1).astype(np.uint8).ravel()
    tgt_flat = np.pad(tgt, 1).astype(np.uint8).ravel()
    offsets = np.array([dy * wp + dx for dy, dx in NEIGHBOUR_OFFSETS], np.int64)
    lut = simple_point_lut()
    active = np.flatnonzero(cur != tgt_flat)
    stamp = np.empty(cur.size, np.int64)  # scratch for deduplication
    sweeps = 0
    while active.size:
        sweeps += 1
        sublattice = (active // wp % 2) * 2 + active % wp % 2
        flipped = []
        for s in range(4):
            cand = active[sublattice == s]
            if cand.size == 0:
                continue
            code = np.zeros(cand.size, np.uint8)
            for k in range(8):
                code |= cur[cand + offsets[k]] << k
            hit = cand[lut[code]]
            cur[hit] ^= 1
            flipped.append(hit)
        flipped = np.concatenate(flipped)
        if flipped.size == 0:
            break
        around = (flipped[:, None] + offsets[None, :]).ravel()
        around = around[cur[around] != tgt_flat[around]]
        # deduplicate without sorting: the last write to each pixel's stamp wins
        order = np.arange(around.size)
        stamp[around] = order
        active = around[stamp[around] == order]
    logger.debug("warp_towards: %d sweeps", sweeps)
    return cur.reshape(h + 2, wp)[1:-1, 1:-1].astype(bool)


def warping_mismatches(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """(H, W) bool, (H, W) bool -> (H, W) bool pixels where the warped truth still disagrees."""
    warped = warp_towards(truth, prediction)
    return warped != _check_binary(prediction, "prediction")


def warping_error_binary(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Classic warping error of one binary pair: disagreeing pixels after warping / all pixels.

    Args:
        truth: (H, W) binary ground truth, foreground (True) = cell interior.
        prediction: (H, W) binary prediction, same convention.

    Returns:
        Fraction in [0, 1]; 0 when the prediction differs from the truth only by
        topology-preserving deformation (e.g. boundaries shifted by a pixel or two).
    """
    mismatches = warping_mismatches(truth, prediction)
    return float(mismatches.sum()) / mismatches.size


def splits_and_mergers(truth: np.ndarray, prediction: np.ndarray) -> dict[str, int]:
    """Count the topological errors left after warping the truth towards the prediction.

    The remaining mismatches are grouped into 8-connected clusters of one direction each.
    A cluster the prediction wants as foreground is a **merger** when its pixels touch
    (4-adjacency) two or more foreground objects of the warped truth; a cluster the
    prediction wants as background is a **split** when removing it cuts its object into two
    or more 4-connected pieces. Other clusters (extra or missing objects and holes) are
    counted under "other". This follows the classification of Fiji's warping error
    ("minimum splits and mergers"), done per cluster rather than per pixel. Only clusters
    holding a local cut point (a pixel with T4 >= 2) are tested for a split: greedy warping
    thins every bridge it cannot remove to such pixels.

    Args:
        truth: (H, W) binary ground truth, foreground = cell interior.
        prediction: (H, W) binary prediction.

    Returns:
        {"splits", "mergers", "other", "mismatches"} (clusters, clusters, clusters, pixels).
    """
    target = _check_binary(prediction, "prediction")
    warped = warp_towards(truth, target)
    objects, _ = ndi.label(warped, structure=_FOUR)
    counts = {"splits": 0, "mergers": 0, "other": 0,
              "mismatches": int(np.count_nonzero(warped != target))}
    adds, n_adds = ndi.label(~warped & target, structure=_EIGHT)
    mergers = int(np.count_nonzero(_objects_touched(adds, n_adds, objects) >= 2))
    removes, n_removes = ndi.label(warped & ~target, structure=_EIGHT)
    # only a cluster holding a local cut point (T4 >= 2) can split its object; the
    # exact test (relabel the object without the cluster) runs on those alone
    t4, _ = topological_numbers()
    cut_point = (t4[neighbourhood_codes(warped)] >= 2) & (removes > 0)
    candidates = np.unique(removes[cut_point])
    object_boxes = ndi.find_objects(objects)
    cluster_boxes = ndi.find_objects(removes)
    splits = sum(_cuts_object(removes, int(k), cluster_boxes[k - 1], objects, object_boxes)
                 for k in candidates)
    counts.update(splits=int(splits), mergers=mergers,
                  other=n_adds + n_removes - int(splits) - mergers)
    return counts


def _objects_touched(clusters: np.ndarray, n: int, objects: np.ndarray) -> np.ndarray:
    """(n,) number of distinct objects 4-adjacent to each cluster 1..n."""
    pairs = []
    h, w = clusters.shape
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        c = clusters[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
        o = objects[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        hit = (c > 0) & (o > 0)
        pairs.append(c[hit].astype(np.int64) * (int(objects.max()) + 1) + o[hit])
    unique = np.unique(np.concatenate(pairs))
    return np.bincount(unique // (int(objects.max()) + 1), minlength=n + 1)[1:]


def _cuts_object(clusters, k, box, objects, object_boxes) -> bool:
    """Whether removing cluster k of `clusters` splits the object of `objects` it lies in."""
    label = objects[box][clusters[box] == k][0]  # a cluster lies inside one object
    obj_box = object_boxes[label - 1]
    rest = (objects[obj_box] == label) & (clusters[obj_box] != k)
    return ndi.label(rest, structure=_FOUR)[1] >= 2
