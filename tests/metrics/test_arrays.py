"""ISBI 2012 metrics and evaluate_arrays (metrics/arrays.py, isbi.py, rand_info.py)."""

import math
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error

from unetkit.metrics.arrays import (
    available_metrics,
    detect_kind,
    evaluate_arrays,
    isbi_curves,
    isbi_metrics,
    pixel_error,
    rand_error,
    threshold_range,
    v_info,
    v_rand,
    warping_error,
)
from unetkit.metrics.rand_info import info_scores, rand_scores, thin_boundaries

ISBI = Path("/work/shared/data/isbi2012")


# ----------------------------------------------------------------------------- rand_info

TRUTH_ROW = np.array([[1, 1, 1, 0, 2, 2]])
PROPOSAL_ROW = np.array([[1, 1, 2, 2, 2, 0]])  # splits A, merges across the boundary


def test_rand_scores_by_hand():
    # foreground n = 5: A = 3 px, B = 2 px; cells A&1 = 2, A&2 = 1, B&2 = 1, B&0 = 1 singleton
    r = rand_scores(TRUTH_ROW, PROPOSAL_ROW)
    sum_p2, sum_t2, sum_s2 = 4 + 1 + 1 + 1, 9 + 4, 4 + 4 + 1
    assert r["split"] == pytest.approx(sum_p2 / sum_t2)
    assert r["merge"] == pytest.approx(sum_p2 / sum_s2)
    assert r["v_rand"] == pytest.approx(2 * sum_p2 / (sum_t2 + sum_s2))  # 7 / 11


def test_info_scores_by_hand():
    def h(*p):
        return -sum(x * math.log(x) for x in p)
    h_t, h_s = h(3 / 5, 2 / 5), h(2 / 5, 2 / 5, 1 / 5)
    mi = h_t + h_s - h(2 / 5, 1 / 5, 1 / 5, 1 / 5)
    i = info_scores(TRUTH_ROW, PROPOSAL_ROW)
    assert i["h_truth"] == pytest.approx(h_t) and i["h_proposal"] == pytest.approx(h_s)
    assert i["split"] == pytest.approx(mi / h_s) and i["merge"] == pytest.approx(mi / h_t)
    assert i["v_info"] == pytest.approx(2 * mi / (h_t + h_s))


def test_partition_scores_perfect_and_empty():
    assert rand_scores(TRUTH_ROW, TRUTH_ROW * 5)["v_rand"] == 1.0
    assert info_scores(TRUTH_ROW, TRUTH_ROW * 5)["v_info"] == pytest.approx(1.0)
    # the reference: a single-segment side scores 0 (precision 1, recall 0)
    assert info_scores(np.ones((2, 2), int), np.ones((2, 2), int))["v_info"] == 0.0
    assert np.isnan(rand_scores(np.zeros((2, 2), int), np.ones((2, 2), int))["v_rand"])


def test_rand_matches_skimage_adapted_rand_error():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 5, (30, 30))
    proposal = rng.integers(0, 7, (30, 30))  # zeros included: one segment for skimage
    are, _, _ = adapted_rand_error(truth, proposal)
    assert rand_scores(truth, proposal, self_pairs=False)["v_rand"] == pytest.approx(1 - are)


def test_thin_boundaries_by_hand():
    fg = np.ones((5, 9), bool)
    fg[:, 3:6] = False  # a 3 px membrane
    thin = thin_boundaries(fg)
    assert (thin[:, :4] == thin[0, 0]).all() and (thin[:, 5:] == thin[0, 8]).all()
    assert (thin[:, 4] == 0).all() and thin[0, 0] != thin[0, 8]
    # a 2 px membrane: the flooding reaches the left column first (column-major order)
    fg[:, 5] = True
    thin = thin_boundaries(fg)
    assert (thin[:, 3] == thin[0, 0]).all() and (thin[:, 4] == 0).all()
    # no foreground: the flooding of a flat map is one segment
    assert (thin_boundaries(np.zeros((3, 3), bool)) == 1).all()


# ----------------------------------------------------------------------------- ISBI sweeps

def test_pixel_error_sweep_picks_best_threshold():
    truth = np.array([[255, 255, 0, 0]], np.uint8)
    prob = np.array([[0.9, 0.4, 0.6, 0.1]])
    # t = 0.2: prob > t gives 1 1 1 0 -> F = 4 / 5 (best); t = 0.5 gives 1 0 1 0 -> F = 1 / 2.
    # Not yet at t = 0.1: the map is read as float32 (as the reference reads it), and
    # float32(0.1) > 0.1, so at t = 0.1 every pixel is foreground (F = 2 / 3).
    r = isbi_metrics(prob, truth, metrics=("pixel_error",))
    assert r["pixel_error"] == pytest.approx(0.2) and r["pixel_error_threshold"] == 0.2
    assert pixel_error(prob, truth, thresholds=(0.5,)) == pytest.approx(0.5)
    assert pixel_error(prob, truth, thresholds=(0.1,)) == pytest.approx(1 / 3)
    curves = isbi_curves(prob, truth, metrics=("pixel_error",))
    assert curves["pixel_f"][0] == pytest.approx(2 / 3)  # t = 0: all foreground


def _cells(membrane_cols, shape=(12, 20)):
    truth = np.full(shape, 255, np.uint8)
    for c in membrane_cols:
        truth[:, c] = 0
    return truth


def test_shifted_boundary_keeps_warping_error_zero():
    truth = _cells([9, 10])
    for shift in (1, 2):
        prob = (_cells([9 + shift, 10 + shift]) / 255.0)
        assert pixel_error(prob, truth) > 0
        assert warping_error(prob, truth) == 0.0
    # (V_rand does see the shift: the thinned predicted line runs through true cells)


def test_split_and_merger_raise_warping_and_rand_errors():
    truth = _cells([9])
    split = truth / 255.0
    split[:, 4] = 0.0                     # cut the left cell in two
    merged = truth / 255.0
    merged[3:6, 9] = 1.0                  # a gap in the membrane
    n = truth.size
    assert warping_error(split, truth, thresholds=(0.5,)) == 1 / n
    assert warping_error(merged, truth, thresholds=(0.5,)) == 3 / n
    assert warping_error(merged, truth) == 3 / n  # the merger's 3 pixels at every threshold
    for prob in (split, merged):
        assert rand_error(prob, truth) > 0
        assert v_rand(prob, truth) < 1 and v_info(prob, truth) < 1


def test_thick_predicted_boundary_hurts_rand_error_not_v_rand():
    truth = _cells([9])
    prob = _cells([8, 9, 10]) / 255.0     # membrane 3 px instead of 1
    assert rand_error(prob, truth) > 0    # predicted boundary pixels are singletons
    assert v_rand(prob, truth) == 1.0     # thinning gives them back to the cells
    assert v_info(prob, truth) == pytest.approx(1.0)


def test_perfect_prediction_scores_perfectly():
    truth = _cells([5, 12])
    r = evaluate_arrays(truth / 255.0, truth)
    for key in ("pixel_error", "rand_error", "warping_error"):
        assert r[key] == 0.0
    for key in ("v_rand", "v_info", "iou", "dice", "ap50", "f1_50", "seg", "ap"):
        assert r[key] == pytest.approx(1.0)


def test_boundary_prob_and_stacks():
    truth = _cells([9])
    prob = np.clip(truth / 255.0 * 0.8 + 0.1, 0, 1)
    prob[3:6, 9] = 0.7
    base = isbi_metrics(prob, truth)
    flipped = isbi_metrics(1.0 - prob, truth, boundary_prob=True)
    assert flipped["rand_error"] == pytest.approx(base["rand_error"])
    stacked = isbi_metrics(np.stack([prob, prob]), np.stack([truth, truth]))
    for key, value in base.items():
        assert stacked[key] == pytest.approx(value)


def test_binary_and_instance_predictions():
    truth = _cells([9])
    assert detect_kind(truth) == "binary"
    r = evaluate_arrays(truth, truth)
    assert r["pixel_error"] == 0.0 and np.isnan(r["pixel_error_threshold"])
    labels = np.zeros(truth.shape, np.int32)
    labels[:, :9], labels[:, 10:] = 4, 7
    assert detect_kind(labels) == "instances"
    r = evaluate_arrays(labels, truth, metrics=("rand_error", "ap50", "seg", "iou"))
    assert r == {"rand_error": 0.0, "ap50": 1.0, "seg": 1.0, "iou": 1.0}


def test_class_maps():
    truth = np.array([[0, 0, 1, 1, 2, 2]])
    pred = np.array([[0, 1, 1, 1, 2, 0]])
    r = evaluate_arrays(pred, truth, kind="classes")
    assert set(r) >= {"iou", "dice", "iou_class_2"}
    assert r["iou"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert "warping_error" not in available_metrics("classes")


def test_threshold_range():
    # the reference's loop: repeated addition in double precision
    values = threshold_range()
    assert len(values) == 11 and values[3] == 0.30000000000000004
    assert values[-1] == 0.9999999999999999 < 1.0
    assert threshold_range(0.2, 0.5, 0.15) == (0.2, 0.35, 0.5)
    with pytest.raises(ValueError, match="step"):
        threshold_range(0, 1, 0)


@pytest.mark.parametrize("pred, truth, kwargs, match", [
    (np.zeros((3, 3)), np.zeros((3, 4), np.uint8), {}, "shape"),
    (np.full((3, 3), np.nan), np.zeros((3, 3), np.uint8), {}, "NaN"),
    (np.full((3, 3), 1.5), np.zeros((3, 3), np.uint8), {}, r"\[0, 1\]"),
    (np.zeros((3, 3)), np.full((3, 3), -1), {}, "negative"),
    (np.zeros((3, 3)), np.full((3, 3), 0.5), {}, "integer"),
    (np.zeros((3, 3)), np.zeros((3, 3), np.uint8), {"metrics": ("wibble",)}, "wibble"),
    (np.zeros((3, 3), int), np.zeros((3, 3), np.uint8),
     {"metrics": ("v_rand",), "kind": "classes"}, "does not apply"),
    (np.zeros((3, 3)), np.zeros((3, 3), np.uint8), {"kind": "mystery"}, "mystery"),
    (np.zeros((3, 3)), np.zeros((3, 3), np.uint8), {"thresholds": (1.2,)}, "1.2"),
    (np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2), np.uint8), {}, "shape"),
])
def test_bad_input_raises(pred, truth, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate_arrays(pred, truth, **kwargs)


# ----------------------------------------------------------------------------- real data

def _isbi_slice(index=0):
    path = ISBI / "labels" / f"{index:02d}.png"
    if not path.exists():
        pytest.skip("ISBI 2012 data not available")
    from PIL import Image
    return np.asarray(Image.open(path))


def test_isbi_slice_truth_against_itself_and_skimage():
    truth = _isbi_slice()
    r = evaluate_arrays(truth, truth, metrics=("pixel_error", "rand_error", "warping_error",
                                                "v_rand", "v_info", "seg"))
    assert r == {"pixel_error": 0.0, "rand_error": 0.0, "warping_error": 0.0, "v_rand": 1.0,
                 "v_info": pytest.approx(1.0), "seg": 1.0}
    from unetkit.metrics.rand_info import label_components
    segs = label_components(truth > 0)
    pred = label_components(np.roll(truth, 3, axis=1) > 0)
    are, _, _ = adapted_rand_error(segs, pred)
    assert rand_scores(segs, pred, self_pairs=False)["v_rand"] == pytest.approx(1 - are)


def test_isbi_slice_thicker_membranes_warp_cheaply():
    from scipy import ndimage as ndi
    truth = _isbi_slice()
    pred = ndi.binary_erosion(truth > 0)  # membranes one pixel thicker on each side
    disagreement = np.mean(pred != (truth > 0))
    werr = warping_error(pred.astype(np.uint8), truth)
    assert 0 <= werr < 0.05 * disagreement


def test_stack_pools_instance_counts_and_all_keys_come_back():
    truth = _cells([9])
    pred = truth.copy()
    pred[:, 4] = 0                        # slice 2: left cell split in two
    r = evaluate_arrays(np.stack([truth, pred]), np.stack([truth, truth]))
    # slice 1: 2 TP; slice 2: right cell TP, two halves of 4 and 4 columns of 9 -> IoU < 0.5
    assert (r["tp_50"], r["fp_50"], r["fn_50"]) == (3, 2, 1)
    assert set(available_metrics("binary")) <= set(r)
    one = evaluate_arrays(pred, truth, metrics=["dice_class_1", "seg"])
    assert list(one) == ["dice_class_1", "seg"]


def test_warping_details_count_split_and_merger():
    truth = _cells([9])
    prob = truth / 255.0
    prob[:, 4] = 0.0
    prob[3:6, 9] = 1.0
    r = isbi_metrics(prob, truth, thresholds=(0.5,), metrics=("warping_error",))
    # pixel counts: 1 split pixel, 3 merger pixels
    assert r == {"warping_error": 4 / truth.size, "warping_error_threshold": 0.5,
                 "warping_splits": 1.0, "warping_mergers": 3.0}
