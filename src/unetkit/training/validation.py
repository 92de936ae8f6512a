"""The data of a run (fingerprint, choices, training and validation items, class names) and the
multi-class validation by overlap-tile inference on whole images (two classes:
``training.selection.Validator``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config
from ..data.dataset import (Pair, Prepared, label_kind_of, load_pairs, prepare, split_validation,
                            training_normalization, uses_contact)
from ..data.checks import refuse_untrainable, warn_poor_data
from ..data.fingerprint import Fingerprint, measure
from ..data.normalize import Normalization
from ..inference.postprocess import CONTACT_CLASSES
from ..inference.tiled import predict_tiled
from ..metrics import arrays as metrics
from ..model.unet import UNet
from .choices import derive
from .selection import auto_holdout, ignore_band

__all__ = ["load_data", "RunData", "class_names", "validate"]

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """What :func:`load_data` returns: the resolved configuration (every field left to the data
    filled in), training and validation items, the validation pairs (raw labels, for object
    scores), the normalisation, the fingerprint and the choices made from it."""

    cfg: Config
    train: list[Prepared]
    val: list[Prepared]
    val_pairs: list[Pair]
    norm: Normalization
    fingerprint: Fingerprint
    choices: dict[str, dict[str, Any]]


def load_data(cfg: Config, images, labels, val_images, val_labels, val_fraction) -> RunData:
    """Read and check the data, measure its fingerprint, fill the fields left to the data, hold
    out validation data when none is given, build targets and weights (in that order)."""
    if (val_images is None) != (val_labels is None):
        raise ValueError("give both validation images and validation labels, or neither")
    if val_images is not None and val_fraction is not None:
        raise ValueError("give either validation images or a validation fraction, not both")
    pairs = load_pairs(images, labels)
    first = pairs[0] if pairs else None
    for p in pairs:
        if first is not None and p.image.shape[0] != first.image.shape[0]:
            raise ValueError(f"{p.image_source}: image has {p.image.shape[0]} channel(s), "
                             f"{first.image_source} has {first.image.shape[0]}")
    refuse_untrainable(pairs, cfg.data.ignore_value)
    kind = label_kind_of(pairs, cfg)  # decided once, on the whole training images
    fp = measure([p.image for p in pairs], [p.labels for p in pairs], kind, cfg.data.ignore_value)
    cfg, choices = derive(cfg, fp)
    warn_poor_data(pairs, cfg.train.tile_size, cfg.model.num_classes, kind,
                   cfg.data.ignore_value)
    val_pairs: list[Pair] = []
    bands = []
    if val_images is not None:
        val_pairs = load_pairs(val_images, val_labels, channels=cfg.model.in_channels)
        how = f"{len(val_pairs)} validation image(s) given"
    elif val_fraction is not None:
        pairs, val_pairs = split_validation(pairs, val_fraction, cfg.train.seed)
        how = f"held out {len(val_pairs)} image(s) (validation fraction {val_fraction:g})"
    else:
        pairs, val_pairs, bands, how = auto_holdout(pairs, cfg.train.seed)
    choices["validation"] = {"value": len(val_pairs), "reason": how}
    norm = training_normalization(cfg.data.normalization, pairs)
    t0 = time.perf_counter()
    train_items = prepare(pairs, cfg, norm, kind=kind)
    val_items = prepare(val_pairs, cfg, norm, kind=kind)
    by_name = {b.name: b for b in bands}
    train_items = [ignore_band(it, by_name[it.name]) if it.name in by_name else it
                   for it in train_items]
    log.info("targets and weights of %d training and %d validation images in %.1f s",
             len(train_items), len(val_items), time.perf_counter() - t0)
    return RunData(cfg, train_items, val_items, val_pairs, norm, fp, choices)


def class_names(cfg: Config, items: list[Prepared]) -> list[str]:
    """Names stored in the model file: background/object, background/object/contact (a contact
    class: ``inference.postprocess.has_contact``), or background/class_k."""
    if cfg.model.num_classes == 2 and all(it.kind != "classes" for it in items):
        return ["background", "object"]
    if items and uses_contact(cfg, items[0].kind):
        return list(CONTACT_CLASSES)
    return ["background"] + [f"class_{k}" for k in range(1, cfg.model.num_classes)]


def validate(model: UNet, items: list[Prepared], device: str) -> dict[str, float]:
    """Mean pixel error and foreground IoU over whole validation images (predict_tiled).

    Two classes: ISBI pixel error (1 - max F-score over thresholds) and IoU of class 1 at 0.5
    (``unetkit.metrics.arrays``).  More classes: 1 - accuracy and mean IoU of the argmax.  Ignored
    pixels are set to the truth before scoring (the metrics take no mask), so they count as
    correct.  The stored images are already normalised, hence ``normalization="none"``, which
    gives exactly the values predict_tiled computes from the raw image with the model's meta.
    """
    errors, ious = [], []
    for it in items:
        prob = predict_tiled(model, it.image, device=device, tta=False,
                             normalization=Normalization(mode="none"))
        if prob.shape[0] == 2:
            truth = (it.target > 0).astype(np.uint8)
            fg = prob[1] if it.ignore is None else np.where(it.ignore, truth, prob[1])
            scores = metrics.evaluate_arrays(fg.astype(np.float32), truth,
                                             metrics=("pixel_error", "iou"))
            errors.append(scores["pixel_error"])
            ious.append(scores["iou"])
        else:
            pred = prob.argmax(0)
            if it.ignore is not None:
                pred = np.where(it.ignore, it.target, pred)
            errors.append(float(np.mean(pred != it.target)))
            scores = metrics.evaluate_arrays(pred, it.target, metrics=("mean_iou",),
                                             kind="classes")
            ious.append(scores["mean_iou"])
    return {"val_pixel_error": float(np.nanmean(errors)), "val_iou": float(np.nanmean(ious))}
