"""Comparing two partitions of the ground truth's foreground: Rand and information scores.

Numpy/scipy/scikit-image only. Definitions follow Arganda-Carreras et al., "Crowdsourcing the
creation of image segmentation algorithms for connectomics", Front. Neuroanat. 9:142 (2015),
as implemented by the challenge's reference (Fiji, Trainable Weka Segmentation, classes
`RandError` / `VariationOfInformation`, "N^2 normalisation"); this is our own code.

Let T be the ground-truth segmentation (label 0 = boundary) and S the proposed one (label 0 =
boundary). Only the n pixels with T > 0 count (*foreground restriction*). A pixel with
S == 0 inside the truth's foreground is its own singleton segment. With
p_ij = |{T == i} & {S == j}| / n for i > 0 (j > 0, plus one singleton column per S == 0 pixel),
t_i = sum_j p_ij (truth marginals) and s_j = sum_i p_ij (proposal marginals):

* Rand split score  V_split = sum p_ij^2 / sum t_i^2  (1 when no true segment is split),
* Rand merge score  V_merge = sum p_ij^2 / sum s_j^2  (1 when no segments are merged),
* V_rand = 2 sum p_ij^2 / (sum t_i^2 + sum s_j^2), the harmonic mean (alpha = 0.5);
* information split I(S;T) / H(S) and merge I(S;T) / H(T) scores, and
  V_info = 2 I(S;T) / (H(S) + H(T)), with the entropies of the distributions above
  (natural log; the base cancels). As in the reference, V_info is 0 when either side is a
  single segment (see `info_scores`).
* Stacks: `rand_counts` gives the pair counts (tp, fp, fn) that the reference sums over
  slices for its stack Rand error; `f_score` turns counts into its F-score.

The "adapted Rand error" of SNEMI3D and `skimage.metrics.adapted_rand_error` is 1 - V_rand,
except that skimage counts unordered pairs of distinct pixels (each squared sum minus n) and
treats S == 0 as one segment; `rand_scores(..., self_pairs=False)` reproduces it exactly when
the proposal has no zero inside the truth's foreground.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

_FOUR = ndi.generate_binary_structure(2, 1)

# Beyond this many cells a dense contingency table is replaced by a sort-based count.
_DENSE_TABLE_LIMIT = 1 << 24


@dataclass(frozen=True)
class Contingency:
    """Overlap counts of a truth and a proposed labelling over the truth's foreground.

    Attributes:
        counts: (K,) int64 pixel counts n_ij of the non-empty cells with i > 0 and j > 0.
        truth_sizes: (I,) int64 sizes of the truth segments i > 0 (restricted to the
            foreground, so equal to the segment sizes), zeros dropped.
        proposal_sizes: (J,) int64 sizes s_j of the proposal segments j > 0 within the truth's
            foreground, zeros dropped.
        singletons: number of foreground pixels with proposal label 0.
        n: number of truth foreground pixels.
    """

    counts: np.ndarray
    truth_sizes: np.ndarray
    proposal_sizes: np.ndarray
    singletons: int
    n: int


def contingency(truth: np.ndarray, proposal: np.ndarray) -> Contingency:
    """Contingency of two label images restricted to `truth > 0`.

    Args:
        truth: (H, W) or (Z, H, W) non-negative integer labels, 0 = boundary (excluded).
        proposal: same shape, non-negative integer labels, 0 = boundary (singletons).

    Returns:
        The `Contingency` counts.
    """
    truth = np.asarray(truth)
    proposal = np.asarray(proposal)
    if truth.shape != proposal.shape:
        raise ValueError(f"truth shape {truth.shape} != proposal shape {proposal.shape}")
    fg = truth > 0
    t = truth[fg].astype(np.int64)
    s = proposal[fg].astype(np.int64)
    n = int(t.size)
    if n and (t.min() < 0 or s.min() < 0):
        raise ValueError("labels must be non-negative")
    inside = s > 0
    singletons = int(n - inside.sum())
    t_in, s_in = t[inside], s[inside]
    if t_in.size == 0:
        counts = np.zeros(0, np.int64)
    else:
        nj = int(s_in.max()) + 1
        cells = (int(t_in.max()) + 1) * nj
        key = t_in * nj + s_in
        if cells <= _DENSE_TABLE_LIMIT:
            counts = np.bincount(key, minlength=cells)
            counts = counts[counts > 0]
        else:
            counts = np.unique(key, return_counts=True)[1]
    truth_sizes = np.bincount(t)[1:] if n else np.zeros(0, np.int64)
    proposal_sizes = np.bincount(s_in)[1:] if s_in.size else np.zeros(0, np.int64)
    return Contingency(
        counts=counts.astype(np.int64),
        truth_sizes=truth_sizes[truth_sizes > 0].astype(np.int64),
        proposal_sizes=proposal_sizes[proposal_sizes > 0].astype(np.int64),
        singletons=singletons,
        n=n,
    )


def f_score(tp: float, fp: float, fn: float) -> float:
    """F-score of counts as the reference computes it (Fiji's `ClassificationStatistics`).

    Precision tp / (tp + fp) is 1 without false positives, recall tp / (tp + fn) is 1 without
    false negatives, and F = 2 P R / (P + R), 0 when P + R = 0.
    """
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def rand_counts(truth: np.ndarray, proposal: np.ndarray, *,
                table: Contingency | None = None) -> tuple[float, float, float]:
    """Foreground-restricted pair counts (tp, fp, fn) with the N^2 normalisation.

    Ordered pixel pairs of the truth's foreground, a pixel paired with itself included:
    tp = pairs in one truth and one proposal segment, fp = pairs in one proposal segment but
    two truth segments, fn = pairs in one truth segment but two proposal segments. A pixel
    with proposal 0 is its own segment. Stacks of slices are pooled by summing these counts
    over the slices (the reference's stack Rand error).

    Args:
        truth: (H, W) or (Z, H, W) truth labels, 0 = boundary (excluded).
        proposal: same shape proposed labels, 0 = boundary (singletons).

        table: their `contingency`, if already computed.

    Returns:
        (tp, fp, fn) as floats; (0, 0, 0) when the truth has no foreground.
    """
    c = contingency(truth, proposal) if table is None else table
    tp = float(np.sum(c.counts.astype(np.float64) ** 2)) + c.singletons
    sum_t2 = float(np.sum(c.truth_sizes.astype(np.float64) ** 2))
    sum_s2 = float(np.sum(c.proposal_sizes.astype(np.float64) ** 2)) + c.singletons
    return tp, sum_s2 - tp, sum_t2 - tp


def rand_scores(truth: np.ndarray, proposal: np.ndarray, *, self_pairs: bool = True,
                table: Contingency | None = None) -> dict:
    """Foreground-restricted Rand F-score with its split and merge terms.

    Args:
        truth: (H, W) or (Z, H, W) truth labels, 0 = boundary (excluded).
        proposal: same shape proposed labels, 0 = boundary (each pixel its own segment).
        self_pairs: True (default, the challenge's N^2 normalisation) counts ordered pairs
            including a pixel with itself; False counts pairs of distinct pixels and treats
            label 0 as one segment, as `skimage.metrics.adapted_rand_error` does.
        table: their `contingency`, if already computed.

    Returns:
        {"v_rand", "split", "merge"}: `f_score` of the pair counts, its recall ("split", 1 when
        no true segment is split) and precision ("merge"); NaN for all three when the truth
        has no foreground (the reference divides by zero there).
    """
    c = contingency(truth, proposal) if table is None else table
    if c.n == 0:
        logger.warning("rand_scores: ground truth has no foreground; scores are NaN")
        return {"v_rand": np.nan, "split": np.nan, "merge": np.nan}
    if self_pairs:
        tp, fp, fn = rand_counts(truth, proposal, table=c)
    else:
        # label 0 is one more segment, and pairs (x, x) are dropped from every sum
        zero_rows = _zero_column(truth, proposal)
        tp = float(np.sum(c.counts.astype(np.float64) ** 2)
                   + np.sum(zero_rows.astype(np.float64) ** 2)) - c.n
        sum_s2 = float(np.sum(c.proposal_sizes.astype(np.float64) ** 2)) + c.singletons ** 2
        sum_t2 = float(np.sum(c.truth_sizes.astype(np.float64) ** 2))
        fp, fn = sum_s2 - c.n - tp, sum_t2 - c.n - tp
    merge = 1.0 if fp == 0 else tp / (tp + fp)
    split = 1.0 if fn == 0 else tp / (tp + fn)
    return {"v_rand": f_score(tp, fp, fn), "split": split, "merge": merge}


def _zero_column(truth: np.ndarray, proposal: np.ndarray) -> np.ndarray:
    """(I,) counts of proposal label 0 per truth segment i > 0."""
    truth = np.asarray(truth)
    sel = (truth > 0) & (np.asarray(proposal) == 0)
    return np.bincount(truth[sel].astype(np.int64))[1:]


def _plogp(x: np.ndarray) -> float:
    x = x[x > 0]
    return float(np.sum(x * np.log(x)))


def info_scores(truth: np.ndarray, proposal: np.ndarray, *,
                table: Contingency | None = None) -> dict:
    """Foreground-restricted information-theoretic F-score with its split and merge terms.

    merge = I(S;T) / H(T) (the reference's "precision"), split = I(S;T) / H(S) ("recall"),
    V_info = 2 merge split / (merge + split). Edge cases as the reference (Fiji's
    `VariationOfInformation.foregroundRestrictedFscore`; the paper leaves them open): a truth
    with one segment (H(T) = 0) has merge 0 and split 1; a proposal with one segment
    (H(S) = 0) has merge 1 and split 0, applied last; so V_info is 0 when either side is one
    segment (two single-segment images score 0), and NaN when I = 0 with both entropies > 0.

    Args:
        truth: (H, W) or (Z, H, W) truth labels, 0 = boundary (excluded).
        proposal: same shape proposed labels, 0 = boundary (each pixel its own segment).
        table: their `contingency`, if already computed.

    Returns:
        {"v_info", "split", "merge", "h_truth", "h_proposal", "mutual_information"};
        NaN scores when the truth has no foreground.
    """
    c = contingency(truth, proposal) if table is None else table
    if c.n == 0:
        logger.warning("info_scores: ground truth has no foreground; scores are NaN")
        nan = np.nan
        return {"v_info": nan, "split": nan, "merge": nan, "h_truth": nan,
                "h_proposal": nan, "mutual_information": nan}
    n = float(c.n)
    single = c.singletons / n * np.log(n)  # each singleton has probability 1/n
    h_t = -_plogp(c.truth_sizes / n)
    h_s = -_plogp(c.proposal_sizes / n) + single
    h_st = -_plogp(c.counts / n) + single
    mi = h_t + h_s - h_st
    if h_t == 0:
        merge, split = 0.0, 1.0
    else:
        merge, split = mi / h_t, (mi / h_s if h_s != 0 else np.nan)
    if h_s == 0:
        merge, split = 1.0, 0.0
    total = merge + split
    v_info = 2.0 * merge * split / total if total != 0 else np.nan
    return {"v_info": float(v_info), "split": float(split), "merge": float(merge),
            "h_truth": h_t, "h_proposal": h_s, "mutual_information": mi}


def label_components(foreground: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) int32 labels of its 4-connected components (0 = background)."""
    labels, _ = ndi.label(foreground, structure=_FOUR)
    return labels


# Reference neighbour order of the flooding (left, up, right, down) as (dy, dx).
_FLOOD_OFFSETS: tuple[tuple[int, int], ...] = ((0, -1), (-1, 0), (0, 1), (1, 0))
_UNSEEN = np.iinfo(np.int64).max


def thin_boundaries(foreground: np.ndarray, markers: np.ndarray | None = None) -> np.ndarray:
    """Segments of a binary map grown until the boundaries between them are one pixel wide.

    The "classic watershed" thinning of the ISBI evaluation (Fiji's `WatershedTransform2D`, a
    Soille-Vincent flooding with 4-connectivity of the thresholded map, boundary = high). The
    segments (the 4-connected components of `foreground`) are the basins; the boundary pixels
    are flooded breadth-first from them in the reference's order: first the boundary pixels
    touching a basin, in column-major order (x before y), then each newly reached pixel in the
    order it was reached, its neighbours visited left, up, right, down. A flooded pixel takes
    the one segment label among its already labelled neighbours, or becomes a line pixel (0)
    when it sees two labels or only line pixels. Choices of the reference that the papers do
    not state, kept here: that visiting order (it places the lines on ties), and a map with no
    foreground at all is one segment (the flooding of a flat image is one basin).

    Computed layer by layer (the breadth-first distance from the basins) in numpy; the pixels
    of a layer whose label depends on a neighbour of the same layer are resolved in rounds
    that follow the flooding's order (checked against a one-pixel-at-a-time flooding).

    Args:
        foreground: (H, W) bool, True = segment interior.
        markers: optional (H, W) non-negative integer segments (e.g. an instance image);
            default: the 4-connected components of `foreground`. Pixels with marker 0 are
            flooded.

    Returns:
        (H, W) int32 labels, 0 = the one-pixel boundary lines.
    """
    foreground = np.asarray(foreground, bool)
    basins = label_components(foreground) if markers is None else np.asarray(markers)
    if not np.any(basins):
        return np.ones(foreground.shape, np.int32)
    h, w = basins.shape
    hp, wp = h + 2, w + 2
    lab = np.full(hp * wp, -1, np.int64)  # -1 = not reached yet (or outside)
    lab.reshape(hp, wp)[1:-1, 1:-1] = basins
    pop = np.full(hp * wp, _UNSEEN, np.int64)  # flooding order; -1 for basin pixels
    inside = np.zeros((hp, wp), bool)
    inside[1:-1, 1:-1] = True
    inside = inside.ravel()
    pop[inside & (lab > 0)] = -1
    offsets = np.array([dy * wp + dx for dy, dx in _FLOOD_OFFSETS], np.int64)
    todo = inside & (lab == 0)
    lab[todo] = -1
    first = np.flatnonzero(todo)
    near = np.zeros(first.size, bool)
    for off in offsets:
        near |= pop[first + off] == -1
    layer = first[near]
    y, x = np.divmod(layer, wp)
    layer = layer[np.lexsort((y, x))]  # column-major
    base = 0
    scratch = np.empty(hp * wp, np.int64)
    while layer.size:
        pop[layer] = base + np.arange(layer.size)
        lab[layer] = _flood_layer(layer, lab, pop, offsets, base)
        base += layer.size
        layer = _next_layer(layer, pop, inside, offsets, scratch)
    out = lab.reshape(hp, wp)[1:-1, 1:-1]
    left = out < 0  # boundary never reached (cannot happen with basins; kept for safety)
    if left.any():
        extra, _ = ndi.label(left, structure=_FOUR)
        out = np.where(left, extra + out.max(), out)
    return out.astype(np.int32)


def _flood_layer(layer, lab, pop, offsets, base) -> np.ndarray:
    """Labels of one breadth-first layer (flat indices in flooding order).

    A pixel takes the one positive label among its neighbours flooded before it (lower layers,
    and pixels of this layer earlier in the order), else 0. The lower layers give a tentative
    label; the few pixels whose label may change through an earlier pixel of the same layer
    are resolved in rounds, each round taking those whose earlier such neighbours are done
    (the one-at-a-time order, vectorised).
    """
    n = layer.size
    lo = np.full(n, _UNSEEN, np.int64)
    hi = np.zeros(n, np.int64)
    same = []  # per direction: position in `layer` of an earlier same-layer neighbour, or -1
    for off in offsets:
        nb = layer + off
        nb_pop = pop[nb]
        v = np.where(nb_pop < base, lab[nb], 0)
        pos = v > 0
        lo[pos] = np.minimum(lo[pos], v[pos])
        hi = np.maximum(hi, v)
        earlier = (nb_pop >= base) & (nb_pop < pop[layer])
        same.append(np.where(earlier, nb_pop - base, -1))
    # tentative label from the lower layers: one label -> it, two -> line (final), none -> 0
    single = (hi > 0) & (lo == hi)
    conflict = (hi > 0) & (lo != hi)
    tent = np.where(single, hi, 0)
    none = hi == 0
    # pixels whose label may depend on an earlier neighbour of the same layer
    unsure = np.zeros(n, bool)
    for s in same:
        q = np.maximum(s, 0)
        unsure |= (s >= 0) & ~conflict & single[q] & (none | (tent[q] != tent))
    while (unsure & none).any():  # a pixel with no label of its own passes one on
        grow = unsure.copy()
        for s in same:
            q = np.maximum(s, 0)
            grow |= (s >= 0) & ~conflict & unsure[q] & none[q]
        if np.array_equal(grow, unsure):
            break
        unsure = grow
    out = tent
    todo = np.flatnonzero(unsure)
    if todo.size == 0:
        return out
    pending = unsure.copy()
    earlier = [s[todo] for s in same]  # (m,) per direction
    while todo.size:
        blocked = np.zeros(todo.size, bool)
        for q in earlier:
            blocked |= (q >= 0) & pending[np.maximum(q, 0)]
        go = ~blocked
        ready = todo[go]
        r_lo, r_hi = lo[ready], hi[ready]
        for q in earlier:
            q = q[go]
            v = np.where(q >= 0, out[np.maximum(q, 0)], 0)
            pos = v > 0
            r_lo[pos] = np.minimum(r_lo[pos], v[pos])
            r_hi = np.maximum(r_hi, v)
        out[ready] = np.where((r_hi > 0) & (r_lo == r_hi), r_hi, 0)
        pending[ready] = False
        todo = todo[blocked]
        earlier = [q[blocked] for q in earlier]
    return out


def _next_layer(layer, pop, inside, offsets, scratch) -> np.ndarray:
    """Pixels reached from `layer`, in the order the flooding queues them.

    A pixel is queued by the first pixel of `layer` (in flooding order) that sees it, that
    pixel's neighbours taken left, up, right, down: its key is 4 * order + direction.
    """
    cand, key = [], []
    order = pop[layer] * offsets.size
    for k, off in enumerate(offsets):
        nb = layer + off
        fresh = inside[nb] & (pop[nb] == _UNSEEN)
        cand.append(nb[fresh])
        key.append(order[fresh] + k)
    cand = np.concatenate(cand)
    if cand.size == 0:
        return cand
    cand = cand[np.argsort(np.concatenate(key), kind="stable")]  # merges 4 sorted runs
    # keep each pixel's first queueing: the first occurrence writes last when reversed
    at = np.arange(cand.size)
    scratch[cand[::-1]] = at[::-1]
    return cand[scratch[cand] == at]
