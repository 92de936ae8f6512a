"""Object-level and class-level scores: IoU matching, AP, the CTC SEG score, IoU and Dice.

Numpy/scipy only. Label images use 0 for background and positive integers for objects; labels
need not be consecutive. All functions take one image pair of any dimensionality (2D or 3D
objects); to score a stack of independent 2D slices, pool the counts (see `metrics.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)

#: IoU thresholds of the COCO-style average precision: 0.50, 0.55, ..., 0.95.
IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


@dataclass(frozen=True)
class Overlaps:
    """Sparse overlap of two label images.

    Attributes:
        truth_ids: (I,) object labels of the truth (sorted, > 0).
        pred_ids: (J,) object labels of the prediction (sorted, > 0).
        rows, cols: (K,) indices into truth_ids / pred_ids of every overlapping pair.
        intersection: (K,) pixel counts of those pairs.
        truth_sizes: (I,) object sizes; pred_sizes: (J,) object sizes.
    """

    truth_ids: np.ndarray
    pred_ids: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    intersection: np.ndarray
    truth_sizes: np.ndarray
    pred_sizes: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        """(K,) IoU of every overlapping pair."""
        union = self.truth_sizes[self.rows] + self.pred_sizes[self.cols] - self.intersection
        return self.intersection / union


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be an integer label image, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} has negative label {array.min()}")
    return array


def overlaps(truth: np.ndarray, prediction: np.ndarray) -> Overlaps:
    """Overlap table of two label images of equal shape (any dimensionality)."""
    truth = _check_labels(truth, "truth")
    prediction = _check_labels(prediction, "prediction")
    if truth.shape != prediction.shape:
        raise ValueError(f"truth shape {truth.shape} != prediction shape {prediction.shape}")
    t_ids, t_inv, t_sizes = np.unique(truth.ravel(), return_inverse=True, return_counts=True)
    p_ids, p_inv, p_sizes = np.unique(prediction.ravel(), return_inverse=True,
                                      return_counts=True)
    both = (truth.ravel() > 0) & (prediction.ravel() > 0)
    key = t_inv[both].astype(np.int64) * p_ids.size + p_inv[both]
    pairs, inter = np.unique(key, return_counts=True)
    rows, cols = pairs // p_ids.size, pairs % p_ids.size
    t0 = int(t_ids.size > 0 and t_ids[0] == 0)  # drop background from the id lists
    p0 = int(p_ids.size > 0 and p_ids[0] == 0)
    return Overlaps(
        truth_ids=t_ids[t0:], pred_ids=p_ids[p0:], rows=rows - t0, cols=cols - p0,
        intersection=inter, truth_sizes=t_sizes[t0:], pred_sizes=p_sizes[p0:],
    )


def _matched_ious(ov: Overlaps, threshold: float) -> np.ndarray:
    """IoUs of an optimal one-to-one matching among pairs with IoU > threshold.

    The matching maximises the number of matched pairs, then their total IoU. For
    threshold >= 0.5 every object has at most one partner with IoU > threshold, so the
    candidate pairs already are the matching; below 0.5 the Hungarian algorithm decides.
    """
    iou = ov.iou
    keep = iou > threshold
    if threshold >= 0.5 or not keep.any():
        return iou[keep]
    rows, cols, vals = ov.rows[keep], ov.cols[keep], iou[keep]
    r_ids, r_inv = np.unique(rows, return_inverse=True)
    c_ids, c_inv = np.unique(cols, return_inverse=True)
    # score 1 + iou / m per valid pair: one more match always beats any gain in IoU
    m = min(r_ids.size, c_ids.size) + 1
    table = np.zeros((r_ids.size, c_ids.size))
    table[r_inv, c_inv] = vals
    score = np.where(table > 0, 1.0 + table / m, 0.0)
    r, c = linear_sum_assignment(score, maximize=True)
    chosen = score[r, c] > 0
    return table[r[chosen], c[chosen]]


def match_counts(truth: np.ndarray, prediction: np.ndarray,
                 thresholds: tuple[float, ...] = IOU_THRESHOLDS) -> dict[float, dict]:
    """TP/FP/FN and summed matched IoU of an IoU matching, per IoU threshold.

    Args:
        truth: label image, 0 = background.
        prediction: label image of the same shape, 0 = background.
        thresholds: IoU thresholds; a pair matches when IoU > threshold.

    Returns:
        {threshold: {"tp", "fp", "fn", "iou_sum"}} with integer counts.
    """
    ov = overlaps(truth, prediction)
    n_true, n_pred = ov.truth_ids.size, ov.pred_ids.size
    out = {}
    for thr in thresholds:
        ious = _matched_ious(ov, thr)
        tp = int(ious.size)
        out[thr] = {"tp": tp, "fp": n_pred - tp, "fn": n_true - tp,
                    "iou_sum": float(ious.sum())}
    return out


def scores_from_counts(tp: int, fp: int, fn: int, iou_sum: float = 0.0) -> dict[str, float]:
    """Precision, recall, F1, AP = TP / (TP + FP + FN) and mean matched IoU from counts.

    Empty cases: with no objects on either side every score is 1 (nothing to find, nothing
    wrongly found); a ratio with a zero denominator otherwise is 0.
    """
    if tp + fp + fn == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "ap": 1.0, "mean_iou": 1.0}
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn),
        "ap": tp / (tp + fp + fn),
        "mean_iou": iou_sum / tp if tp else 0.0,
    }


def instance_scores(truth: np.ndarray, prediction: np.ndarray,
                    thresholds: tuple[float, ...] = IOU_THRESHOLDS) -> dict[str, float]:
    """Instance-matching scores of one label-image pair.

    AP follows the StarDist / Cellpose convention, AP = TP / (TP + FP + FN) at one IoU
    threshold (not the area under a precision-recall curve).

    Returns:
        Keys `tp_50`, `fp_50`, `fn_50`, `precision_50`, `recall_50`, `f1_50`, `ap50`,
        `mean_matched_iou` (at IoU > 0.5), `ap75` when 0.75 is among the thresholds, and `ap`
        (AP averaged over `thresholds`).
    """
    counts = match_counts(truth, prediction, thresholds)
    return summarise_counts(counts)


def summarise_counts(counts: dict[float, dict]) -> dict[str, float]:
    """Turn `match_counts` output (possibly summed over slices) into named scores."""
    out: dict[str, float] = {}
    aps = []
    for thr, c in counts.items():
        s = scores_from_counts(c["tp"], c["fp"], c["fn"], c["iou_sum"])
        aps.append(s["ap"])
        tag = f"{round(thr * 100):d}"
        if tag in ("50", "75"):
            out[f"ap{tag}"] = s["ap"]
        if tag == "50":
            out.update({"tp_50": c["tp"], "fp_50": c["fp"], "fn_50": c["fn"],
                        "precision_50": s["precision"], "recall_50": s["recall"],
                        "f1_50": s["f1"], "mean_matched_iou": s["mean_iou"]})
    out["ap"] = float(np.mean(aps)) if aps else np.nan
    return out


def seg_jaccards(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Per reference object Jaccard index of the Cell Tracking Challenge SEG measure.

    A reference object R is matched to the predicted object S with |R & S| > 0.5 |R| (at most
    one can qualify); its score is |R & S| / |R | S|, or 0 without a match.

    Returns:
        (I,) float scores, one per reference object (sorted by label).
    """
    ov = overlaps(truth, prediction)
    scores = np.zeros(ov.truth_ids.size)
    hit = ov.intersection * 2 > ov.truth_sizes[ov.rows]
    scores[ov.rows[hit]] = ov.iou[hit]
    return scores


def seg_score(truth: np.ndarray, prediction: np.ndarray) -> float:
    """CTC SEG: mean of `seg_jaccards` over reference objects; NaN without reference objects."""
    scores = seg_jaccards(truth, prediction)
    if scores.size == 0:
        logger.warning("seg_score: no reference objects; SEG is NaN")
        return float("nan")
    return float(scores.mean())


def class_counts(truth: np.ndarray, prediction: np.ndarray,
                 classes: tuple[int, ...]) -> dict[int, tuple[int, int, int]]:
    """Per class c: (|T=c & P=c|, |T=c|, |P=c|) pixel counts."""
    truth = _check_labels(truth, "truth")
    prediction = _check_labels(prediction, "prediction")
    if truth.shape != prediction.shape:
        raise ValueError(f"truth shape {truth.shape} != prediction shape {prediction.shape}")
    out = {}
    for c in classes:
        t, p = truth == c, prediction == c
        out[c] = (int(np.count_nonzero(t & p)), int(t.sum()), int(p.sum()))
    return out


def semantic_from_counts(counts: dict[int, tuple[int, int, int]]) -> dict[str, float]:
    """Per-class IoU / Dice from `class_counts`; a class absent from both scores 1.

    Returns:
        `iou_class_<c>`, `dice_class_<c>` per class, `mean_iou` and `mean_dice` over all given
        classes, and `iou` / `dice`: the mean over the classes other than 0 (for a binary
        problem, the foreground IoU and Dice).
    """
    out: dict[str, float] = {}
    fg_iou, fg_dice, all_iou, all_dice = [], [], [], []
    for c, (inter, nt, npred) in counts.items():
        union = nt + npred - inter
        iou = inter / union if union else 1.0
        dice = 2 * inter / (nt + npred) if nt + npred else 1.0
        out[f"iou_class_{c}"], out[f"dice_class_{c}"] = iou, dice
        all_iou.append(iou)
        all_dice.append(dice)
        if c != 0:
            fg_iou.append(iou)
            fg_dice.append(dice)
    out["mean_iou"] = float(np.mean(all_iou)) if all_iou else np.nan
    out["mean_dice"] = float(np.mean(all_dice)) if all_dice else np.nan
    out["iou"] = float(np.mean(fg_iou)) if fg_iou else np.nan
    out["dice"] = float(np.mean(fg_dice)) if fg_dice else np.nan
    return out


def semantic_scores(truth: np.ndarray, prediction: np.ndarray,
                    classes: tuple[int, ...] | None = None) -> dict[str, float]:
    """Per-class IoU and Dice of two class maps (class 0 = background).

    Args:
        truth: integer class map.
        prediction: integer class map of the same shape.
        classes: classes to score; default: every value present in either map.
    """
    if classes is None:
        classes = tuple(int(c) for c in np.union1d(np.unique(truth), np.unique(prediction)))
    return semantic_from_counts(class_counts(truth, prediction, classes))
