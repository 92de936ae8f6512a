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
def ring_groups() -> np.ndarray:
    """(256,) uint8: the number of groups the foreground neighbours form among themselves
    (4-adjacent neighbours in one group), per neighbourhood configuration."""
    out = np.zeros(256, np.uint8)
    for code in range(256):
        out[code] = len(_components([k for k in range(8) if code >> k & 1], _adjacent4))
    return out


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


def warp_towards(source: np.ndarray, target: np.ndarray,
                 priority: np.ndarray | None = None) -> np.ndarray:
    """Warp `source` towards `target` by flipping simple points one at a time.

    Topology-preserving warping (Jain et al. 2010) in the order of the ISBI reference (Fiji's
    `WarpingError.simplePointWarp2d`; the paper leaves the order open): the image is swept in
    passes; each pass lists the pixels where source and target disagree, sorts them by
    `priority` (descending; ties in column-major order, x before y, as the reference scans)
    and visits them one after another, flipping each that is simple *at that moment*. Passes
    repeat until one flips nothing. Each flip lowers the disagreement by one, so a pixel flips
    at most once. The result has the topology of `source` and differs from `target` only at
    topological errors (splits, mergers, missing or extra objects and holes).

    The sequential visit is computed in rounds: a pixel's decision depends only on its 8
    neighbours, so every listed pixel whose earlier-listed neighbours are all decided is
    decided at once (two such pixels are never neighbours). This is exactly the one-at-a-time
    order, at numpy speed; the work per pass is linear in the number of listed pixels.

    Args:
        source: (H, W) binary image to warp (foreground True), e.g. the ground truth.
        target: (H, W) binary image to warp towards, e.g. a thresholded prediction.
        priority: optional (H, W) visit priority, larger first; the reference uses
            |p - t| of the probability p at threshold t. None: all equal (column-major order).

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
    listed = np.flatnonzero(cur != tgt_flat)
    if listed.size == 0:
        return src.copy()
    ys, xs = np.divmod(listed, wp)
    key = (np.zeros(listed.size, np.float32) if priority is None
           else -np.pad(np.asarray(priority, np.float32), 1).ravel()[listed])
    listed = listed[np.lexsort((ys, xs, key))]  # visit order: priority, then x, then y
    rank = np.full(cur.size, np.iinfo(np.int64).max, np.int64)  # max = not listed
    rank[listed] = np.arange(listed.size)
    listed = np.sort(listed)  # raster order for the gathers; the visit order lives in `rank`
    passes = 0
    slot = np.empty(cur.size, np.int64)
    while listed.size:
        passes += 1
        flipped = _one_pass(cur, listed, rank, offsets, slot)
        if not flipped.any():
            break
        rank[listed[flipped]] = np.iinfo(np.int64).max
        listed = listed[~flipped]
        frozen = (_frozen(cur, listed, (h + 2, wp), offsets) if listed.size > 256
                  else np.zeros(listed.size, bool))
        rank[listed[frozen]] = np.iinfo(np.int64).max
        listed = listed[~frozen]
    logger.debug("warp_towards: %d passes", passes)
    return cur.reshape(h + 2, wp)[1:-1, 1:-1].astype(bool)


def _frozen(cur: np.ndarray, listed: np.ndarray, shape, offsets: np.ndarray) -> np.ndarray:
    """(len(listed),) bool: listed pixels that can never flip again.

    A listed pixel changes only by its own flip, and unlisted pixels never change. So a group
    of listed pixels, 8-connected among themselves, none of which is simple now, stays as it
    is for good: its first flip would need a neighbour to change first. Dropping such groups
    from the list changes no outcome and keeps the later passes short.
    """
    mask = np.zeros(cur.size, bool)
    mask[listed] = True
    groups, n = ndi.label(mask.reshape(shape), structure=_EIGHT)
    if n == 0:
        return np.zeros(listed.size, bool)
    code = np.zeros(listed.size, np.uint8)
    for k, off in enumerate(offsets):
        code |= cur[listed + off] << k
    group = groups.ravel()[listed]
    movable = np.zeros(n + 1, bool)
    movable[group[simple_point_lut()[code]]] = True
    return ~movable[group]


def _one_pass(cur: np.ndarray, listed: np.ndarray, rank: np.ndarray,
              offsets: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """Visit the `listed` pixels (flat indices) once in `rank` order, flipping simple points.

    Returns the (len(listed),) bool mask of the flipped pixels. `rank` holds each listed
    pixel's visit rank (int64 max elsewhere); `slot` is scratch of the image's size.
    """
    lut = simple_point_lut()
    n = listed.size
    slot[listed] = np.arange(n)  # flat index -> position in `listed`
    own = rank[listed][:, None]
    nb = listed[:, None] + offsets[None, :]  # (n, 8) neighbours
    nb_rank = rank[nb]
    waiting = np.count_nonzero(nb_rank < own, axis=1)  # earlier-listed neighbours undecided
    later = np.where((nb_rank > own) & (nb_rank != np.iinfo(np.int64).max), slot[nb], -1)
    weights = (1 << np.arange(offsets.size)).astype(np.int64)
    flipped = np.zeros(n, bool)
    stamp = np.empty(n, np.int64)
    ready = np.flatnonzero(waiting == 0)
    while ready.size:
        pix = listed[ready]
        simple = lut[cur[nb[ready]] @ weights]
        cur[pix[simple]] ^= 1
        flipped[ready[simple]] = True
        # release the later-listed neighbours of the pixels just decided
        nxt = later[ready].ravel()
        nxt = nxt[nxt >= 0]
        np.subtract.at(waiting, nxt, 1)
        nxt = nxt[waiting[nxt] == 0]
        at = np.arange(nxt.size)
        stamp[nxt] = at  # drop repeats: keep the last write of each position
        ready = nxt[stamp[nxt] == at]
    return flipped


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


#: Mismatch classes of `classify_mismatches` (0 = no mismatch).
MERGE, SPLIT, HOLE_ADDITION, HOLE_DELETION, OBJECT_ADDITION, OBJECT_DELETION = 1, 2, 3, 4, 5, 6
#: The reference's window radius for the local split test (the challenge scripts pass 20).
SPLIT_RADIUS = 20
_WINDOW_BATCH = 2048  # windows labelled per ndi.label call


def classify_mismatches(warped: np.ndarray, target: np.ndarray,
                        radius: int = SPLIT_RADIUS) -> np.ndarray:
    """Classify every pixel where `warped` still disagrees with `target`, pixel by pixel.

    The rule of the ISBI reference (Fiji's `WarpingError.classifyMismatches2d`; Jain et al.
    name the error types but do not give a pixel test). With the 4-connected objects of
    `warped` and the set N of object ids (0 = background) among a pixel's 8 neighbours that
    lie inside the image:

    * N = {0}: OBJECT_DELETION if the pixel is foreground in `warped`, else OBJECT_ADDITION;
    * N = {k}: HOLE_ADDITION if foreground, else HOLE_DELETION;
    * |N| = 2: HOLE_ADDITION if background; if foreground, the pixel is removed within the
      (2 radius + 1)^2 window around it (outside the image = background), the window is
      relabelled (4-connected) and the pixel is a SPLIT when its 8 neighbours then see two
      or more objects, else a HOLE_DELETION;
    * |N| >= 3: MERGE if background, SPLIT if foreground.

    Following the reference, a radius larger than the image's width or height (or below 1)
    uses the whole image as the window, and a `warped` image that is foreground everywhere
    has no objects (its 8-bit conversion maps the constant image to 0).

    Each window is relabelled on its own, so the cost is linear in the number of mismatches
    (batched through `scipy.ndimage.label`), never a relabelling of a whole object.

    Args:
        warped: (H, W) bool warped ground truth (`warp_towards`).
        target: (H, W) bool thresholded prediction.
        radius: window radius of the split test (pixels).

    Returns:
        (H, W) uint8 classes (`MERGE`, `SPLIT`, ... ; 0 where the images agree).
    """
    warped = _check_binary(warped, "warped")
    target = _check_binary(target, "target")
    if warped.shape != target.shape:
        raise ValueError(f"warped shape {warped.shape} != target shape {target.shape}")
    h, w = warped.shape
    classes = np.zeros((h, w), np.uint8)
    ys, xs = np.nonzero(warped != target)
    if ys.size == 0:
        return classes
    objects = (np.zeros((h, w), np.int32) if warped.all()
               else ndi.label(warped, structure=_FOUR)[0])
    lowest, highest, background = _neighbour_ids(objects, ys, xs)
    fg = warped[ys, xs]
    distinct = background.astype(np.int64) + (highest > 0) + (highest > lowest)
    only_bg = (distinct == 1) & background
    one_object = (distinct == 1) & ~background
    out = np.zeros(ys.size, np.uint8)
    out[only_bg] = np.where(fg[only_bg], OBJECT_DELETION, OBJECT_ADDITION)
    out[one_object] = np.where(fg[one_object], HOLE_ADDITION, HOLE_DELETION)
    out[distinct >= 3] = np.where(fg[distinct >= 3], SPLIT, MERGE)
    two = distinct == 2
    out[two & ~fg] = HOLE_ADDITION
    test = np.flatnonzero(two & fg)
    out[test] = HOLE_DELETION
    # neighbours joined around the pixel itself stay one object in any window: only a pixel
    # whose foreground neighbours form two or more groups can be a split
    padded = np.pad(warped, 1).astype(np.uint8)
    code = np.zeros(test.size, np.uint8)
    for k, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
        code |= padded[ys[test] + 1 + dy, xs[test] + 1 + dx] << k
    test = test[ring_groups()[code] >= 2]
    if test.size:
        cut = _cuts_locally(warped, ys[test], xs[test], radius)
        out[test] = np.where(cut, SPLIT, HOLE_DELETION)
    classes[ys, xs] = out
    return classes


def _neighbour_ids(objects: np.ndarray, ys: np.ndarray, xs: np.ndarray):
    """Smallest and largest object id > 0 and whether background occurs among the in-image
    8 neighbours of each pixel (ys, xs). Ids: 0 where no object neighbour."""
    h, w = objects.shape
    big = np.iinfo(np.int32).max
    lowest = np.full(ys.size, big, np.int64)
    highest = np.zeros(ys.size, np.int64)
    background = np.zeros(ys.size, bool)
    for dy, dx in NEIGHBOUR_OFFSETS:
        y, x = ys + dy, xs + dx
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        ids = np.zeros(ys.size, np.int64)
        ids[inside] = objects[y[inside], x[inside]]
        background |= inside & (ids == 0)
        obj = ids > 0
        lowest[obj] = np.minimum(lowest[obj], ids[obj])
        highest = np.maximum(highest, ids)
    lowest[highest == 0] = 0
    return lowest, highest, background


def _cuts_locally(warped: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: int) -> np.ndarray:
    """Whether removing each foreground pixel (ys, xs) leaves >= 2 objects among its 8
    neighbours, judged within its (2 radius + 1)^2 window (the reference's local test)."""
    h, w = warped.shape
    whole = radius < 1 or radius > w or radius > h
    if whole:  # the reference's "-1": the whole image is the window, no border padding
        padded, r_y, r_x, oy, ox = warped, 0, 0, ys, xs
        size_y, size_x = h, w
    else:
        padded = np.pad(warped, radius)
        r_y = r_x = radius
        oy, ox = ys, xs  # window origin in padded coordinates
        size_y = size_x = 2 * radius + 1
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = _FOUR  # 4-connectivity within each window, none across windows
    cut = np.zeros(ys.size, bool)
    for start in range(0, ys.size, _WINDOW_BATCH):
        sel = slice(start, start + _WINDOW_BATCH)
        if whole:
            windows = np.repeat(warped[None], ys[sel].size, axis=0)
            cy, cx = ys[sel], xs[sel]
        else:
            iy = oy[sel, None] + np.arange(size_y)[None, :]
            ix = ox[sel, None] + np.arange(size_x)[None, :]
            windows = padded[iy[:, :, None], ix[:, None, :]]
            cy = np.full(iy.shape[0], r_y)
            cx = np.full(iy.shape[0], r_x)
        batch = np.arange(windows.shape[0])
        windows[batch, cy, cx] = False
        labels = ndi.label(windows, structure=structure)[0]
        lo = np.full(batch.size, np.iinfo(np.int64).max, np.int64)
        hi = np.zeros(batch.size, np.int64)
        for dy, dx in NEIGHBOUR_OFFSETS:
            y, x = cy + dy, cx + dx
            inside = (y >= 0) & (y < size_y) & (x >= 0) & (x < size_x)
            ids = np.zeros(batch.size, np.int64)
            ids[inside] = labels[batch[inside], y[inside], x[inside]]
            obj = ids > 0
            lo[obj] = np.minimum(lo[obj], ids[obj])
            hi = np.maximum(hi, ids)
        cut[sel] = (hi > 0) & (hi > lo)
    return cut


def splits_and_mergers(truth: np.ndarray, prediction: np.ndarray, *,
                       priority: np.ndarray | None = None,
                       radius: int = SPLIT_RADIUS) -> dict[str, int]:
    """Warp the truth towards the prediction and count the pixels of each error type.

    Args:
        truth: (H, W) binary ground truth, foreground = cell interior.
        prediction: (H, W) binary prediction (thresholded map).
        priority: visit priority of `warp_towards` (|p - t| for a probability map).
        radius: window radius of the split test (`classify_mismatches`).

    Returns:
        {"splits", "mergers", "other", "mismatches"}: pixel counts; the ISBI warping error
        of one slice is (splits + mergers) / pixels.
    """
    target = _check_binary(prediction, "prediction")
    warped = warp_towards(truth, target, priority)
    classes = classify_mismatches(warped, target, radius)
    counts = np.bincount(classes.ravel(), minlength=7)
    splits, mergers = int(counts[SPLIT]), int(counts[MERGE])
    mismatches = int(counts[1:].sum())
    return {"splits": splits, "mergers": mergers, "other": mismatches - splits - mergers,
            "mismatches": mismatches}
