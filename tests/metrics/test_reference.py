"""The ISBI metrics on cases whose values follow by hand, and the exact visiting orders.

Every value below is derived in the comments from the definitions of the challenge's reference
(Fiji's `trainableSegmentation.metrics`): pair counts tp / fp / fn of the foreground-restricted
Rand index (ordered pairs, a pixel with itself included, predicted boundary = singletons),
F = 2 tp / (2 tp + fp + fn), warping error = split + merger pixels / pixels.

The cells live on a 12 x 20 image; a membrane column c is truth[:, c] = 0.
"""

import math
from collections import deque
from fractions import Fraction

import numpy as np
import pytest
from scipy import ndimage as ndi

from unetkit.metrics.isbi import WARPING_THRESHOLDS, isbi_metrics, threshold_range
from unetkit.metrics.rand_info import info_scores, thin_boundaries
from unetkit.metrics.topology import (
    HOLE_DELETION,
    SPLIT,
    classify_mismatches,
    simple_point_lut,
    splits_and_mergers,
    warp_towards,
)

H, W = 12, 20


def cells(*membranes):
    truth = np.full((H, W), 255, np.uint8)
    for c in membranes:
        truth[:, c] = 0
    return truth


def prob_of(truth):
    return truth / 255.0


def rand_error_of(tp, fp, fn):
    return float(1 - Fraction(2 * tp, 2 * tp + fp + fn))


def scores(prob, truth, **kwargs):
    return isbi_metrics(prob, truth, **kwargs)


# ----------------------------------------------------------------------------- hand cases

def test_single_merger():
    truth = cells(9)  # A = cols 0-8 (108 px), B = cols 10-19 (120 px), n = 228
    prob = prob_of(truth)
    prob[3:6, 9] = 1.0  # a 3 px gap in the membrane
    r = scores(prob, truth)
    # the 3 gap pixels cannot be added without merging A and B: 3 merger pixels
    assert r["warping_error"] == 3 / (H * W)
    assert (r["warping_splits"], r["warping_mergers"]) == (0, 3)
    # one predicted segment holds A and B: tp = 108^2 + 120^2, fp = 228^2 - tp, fn = 0
    tp = 108 ** 2 + 120 ** 2
    assert r["rand_error"] == pytest.approx(rand_error_of(tp, 228 ** 2 - tp, 0), abs=1e-15)
    # thinning keeps the one segment: V_rand = F of the same counts, V_info = 0 (H(S) = 0)
    assert r["v_rand"] == pytest.approx(1 - rand_error_of(tp, 228 ** 2 - tp, 0), abs=1e-15)
    assert r["v_info"] == 0.0
    # pixel error: tp = 228, fp = 3, fn = 0
    assert r["pixel_error"] == pytest.approx(3 / 459, abs=1e-15)


def test_single_split():
    truth = cells(9)
    prob = prob_of(truth)
    prob[:, 4] = 0.0  # a cut through A
    r = scores(prob, truth)
    # warping removes the cut column from the top down; the last pixel (row 11) joins
    # the two halves and stays: 1 split pixel (the image is narrower than the radius 20
    # window, so the whole image is the window, as in the reference)
    assert r["warping_error"] == 1 / (H * W)
    assert (r["warping_splits"], r["warping_mergers"]) == (1, 0)
    # A -> 48 + 48 px and 12 singletons: tp = 48^2 + 48^2 + 120^2 + 12, fp = 0
    tp = 2 * 48 ** 2 + 120 ** 2 + 12
    fn = 108 ** 2 + 120 ** 2 - tp
    assert r["rand_error"] == pytest.approx(rand_error_of(tp, 0, fn), abs=1e-15)
    # thinning: the cut stays a line between the halves, so V_rand has the same counts
    assert r["v_rand"] == pytest.approx(1 - rand_error_of(tp, 0, fn), abs=1e-15)


def test_hole():
    truth = cells(9)
    prob = prob_of(truth)
    prob[6, 15] = 0.0  # a one-pixel hole in B
    r = scores(prob, truth)
    assert r["warping_error"] == 0.0  # a hole addition: neither split nor merger
    # B -> 119 px + 1 singleton: tp = 108^2 + 119^2 + 1 = sum of squares of the proposal
    tp = 108 ** 2 + 119 ** 2 + 1
    assert r["rand_error"] == pytest.approx(rand_error_of(tp, 0, 108 ** 2 + 120 ** 2 - tp),
                                            abs=1e-15)
    assert r["pixel_error"] == pytest.approx(1 / 455, abs=1e-15)  # tp 227, fn 1
    assert r["v_rand"] == 1.0 and r["v_info"] == 1.0  # the flooding fills the hole


def test_shifted_boundary():
    truth = cells(9, 10)  # A = cols 0-8 (108), B = cols 11-19 (108)
    prob = prob_of(cells(10, 11))
    r = scores(prob, truth)
    assert r["warping_error"] == 0.0  # the membrane moves by simple points
    assert r["pixel_error"] == pytest.approx(1 / 18, abs=1e-15)  # tp 204, fp 12, fn 12
    # A' = cols 0-9 holds A; col 11 (in B) is boundary: 12 singletons; B' = cols 12-19
    tp = 108 ** 2 + 96 ** 2 + 12
    fn = 2 * 108 ** 2 - tp
    assert r["rand_error"] == pytest.approx(rand_error_of(tp, 0, fn), abs=1e-15)
    # thinning: col 10 is flooded first (column-major) and joins A'; col 11 is the line
    assert r["v_rand"] == pytest.approx(1 - rand_error_of(tp, 0, fn), abs=1e-15)


def test_empty_prediction():
    truth = cells(9)
    r = scores(np.zeros((H, W)), truth)
    assert r["pixel_error"] == 1.0  # tp = 0: recall 0
    # every truth pixel a singleton: tp = 228, fp = 0, fn = 108^2 + 120^2 - 228
    assert r["rand_error"] == pytest.approx(rand_error_of(228, 0, 108 ** 2 + 120 ** 2 - 228),
                                            abs=1e-15)
    # the cells shrink to one pixel each: object deletions, not splits or mergers
    assert r["warping_error"] == 0.0
    # an empty map is one segment after thinning: V_rand of one segment, V_info 0
    tp = 108 ** 2 + 120 ** 2
    assert r["v_rand"] == pytest.approx(1 - rand_error_of(tp, 228 ** 2 - tp, 0), abs=1e-15)
    assert r["v_info"] == 0.0


def test_noise_on_the_truth():
    truth = cells(8, 9, 10)  # A = cols 0-7 (96 px), B = cols 11-19 (108 px), n = 204
    prob = prob_of(truth)
    prob[5, 9] = 0.35  # a speck in the membrane, foreground up to t = 0.30000000000000004
    prob[5, 3] = 0.0   # a hole in A
    r = scores(prob, truth)
    # pixel: from t = 0.4 on tp = 203, fp = 0, fn = 1 -> F = 406 / 407 (first best: 0.4)
    assert r["pixel_error"] == pytest.approx(1 / 407, abs=1e-15)
    assert r["pixel_error_threshold"] == 0.4
    # the speck is an object addition, the hole a hole addition: no split or merger
    assert r["warping_error"] == 0.0
    # A -> 95 px + 1 singleton, at every threshold (the speck lies outside the truth)
    tp = 95 ** 2 + 108 ** 2 + 1
    assert r["rand_error"] == pytest.approx(rand_error_of(tp, 0, 96 ** 2 + 108 ** 2 - tp),
                                            abs=1e-15)
    assert r["v_rand"] == 1.0 and r["v_info"] == 1.0


def test_two_slice_stack_with_unequal_foreground():
    t1 = cells(9)                  # 108 + 120 px
    p1 = prob_of(t1)
    p1[3:6, 9] = 1.0               # slice 1: the merger
    t2 = cells(5, 14)              # 60 + 96 + 60 px
    p2 = prob_of(t2)
    p2[:, 9] = 0.0                 # slice 2: B (cols 6-13) cut into 36 + 48 px
    r = scores(np.stack([p1, p2]), np.stack([t1, t2]))
    # Rand: pair counts pooled over the slices into one F-score
    tp1, fp1, fn1 = 108 ** 2 + 120 ** 2, 228 ** 2 - (108 ** 2 + 120 ** 2), 0
    tp2 = 2 * 60 ** 2 + 36 ** 2 + 48 ** 2 + 12
    fp2, fn2 = 0, 2 * 60 ** 2 + 96 ** 2 - tp2
    pooled = rand_error_of(tp1 + tp2, fp1 + fp2, fn1 + fn2)
    assert r["rand_error"] == pytest.approx(pooled, abs=1e-15)
    mean_of_slices = (rand_error_of(tp1, fp1, fn1) + rand_error_of(tp2, fp2, fn2)) / 2
    assert abs(pooled - mean_of_slices) > 0.02  # pooling is not averaging here
    # warping: 3 merger pixels + 1 split pixel over both slices' pixels
    assert r["warping_error"] == 4 / (2 * H * W)
    # pixel counts pooled: tp = 228 + 204, fp = 3, fn = 12
    assert r["pixel_error"] == pytest.approx(15 / 879, abs=1e-15)
    # V_rand and V_info: mean of the per-slice scores
    v1 = 1 - rand_error_of(tp1, fp1, fn1)
    v2 = 1 - rand_error_of(tp2, fp2, fn2)
    assert r["v_rand"] == pytest.approx((v1 + v2) / 2, abs=1e-15)
    n = 216  # slice 2 information scores: truth 60/96/60, proposal 60/36/48/60 + 12 single
    h_t = -sum(k / n * math.log(k / n) for k in (60, 96, 60))
    h_s = -sum(k / n * math.log(k / n) for k in (60, 36, 48, 60)) + 12 / n * math.log(n)
    mi = h_t  # the proposal refines the truth: H(T | S) = 0
    info2 = 2 * (mi / h_t) * (mi / h_s) / (mi / h_t + mi / h_s)
    assert r["v_info"] == pytest.approx((0.0 + info2) / 2, abs=1e-12)  # slice 1: one segment


# ----------------------------------------------------------------------------- sweeps

def test_warping_sweep_stops_at_0_9():
    truth = cells(9)
    prob = prob_of(truth)
    prob[3:6, 9] = 0.95  # a weak gap: foreground up to t = 0.9, background above
    assert len(WARPING_THRESHOLDS) == 10 and WARPING_THRESHOLDS[-1] == 0.8999999999999999
    assert scores(prob, truth, metrics=("warping_error",))["warping_error"] == 3 / (H * W)
    # swept to 0.9999999999999999 the gap closes (p = 1 stays foreground there)
    r = scores(prob, truth, metrics=("warping_error",), thresholds=threshold_range(0, 1, 0.1))
    assert r["warping_error"] == 0.0 and r["warping_error_threshold"] == 0.9999999999999999


def test_v_info_of_single_segments_is_zero():
    one = np.ones((4, 4), int)
    assert info_scores(one, one)["v_info"] == 0.0
    two = np.array([[1, 1, 2, 2]])
    assert info_scores(two, np.ones_like(two))["v_info"] == 0.0   # proposal one segment
    assert info_scores(np.ones_like(two), two)["v_info"] == 0.0   # truth one segment


# ----------------------------------------------------------------------------- visiting order

def test_flip_order_largest_priority_first():
    bar = np.zeros((3, 5), bool)
    bar[1, 1:4] = True
    empty = np.zeros_like(bar)
    # left end first: left, then middle (now an end) go; the right end stays
    prio = np.zeros(bar.shape)
    prio[1, 1:4] = (0.9, 0.5, 0.1)
    assert np.flatnonzero(warp_towards(bar, empty, prio)).tolist() == [1 * 5 + 3]
    # middle first: not simple (a cut); then right and left go; the middle stays
    prio[1, 1:4] = (0.1, 0.9, 0.5)
    assert np.flatnonzero(warp_towards(bar, empty, prio)).tolist() == [1 * 5 + 2]
    # ties: column-major, so the left end goes first as well
    assert np.flatnonzero(warp_towards(bar, empty)).tolist() == [1 * 5 + 3]


def _one_at_a_time(source, target, priority):
    """Oracle: passes over the sorted mismatches, one simple point at a time."""
    lut = simple_point_lut()
    offsets = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
    cur = np.pad(source, 1).astype(np.uint8)
    tgt = np.pad(target, 1).astype(np.uint8)
    pri = np.pad(priority.astype(np.float32), 1)
    while True:
        todo = [(x, y) for x in range(1, cur.shape[1] - 1) for y in range(1, cur.shape[0] - 1)
                if cur[y, x] != tgt[y, x]]
        todo.sort(key=lambda q: -pri[q[1], q[0]])  # stable: column-major among ties
        flips = 0
        for x, y in todo:
            code = sum(int(cur[y + dy, x + dx]) << k for k, (dy, dx) in enumerate(offsets))
            if lut[code]:
                cur[y, x] ^= 1
                flips += 1
        if flips == 0:
            return cur[1:-1, 1:-1].astype(bool)


def test_warping_equals_one_flip_at_a_time():
    rng = np.random.default_rng(11)
    for i in range(40):
        shape = (int(rng.integers(5, 22)), int(rng.integers(5, 22)))
        truth = ndi.gaussian_filter(rng.random(shape), 1.5) > 0.5
        prob = ndi.gaussian_filter(rng.random(shape), 1.5)
        prob = (prob - prob.min()) / (np.ptp(prob) + 1e-9)
        if i % 4 == 0:
            prob = np.round(prob, 1)  # many ties
        priority = np.abs(prob - 0.5).astype(np.float32)
        target = prob > 0.5
        assert np.array_equal(warp_towards(truth, target, priority),
                              _one_at_a_time(truth, target, priority))


def _fifo_flood(fg):
    """Oracle: breadth-first flooding from the 4-connected components, one pixel at a time."""
    labels = ndi.label(fg, ndi.generate_binary_structure(2, 1))[0]
    if labels.max() == 0:
        return np.ones(fg.shape, np.int32)
    h, w = fg.shape
    nbrs = ((0, -1), (-1, 0), (0, 1), (1, 0))  # left, up, right, down
    out = np.where(fg, labels, -1)
    queued = np.zeros(fg.shape, bool)
    queue = deque()
    for x in range(w):
        for y in range(h):
            if not fg[y, x] and any(0 <= y + dy < h and 0 <= x + dx < w and fg[y + dy, x + dx]
                                    for dy, dx in nbrs):
                queue.append((y, x))
                queued[y, x] = True
    while queue:
        y, x = queue.popleft()
        seen = set()
        for dy, dx in nbrs:
            v, u = y + dy, x + dx
            if 0 <= v < h and 0 <= u < w:
                if out[v, u] > 0:
                    seen.add(int(out[v, u]))
                elif out[v, u] < 0 and not queued[v, u]:
                    queued[v, u] = True
                    queue.append((v, u))
        out[y, x] = seen.pop() if len(seen) == 1 else 0
    return out


def test_flooding_equals_fifo_oracle():
    rng = np.random.default_rng(12)
    for _ in range(60):
        shape = (int(rng.integers(4, 30)), int(rng.integers(4, 30)))
        fg = ndi.gaussian_filter(rng.random(shape), rng.choice([0.8, 1.5, 3])) > 0.52
        a, b = thin_boundaries(fg), _fifo_flood(fg)
        assert np.array_equal(a == 0, b == 0)
        # the same partition (label numbers may differ)
        pairs = {(int(i), int(j)) for i, j in zip(a[a > 0], b[a > 0], strict=True)}
        assert len(pairs) == len({i for i, _ in pairs}) == len({j for _, j in pairs})


# ----------------------------------------------------------------------------- classification

def test_split_is_judged_locally_within_radius():
    # a ring cell (radius ~30) cut through at one place: warping keeps a 3 px bridge (a
    # vertical line, each pixel a cut point); globally removing one only opens the ring (a
    # hole deletion), but within the radius 20 window the two sides look disconnected, so
    # the reference counts splits
    yy, xx = np.mgrid[:80, :80]
    d = np.hypot(yy - 40, xx - 40)
    truth = (d > 27) & (d < 33)
    pred = truth & ~((xx >= 68) & (np.abs(yy - 40) <= 1))  # cut through the right side
    warped = warp_towards(truth, pred)
    assert np.argwhere(warped != pred).tolist() == [[39, 72], [40, 72], [41, 72]]
    assert (classify_mismatches(warped, pred, radius=20) == SPLIT).sum() == 3
    # a radius beyond the image: the whole image is the window
    assert (classify_mismatches(warped, pred, radius=100) == HOLE_DELETION).sum() == 3
    assert splits_and_mergers(truth, pred)["splits"] == 3
