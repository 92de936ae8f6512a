"""Score prediction files against ground-truth files (the logic behind ``unetkit evaluate``).

Files pair by name: ``pred/a.tif`` with ``truth/a.png`` (same stem), slice ``i`` of a stack with
slice ``i`` of a stack (names ``<stem>_<i>``), or one file with one file whatever their names.
Every prediction needs its ground truth (else an error names it); ground truths without a
prediction are skipped with a warning, so a subset of a labelled folder can be scored.
A prediction may be a probability map (float; a multi-channel map such as ``unetkit predict
--output probabilities`` writes is reduced to its foreground channel, ``channel`` (default 1)),
a class map, a binary mask or an instance image; see :func:`unetkit.metrics.arrays.evaluate_arrays`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io.images import image_files, iter_images
from .arrays import detect_kind, evaluate_arrays

__all__ = ["MAIN_METRICS", "main_metrics", "pair_images", "evaluate_files"]

log = logging.getLogger(__name__)

#: The headline metrics, in table order; those that apply to the prediction kind are reported.
MAIN_METRICS = ("pixel_error", "rand_error", "warping_error", "v_rand", "v_info", "iou", "dice",
                "ap50", "f1_50", "seg")


def main_metrics(kind: str) -> tuple[str, ...]:
    """The headline metrics that apply to a prediction of ``kind``."""
    if kind == "classes":
        return ("iou", "dice")
    return MAIN_METRICS


def _plane(name: str, array: np.ndarray, channel: int, what: str) -> np.ndarray:
    """(C, H, W) -> (H, W): single channel as is, a probability map reduced to ``channel``."""
    if array.shape[0] == 1:
        return array[0]
    if np.issubdtype(array.dtype, np.floating) and what == "prediction":
        if not 0 <= channel < array.shape[0]:
            raise ValueError(f"{name}: prediction has {array.shape[0]} channels, no channel {channel}")
        return array[channel]
    raise ValueError(f"{name}: {what} has {array.shape[0]} channels; expected a single-channel image")


def pair_images(pred: str | os.PathLike, truth: str | os.PathLike,
                channel: int = 1) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(name, prediction (H, W), truth (H, W))]`` paired by name; errors name the files."""
    preds = dict(iter_images(pred))
    truths = dict(iter_images(truth))
    if len(image_files(pred)) == 1 and len(image_files(truth)) == 1:
        # one file (or stack) against one file: pair slice by slice, whatever the names
        if len(preds) != len(truths):
            raise ValueError(f"{pred} holds {len(preds)} slice(s), {truth} holds {len(truths)}")
        truths = dict(zip(preds, truths.values()))
    missing_truth = sorted(set(preds) - set(truths))
    if missing_truth:
        more = f" and {len(missing_truth) - 5} more" if len(missing_truth) > 5 else ""
        raise ValueError(f"no ground truth in {truth} for prediction(s) "
                         f"{', '.join(missing_truth[:5])}{more} of {pred}")
    unused = sorted(set(truths) - set(preds))
    if unused:  # scoring a subset of a labelled folder is common: say so, do not fail
        log.warning("%d ground-truth image(s) in %s have no prediction and are not scored: %s",
                    len(unused), truth, ", ".join(unused[:5]))
    pairs = []
    for name in sorted(preds):
        p = _plane(f"{pred}:{name}", preds[name], channel, "prediction")
        t = _plane(f"{truth}:{name}", truths[name], 0, "ground truth")
        if p.shape != t.shape:
            raise ValueError(
                f"{name}: prediction {pred} is {p.shape[0]}x{p.shape[1]}, "
                f"ground truth {truth} is {t.shape[0]}x{t.shape[1]}"
            )
        pairs.append((name, p, t))
    return pairs


def evaluate_files(pred: str | os.PathLike, truth: str | os.PathLike,
                   metrics: Sequence[str] | None = None,
                   thresholds: Sequence[float] | None = None, *, kind: str | None = None,
                   channel: int = 1, progress=None) -> dict:
    """``{"per_image": {name: {metric: value}}, "mean": {metric: value}}`` (NaNs skipped in means).

    ``metrics`` defaults to the headline metrics that apply (:func:`main_metrics`).
    """
    pairs = pair_images(pred, truth, channel)
    per_image: dict[str, dict[str, float]] = {}
    for i, (name, p, t) in enumerate(pairs):
        k = kind or detect_kind(p)
        names = tuple(metrics) if metrics else main_metrics(k)
        try:
            scores = evaluate_arrays(p, t, names, thresholds, kind=k)
        except ValueError as exc:
            raise ValueError(f"{name} ({Path(pred)} vs {Path(truth)}): {exc}") from None
        per_image[name] = {m: float(v) for m, v in scores.items()}
        if progress is not None:
            progress(i + 1, len(pairs))
    keys = list(dict.fromkeys(k for scores in per_image.values() for k in scores))
    mean = {}
    for key in keys:
        values = [s[key] for s in per_image.values() if key in s and not math.isnan(s[key])]
        mean[key] = float(np.mean(values)) if values else float("nan")
    return {"per_image": per_image, "mean": mean}
