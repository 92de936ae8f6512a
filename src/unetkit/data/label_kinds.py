"""What a set of label images holds: binary masks, instance ids or class indices.

Numpy / scipy only. ``data.label_kind: auto`` is decided here once for a whole dataset, from
the evidence of all its images and the configuration, never image by image (where a class
mask with one blob per class looks like instances, and an instance image with a fragmented
cell looks like a class mask). The rule, in order (objects are 4-connected, as everywhere in
the package):

1. Every image's values lie within {0, 1}, or every image's within {0, 255} -> ``binary``;
   0/255 masks beside images with other values are refused (a stray value in a mask set).
2. The model has three or more classes (``model.num_classes``) and every value fits it
   (max value < num_classes) -> ``classes``: the configuration asks for classes and the
   labels can be them, even with one blob per class.
3. More than :data:`MAX_AUTO_CLASSES` distinct nonzero values over the dataset ->
   ``instances`` (no plausible class mask; one would set ``model.num_classes``).
4. Otherwise the share of (image, value) pairs whose pixels form several separate blobs
   decides: instance ids are one blob each, up to a stray fragment (at most
   :data:`INSTANCE_FRAGMENTS` of them split), class masks repeat a class over many blobs.
   At most that share -> ``instances``. A larger share is a class mask the model cannot
   hold (values beyond ``model.num_classes``) or, without a model to ask, ``classes`` when
   at least :data:`CLASS_FRAGMENTS` of the pairs are split. Anything between is ambiguous.

Ambiguous evidence raises a one-line ``ValueError`` that names the most telling file and the
override ``--set data.label_kind=...``; nothing is guessed silently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

KINDS = ("binary", "instances", "classes", "auto")
#: Older spellings still accepted as ``kind=`` and as ``data.label_kind`` (one vocabulary inside).
KIND_ALIASES = {"instance": "instances"}

#: More distinct nonzero values than this over a dataset: instance ids, whatever their shapes.
MAX_AUTO_CLASSES = 16
#: Instance ids: at most this share of (image, id) pairs in several blobs (a cell cut by a thin
#: gap or an annotation speck; the MSC frames of the Cell Tracking Challenge: 17 of 165).
INSTANCE_FRAGMENTS = 0.25
#: Class masks without a model to ask: at least this share of (image, value) pairs split.
CLASS_FRAGMENTS = 0.75

_FOUR = ndimage.generate_binary_structure(2, 1)
_OVERRIDE = "set it with --set data.label_kind=instances|classes|binary"


def canonical_kind(kind: str) -> str:
    """``kind`` in the package's one vocabulary (:data:`KINDS`); older spellings mapped."""
    return KIND_ALIASES.get(kind, kind)


def check_2d(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {labels.shape}")
    return labels


def as_int_labels(labels: np.ndarray) -> np.ndarray:
    """Validate non-negative integer values (integer-valued floats accepted) -> int64."""
    if labels.dtype == bool:
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        bad = labels[~np.isfinite(labels) | (labels != np.round(labels))]
        if bad.size:
            raise ValueError(f"labels must be integers, found value {float(bad.flat[0]):g}")
    elif labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer or bool array, got dtype {labels.dtype}")
    out = labels.astype(np.int64)
    if out.size and out.min() < 0:
        raise ValueError(f"labels must be >= 0, found value {out.min()}")
    return out


def split_ignore(labels: np.ndarray, ignore_value: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) raw labels -> (int64 labels with ignored pixels set to 0, bool ignore mask)."""
    labels = check_2d(labels)
    ignore = np.zeros(labels.shape, bool) if ignore_value is None else labels == ignore_value
    clean = as_int_labels(np.where(ignore, 0, labels))
    return clean, ignore


def is_binary_values(values: np.ndarray) -> bool:
    """Whether label values lie within {0, 1} or within {0, 255}."""
    present = set(np.asarray(values).tolist())
    return present <= {0, 1} or present <= {0, 255}


def split_values(labels: np.ndarray) -> list[int]:
    """Nonzero values of an (H, W) int label image whose pixels form several 4-connected blobs."""
    split = []
    for value, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None and ndimage.label(labels[box] == value, structure=_FOUR)[1] > 1:
            split.append(value)
    return split


@dataclass(frozen=True)
class KindDecision:
    """The label kind of a dataset and the evidence it rests on (for the log)."""

    kind: str
    reason: str


def decide_kind(images: Iterable[tuple[str, np.ndarray]], *, num_classes: int | None = None,
                ignore_value: int | None = None) -> KindDecision:
    """Decide the label kind of a whole dataset (the module's rule).

    Args:
        images: (source name, (H, W) label image) pairs; the names appear in errors.
        num_classes: the model's number of classes (``model.num_classes``); None = unknown.
        ignore_value: label value left out of the evidence (``data.ignore_value``).

    Returns:
        The :class:`KindDecision`.

    Raises:
        ValueError: ambiguous evidence (one line naming a file and the override), or illegal
            label values (naming the file and the value).
    """
    cleaned = []
    for source, labels in images:
        try:
            clean, _ = split_ignore(labels, ignore_value)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        cleaned.append((source, clean, np.unique(clean)))
    if not cleaned:
        raise ValueError("no label images to decide the label kind from")
    if all(np.isin(v, (0, 1)).all() for _, _, v in cleaned) or \
            all(np.isin(v, (0, 255)).all() for _, _, v in cleaned):
        return KindDecision("binary", "all values within {0, 1} or within {0, 255}")
    masks = [255 in v and np.isin(v, (0, 255)).all() for _, _, v in cleaned]
    if any(masks):  # 0/255 is the mask convention: other values beside it are a mistake
        source, _, values = next(c for c, m in zip(cleaned, masks, strict=True) if not m)
        odd = [int(x) for x in values if x not in (0, 255)][:3]
        raise ValueError(f"{source}: values {odd} in a dataset of 0/255 masks "
                         f"({sum(masks)} of {len(masks)} label images are); {_OVERRIDE}")
    union = np.unique(np.concatenate([v for _, _, v in cleaned]))
    top = int(union.max())
    if num_classes is not None and num_classes >= 3 and top < num_classes:
        return KindDecision("classes", f"values 0..{top} fit model.num_classes={num_classes}")
    distinct = int(np.count_nonzero(union))
    if distinct > MAX_AUTO_CLASSES:
        return KindDecision("instances", f"{distinct} distinct values (> {MAX_AUTO_CLASSES})")
    pairs = 0
    worst = ("", [])
    total_split = 0
    for source, clean, values in cleaned:
        split = split_values(clean)
        pairs += int(np.count_nonzero(values))
        total_split += len(split)
        if len(split) > len(worst[1]):
            worst = (source, split)
    share = total_split / max(pairs, 1)
    evidence = (f"{total_split} of {pairs} (image, value) pairs lie in several separate blobs "
                f"(values 1..{top})")
    if share <= INSTANCE_FRAGMENTS:
        return KindDecision("instances", evidence)
    source, split = worst
    where = f"{source}: value {split[0]} forms several separate blobs"
    if num_classes is None and share >= CLASS_FRAGMENTS:
        return KindDecision("classes", evidence)
    if num_classes is not None and share >= CLASS_FRAGMENTS:
        raise ValueError(f"{where}; the labels look like a class mask ({evidence}) but "
                         f"model.num_classes={num_classes} cannot hold value {top}; {_OVERRIDE} "
                         f"(classes also need model.num_classes={top + 1})")
    raise ValueError(f"{where}; cannot tell instance ids from class indices ({evidence}); "
                     f"{_OVERRIDE}")


def detect_kind(labels: np.ndarray, ignore_value: int | None = None,
                num_classes: int | None = None) -> str:
    """The label kind of one ``(H, W)`` image by the rule of :func:`decide_kind` (a dataset of
    one image). Raises ``ValueError`` when the evidence is ambiguous or a value is illegal."""
    return decide_kind([("labels", labels)], num_classes=num_classes,
                       ignore_value=ignore_value).kind
