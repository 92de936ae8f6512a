"""The ISBI 2012 challenge metrics: pixel error, Rand error, warping error, V_rand, V_info.

Numpy/scipy/scikit-image only (no torch). `unetkit.metrics.arrays.evaluate_arrays` is the entry
point that combines these with the instance and semantic scores of `unetkit.metrics.matching`.

Defined as the challenge's reference computes them (Fiji's Trainable Weka Segmentation,
package `trainableSegmentation.metrics`, called as the 2015/2016 evaluation scripts call it;
Arganda-Carreras et al., Front. Neuroanat. 9:142, 2015); our own code. Where the reference
makes a choice the papers do not state, we follow it and say so:

* Ground truth: label image, > 0 = cell interior ("foreground"; 255 or 1 in the challenge
  files), 0 = membrane. A binary truth is split into segments by 4-connected components; a
  truth with more labels is taken as the segments themselves (our extension).
* Prediction: probability of *cell interior* in [0, 1] (`boundary_prob=True` for membrane
  probability: 1 - p), read as float32 as the reference reads its 32-bit images. At threshold
  t the foreground is p > t (strictly).
* Thresholds (reference): `for (t = 0.0; t <= stop; t += 0.1)` in double precision, i.e. by
  repeated addition: 0.0, 0.1, 0.2, 0.30000000000000004, ..., 0.9999999999999999. The
  warping error sweeps to 0.9 (10 thresholds, `WARPING_THRESHOLDS`), the others to 1.0
  (11, `DEFAULT_THRESHOLDS`); the last of those is just below 1, so p = 1 stays foreground.
  One threshold serves a whole stack; the best value is the first best over the sweep.
* Stacks (Z, H, W): pixel error and Rand error pool their counts over the slices into one
  F-score; the warping error is all split and merger pixels over all pixels; V_rand and V_info
  average the per-slice scores.

The metrics (details in `isbi_metrics`, `rand_info` and `topology`):

* `pixel_error` = 1 - max_t F1 of foreground pixels (prediction > t vs truth > 0).
* `rand_error` = 1 - max_t foreground-restricted Rand F-score between the truth's segments
  and the 4-connected components of the thresholded map (predicted boundary = singletons).
* `warping_error` = min_t (split + merger pixels left after warping the truth towards the
  thresholded map) / pixels (Jain et al. 2010; `topology.splits_and_mergers`).
* `v_rand`, `v_info` = max_t of the Rand / information F-scores after thinning the
  thresholded map's boundaries to one pixel (`rand_info.thin_boundaries`).
"""

from __future__ import annotations

import logging

import numpy as np

from . import rand_info
from . import topology

logger = logging.getLogger(__name__)

ISBI_METRICS: tuple[str, ...] = ("pixel_error", "rand_error", "warping_error", "v_rand",
                                 "v_info")
KINDS: tuple[str, ...] = ("probability", "binary", "instances", "classes")


def threshold_range(start: float = 0.0, stop: float = 1.0, step: float = 0.1
                    ) -> tuple[float, ...]:
    """Thresholds start, start + step, ... while <= stop, by repeated addition in float64.

    The reference's loop, so the values carry its rounding: threshold_range()[3] is
    0.30000000000000004 and the last of 0..1 is 0.9999999999999999 (p = 1 stays foreground).
    """
    if not 0.0 <= start <= stop <= 1.0:
        raise ValueError(f"need 0 <= start <= stop <= 1, got start={start}, stop={stop}")
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    out, t = [], float(start)
    while t <= stop:
        out.append(t)
        t += step
    return tuple(out)


#: The reference's sweep of pixel error, Rand error, V_rand and V_info: 0.0..1.0 (11 values).
DEFAULT_THRESHOLDS: tuple[float, ...] = threshold_range(0.0, 1.0, 0.1)
#: The reference's sweep of the warping error: 0.0..0.9 (10 values).
WARPING_THRESHOLDS: tuple[float, ...] = threshold_range(0.0, 0.9, 0.1)


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


def _score_one(truth_fg, truth_seg, binary, segments, priority, wanted) -> dict[str, float]:
    """Raw per-slice counts and scores of one binarised prediction.

    Args:
        truth_fg: (H, W) bool truth foreground; truth_seg: (H, W) truth segments.
        binary: (H, W) bool predicted foreground; segments: (H, W) predicted segments.
        priority: (H, W) float32 warping visit priority |p - t|, or None.
        wanted: metric names to compute.
    """
    out: dict[str, float] = {}
    if "pixel_error" in wanted:
        out["tp"] = float(np.count_nonzero(binary & truth_fg))
        out["fp"] = float(np.count_nonzero(binary & ~truth_fg))
        out["fn"] = float(np.count_nonzero(~binary & truth_fg))
    if "rand_error" in wanted:
        out["rand_tp"], out["rand_fp"], out["rand_fn"] = rand_info.rand_counts(truth_seg,
                                                                              segments)
    if "v_rand" in wanted or "v_info" in wanted:
        thin = rand_info.thin_boundaries(binary, markers=segments)
        table = rand_info.contingency(truth_seg, thin)  # shared by both scores
        if "v_rand" in wanted:
            r = rand_info.rand_scores(truth_seg, thin, table=table)
            out.update(v_rand=r["v_rand"], v_rand_split=r["split"], v_rand_merge=r["merge"])
        if "v_info" in wanted:
            i = rand_info.info_scores(truth_seg, thin, table=table)
            out.update(v_info=i["v_info"], v_info_split=i["split"], v_info_merge=i["merge"])
    if "warping_error" in wanted:
        w = topology.splits_and_mergers(truth_fg, binary, priority=priority)
        out.update(warping_splits=float(w["splits"]), warping_mergers=float(w["mergers"]),
                   pixels=float(binary.size))
    return out


def _sweeps(thresholds, wanted, kind) -> tuple[tuple[float, ...], dict[str, np.ndarray]]:
    """All thresholds to evaluate, and per metric a (T,) mask of the ones in its sweep."""
    if kind != "probability":  # masks and label images are evaluated once, at no threshold
        return (np.nan,), {m: np.ones(1, bool) for m in wanted}
    if thresholds is not None:
        values = _check_thresholds(thresholds)
        return values, {m: np.ones(len(values), bool) for m in wanted}
    values = tuple(sorted(set(DEFAULT_THRESHOLDS) | set(WARPING_THRESHOLDS)))
    own = {m: WARPING_THRESHOLDS if m == "warping_error" else DEFAULT_THRESHOLDS
           for m in wanted}
    return values, {m: np.isin(values, own[m]) for m in wanted}


def isbi_curves(prediction: np.ndarray, truth: np.ndarray, *,
                thresholds=None, metrics=ISBI_METRICS,
                boundary_prob: bool = False, kind: str | None = None) -> dict[str, np.ndarray]:
    """Per-threshold ISBI scores of a slice or a stack.

    Args:
        prediction: (H, W) or (Z, H, W) probability map (or binary mask / instance labels,
            see `detect_kind`; those are scored at one "threshold").
        truth: same shape label image, > 0 = cell interior, 0 = boundary.
        thresholds: thresholds t (foreground = prediction > t) for every metric; None: the
            reference's sweeps (`DEFAULT_THRESHOLDS`, `WARPING_THRESHOLDS` for the warping
            error; its curve is NaN at thresholds outside its sweep).
        metrics: subset of `ISBI_METRICS`.
        boundary_prob: the probability map gives membrane probability (use 1 - p).
        kind: override of `detect_kind(prediction)`.

    Returns:
        Arrays of shape (T,) under "thresholds", "pixel_f", "rand_f", "warping_error",
        "warping_splits", "warping_mergers" (pixel counts over the stack), "v_rand",
        "v_rand_split", "v_rand_merge", "v_info", "v_info_split", "v_info_merge" (means over
        slices), the keys present depending on `metrics`; T = 1 for non-probability kinds.
    """
    wanted = _check_isbi_names(metrics)
    kind = kind or detect_kind(prediction)
    pred, truth = _prepare_pair(prediction, truth, kind, boundary_prob)
    values, in_sweep = _sweeps(thresholds, wanted, kind)
    rows = []
    for z in range(truth.shape[0]):
        t_fg = truth[z] > 0
        t_seg = _truth_segments(truth[z])
        row = []
        for k, t in enumerate(values):
            here = tuple(m for m in wanted if in_sweep[m][k])
            row.append(_score_one(t_fg, t_seg, *_binarise(pred[z], kind, t), here))
        rows.append(row)
    return _aggregate(rows, values, wanted, in_sweep)


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
        # float32 values held in float64: the reference reads 32-bit images and compares
        # them with its double thresholds (a float32 comparison would round t instead)
        pred = pred.astype(np.float32).astype(np.float64)
    else:
        pred = check_labels(prediction, "prediction")
        if kind == "binary":
            pred = pred > 0
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {truth.shape}")
    return _as_stack(pred, "prediction"), _as_stack(truth, "truth")


def _binarise(pred: np.ndarray, kind: str, threshold: float):
    """One slice -> (foreground bool, segment labels, warping priority) at `threshold`."""
    if kind == "probability":
        binary = pred > threshold
        # the reference's sort key: |p - t| in double, stored as float32
        priority = np.abs(pred.astype(np.float64) - threshold).astype(np.float32)
        return binary, rand_info.label_components(binary), priority
    if kind == "binary":
        return pred, rand_info.label_components(pred), None
    return pred > 0, pred, None


def _aggregate(rows: list[list[dict]], thresholds, wanted, in_sweep) -> dict[str, np.ndarray]:
    """rows[z][k] raw scores -> (T,) curves: pooled counts, pooled pixels, slice means."""
    n_t = len(thresholds)
    out = {"thresholds": np.asarray(thresholds, dtype=float)}

    def total(key):
        return np.array([sum(row[k][key] for row in rows) if key in rows[0][k] else np.nan
                         for k in range(n_t)])

    def mean(key):
        return np.array([np.mean([row[k][key] for row in rows]) if key in rows[0][k]
                         else np.nan for k in range(n_t)])

    f = np.vectorize(rand_info.f_score, otypes=[float])
    if "pixel_error" in wanted:
        out["pixel_f"] = f(total("tp"), total("fp"), total("fn"))
    if "rand_error" in wanted:
        out["rand_f"] = f(total("rand_tp"), total("rand_fp"), total("rand_fn"))
    if "warping_error" in wanted:
        splits, mergers = total("warping_splits"), total("warping_mergers")
        out.update(warping_error=(splits + mergers) / total("pixels"),
                   warping_splits=splits, warping_mergers=mergers)
    for name in ("v_rand", "v_info"):
        if name in wanted:
            for key in (name, f"{name}_split", f"{name}_merge"):
                out[key] = mean(key)
    for name in wanted:  # outside a metric's sweep its curve is undefined
        for key in _CURVE_KEYS[name]:
            out[key] = np.where(in_sweep[name], out[key], np.nan)
    return out


_CURVE_KEYS = {"pixel_error": ("pixel_f",), "rand_error": ("rand_f",),
               "warping_error": ("warping_error", "warping_splits", "warping_mergers"),
               "v_rand": ("v_rand", "v_rand_split", "v_rand_merge"),
               "v_info": ("v_info", "v_info_split", "v_info_merge")}


_DETAILS = {"pixel_error": (), "rand_error": (),
            "warping_error": ("warping_splits", "warping_mergers"),
            "v_rand": ("v_rand_split", "v_rand_merge"),
            "v_info": ("v_info_split", "v_info_merge")}


def isbi_metrics(prediction: np.ndarray, truth: np.ndarray, *,
                 thresholds=None, metrics=ISBI_METRICS,
                 boundary_prob: bool = False, kind: str | None = None) -> dict[str, float]:
    """The ISBI 2012 metrics, each at its best threshold (the first best of the sweep).

    Definitions (truth segments T, thresholded prediction S_t = prediction > t; counts of a
    stack pooled over its slices as stated):

    * pixel_error = 1 - max_t F1(S_t, T > 0): F1 of cell-interior pixels, boundary pixels
      included as negatives (the challenge's "maximal F-score of pixel similarity"); the
      pixel counts are pooled over a stack.
    * rand_error = 1 - max_t F(T, components(S_t)): the foreground-restricted Rand F-score of
      the pair counts `rand_info.rand_counts` (truth boundary excluded; predicted boundary
      pixels are singletons; 4-connected components), pooled over a stack into one F-score.
    * warping_error = min_t (split + merger pixels) / pixels: the truth is warped towards S_t
      (`topology.warp_towards`, simple points of the 4/8 pair, visited in the reference's
      order: largest |p - t| first) and each pixel still wrong is classified by the
      reference's local test (`topology.classify_mismatches`, radius 20); only splits and
      mergers count, as in the challenge's scripts. Over a stack: all such pixels over all
      pixels. `warping_splits` / `warping_mergers` give the two pixel counts.
    * v_rand, v_info = max_t of the per-slice mean of the Rand / information F-scores
      between T and `rand_info.thin_boundaries(S_t)` (Soille-Vincent flooding, lines one
      pixel wide); `_split` / `_merge` keys give the (mean) terms at the chosen threshold.

    Args and conventions as in `isbi_curves`; `thresholds=None` uses the reference's sweeps.

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
