"""Validation that picks what a user counts: held-out data, the selection score, post-processing.

* :func:`auto_holdout`: without validation data, five or more training images give up a fifth
  of the images (at least one, chosen by the seed); two to four images (or one) each give up a
  band of :data:`BAND` of their rows (or columns, whichever side is longer) at the far edge,
  so every image's conditions are still trained on and validated.  The band's labels are
  ignored in training (its pixels still serve as context); validation scores the band alone.
* :class:`Validator`: predicts the validation images (overlap-tile, as ``unetkit predict``)
  and scores them with the metric that fits the label kind: with countable objects (instance
  labels, or masks with several blobs per image, none of them most of the foreground) the
  mean of foreground IoU and object F1 at
  IoU 0.5; otherwise foreground IoU.  Each score is taken at the best post-processing
  (``inference.postprocess``) of a small grid; :meth:`Validator.final` searches a finer grid
  once on the selected model, and that choice goes into the model file (for a two-class model
  with objects, that includes the cores its objects are split at, ``split_cores``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from torch import nn

from ..config import Config
from ..data.dataset import Pair, Prepared, split_validation
from ..data.fingerprint import Fingerprint, object_ids
from ..data.normalize import Normalization
from ..inference.postprocess import Postprocess, choose_postprocess, foreground_maps, has_contact
from ..inference.tiled import predict_tiled

__all__ = ["auto_holdout", "ignore_band", "Validator", "BAND", "fixed_postprocess"]

log = logging.getLogger(__name__)

BAND = 0.2  # share of each image held out when there are too few images to hold one out
#: a binary mask whose largest component holds at least this share of the foreground (median
#: over images) is a network (vessels, membranes), not objects to count
NETWORK_SHARE = 0.5
#: growth candidates (px) of the final search: the separation borders the network learns
#: (paper Sec. 3, up to a few px between touching objects) are what growth gives back.
#: Measured (benchmarks/accuracy.py, 2 min, quiet, one seed; test IoU / F1@0.5 with growth
#: against the run before it): ISBI 0.882 against 0.858 (1 px chosen), MSC 02 -> 01
#: 0.433 / 0.512 against 0.391 / 0.351 (2 px), DSB 0.830 / 0.924 against 0.839 / 0.862 (1 px),
#: demo 0.867 / 0.907 against 0.871 / 0.905 (1 px).  Closing only the band between touching
#: objects (up to 6 px per side) was tried on the demo and DSB models too: at most +0.011 IoU
#: at 3 px, losses beyond, so it was left out.
GROW = (0, 1, 2, 3)
#: seed probabilities (a contact model's interior, inference.postprocess.split_touching) of the
#: final search and of the quick one during training: after minutes of training the contact
#: class is learned weakly, and seeds at the object-vs-contact argmax (0) merge touching nuclei
SEEDS = (0.0, 0.5, 0.7, 0.9)
QUICK_SEEDS = (0.0, 0.7)
#: core probabilities of a two-class model (inference.postprocess.split_cores), tried above each
#: threshold when objects are scored: a low threshold for the mask and high cores for telling
#: touching objects apart (demo data, offline on one model's test images: cores at 0.9 gave
#: F1@0.5 0.952, 0.8 0.932, 0.95 0.936, 0.7 0.916 with the mask at 0.3); each one costs a
#: watershed per image and threshold, so two
CORES = (0.0, 0.8, 0.9)
QUICK_CORES = (0.0, 0.9)
#: the least validation-score gain (score in [0, 1]) for which the final search splits objects
#: at cores or grows them: below it the simpler post-processing is kept.  Measured offline on the
#: five 2-minute default models of one run (thirteenth session, benchmarks/README.md): DSB's
#: validation band (~15 nuclei) scored growth by 1 px at +0.0008, and growth cost 0.020 test
#: IoU there (0.817 against 0.837; F1@0.5 0.855 against 0.839); ISBI's growth (+0.009 on
#: validation) is kept and the other three sets choose the same with 0.005, 0.01 or 0 (0.02
#: drops MSC 01 -> 02's cores: test F1 0.742 -> 0.684)
MIN_GAIN = 0.005
#: the threshold the loss itself decides at (a softmax's argmax, foreground against
#: background): the final search tries it first, and another mask threshold must score
#: MIN_GAIN above it.  Near-ties went to the lowest threshold tried, and a validation set of a
#: few dozen objects scores thresholds 0.1 apart within its noise.  Measured offline on the
#: 2-minute default models of two runs (fourteenth session's p3 / p4; test probabilities
#: averaged over the 8 flips; test IoU / F1@0.5, ties to the lowest -> preferring 0.5): DSB
#: 0.834 / 0.870 -> 0.852 / 0.887 (0.4 -> 0.5) and 0.832 / 0.833 -> 0.847 / 0.857, the demo
#: data 0.932 -> 0.930 (0.2 -> 0.5; the other run unchanged), ISBI and MSC both ways unchanged;
#: on the models of four older runs (two of all five sets, two of DSB) nothing changed
#: (benchmarks/README.md, fifteenth session)
PREFER = 0.5


@dataclass(frozen=True)
class Band:
    """The held-out band of one training image: ``axis`` 0 = rows, 1 = columns, from ``start``."""

    name: str
    axis: int
    start: int


def auto_holdout(pairs: list[Pair], seed: int) -> tuple[list[Pair], list[Pair], list[Band], str]:
    """Training pairs, validation pairs, the bands to ignore in training, and what was done."""
    n = len(pairs)
    if n >= 5:
        train, val = split_validation(pairs, 0.2, seed)
        return train, val, [], (f"held out {len(val)} of {n} images for validation "
                                f"({', '.join(p.name for p in val)}; chosen by the seed)")
    val, bands = [], []
    for p in pairs:
        h, w = p.labels.shape
        axis = 0 if h >= w else 1
        size = (h, w)[axis]
        start = size - max(1, round(BAND * size))
        if start < 1:
            continue  # a 1-pixel image has no band to spare
        sl = (slice(None), slice(start, None)) if axis == 0 else (slice(None), slice(None),
                                                                   slice(start, None))
        lab_sl = sl[1:]
        val.append(replace(p, name=f"{p.name}[band]", image=p.image[sl], labels=p.labels[lab_sl]))
        bands.append(Band(p.name, axis, start))
    side = {0: "rows", 1: "columns"}
    what = "; ".join(f"{b.name}: {side[b.axis]} {b.start}-" for b in bands)
    return pairs, val, bands, (f"{n} training image(s): held out the last {BAND:.0%} of each "
                               f"image's longer side for validation ({what}); those labels are "
                               f"not trained on")


def ignore_band(item: Prepared, band: Band) -> Prepared:
    """The training item with its held-out band ignored (weight 0, ignore True)."""
    ignore = np.zeros(item.target.shape, bool) if item.ignore is None else item.ignore.copy()
    weights = item.weights.copy()
    if band.axis == 0:
        ignore[band.start:] = True
        weights[band.start:] = 0
    else:
        ignore[:, band.start:] = True
        weights[:, band.start:] = 0
    return replace(item, ignore=ignore, weights=weights)


class Validator:
    """Scores a model on validation items and chooses its post-processing (two classes, or
    three with a contact class)."""

    def __init__(self, cfg: Config, items: list[Prepared], pairs: list[Pair],
                 fp: Fingerprint, device: str) -> None:
        self.items, self.device = items, device
        self.tta = cfg.postprocess.tta  # the final search's probabilities (the quick one: plain)
        kind = fp.label_kind
        self.truths = [np.asarray(p.labels) > 0 for p in pairs]
        # countable objects: instance labels, or masks of several blobs per image where no
        # one blob holds most of the foreground.  A vessel tree or a membrane network is one
        # large component with fragments: counting those fragments is no score, so such a mask
        # is scored by its foreground IoU
        self.objects_metric = kind == "instances" or (
            kind == "binary" and fp.objects_per_image >= 3
            and fp.largest_object_share < NETWORK_SHARE)
        self.objects = ([object_ids(np.asarray(p.labels), kind) for p in pairs]
                        if self.objects_metric else None)
        self.metric = "(IoU + F1@0.5) / 2" if self.objects_metric else "foreground IoU"
        pp = cfg.postprocess
        self.fixed = {k: getattr(pp, k) for k in ("threshold", "min_size", "fill_holes", "grow",
                                                  "seed", "core_size")
                      if getattr(pp, k) is not None}
        # Candidates stay far below the training set's small objects (a quarter of the 5th
        # percentile of their areas): new images may hold smaller objects than the validation
        # images.  Measured: MSC sequence 02 -> 01 (cells half the size) lost 73 of 98 cells
        # to a min_size of 0.35 x the median area (5203 px) chosen on sequence-02 validation.
        area, cap = fp.object_area, 0.25 * fp.small_object_area
        if self.objects_metric and cap >= 1:
            # Countable objects: predicted objects under the cap are specks, removed whatever
            # the validation says.  A validation image without specks scores every candidate
            # alike and the tie went to 0, while test images had them.  Measured offline on the
            # 2-minute default models of four runs (DSB, test probabilities averaged over the 8
            # flips; test IoU / F1@0.5, searched -> fixed at the cap, 15 px): 0.837 / 0.839 ->
            # 0.837 / 0.867, 0.794 / 0.662 -> 0.837 / 0.820 (the threshold chosen anew), 0.844 /
            # 0.885 -> 0.844 / 0.908, 0.756 / 0.599 -> 0.758 / 0.676; three two-tile models
            # never lower; the demo data and MSC 01 -> 02 / 02 -> 01 (two, two and one runs)
            # within 0.001.  A network (ISBI's membranes, vessels) keeps the search: its
            # fragments are not objects to count (benchmarks/README.md, fourteenth session)
            self.min_sizes, self.quick_sizes = [int(cap)], [int(cap)]
        else:
            self.min_sizes = sorted({0, *(min(int(f * area), int(cap))
                                          for f in (0.02, 0.05, 0.1, 0.2))})
            self.quick_sizes = sorted({0, min(int(0.05 * area), int(cap)), int(cap)})
        self.holes = sorted({0, int(2 * cap)}) if area else [0]
        # cores (split_cores) smaller than this seed nothing (config.py: the measurement)
        self.core_size = min(int(0.1 * area), int(cap))

    def probabilities(self, model: nn.Module, tta: bool = False
                      ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Foreground probabilities of the validation images and, for a contact model, their
        interior probabilities (``inference.postprocess.foreground_maps``); with ``tta``
        averaged over the 8 flips / rotations, as predict will give them."""
        contact = has_contact(model)
        fgs, interiors = [], []
        for it in self.items:  # stored images are normalised already
            prob = predict_tiled(model, it.image, device=self.device, tta=tta,
                                 normalization=Normalization(mode="none"))
            fg, inner = foreground_maps(prob, contact)
            fgs.append(fg)
            interiors.append(inner)
        return fgs, (interiors if contact else None)

    def score(self, model: nn.Module) -> tuple[dict[str, float], Postprocess]:
        """Validation scores at the best post-processing of a small grid."""
        fgs, interiors = self.probabilities(model)
        pp, s = choose_postprocess(fgs, self.truths, self.objects,
                                   thresholds=(0.4, 0.5, 0.6), min_sizes=self.quick_sizes,
                                   hole_sizes=(0,), fixed=self.fixed, interiors=interiors,
                                   seeds=QUICK_SEEDS if interiors is not None else QUICK_CORES,
                                   core_size=self.core_size)
        return self._row(s), pp

    def final(self, model: nn.Module) -> tuple[dict[str, float], Postprocess]:
        """The finer search on the selected model: thresholds 0.2-0.8, sizes, hole filling,
        growth; on the probabilities predict will give (``postprocess.tta``)."""
        fgs, interiors = self.probabilities(model, self.tta)
        pp, s = choose_postprocess(fgs, self.truths, self.objects,
                                   thresholds=tuple(np.round(np.arange(0.2, 0.81, 0.1), 2)),
                                   min_sizes=self.min_sizes, hole_sizes=self.holes,
                                   grow_sizes=GROW, fixed=self.fixed, interiors=interiors,
                                   seeds=SEEDS if interiors is not None else CORES,
                                   core_size=self.core_size, min_gain=MIN_GAIN, prefer=PREFER)
        return self._row(s), pp

    def _row(self, s: dict[str, Any]) -> dict[str, float]:
        row = {"val_score": s["score"], "val_iou": s["iou"]}
        if self.objects_metric:
            row["val_f1"] = s["f1"]
        return row


def fixed_postprocess(cfg: Config) -> Postprocess:
    """The post-processing without validation: the configured values, the paper's elsewhere."""
    pp = cfg.postprocess
    return Postprocess(threshold=0.5 if pp.threshold is None else pp.threshold,
                       min_size=0 if pp.min_size is None else pp.min_size,
                       fill_holes=0 if pp.fill_holes is None else pp.fill_holes,
                       grow=0 if pp.grow is None else pp.grow,
                       seed=0.0 if pp.seed is None else pp.seed,
                       core_size=0 if pp.core_size is None else pp.core_size)
