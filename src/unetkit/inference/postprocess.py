"""Foreground probability -> the mask and objects a user counts: threshold, holes, smallest
object, growth.

numpy / scipy / scikit-image.  A network's raw ``p > 0.5`` mask holds isolated specks (a few
pixels of background noise above 0.5) and pin-holes; counted as objects they ruin any object
score.  A :class:`Postprocess` says how to clean it: the probability ``threshold``,
``fill_holes`` (holes, i.e. background pieces enclosed by foreground, smaller than this many
pixels are filled; 0 = off), ``min_size`` (4-connected foreground components smaller than this
many pixels are dropped) and ``grow`` (each object grown by this many pixels into the
background, never into another object, one pixel kept between objects: the mask's 4-connected
components stay the objects; :func:`grow_labels`).  Growth undoes what the paper's separation
borders and their Eq. 2 weights teach a network: to leave more background around objects than
the truth has, which costs foreground IoU against ``label > 0``.  Training chooses all four on
validation data (:func:`choose_postprocess`) and stores them in the model file; ``unetkit
predict`` applies them to the labels and the instances it writes.

A model trained with a contact class (``data.touching: class``; class names
:data:`CONTACT_CLASSES`, :func:`has_contact`) gives two maps instead of one: the foreground
``1 - p(background)`` (object + contact, i.e. the whole of ``label > 0``) and the interior
``p(object)``.  The mask is then the foreground above the threshold, and the objects are the
interiors grown over it (:func:`split_touching`), so the mask is not shrunk to keep touching
objects apart: one pixel between them is enough.

A two-class model can split its objects at cores instead (``seed`` above the threshold,
:func:`split_cores`): the mask is the foreground above the (low) threshold, and the objects are
the cores above the (high) seed probability flooded over it, one pixel apart.  One threshold
cannot give both the objects' whole extent and the dips between touching ones.  Measured on the
demo data's test images (one 2-minute model, 4 images, 517 nuclei; IoU / F1@0.5): the best
single threshold with growth, chosen on validation, 0.872 / 0.931; mask at 0.3 and cores at 0.9,
0.929 / 0.952.

Objects are 4-connected everywhere (as the metrics count them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels, watershed

from .instances import (_remove_small, _seed_labels, core_watershed,
                        probabilities_to_instances)

__all__ = ["CONTACT_CLASSES", "has_contact", "foreground_maps", "interior_seeds", "split_touching",
           "split_cores", "uses_cores", "blockwise_threshold", "Postprocess", "clean_mask",
           "choose_postprocess", "object_scores", "SELECTION_METRICS", "model_postprocess",
           "grow_labels", "postprocess_instances"]

_FOUR = ndi.generate_binary_structure(2, 1)
#: what :func:`choose_postprocess` maximises: "iou" (foreground IoU) or "objects" (the mean of
#: foreground IoU and F1 of objects matched at IoU > 0.5)
SELECTION_METRICS = ("iou", "objects")
#: class names of a model trained with a contact class (data.touching: class)
CONTACT_CLASSES = ("background", "object", "contact")


def has_contact(model: Any) -> bool:
    """Whether ``model`` (a UNet with ``meta``, or a model file's meta dict) was trained with a
    contact class."""
    meta = model if isinstance(model, dict) else getattr(model, "meta", {})
    names = meta.get("class_names")
    return names is not None and tuple(names) == CONTACT_CLASSES


def interior_seeds(prob_fg: np.ndarray, interior: np.ndarray, threshold: float,
                   seed: float = 0.0) -> np.ndarray:
    """A contact model's seed pixels: foreground above ``threshold`` where the object class is
    at least as likely as the contact class (``interior >= prob_fg / 2``) and above ``seed``."""
    return (prob_fg > threshold) & (interior >= 0.5 * prob_fg) & (interior > seed)


def foreground_maps(prob: np.ndarray, contact: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(K, H, W) class probabilities -> foreground ``1 - p(background)`` and, for a contact
    model, the interior ``p(object)`` (else None)."""
    return 1.0 - prob[0], (prob[1] if contact else None)


def split_touching(prob_fg: np.ndarray, interior: np.ndarray, threshold: float,
                   seed: float = 0.0) -> np.ndarray:
    """(H, W) foreground and interior probabilities of a contact model -> int32 objects.

    The mask is ``prob_fg > threshold``.  Seeds are its pixels where the object class is at
    least as likely as the contact class (``interior >= prob_fg / 2``), and above ``seed``
    where that is given (> 0: fewer, surer seeds for a network that under-learned the
    contacts); each 4-connected seed
    is flooded over the mask, lowest contact probability first (a watershed on
    ``prob_fg - interior``), and a mask component without a seed is an object of its own, so no
    foreground is lost.  Where two objects meet, the pixels of the higher label that touch the
    other one (4-neighbours) go back to the background: one pixel separates them, and the mask's
    4-connected components are the objects (a piece cut off by that is an object of its own).
    """
    fg = np.asarray(prob_fg, np.float32)
    inner = np.asarray(interior, np.float32)
    mask = fg > threshold
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    components, _ = ndi.label(mask, structure=_FOUR)
    markers = _seed_labels(interior_seeds(fg, inner, threshold, seed), components, _FOUR)
    labels = watershed(fg - inner, markers, mask=mask, connectivity=1).astype(np.int32)
    return _one_pixel_apart(labels)


def split_cores(prob_fg: np.ndarray, mask: np.ndarray, core: float,
                core_size: int = 0) -> np.ndarray:
    """(H, W) foreground probability of a two-class model and its (cleaned) mask -> int32
    objects split at their cores.

    Each 4-connected core (``prob_fg > core``, inside the mask) is flooded over the mask, highest
    probability first (``inference.instances.core_watershed``, as the "watershed" method with
    core seeds), so touching objects part where the probability dips between them; a mask
    component without a core is an object of its own, so no foreground is lost.  One pixel
    separates touching objects, as in :func:`split_touching`.  This lets the mask come from a
    low threshold (the objects' whole extent, for foreground IoU) while the objects are told
    apart at a high one (for counting them): one threshold cannot do both when the network
    leaves only a shallow dip between touching objects.  Cores of fewer than ``core_size``
    pixels seed no object of their own (``core_watershed``).
    """
    fg = np.asarray(prob_fg, np.float32)
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    components, _ = ndi.label(mask, structure=_FOUR)
    return _one_pixel_apart(core_watershed(fg, mask, components, core,
                                           core_size).astype(np.int32))


def _one_pixel_apart(labels: np.ndarray) -> np.ndarray:
    """Touching objects of a watershed -> objects one pixel apart, numbered 1..N.

    Where two objects meet, a pixel whose 4-neighbour belongs to a lower label goes back to the
    background.  Clearing may cut a thin object in two: each 4-connected piece is then an object,
    so the objects are exactly the mask's 4-connected components (different objects are never
    4-neighbours)."""
    drop = np.zeros(labels.shape, bool)
    for dy, dx in _FOUR_STEPS:
        nb = _neighbour(labels, dy, dx)
        drop |= (nb > 0) & (nb < labels)
    labels = labels.copy()
    labels[drop] = 0
    return ndi.label(labels > 0, structure=_FOUR)[0].astype(np.int32)


def blockwise_threshold(pp: Postprocess, contact: bool) -> float:
    """The foreground probability above which objects are labelled block by block (streamed,
    dask and lazy napari instances): a two-class model's cores where it has them, since
    :func:`split_cores` needs whole objects; otherwise the threshold."""
    return pp.threshold if contact else max(pp.threshold, pp.seed)


def uses_cores(pp: Postprocess, ndim: int = 2) -> bool:
    """Whether a two-class model's objects are split at cores (``pp.seed`` above the
    threshold, 2D maps): :func:`split_cores`."""
    return ndim == 2 and pp.seed > pp.threshold


@dataclass(frozen=True)
class Postprocess:
    """How a foreground probability map becomes a mask; JSON-serialisable for the model file."""

    threshold: float = 0.5  # foreground is p > threshold
    min_size: int = 0  # drop 4-connected components with fewer pixels
    fill_holes: int = 0  # fill enclosed background pieces with fewer pixels (0: none)
    grow: int = 0  # grow each object by this many px, keeping 1 px between objects (0: none)
    # where objects grow from.  Contact models: their interior above this probability (0:
    # wherever the object class is at least as likely as the contact class; split_touching).
    # Two-class models: above the threshold, the cores p > seed, flooded over the mask with one
    # pixel kept between objects (split_cores); at or below it (0): the mask's components
    seed: float = 0.0
    # two-class cores of fewer pixels seed no object of their own (split_cores; 0: every core)
    core_size: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must lie in [0, 1), got {self.threshold:g}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {self.min_size}")
        if self.fill_holes < 0:
            raise ValueError(f"fill_holes must be >= 0, got {self.fill_holes}")
        if self.grow < 0:
            raise ValueError(f"grow must be >= 0, got {self.grow}")
        if not 0.0 <= self.seed < 1.0:
            raise ValueError(f"seed must lie in [0, 1), got {self.seed:g}")
        if self.core_size < 0:
            raise ValueError(f"core_size must be >= 0, got {self.core_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Postprocess:
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown postprocess key(s): {sorted(unknown)}")
        return cls(threshold=float(d.get("threshold", 0.5)), min_size=int(d.get("min_size", 0)),
                   fill_holes=int(d.get("fill_holes", 0)), grow=int(d.get("grow", 0)),
                   seed=float(d.get("seed", 0.0)), core_size=int(d.get("core_size", 0)))


def model_postprocess(model: Any, threshold: float | None = None,
                      min_size: int | None = None) -> Postprocess:
    """The model file's post-processing (``meta["postprocess"]``, chosen on validation data when
    it was trained), with ``threshold`` / ``min_size`` replaced where given."""
    pp = Postprocess.from_dict(getattr(model, "meta", {}).get("postprocess"))
    return replace(pp, threshold=pp.threshold if threshold is None else float(threshold),
                   min_size=pp.min_size if min_size is None else int(min_size))


def _fill_small_holes(mask: np.ndarray, limit: int) -> np.ndarray:
    if limit <= 0 or not mask.any():
        return mask
    holes = ndi.binary_fill_holes(mask) & ~mask  # enclosed background (8-connected holes)
    if not holes.any():
        return mask
    lab, n = ndi.label(holes, structure=np.ones((3, 3), bool))
    small = np.bincount(lab.ravel(), minlength=n + 1) < limit
    small[0] = False
    return mask | small[lab]


def _drop_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    if min_size <= 1 or not mask.any():
        return mask
    lab, n = ndi.label(mask, structure=_FOUR)
    keep = np.bincount(lab.ravel(), minlength=n + 1) >= min_size
    keep[0] = False
    return keep[lab]


_FOUR_STEPS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def _neighbour(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(H, W) -> the value of each pixel's neighbour at (y + dy, x + dx); 0 outside the image."""
    h, w = a.shape
    out = np.zeros_like(a)
    out[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)] = \
        a[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    return out


def grow_labels(labels: np.ndarray, distance: int) -> np.ndarray:
    """Grow each object of a label image by ``distance`` px (Euclidean) into the background.

    Growth never enters another object (``skimage.segmentation.expand_labels``), and a grown
    pixel is given back to the background where it would touch another object (4-neighbours):
    next to an object's original pixels always, and between two grown fronts on the side of the
    larger label, so exactly one pixel separates them.  Objects that touched before growing
    (e.g. split by a watershed) still touch; no two objects that were apart come to touch, and
    grown pixels cut off from their object by that gap are dropped (growth adds no objects).
    """
    labels = np.asarray(labels)
    if distance <= 0 or labels.ndim != 2 or not labels.any():
        return labels
    grown = expand_labels(labels, distance=distance)
    new = (labels == 0) & (grown > 0)
    drop = np.zeros_like(new)
    for dy, dx in _FOUR_STEPS:
        nb = _neighbour(grown, dy, dx)
        nb_orig = _neighbour(labels, dy, dx) > 0
        other = (nb > 0) & (nb != grown)
        drop |= new & other & (nb_orig | (nb < grown))
    grown[drop] = 0
    # a grown piece cut off from its object by the gap is not part of it: keep only the pieces
    # 4-connected to an object's own pixels, so growth never adds an object
    comp, n = ndi.label(grown > 0, structure=_FOUR)
    anchored = np.zeros(n + 1, bool)
    anchored[comp[labels > 0]] = True
    grown[~anchored[comp]] = 0
    return grown


def postprocess_instances(prob_fg: np.ndarray, pp: Postprocess,
                          interior: np.ndarray | None = None, **options: Any) -> np.ndarray:
    """(H, W) foreground probability -> instance labels with every step of ``pp``: holes filled
    first (an object with a pin-hole stays whole), then ``probabilities_to_instances`` at the
    threshold and smallest object (``options``: its method, seeds...), then growth.  With the
    ``interior`` of a contact model, the objects are :func:`split_touching`'s instead (the
    ``options`` do not apply); for a two-class model whose ``pp.seed`` lies above the threshold,
    :func:`split_cores`' (with the default method, "components").  The one path of ``unetkit
    predict --output instances`` and ``--output labels``, the demo and the napari layers."""
    fg = np.asarray(prob_fg)
    if pp.fill_holes:
        filled = clean_mask(fg, replace(pp, min_size=0, grow=0, seed=0.0))
        fg = np.where(filled, np.maximum(fg, 1.0), fg)
        if interior is not None:  # a filled hole is interior: it seeds no object of its own
            interior = np.where(filled, np.maximum(interior, 0.5), interior)
    if interior is not None:
        labels = _remove_small(split_touching(fg, interior, pp.threshold, pp.seed),
                               pp.min_size).astype(np.uint32)
    elif uses_cores(pp, fg.ndim) and options.get("method", "components") == "components":
        mask = _fill_small_holes(np.asarray(prob_fg) > pp.threshold, pp.fill_holes)
        labels = _remove_small(split_cores(prob_fg, mask, pp.seed, pp.core_size),
                               pp.min_size).astype(np.uint32)
    else:
        labels = probabilities_to_instances(fg, threshold=pp.threshold, min_size=pp.min_size,
                                            **options)
    return grow_labels(labels, pp.grow)


def clean_mask(prob_fg: np.ndarray, pp: Postprocess,
               interior: np.ndarray | None = None) -> np.ndarray:
    """(H, W) foreground probability -> (H, W) bool mask: threshold, fill holes, drop specks,
    grow objects (keeping them apart).  With the ``interior`` of a contact model, or cores
    (:func:`uses_cores`): the mask of :func:`postprocess_instances` (touching objects one pixel
    apart)."""
    if interior is not None or uses_cores(pp, np.ndim(prob_fg)):
        return postprocess_instances(prob_fg, pp, interior) > 0
    mask = np.asarray(prob_fg) > pp.threshold
    if mask.ndim == 2:
        mask = _fill_small_holes(mask, pp.fill_holes)
        mask = _drop_small(mask, pp.min_size)
        if pp.grow:
            mask = grow_labels(ndi.label(mask, structure=_FOUR)[0], pp.grow) > 0
    return mask


def object_scores(pred: np.ndarray, truth: np.ndarray, thr: float = 0.5) -> tuple[int, int, int]:
    """(TP, FP, FN) for label images ``pred`` and ``truth`` (0 = background), matched at
    IoU > ``thr`` (a match above 0.5 is unique, so no assignment problem is solved)."""
    n_p, n_t = int(pred.max(initial=0)), int(truth.max(initial=0))
    p_area = np.bincount(pred.ravel(), minlength=n_p + 1)
    t_area = np.bincount(truth.ravel(), minlength=n_t + 1)
    n_pred, n_true = int((p_area[1:] > 0).sum()), int((t_area[1:] > 0).sum())
    if n_pred == 0 or n_true == 0:
        return 0, n_pred, n_true
    both = (pred > 0) & (truth > 0)
    key = truth[both].astype(np.int64) * (n_p + 1) + pred[both]
    key, inter = np.unique(key, return_counts=True)
    t_id, p_id = key // (n_p + 1), key % (n_p + 1)
    iou = inter / (t_area[t_id] + p_area[p_id] - inter)
    tp = int((iou > thr).sum())
    return tp, n_pred - tp, n_true - tp


def _score(masks: Sequence[np.ndarray], truths: Sequence[np.ndarray],
           objects: Sequence[np.ndarray] | None) -> tuple[float, float, float]:
    """(score, IoU, F1) pooled over images; score = IoU, or (IoU + F1) / 2 with objects."""
    inter = union = 0
    counts = np.zeros(3, np.int64)
    for k, (m, t) in enumerate(zip(masks, truths)):
        inter += int((m & t).sum())
        union += int((m | t).sum())
        if objects is not None:
            counts += object_scores(ndi.label(m, structure=_FOUR)[0], objects[k])
    iou = inter / union if union else 1.0
    if objects is None:
        return iou, iou, float("nan")
    tp, fp, fn = counts
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return (iou + f1) / 2, iou, f1


def _labelled(probs, inner, thr: float, holes: int, seed: float,
              masks: dict, core_size: int = 0) -> list[tuple[np.ndarray, int]]:
    """The objects of each image at one candidate (before the smallest-object size), with their
    count: one labelling per image, so each min_size is a lookup on the object sizes.  ``masks``
    keeps each (threshold, holes) mask of a two-class model for the candidates after it."""
    if inner and inner[0] is not None:
        cand = Postprocess(float(thr), 0, int(holes), seed=float(seed))
        out = []
        for p, q in zip(probs, inner):
            lab = postprocess_instances(p, cand, q)
            out.append((lab, int(lab.max())))
        return out
    key = (thr, holes)
    if key not in masks:
        masks[key] = [_fill_small_holes(np.asarray(p) > thr, holes) for p in probs]
    if seed > thr:
        out = []
        for p, m in zip(probs, masks[key]):
            lab = split_cores(p, m, seed, core_size)
            out.append((lab, int(lab.max())))
        return out
    return [ndi.label(m, structure=_FOUR) for m in masks[key]]


def choose_postprocess(probs: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                       objects: Sequence[np.ndarray] | None, *,
                       thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7),
                       min_sizes: Sequence[int] = (0,), hole_sizes: Sequence[int] = (0,),
                       grow_sizes: Sequence[int] = (0,),
                       fixed: dict[str, Any] | None = None,
                       interiors: Sequence[np.ndarray] | None = None,
                       seeds: Sequence[float] = (0.0,), core_size: int = 0,
                       min_gain: float = 0.0, prefer: float | None = None,
                       ) -> tuple[Postprocess, dict[str, float]]:
    """The :class:`Postprocess` that scores best on validation images, and its scores.

    Args:
        probs: (H, W) foreground probabilities, one per validation image.
        truths: (H, W) bool true foreground, same shapes.
        objects: (H, W) true object ids per image (score = (IoU + F1@0.5) / 2), or None (IoU).
        thresholds, min_sizes, hole_sizes: the candidates tried (every combination).
        grow_sizes: growth candidates, tried with every threshold at the best hole filling and
            smallest object found without growth (growth costs a distance transform per try).
        fixed: field values set by the user, kept as given (not searched).
        interiors: a contact model's interior probabilities, one per image: the masks are then
            :func:`postprocess_instances`' (touching objects split, one pixel apart).
        seeds: the seed probabilities tried with ``interiors`` (every combination, 0 always
            among them).  For two-class maps scored with ``objects``, the cores
            (:func:`split_cores`) tried once the plain masks are searched: each with every
            threshold up to the best plain one, at its hole filling.
        core_size: the cores' smallest size (:class:`Postprocess`; ``fixed`` wins), not
            searched.
        min_gain: how much a split at cores must score above the best plain mask, and a growth
            above the best candidate without growth, to be chosen: a validation set of a few
            dozen objects does not tell gains below its noise apart (0: any gain).
        prefer: the threshold the training loss itself decides at (0.5: a two-class softmax's
            argmax), tried first; another threshold of the plain masks must beat it by
            ``min_gain`` (None: every threshold alike).

    Ties go to the earlier candidate (``prefer`` first, then the lower threshold, smaller
    min_size, no hole filling, no growth).
    """
    fixed = fixed or {}
    core_size = int(fixed.get("core_size", core_size))
    thresholds = [fixed["threshold"]] if "threshold" in fixed else list(thresholds)
    min_sizes = [fixed["min_size"]] if "min_size" in fixed else sorted(set(min_sizes))
    hole_sizes = [fixed["fill_holes"]] if "fill_holes" in fixed else sorted(set(hole_sizes))
    grow_sizes = [fixed["grow"]] if "grow" in fixed else sorted(set(grow_sizes) | {0})
    best: tuple[float, Postprocess, tuple] | None = None
    inner = list(interiors) if interiors is not None else [None] * len(probs)
    # a two-class model's cores are searched after the plain masks, below (cheaper than every
    # combination: each try is a watershed per image)
    cores = ([] if interiors is not None or objects is None or "seed" in fixed
             or not all(np.ndim(p) == 2 for p in probs)
             else sorted(s for s in set(seeds) if s > 0))
    seed_list = ([fixed["seed"]] if "seed" in fixed else sorted(set(seeds) | {0.0})
                 if interiors is not None else [0.0])

    mask_cache: dict = {}

    def beats(score: float, gain: float) -> bool:
        """Better than the best so far by more than ``gain`` (ties keep the earlier one)."""
        return best is None or score > best[0] + max(gain, 1e-12)

    def consider(candidates, gain: float = 0.0) -> None:
        nonlocal best
        for thr, holes, seed in candidates:
            if interiors is None and 0 < seed <= thr:
                continue  # cores at or below the threshold are the mask's components: seed 0
            labelled = _labelled(probs, inner, thr, holes, seed, mask_cache, core_size)
            sizes = [np.bincount(lab.ravel(), minlength=n + 1) for lab, n in labelled]
            for min_size in min_sizes:
                masks = []
                for (lab, _), sz in zip(labelled, sizes):
                    keep = sz >= max(min_size, 1)
                    keep[0] = False
                    masks.append(keep[lab])
                scores = _score(masks, truths, objects)
                # a split at cores must beat the plain masks by ``gain``, a threshold other
                # than the preferred one the preferred by ``min_gain``; then they compete
                need = gain if best is not None and best[1].seed == 0 else 0.0
                if best is not None and best[1].threshold == prefer and thr != prefer:
                    need = max(need, min_gain)
                if beats(scores[0], need):
                    best = (scores[0], Postprocess(float(thr), int(min_size), int(holes),
                                                   seed=float(seed), core_size=core_size),
                            scores)

    if prefer is not None and prefer in thresholds:  # the loss's own threshold first
        thresholds = [prefer] + [t for t in thresholds if t != prefer]
    consider((t, h, s) for t in thresholds for h in hole_sizes for s in seed_list)
    assert best is not None  # internal: at least one candidate
    if cores:  # a lower mask threshold than the plain best, touching objects split at cores
        plain = best[1]
        consider(((t, plain.fill_holes, s) for s in cores for t in thresholds
                  if t <= plain.threshold), min_gain)
    grows = [g for g in grow_sizes if g > 0]
    if grows:
        base = best[1]
        if 0 not in grow_sizes:  # a growth fixed by the user: no candidate without it
            best = None
        # the objects at each threshold once (holes, smallest object, cores or contacts), then
        # each growth on them: what clean_mask gives for that candidate
        ungrown = {thr: [postprocess_instances(p, replace(base, threshold=float(thr), grow=0), q)
                         for p, q in zip(probs, inner)] for thr in thresholds}
        for grow in grows:
            for thr in thresholds:
                cand = replace(base, threshold=float(thr), grow=int(grow))
                scores = _score([grow_labels(lab, grow) > 0 for lab in ungrown[thr]], truths,
                                objects)
                # growth must beat the best without it by ``min_gain``; then they compete
                if beats(scores[0], min_gain if best is not None and best[1].grow == 0 else 0.0):
                    best = (scores[0], cand, scores)
    assert best is not None  # internal
    score, pp, (_, iou, f1) = best
    return pp, {"score": float(score), "iou": float(iou), "f1": float(f1)}
