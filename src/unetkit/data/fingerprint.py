"""The training set's fingerprint: what ``unetkit train`` measures before it builds a target.

Image sizes, channels, dtype, intensity percentiles, label kind, objects per image, object size,
class frequencies, and how steady each normalisation keeps the gray values across images.
``training.choices.derive`` turns it into the configuration values left to the data.

numpy / scipy only; no torch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .normalize import Normalization
from .label_kinds import canonical_kind, decide_kind
from .targets import instances_to_target

__all__ = ["Fingerprint", "measure", "normalization_spread", "object_ids"]

log = logging.getLogger(__name__)

_FOUR = ndi.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class Fingerprint:
    n_images: int
    channels: int
    dtype: str
    height: tuple[int, int, int]  # min, median, max
    width: tuple[int, int, int]
    percentiles: dict[str, float]  # median over images of each image's p1, p50, p99.8
    label_kind: str
    class_frequencies: dict[str, float]  # share of pixels per label class (0 = background)
    foreground_fraction: float
    objects_per_image: float  # median
    object_area: float  # median over all objects (px), 0 without objects
    small_object_area: float  # 5th percentile of the object areas (px), 0 without objects
    object_diameter: float  # equivalent diameter of the median area
    normalization_spread: dict[str, float]  # see normalization_spread (lower is steadier)
    # share of the foreground pixels where two instance-labelled objects touch (the pixels the
    # paper's separation borders clear, targets.instances_to_target); 0 for other label kinds
    contact_fraction: float = 0.0
    # median over images of the largest object's share of the foreground: near 1 for a network
    # (vessels, membranes) however many fragments its mask has, small for cells and nuclei
    largest_object_share: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def object_ids(labels: np.ndarray, kind: str) -> np.ndarray:
    """Object ids (4-connected) of one label image of the given kind."""
    if kind == "instances":
        return labels
    if kind == "binary":
        return ndi.label(labels > 0, structure=_FOUR)[0]
    out = np.zeros(labels.shape, np.int64)
    top = 0
    for value in np.unique(labels[labels > 0]):
        lab, n = ndi.label(labels == value, structure=_FOUR)
        out[lab > 0] = lab[lab > 0] + top
        top += n
    return out


def normalization_spread(images: Sequence[np.ndarray], fgs: Sequence[np.ndarray]
                         ) -> dict[str, float]:
    """How much the normalised background and foreground levels wander across the training
    images, per normalisation mode: ``(std of median background + std of median foreground) /
    (mean foreground - mean background)`` over images.  A steadier mode shows the network the
    same gray values for the same things in every image (and, by extension, in new ones)."""
    out: dict[str, float] = {}
    usable = [(im, fg) for im, fg in zip(images, fgs) if fg.any() and (~fg).any()]
    if len(usable) < 2:
        return out
    for mode in ("percentile", "per_image"):
        norm = Normalization(mode=mode)
        bg_levels, fg_levels = [], []
        for im, fg in usable:
            scale, offset = norm.affine(im, im.shape[0])
            x = im.astype(np.float32).mean(0) * scale.mean() + offset.mean()
            bg_levels.append(float(np.median(x[~fg])))
            fg_levels.append(float(np.median(x[fg])))
        contrast = abs(np.mean(fg_levels) - np.mean(bg_levels))
        out[mode] = float((np.std(bg_levels) + np.std(fg_levels)) / max(contrast, 1e-9))
    return out


def measure(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], kind: str = "auto",
            ignore_value: int | None = None) -> Fingerprint:
    """Fingerprint of training ``images`` ((C, H, W), raw dtype) and ``labels`` ((H, W))."""
    if not images:
        raise ValueError("no training images")
    # one decision for the whole set (data/label_kinds.py), never a vote of single images
    resolved = canonical_kind(kind) if kind != "auto" else decide_kind(
        ((f"label image {i}", lab) for i, lab in enumerate(labels)),
        ignore_value=ignore_value).kind
    kinds = [resolved] * len(labels)
    hs = sorted(im.shape[1] for im in images)
    ws = sorted(im.shape[2] for im in images)
    pct = np.array([np.percentile(im, (1, 50, 99.8)) for im in images])
    counts: dict[int, int] = {}
    areas: list[int] = []
    per_image: list[int] = []
    total = 0
    fgs = []
    contact = 0
    shares: list[float] = []
    for lab, k in zip(labels, kinds):
        lab = np.asarray(lab)
        valid = lab != ignore_value if ignore_value is not None else np.ones(lab.shape, bool)
        vals, n = np.unique(lab[valid], return_counts=True)
        for v, c in zip(vals.tolist(), n.tolist()):
            key = 1 if (k in ("binary", "instances") and v > 0) else int(v)
            counts[key] = counts.get(key, 0) + c
        total += int(valid.sum())
        fgs.append((lab > 0) & valid)
        obj = object_ids(np.where(valid, lab, 0), k)
        if k == "instances":
            contact += int(((obj > 0) & (instances_to_target(obj) == 0)).sum())
        sizes = np.bincount(obj.ravel())[1:]
        sizes = sizes[sizes > 0]
        per_image.append(int(sizes.size))
        if sizes.size:
            shares.append(float(sizes.max() / sizes.sum()))
        areas.extend(sizes.tolist())
    freq = {str(k): counts[k] / max(total, 1) for k in sorted(counts)}
    area = float(np.median(areas)) if areas else 0.0
    return Fingerprint(
        n_images=len(images), channels=int(images[0].shape[0]), dtype=str(images[0].dtype),
        height=(hs[0], hs[len(hs) // 2], hs[-1]), width=(ws[0], ws[len(ws) // 2], ws[-1]),
        percentiles={"p1": float(np.median(pct[:, 0])), "p50": float(np.median(pct[:, 1])),
                     "p99.8": float(np.median(pct[:, 2]))},
        label_kind=resolved, class_frequencies=freq,
        foreground_fraction=float(1.0 - freq.get("0", 0.0)),
        objects_per_image=float(np.median(per_image)), object_area=area,
        small_object_area=float(np.percentile(areas, 5)) if areas else 0.0,
        object_diameter=2.0 * math.sqrt(area / math.pi) if area else 0.0,
        normalization_spread=normalization_spread(images, fgs),
        contact_fraction=contact / max(sum(int(f.sum()) for f in fgs), 1),
        largest_object_share=float(np.median(shares)) if shares else 0.0)
