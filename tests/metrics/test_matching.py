"""Instance matching, AP, CTC SEG, IoU and Dice (unetkit.metrics.matching) on hand-built labels."""

import numpy as np
import pytest

from unetkit.metrics.matching import (
    instance_scores,
    match_counts,
    seg_jaccards,
    seg_score,
    semantic_scores,
)


def hand_pair():
    """Truth A, B, C; prediction A exact (IoU 1), B shifted (IoU 12/20), C missed, D extra."""
    truth = np.zeros((10, 20), np.int32)
    pred = np.zeros_like(truth)
    truth[0:4, 0:4] = 1                    # A, 16 px
    pred[0:4, 0:4] = 7
    truth[0:4, 10:14] = 2                  # B, 16 px
    pred[0:4, 11:15] = 3                   # B', 16 px, 12 shared -> IoU 0.6
    truth[8:10, 0:2] = 5                   # C, missed
    pred[7:10, 15:18] = 9                  # D, false positive
    return truth, pred


def test_counts_at_iou_half():
    truth, pred = hand_pair()
    c = match_counts(truth, pred, (0.5, 0.6, 0.75))
    assert c[0.5] == {"tp": 2, "fp": 1, "fn": 1, "iou_sum": pytest.approx(1.6)}
    assert c[0.6]["tp"] == 1  # strictly greater: IoU 0.6 does not match at 0.6
    assert c[0.75] == {"tp": 1, "fp": 2, "fn": 2, "iou_sum": 1.0}


def test_instance_scores_by_hand():
    truth, pred = hand_pair()
    s = instance_scores(truth, pred)
    assert s["precision_50"] == pytest.approx(2 / 3)
    assert s["recall_50"] == pytest.approx(2 / 3)
    assert s["f1_50"] == pytest.approx(2 / 3)
    assert s["ap50"] == pytest.approx(2 / 4)        # TP / (TP + FP + FN)
    assert s["ap75"] == pytest.approx(1 / 5)
    # 0.50 and 0.55 match both; 0.60 ... 0.95 (8 thresholds) only A
    assert s["ap"] == pytest.approx((2 * 0.5 + 8 * 0.2) / 10)
    assert s["mean_matched_iou"] == pytest.approx(0.8)


def test_perfect_and_empty():
    truth, _ = hand_pair()
    s = instance_scores(truth, truth * 3)  # other label values, same objects
    assert s["ap"] == 1.0 and s["f1_50"] == 1.0 and s["mean_matched_iou"] == 1.0
    empty = np.zeros((4, 4), np.int32)
    assert instance_scores(empty, empty)["ap50"] == 1.0
    assert instance_scores(truth, np.zeros_like(truth))["ap50"] == 0.0


def test_optimal_matching_below_half_beats_greedy():
    truth = np.zeros((1, 20), np.int32)
    truth[0, 0:10], truth[0, 10:20] = 1, 2
    pred = np.zeros_like(truth)
    pred[0, 5:16] = 1   # IoU 5/16 with truth 1, 6/15 = 0.4 with truth 2
    pred[0, 17:20] = 2  # IoU 3/10 with truth 2
    # greedy by IoU would pair pred 1 with truth 2 and leave one match; optimal gives two
    c = match_counts(truth, pred, (0.25,))[0.25]
    assert (c["tp"], c["fp"], c["fn"]) == (2, 0, 0)
    assert c["iou_sum"] == pytest.approx(5 / 16 + 3 / 10)


def test_seg_by_hand():
    truth = np.zeros((4, 10), np.int32)
    truth[0, :] = 1             # R1, 10 px
    truth[2, 0:4] = 2           # R2, 4 px
    pred = np.zeros_like(truth)
    pred[0, 0:6] = 4            # 6 of R1 (> half)...
    pred[1, 0:2] = 4            # ... plus 2 outside: J = 6 / 12
    pred[2, 0:2] = 5            # exactly half of R2: no match
    assert np.allclose(seg_jaccards(truth, pred), [0.5, 0.0])
    assert seg_score(truth, pred) == pytest.approx(0.25)
    assert seg_score(truth, truth) == 1.0
    assert np.isnan(seg_score(np.zeros_like(truth), pred))


def test_semantic_by_hand():
    truth = np.array([[0, 0, 1, 1, 2, 2]])
    pred = np.array([[0, 1, 1, 1, 2, 0]])
    s = semantic_scores(truth, pred)
    assert s["iou_class_0"] == pytest.approx(1 / 3) and s["dice_class_0"] == pytest.approx(0.5)
    assert s["iou_class_1"] == pytest.approx(2 / 3) and s["dice_class_1"] == pytest.approx(0.8)
    assert s["iou_class_2"] == pytest.approx(0.5) and s["dice_class_2"] == pytest.approx(2 / 3)
    assert s["iou"] == pytest.approx((2 / 3 + 0.5) / 2)       # classes other than 0
    assert s["mean_iou"] == pytest.approx((1 / 3 + 2 / 3 + 0.5) / 3)
    assert semantic_scores(truth, pred, classes=(3,))["iou_class_3"] == 1.0  # absent: 1


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="shape"):
        match_counts(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="negative"):
        seg_score(np.full((2, 2), -1), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="dtype"):
        instance_scores(np.zeros((2, 2)), np.zeros((2, 2), int))
