"""Segmentation metrics in one call: ISBI 2012, instance AP / F1, CTC SEG, IoU and Dice.

Numpy/scipy/scikit-image only (no torch). `evaluate_arrays` scores one prediction against one
ground truth, picking the metrics that apply to the kind of prediction. The definitions live
with their implementations:

* `unetkit.metrics.isbi`: pixel error, Rand error, warping error, V_rand, V_info (threshold sweeps);
* `unetkit.metrics.rand_info`: the foreground-restricted Rand and information scores, thinning;
* `unetkit.metrics.topology`: simple points and topology-preserving warping;
* `unetkit.metrics.matching`: IoU matching (TP/FP/FN, precision, recall, F1, AP), SEG, IoU, Dice.
"""

from __future__ import annotations

import logging

import numpy as np

from . import matching
from . import rand_info
from .isbi import (
    DEFAULT_THRESHOLDS,
    ISBI_METRICS,
    KINDS,
    WARPING_THRESHOLDS,
    check_labels,
    check_probability,
    detect_kind,
    isbi_curves,
    isbi_metrics,
    pixel_error,
    rand_error,
    threshold_range,
    v_info,
    v_rand,
    warping_error,
)
from .matching import IOU_THRESHOLDS, instance_scores, seg_score, semantic_scores

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_THRESHOLDS", "IOU_THRESHOLDS", "ISBI_METRICS", "KINDS", "MASK_THRESHOLD",
    "WARPING_THRESHOLDS",
    "available_metrics", "detect_kind", "evaluate_arrays", "instance_scores", "isbi_curves",
    "isbi_metrics", "pixel_error", "rand_error", "seg_score", "semantic_scores",
    "threshold_range", "v_info", "v_rand", "warping_error",
]

#: Threshold that turns a probability map into a mask for IoU, Dice, AP and SEG.
MASK_THRESHOLD = 0.5

_ISBI_KEYS = {
    "pixel_error": ("pixel_error", "pixel_error_threshold"),
    "rand_error": ("rand_error", "rand_error_threshold"),
    "warping_error": ("warping_error", "warping_error_threshold", "warping_splits",
                      "warping_mergers"),
    "v_rand": ("v_rand", "v_rand_threshold", "v_rand_split", "v_rand_merge"),
    "v_info": ("v_info", "v_info_threshold", "v_info_split", "v_info_merge"),
}
_INSTANCE_KEYS = ("ap50", "ap75", "ap", "f1_50", "precision_50", "recall_50", "tp_50",
                  "fp_50", "fn_50", "mean_matched_iou")
_SEMANTIC_KEYS = ("iou", "dice", "mean_iou", "mean_dice")


def available_metrics(kind: str) -> tuple[str, ...]:
    """Metric names `evaluate_arrays` can return for a prediction of `kind`.

    Per-class keys `iou_class_<c>` / `dice_class_<c>` are available for every kind too.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "classes":
        return _SEMANTIC_KEYS
    isbi = tuple(k for m in ISBI_METRICS for k in _ISBI_KEYS[m])
    return isbi + _INSTANCE_KEYS + ("seg",) + _SEMANTIC_KEYS


def _resolve_names(metrics, kind: str) -> tuple[str, ...] | None:
    """Requested names, checked against `available_metrics(kind)`; None = everything."""
    if metrics is None:
        return None
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    allowed = available_metrics(kind)
    every = available_metrics("probability")
    for name in names:
        if name.startswith(("iou_class_", "dice_class_")):
            continue
        if name not in every:
            raise ValueError(f"unknown metric {name!r}; choose from {every}")
        if name not in allowed:
            raise ValueError(f"metric {name!r} does not apply to a prediction of kind "
                             f"{kind!r}; applicable: {allowed}")
    return names


def evaluate_arrays(pred: np.ndarray, truth: np.ndarray, metrics=None,
                    thresholds=None, *, kind: str | None = None,
                    boundary_prob: bool = False, classes: tuple[int, ...] | None = None,
                    iou_thresholds: tuple[float, ...] = IOU_THRESHOLDS) -> dict[str, float]:
    """Score a prediction against a ground truth with every metric that applies.

    Args:
        pred: (H, W) or (Z, H, W) prediction; a stack is a set of independent 2D slices.
            Its kind is detected by `isbi.detect_kind` unless `kind` is given:
            float -> "probability" of cell interior in [0, 1]; bool or integers within
            {0, 1} or {0, 255} -> "binary" mask; other integers -> "instances" (0 =
            background). Class maps must be declared with `kind="classes"`.
        truth: same shape label image: > 0 = cell interior / objects, 0 = boundary and
            background; a binary truth is split into objects by 4-connected components.
            For `kind="classes"`, a class map.
        metrics: names to return (see `available_metrics`), e.g. "pixel_error",
            "rand_error", "warping_error", "v_rand", "v_info", "iou", "dice", "ap50",
            "f1_50", "seg"; None returns every applicable metric with its detail keys.
        thresholds: threshold sweep of the ISBI metrics (probability maps only); None: the
            reference's sweeps (0.0..1.0, the warping error 0.0..0.9; see `isbi`).
        kind: override of the detected prediction kind, one of `KINDS`.
        boundary_prob: `pred` is a probability of membrane/boundary (scored as 1 - pred).
        classes: classes for the semantic scores of class maps; default: values present.
        iou_thresholds: IoU thresholds of the instance scores (AP averaged over them).

    Probability maps are turned into masks at `MASK_THRESHOLD` (p > 0.5) for IoU, Dice, AP,
    F1 and SEG, and into objects by 4-connected components; stacks pool the counts of
    their slices (TP/FP/FN, pixel counts, SEG over all reference objects).

    Returns:
        {name: float}. Empty or undefined cases give NaN with a logged warning.

    Raises:
        ValueError: shape mismatch, NaNs, values outside [0, 1] for probabilities, negative
            or non-integer labels, unknown or inapplicable metric names.
    """
    kind = kind or detect_kind(pred)
    names = _resolve_names(metrics, kind)
    wanted = set(available_metrics(kind) if names is None else names)
    out: dict[str, float] = {}
    isbi_wanted = tuple(m for m in ISBI_METRICS if wanted & set(_ISBI_KEYS[m]))
    if isbi_wanted and kind != "classes":
        out.update(isbi_metrics(pred, truth, thresholds=thresholds, metrics=isbi_wanted,
                                boundary_prob=boundary_prob, kind=kind))
    masks = _object_masks(pred, truth, kind, boundary_prob)
    if wanted & set(_INSTANCE_KEYS):
        out.update(_instance_part(masks, iou_thresholds))
    if "seg" in wanted:
        out["seg"] = _seg_part(masks)
    if wanted & set(_SEMANTIC_KEYS) or any(n.startswith(("iou_class_", "dice_class_"))
                                           for n in wanted):
        out.update(_semantic_part(pred, truth, kind, boundary_prob, classes))
    if names is None:
        return out
    return {name: out.get(name, np.nan) for name in names}


def _object_masks(pred, truth, kind, boundary_prob) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per slice (truth objects, predicted objects) label images, both (H, W)."""
    if kind == "classes":
        return []
    truth = check_labels(truth, "truth")
    if kind == "probability":
        p = check_probability(pred, "prediction")
        p = 1.0 - p if boundary_prob else p
        p = p > MASK_THRESHOLD
    else:
        p = check_labels(pred, "prediction")
    if p.shape != truth.shape:
        raise ValueError(f"prediction shape {p.shape} != truth shape {truth.shape}")
    t_stack = truth[None] if truth.ndim == 2 else truth
    p_stack = p[None] if p.ndim == 2 else p
    pairs = []
    for t, q in zip(t_stack, p_stack, strict=True):
        t_obj = _objects(t)
        q_obj = rand_info.label_components(q > 0) if kind != "instances" else q
        pairs.append((t_obj, q_obj))
    return pairs


def _objects(labels: np.ndarray) -> np.ndarray:
    """Binary labels -> 4-connected components; instance labels pass through."""
    values = np.unique(labels)
    if np.isin(values, (0, 1)).all() or np.isin(values, (0, 255)).all():
        return rand_info.label_components(labels > 0)
    return labels


def _instance_part(masks, iou_thresholds) -> dict[str, float]:
    total: dict[float, dict] = {}
    for t_obj, q_obj in masks:
        for thr, c in matching.match_counts(t_obj, q_obj, tuple(iou_thresholds)).items():
            acc = total.setdefault(thr, {"tp": 0, "fp": 0, "fn": 0, "iou_sum": 0.0})
            for key in acc:
                acc[key] += c[key]
    return matching.summarise_counts(total)


def _seg_part(masks) -> float:
    scores = np.concatenate([matching.seg_jaccards(t, q) for t, q in masks])
    if scores.size == 0:
        logger.warning("evaluate_arrays: no reference objects; SEG is NaN")
        return float("nan")
    return float(scores.mean())


def _semantic_part(pred, truth, kind, boundary_prob, classes) -> dict[str, float]:
    truth = check_labels(truth, "truth")
    if kind == "probability":
        p = check_probability(pred, "prediction")
        p = ((1.0 - p if boundary_prob else p) > MASK_THRESHOLD).astype(np.uint8)
    else:
        p = check_labels(pred, "prediction")
    if kind != "classes":  # foreground vs background
        p, truth = (p > 0).astype(np.uint8), (truth > 0).astype(np.uint8)
        classes = (0, 1)
    return semantic_scores(truth, p, classes)
