"""The ISBI 2012 challenge metrics: pixel error, Rand error, warping error, V_rand, V_info.

Numpy/scipy/scikit-image only (no torch). `unetkit.metrics.arrays.evaluate_arrays` is the entry
point that combines these with the instance and semantic scores of `unetkit.metrics.matching`.

ISBI 2012 conventions (PAPER.md section 5; Arganda-Carreras et al., Front. Neuroanat. 9:142,
2015; the challenge's Fiji script is the reference we follow, with our own code):

* Ground truth: label image, > 0 = cell interior ("foreground"; 255 or 1 in the challenge
  files), 0 = membrane/boundary. A binary truth is split into segments by 4-connected
  components; a truth with more labels is taken as the segments themselves.
* Prediction: probability of *cell interior* in [0, 1] (pass `boundary_prob=True` for a map
  of membrane probability; it is turned into 1 - p). At threshold t the foreground is p > t
  (strictly, as in the Fiji script). Default thresholds 0.0, 0.1, ..., 1.0; each metric takes
  its best value over thresholds. For a stack (Z, H, W) the per-slice scores are averaged at
  each threshold before the best threshold is picked (one threshold for the whole stack);
  the pixel F-score pools its counts over slices.

The metrics (details in the docstrings of `isbi_metrics` and of `rand_info` / `topology`):

* `pixel_error` = 1 - max_t F1 of foreground pixels (prediction > t vs truth > 0).
* `rand_error` = 1 - max_t V_rand between the truth's segments and the 4-connected components
  of the thresholded map, truth boundary pixels excluded, predicted boundary pixels singletons.
* `warping_error` = min_t (pixels still disagreeing after warping the truth towards the
  thresholded map by simple-point flips) / pixels (Jain et al. 2010).
* `v_rand`, `v_info` = max_t of the Rand / information F-scores after thinning the
  thresholded map's boundaries to one pixel (watershed growth of its components).
"""

from __future__ import annotations

import logging

import numpy as np

from . import rand_info
from . import topology

logger = logging.getLogger(__name__)

#: The challenge's threshold sweep: 0.0 to 1.0 in steps of 0.1 (11 thresholds).
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(11))
ISBI_METRICS: tuple[str, ...] = ("pixel_error", "rand_error", "warping_error", "v_rand",
                                 "v_info")
KINDS: tuple[str, ...] = ("probability", "binary", "instances", "classes")


def threshold_range(start: float = 0.0, stop: float = 1.0, step: float = 0.1
                    ) -> tuple[float, ...]:
    """Thresholds start, start + step, ..., stop (inclusive, rounded to 10 decimals)."""
    if not 0.0 <= start <= stop <= 1.0:
        raise ValueError(f"need 0 <= start <= stop <= 1, got start={start}, stop={stop}")
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    count = int(np.floor((stop - start) / step + 1e-9)) + 1
    return tuple(round(start + k * step, 10) for k in range(count))


# ----------------------------------------------------------------------------- validation

def _check_thresholds(thresholds) -> tuple[float, ...]:
    values = tuple(float(t) for t in np.atleast_1d(np.asarray(thresholds, dtype=float)))
    if not values:
        raise ValueError("thresholds must not be empty")
    bad = [t for t in values if not 0.0 <= t <= 1.0]
    if bad:
        raise ValueError(f"thresholds must lie in [0, 1], got {bad}")
    return values


def _as_stack(array: np.ndarray, name: str) -> np.ndarray:
    """(H, W) or (Z, H, W) -> (Z, H, W) view."""
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return array
    raise ValueError(f"{name} must be (H, W) or (Z, H, W), got shape {array.shape}")


def check_probability(prob: np.ndarray, name: str = "prediction") -> np.ndarray:
    """Validate a probability map: finite floats in [0, 1]. Returns it as float64."""
    array = np.asarray(prob)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains {int(np.isnan(array).sum())} NaN values")
    lo, hi = float(array.min()), float(array.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} must lie in [0, 1] for a probability map, got range "
                         f"[{lo}, {hi}]")
    return array


def check_labels(labels: np.ndarray, name: str = "truth") -> np.ndarray:
    """Validate a label image: bool, integers >= 0, or floats holding such integers."""
    array = np.asarray(labels)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if np.isnan(array).any():
            raise ValueError(f"{name} contains {int(np.isnan(array).sum())} NaN values")
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"{name} must hold integer labels, got non-integer values "
                             f"such as {array[array != np.round(array)].ravel()[:3]}")
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be an integer label image, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} has negative label {array.min()}")
    return array


def _is_binary_values(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0, 1)).all() or np.isin(values, (0, 255)).all())


def detect_kind(prediction: np.ndarray) -> str:
    """Guess what a prediction array holds.

    * float dtype -> "probability" (values must lie in [0, 1]);
    * bool, or integers whose values are within {0, 1} or within {0, 255} -> "binary";
    * other integers -> "instances" (0 = background, each other value one object).

    Class maps cannot be told apart from instance images by their values: pass
    `kind="classes"` to `evaluate_arrays` for those.
    """
    array = np.asarray(prediction)
    if array.dtype == bool:
        return "binary"
    if np.issubdtype(array.dtype, np.floating):
        return "probability"
    if np.issubdtype(array.dtype, np.integer):
        return "binary" if _is_binary_values(np.unique(array)) else "instances"
    raise ValueError(f"cannot interpret a prediction of dtype {array.dtype}")


# ----------------------------------------------------------------------------- ISBI metrics

def _truth_segments(truth: np.ndarray) -> np.ndarray:
    """(H, W) labels -> segments: 4-connected components if binary, else the labels."""
    if _is_binary_values(np.unique(truth)):
        return rand_info.label_components(truth > 0)
    return truth


def _score_one(truth_fg, truth_seg, binary, segments, wanted) -> dict[str, float]:
    """Raw per-slice scores of one binarised prediction.

    Args:
        truth_fg: (H, W) bool truth foreground; truth_seg: (H, W) truth segments.
        binary: (H, W) bool predicted foreground; segments: (H, W) predicted segments.
        wanted: metric names to compute.
    """
    out: dict[str, float] = {}
    if "pixel_error" in wanted:
        out["tp"] = float(np.count_nonzero(binary & truth_fg))
        out["fp"] = float(np.count_nonzero(binary & ~truth_fg))
        out["fn"] = float(np.count_nonzero(~binary & truth_fg))
    if "rand_error" in wanted:
        out["rand_f"] = rand_info.rand_scores(truth_seg, segments)["v_rand"]
    if "v_rand" in wanted or "v_info" in wanted:
        thin = rand_info.thin_boundaries(binary, markers=segments)
        if "v_rand" in wanted:
            r = rand_info.rand_scores(truth_seg, thin)
            out.update(v_rand=r["v_rand"], v_rand_split=r["split"], v_rand_merge=r["merge"])
        if "v_info" in wanted:
            i = rand_info.info_scores(truth_seg, thin)
            out.update(v_info=i["v_info"], v_info_split=i["split"], v_info_merge=i["merge"])
    if "warping_error" in wanted:
        w = topology.splits_and_mergers(truth_fg, binary)
        out.update(warping_error=w["mismatches"] / binary.size,
                   warping_splits=w["splits"], warping_mergers=w["mergers"])
    return out


def isbi_curves(prediction: np.ndarray, truth: np.ndarray, *,
                thresholds=DEFAULT_THRESHOLDS, metrics=ISBI_METRICS,
                boundary_prob: bool = False, kind: str | None = None) -> dict[str, np.ndarray]:
    """Per-threshold ISBI scores, averaged over slices.

    Args:
        prediction: (H, W) or (Z, H, W) probability map (or binary mask / instance labels,
            see `detect_kind`; those are scored at one "threshold").
        truth: same shape label image, > 0 = cell interior, 0 = boundary.
        thresholds: thresholds t; the predicted foreground is prediction > t.
        metrics: subset of `ISBI_METRICS`.
        boundary_prob: the probability map gives membrane probability (use 1 - p).
        kind: override of `detect_kind(prediction)`.

    Returns:
        Arrays of shape (T,) under "thresholds", "pixel_f", "rand_f", "warping_error",
        "warping_splits", "warping_mergers", "v_rand", "v_rand_split", "v_rand_merge",
        "v_info", "v_info_split", "v_info_merge", the keys present depending on `metrics`;
        T = 1 for non-probability predictions.
    """
    wanted = _check_isbi_names(metrics)
    kind = kind or detect_kind(prediction)
    pred, truth = _prepare_pair(prediction, truth, kind, boundary_prob)
    # masks and label images are evaluated once, at no threshold
    thresholds = _check_thresholds(thresholds) if kind == "probability" else (np.nan,)
    rows = []
    for z in range(truth.shape[0]):
        t_fg = truth[z] > 0
        t_seg = _truth_segments(truth[z])
        rows.append([_score_one(t_fg, t_seg, *_binarise(pred[z], kind, t), wanted)
                     for t in thresholds])
    return _aggregate(rows, thresholds)


def _check_isbi_names(metrics) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in names if m not in ISBI_METRICS]
    if unknown:
        raise ValueError(f"unknown ISBI metric(s) {unknown}; choose from {ISBI_METRICS}")
    return names


def _prepare_pair(prediction, truth, kind, boundary_prob):
    """Validate, convert and stack a prediction / truth pair -> ((Z, H, W), (Z, H, W))."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    truth = check_labels(truth, "truth")
    if kind == "probability":
        pred = check_probability(prediction, "prediction")
        if boundary_prob:
            pred = 1.0 - pred
    else:
        pred = check_labels(prediction, "prediction")
        if kind == "binary":
            pred = pred > 0
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {truth.shape}")
    return _as_stack(pred, "prediction"), _as_stack(truth, "truth")


def _binarise(pred: np.ndarray, kind: str, threshold: float):
    """One slice -> (foreground bool, segment labels) at `threshold`."""
    if kind == "probability":
        binary = pred > threshold
        return binary, rand_info.label_components(binary)
    if kind == "binary":
        return pred, rand_info.label_components(pred)
    return pred > 0, pred


def _aggregate(rows: list[list[dict]], thresholds) -> dict[str, np.ndarray]:
    """rows[z][k] raw scores -> per-threshold arrays (mean over slices, pooled pixel counts)."""
    out = {"thresholds": np.asarray(thresholds, dtype=float)}
    keys = rows[0][0].keys()
    for key in keys:
        out[key] = np.array([[row[k][key] for k in range(len(thresholds))] for row in rows])
    if "tp" in out:
        tp, fp, fn = (out.pop(k).sum(axis=0) for k in ("tp", "fp", "fn"))
        denom = 2 * tp + fp + fn
        out["pixel_f"] = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)
    for key in list(out):
        if key not in ("thresholds", "pixel_f"):
            out[key] = np.nanmean(out[key], axis=0) if out[key].ndim == 2 else out[key]
    return out


_DETAILS = {"pixel_error": (), "rand_error": (),
            "warping_error": ("warping_splits", "warping_mergers"),
            "v_rand": ("v_rand_split", "v_rand_merge"),
            "v_info": ("v_info_split", "v_info_merge")}


def isbi_metrics(prediction: np.ndarray, truth: np.ndarray, *,
                 thresholds=DEFAULT_THRESHOLDS, metrics=ISBI_METRICS,
                 boundary_prob: bool = False, kind: str | None = None) -> dict[str, float]:
    """The ISBI 2012 metrics, each at its best threshold.

    Definitions (truth segments T, thresholded prediction S_t = prediction > t):

    * pixel_error = 1 - max_t F1(S_t, T > 0): F1 of cell-interior pixels, boundary pixels
      included as negatives (the challenge's "maximal F-score of pixel similarity").
    * rand_error = 1 - max_t V_rand(T, components(S_t)), the foreground-restricted Rand
      F-score of `rand_info.rand_scores` (truth boundary excluded; predicted boundary pixels
      are singletons; 4-connected components).
    * warping_error = min_t |warp(T > 0 -> S_t) xor S_t| / pixels, `topology.warp_towards`:
      simple-point warping with 4-connected foreground, 8-connected background;
      `warping_splits` / `warping_mergers` count the split and merger clusters among the
      remaining mismatches at the chosen threshold (`topology.splits_and_mergers`; mean per
      slice for stacks).
    * v_rand, v_info = max_t of the Rand / information F-scores of `rand_info` between T and
      `rand_info.thin_boundaries(S_t)` (components grown by watershed until the boundaries
      are one pixel wide); `_split` / `_merge` keys give the terms at the chosen threshold.

    Args and conventions as in `isbi_curves`.

    Returns:
        `<metric>` and `<metric>_threshold` (NaN for non-probability predictions) for each
        requested metric, plus `warping_splits`, `warping_mergers`, `v_rand_split`,
        `v_rand_merge`, `v_info_split`, `v_info_merge`.
    """
    curves = isbi_curves(prediction, truth, thresholds=thresholds, metrics=metrics,
                         boundary_prob=boundary_prob, kind=kind)
    ts = curves["thresholds"]
    out: dict[str, float] = {}
    best_of = {"pixel_error": ("pixel_f", np.nanargmax, lambda v: 1.0 - v),
               "rand_error": ("rand_f", np.nanargmax, lambda v: 1.0 - v),
               "warping_error": ("warping_error", np.nanargmin, float),
               "v_rand": ("v_rand", np.nanargmax, float),
               "v_info": ("v_info", np.nanargmax, float)}
    for name in _check_isbi_names(metrics):
        key, pick, transform = best_of[name]
        if np.all(np.isnan(curves[key])):
            out[name], out[f"{name}_threshold"] = np.nan, np.nan
            continue
        k = int(pick(curves[key]))
        out[name] = float(transform(curves[key][k]))
        out[f"{name}_threshold"] = float(ts[k])
        for detail in _DETAILS[name]:
            out[detail] = float(curves[detail][k])
    return out


def pixel_error(prediction, truth, **kwargs) -> float:
    """1 - maximal pixel F-score over thresholds; see `isbi_metrics`."""
    return isbi_metrics(prediction, truth, metrics=("pixel_error",), **kwargs)["pixel_error"]


def rand_error(prediction, truth, **kwargs) -> float:
    """1 - maximal foreground-restricted Rand F-score over thresholds; see `isbi_metrics`."""
    return isbi_metrics(prediction, truth, metrics=("rand_error",), **kwargs)["rand_error"]


def warping_error(prediction, truth, **kwargs) -> float:
    """Minimal warping error over thresholds; see `isbi_metrics`."""
    return isbi_metrics(prediction, truth, metrics=("warping_error",),
                        **kwargs)["warping_error"]


def v_rand(prediction, truth, **kwargs) -> float:
    """Maximal V_rand after boundary thinning over thresholds; see `isbi_metrics`."""
    return isbi_metrics(prediction, truth, metrics=("v_rand",), **kwargs)["v_rand"]


def v_info(prediction, truth, **kwargs) -> float:
    """Maximal V_info after boundary thinning over thresholds; see `isbi_metrics`."""
    return isbi_metrics(prediction, truth, metrics=("v_info",), **kwargs)["v_info"]
