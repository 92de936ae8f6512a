"""Connected components of a foreground mask too large for memory, block by block (no torch).

The result is the same partition as labelling the whole mask at once (face connectivity, as
``instances.probabilities_to_instances(method="components")``), with labels ``1..N`` unique over
the whole plane:

1. **Label each block** on its own (``scipy.ndimage.label``) and shift its labels by the number
   of labels before it (blocks in raster order), so provisional labels are unique.
2. **Merge across borders** with union-find: a pixel on a block's top (left) edge and the pixel
   above (left of) it in the neighbouring block, both foreground, are one object.  Only the last
   row of the previous block row and the last column of the previous block are kept.
3. **Relabel**: each block is labelled again (deterministic) and mapped through the table
   provisional -> root -> consecutive id (in order of first appearance); objects under
   ``min_size`` pixels (summed over blocks) become background.

Memory: one block plus one row of the image, plus 16 bytes per provisional label.
A seeded watershed is *not* local (a seed's basin can reach across any number of blocks), so
streamed instance output supports components only; see docs/large-images.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = ["label_blocks", "relabel_table"]

_FACE = ndi.generate_binary_structure(2, 1)


def _find(parent: np.ndarray, a: int) -> int:
    root = a
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:  # path compression
        parent[a], a = root, parent[a]
    return root


def _border_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distinct (label a[i], label b[i]) pairs where both sides are foreground."""
    keep = (a > 0) & (b > 0)
    return np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)


def _union_all(n: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find over labels ``0..n-1``; the smaller id stays root (raster order)."""
    parent = np.arange(n, dtype=np.int64)
    for x, y in pairs:
        rx, ry = _find(parent, int(x)), _find(parent, int(y))
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    return parent


def relabel_table(parent: np.ndarray, sizes: np.ndarray, min_size: int = 0) -> np.ndarray:
    """provisional label -> final label (0 background, 1..N by smallest provisional id)."""
    root = parent.copy()
    while True:  # pointer jumping: every entry ends at its root
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    total = np.bincount(root, weights=sizes, minlength=len(root))
    keep = (root == np.arange(len(root))) & (total >= max(min_size, 1))
    keep[0] = False
    final_of_root = np.zeros(len(root), np.uint32)
    final_of_root[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return final_of_root[root]


def label_blocks(mask: Any, out: Any, block: tuple[int, int], min_size: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Label the (H, W) boolean array-like ``mask`` into the (H, W) array-like ``out``.

    ``block``: (rows, columns) read at once; choose the chunk shape of ``out``.  Returns the
    number of objects.
    """
    h, w = mask.shape
    bh, bw = block
    rows, cols = range(0, h, bh), range(0, w, bw)
    offsets: dict[tuple[int, int], int] = {}
    sizes = [np.zeros(1, np.int64)]
    pairs = [np.zeros((0, 2), np.int64)]
    total = 0
    above = np.zeros(w, np.int64)  # provisional labels of the row just above this block row
    n_blocks, done = len(rows) * len(cols), 0
    for y in rows:
        below = np.zeros(w, np.int64)
        left = None
        for x in cols:
            lab, n = ndi.label(np.asarray(mask[y : y + bh, x : x + bw]) > 0, structure=_FACE)
            lab = lab.astype(np.int64)
            lab[lab > 0] += total
            offsets[(y, x)] = total
            sizes.append(np.bincount(lab.ravel(), minlength=total + n + 1)[total + 1 :])
            total += n
            if y > 0:
                pairs.append(_border_pairs(above[x : x + lab.shape[1]], lab[0]))
            if left is not None:
                pairs.append(_border_pairs(left, lab[:, 0]))
            left = lab[:, -1]
            below[x : x + lab.shape[1]] = lab[-1]
            done += 1
            if progress is not None:
                progress(done, 2 * n_blocks)
        above = below
    parent = _union_all(total + 1, np.concatenate(pairs))
    table = relabel_table(parent, np.concatenate(sizes).astype(np.float64), min_size)
    for y in rows:
        for x in cols:
            lab, _ = ndi.label(np.asarray(mask[y : y + bh, x : x + bw]) > 0, structure=_FACE)
            lab = lab.astype(np.int64)
            lab[lab > 0] += offsets[(y, x)]
            out[y : y + lab.shape[0], x : x + lab.shape[1]] = table[lab]
            done += 1
            if progress is not None:
                progress(done, 2 * n_blocks)
    return int(table.max()) if len(table) else 0
