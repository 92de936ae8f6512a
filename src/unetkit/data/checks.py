"""Training data that cannot train: refused or warned about before any compute (no torch).

Refused (ValueError, :func:`refuse_untrainable`): no foreground in any label image (the network
would learn "all background"), every image constant (nothing to learn from).  Warned
(:func:`warn_poor_data`, one log line each): a constant image, a label image without
foreground, an image smaller than the training tile (its missing context is mirrored, as at
every border), a class of ``num_classes`` never present.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from .dataset import Pair

__all__ = ["refuse_untrainable", "warn_poor_data"]

log = logging.getLogger(__name__)


def _foreground(p: Pair, ignore_value: int | None) -> np.ndarray:
    lab = p.labels if ignore_value is None else np.where(p.labels == ignore_value, 0, p.labels)
    return lab


def refuse_untrainable(pairs: Sequence[Pair], ignore_value: int | None = None) -> None:
    """ValueError when no label image has foreground, or every image is constant."""
    if not pairs:
        raise ValueError("no training images")
    if not any(np.any(_foreground(p, ignore_value) > 0) for p in pairs):
        raise ValueError(f"{pairs[0].label_source}: no foreground in any label image "
                         f"({len(pairs)} image(s), all 0): nothing to segment")
    if all(p.image.size and np.ptp(p.image) == 0 for p in pairs):
        raise ValueError(f"{pairs[0].image_source}: every training image is constant "
                         f"(a single value): nothing to learn from")


def warn_poor_data(pairs: Sequence[Pair], tile_size: int, num_classes: int,
                   label_kind: str = "auto", ignore_value: int | None = None) -> None:
    """One warning per image without foreground, constant image, image smaller than the
    training tile (mirrored), and one for classes of ``num_classes`` never present."""
    present: set[int] = set()
    for p in pairs:
        lab = _foreground(p, ignore_value)
        if not np.any(lab > 0):
            log.warning("%s: no foreground: trains only as background", p.label_source)
        if label_kind == "classes" or num_classes > 2:
            present.update(int(v) for v in np.unique(lab))
        if p.image.size and np.ptp(p.image) == 0:
            log.warning("%s: constant image (a single value)", p.image_source)
        h, w = p.image.shape[-2:]
        if min(h, w) < tile_size:
            log.warning("%s: %dx%d px, smaller than the %d px training tile: the missing "
                        "context is mirrored", p.image_source, h, w, tile_size)
    missing = [k for k in range(1, num_classes) if present and k not in present]
    if missing:
        log.warning("class(es) %s of model.num_classes=%d never present in the labels",
                    ", ".join(map(str, missing)), num_classes)
