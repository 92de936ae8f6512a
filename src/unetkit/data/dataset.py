"""Training data: image/label pairs, their targets and weights, random augmented tiles, prefetching.

1. :func:`load_pairs` reads PATHs of images and labels (``io.iter_images``): two folders whose
   files pair by name (same stem; slices of stacks as ``<stem>_<i>``), or two multi-page TIFF
   stacks that pair slice by slice.  Everything is checked before any training starts: unpaired
   names, shapes, channels, unreadable files.  Every error is one ``ValueError`` line that names
   the file and the value.
2. :func:`prepare` builds targets and Eq. 2 weight maps once per image (``targets.build_targets``,
   which also rejects label values that do not fit the label kind) and normalises each image
   exactly as ``inference.tiled.predict_tiled`` will (``Normalization.affine`` of the whole image).
3. :class:`TileSampler` draws the training batch of step ``s`` from its own generator
   ``np.random.default_rng([seed, s, j])`` (tile ``j`` of the batch): which image (in proportion
   to its area), where, and every augmentation parameter (``augment.augment_tile``).  A batch is a
   pure function of ``(seed, s)``: resuming at step ``k`` replays exactly, whatever the threading.
4. :class:`Prefetcher` prepares the batches of the coming steps in a background thread, into a
   bounded queue, so augmentation overlaps with the forward/backward pass (numpy, scipy and torch
   release the GIL in their heavy loops; ``threads=1`` keeps it off the training step's cores
   when training on the CPU).  It counts the seconds spent preparing and the seconds
   the training loop waited for a batch.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .augment import augment_tile
from ..config import AugmentConfig, Config
from ..io.images import image_files, iter_images
from .normalize import Normalization, image_stats
from .label_kinds import canonical_kind, decide_kind
from .targets import build_targets

__all__ = [
    "Pair",
    "Prepared",
    "Batch",
    "label_kind_of",
    "uses_contact",
    "load_pairs",
    "split_validation",
    "training_normalization",
    "prepare",
    "TileSampler",
    "Prefetcher",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Pair:
    """One raw training example: ``image`` (C, H, W) in its own dtype, ``labels`` (H, W);
    ``image_source`` / ``label_source`` name the file (and slice) for error messages."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    image_source: str
    label_source: str


@dataclass(frozen=True)
class Prepared:
    """One example ready for sampling: ``image`` (C, H, W) float32, normalised as predict_tiled
    does; ``target`` (H, W) int64; ``weights`` (H, W) float32; ``ignore`` (H, W) bool or None
    when nothing is ignored; ``kind`` the resolved label kind."""

    name: str
    image: np.ndarray
    target: np.ndarray
    weights: np.ndarray
    ignore: np.ndarray | None
    kind: str
    source: str


@dataclass(frozen=True)
class Batch:
    """The tiles of one step: image (B, C, S, S) float32, target (B, So, So) int64,
    weights (B, So, So) float32, ignore (B, So, So) bool or None."""

    image: np.ndarray
    target: np.ndarray
    weights: np.ndarray
    ignore: np.ndarray | None


# ---- reading and pairing ------------------------------------------------------------------------


def _read(path: PathLike) -> list[tuple[str, str, np.ndarray]]:
    """``(name, source, (C, H, W) array)`` for every image / slice at ``path``."""
    out = []
    for f in image_files(path):
        items = list(iter_images(f))
        for i, (name, array) in enumerate(items):
            source = str(f) if len(items) == 1 else f"{f} (slice {i})"
            out.append((name, source, array))
    return out


def _names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _pair_up(images: PathLike, labels: PathLike) -> list[tuple[tuple, tuple]]:
    imgs, labs = _read(images), _read(labels)
    if Path(images).is_file() and Path(labels).is_file():  # two stacks: slice by slice
        if len(imgs) != len(labs):
            raise ValueError(
                f"{labels}: {len(labs)} label slice(s) for {len(imgs)} image slice(s) in {images}"
            )
        return list(zip(imgs, labs))
    for path, items in ((images, imgs), (labels, labs)):
        seen: dict[str, str] = {}
        for name, source, _ in items:
            if name in seen:
                raise ValueError(f"{path}: two images named {name!r} ({seen[name]} and {source})")
            seen[name] = source
    by_name = {name: (name, source, arr) for name, source, arr in labs}
    no_label = [name for name, _, _ in imgs if name not in by_name]
    image_names = {name for name, _, _ in imgs}
    no_image = [name for name in by_name if name not in image_names]
    if no_label or no_image:
        parts = []
        if no_label:
            parts.append(f"no label in {labels} for image(s) {_names(no_label)}")
        if no_image:
            parts.append(f"no image in {images} for label(s) {_names(no_image)}")
        raise ValueError("unpaired files: " + "; ".join(parts))
    return [(item, by_name[item[0]]) for item in imgs]


def _label_plane(array: np.ndarray, source: str) -> np.ndarray:
    """(C, H, W) label array -> (H, W); gray stored as RGB is accepted, colour is not."""
    if array.shape[0] == 1:
        return array[0]
    if all(np.array_equal(array[0], array[c]) for c in range(1, array.shape[0])):
        return array[0]
    raise ValueError(f"{source}: labels must be a single-channel image, got {array.shape[0]} channels")


def load_pairs(images: PathLike, labels: PathLike, *, channels: int | None = None) -> list[Pair]:
    """Read and pair training images and labels; every check happens here, before training.

    Args:
        images: a folder of images, an image file, or a multi-page TIFF stack.
        labels: the same layout: files with the same stems in a folder, or a stack with one
            label slice per image slice.
        channels: the channels every image must have (the model's ``in_channels``).

    Returns:
        One :class:`Pair` per image (or slice), in image name order.

    Raises:
        ValueError: naming the file: unreadable or empty, unpaired names, shape or channel
            mismatch, colour labels.
    """
    pairs = []
    for (name, img_src, img), (_, lab_src, lab) in _pair_up(images, labels):
        if channels is not None and img.shape[0] != channels:
            raise ValueError(
                f"{img_src}: image has {img.shape[0]} channel(s), the model expects {channels} "
                f"(model.in_channels)"
            )
        plane = _label_plane(lab, lab_src)
        if plane.shape != img.shape[1:]:
            raise ValueError(
                f"{lab_src}: label shape {plane.shape[0]}x{plane.shape[1]} does not match image "
                f"{img_src} of shape {img.shape[1]}x{img.shape[2]}"
            )
        pairs.append(Pair(name, img, plane, img_src, lab_src))
    return pairs


def split_validation(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out ``round(fraction * n)`` images (at least 1, leaving at least 1) for validation,
    chosen by ``seed``; returns ``(train, validation)``, each in the original order."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    n = len(pairs)
    if n < 2:
        raise ValueError(f"a validation fraction needs at least 2 images, got {n}")
    k = min(max(1, round(fraction * n)), n - 1)
    held = set(np.random.default_rng([seed, 7]).permutation(n)[:k].tolist())
    train = [p for i, p in enumerate(pairs) if i not in held]
    val = [p for i, p in enumerate(pairs) if i in held]
    return train, val


# ---- targets and normalisation ------------------------------------------------------------------


def training_normalization(mode: str, pairs: Sequence[Pair]) -> Normalization:
    """The :class:`Normalization` stored with the model; ``"dataset"`` pools the per-channel mean
    and std over all training pixels (each image streamed by ``image_stats``)."""
    if mode != "dataset":
        return Normalization(mode=mode)
    total, total_sq, count = 0.0, 0.0, 0
    for p in pairs:
        try:
            mean, std = image_stats(p.image)
        except ValueError as err:
            raise ValueError(f"{p.image_source}: {err}") from None
        n = p.image.shape[1] * p.image.shape[2]
        total = total + mean * n
        total_sq = total_sq + (std**2 + mean**2) * n
        count += n
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return Normalization(mode="dataset", mean=tuple(map(float, mean)), std=tuple(map(float, std)))


def _normalised(pair: Pair, norm: Normalization) -> np.ndarray:
    """(C, H, W) float32, computed as predict_tiled computes it (raw.astype(float32) * s + o)."""
    c = pair.image.shape[0]
    try:
        scale, offset = norm.affine(pair.image, c)
    except ValueError as err:
        raise ValueError(f"{pair.image_source}: {err}") from None
    image = pair.image.astype(np.float32) * scale[:, None, None] + offset[:, None, None]
    if not np.isfinite(image).all():
        raise ValueError(f"{pair.image_source}: image holds NaN or infinite values")
    return image


def label_kind_of(pairs: Sequence[Pair], cfg: Config) -> str:
    """The label kind of a dataset: ``cfg.data.label_kind``, or for ``auto`` the decision of
    :func:`label_kinds.decide_kind` from all the labels and the configuration (logged)."""
    kind = canonical_kind(cfg.data.label_kind)
    if kind != "auto":
        return kind
    decision = decide_kind(((p.label_source, p.labels) for p in pairs),
                           num_classes=cfg.model.num_classes, ignore_value=cfg.data.ignore_value)
    log.info("label kind: %s (data.label_kind=auto: %s; override with --set "
             "data.label_kind=...)", decision.kind, decision.reason)
    return decision.kind


def uses_contact(cfg: Config, kind: str) -> bool:
    """Whether the targets carry a contact class (``data.touching: class``, instance labels,
    three classes: ``training.choices`` makes it three when the training objects touch)."""
    return (cfg.data.touching == "class" and canonical_kind(kind) == "instances"
            and cfg.model.num_classes == 3)


def prepare(pairs: Sequence[Pair], cfg: Config, norm: Normalization, *,
            kind: str | None = None) -> list[Prepared]:
    """Targets, weights and normalised images for every pair (the in-memory cache).

    Label values are checked against the label kind (``kind``, default
    :func:`label_kind_of` these pairs: ``auto`` is decided once from all their labels and the
    configuration; pass the kind of the whole dataset when preparing parts of it) and
    ``cfg.model.num_classes``; errors name the label file and the value.
    """
    kind = label_kind_of(pairs, cfg) if kind is None else canonical_kind(kind)
    out = []
    for p in pairs:
        try:
            t = build_targets(
                p.labels,
                kind=kind,
                ignore_value=cfg.data.ignore_value,
                num_classes=cfg.model.num_classes,
                w0=cfg.weights.w0,
                sigma=cfg.weights.sigma,
                class_weights=cfg.weights.class_weights,
                max_class_weight=cfg.weights.max_class_weight,
                contact=uses_contact(cfg, kind),
            )
        except ValueError as err:
            raise ValueError(f"{p.label_source}: {err}") from None
        top = int(t.target.max(initial=0))
        if top >= cfg.model.num_classes:
            raise ValueError(
                f"{p.label_source}: class {top} out of range for model.num_classes="
                f"{cfg.model.num_classes}"
            )
        ignore = t.ignore if t.ignore.any() else None
        out.append(Prepared(p.name, _normalised(p, norm), t.target, t.weights, ignore, t.kind,
                            p.image_source))
    return out


# ---- sampling -----------------------------------------------------------------------------------


class TileSampler:
    """Random augmented training tiles; ``batch(step)`` depends only on ``(seed, step)``.

    Tiles: input ``tile_size`` (a legal size), targets and weights of the centred ``out_size``
    crop.  The image of each tile is drawn in proportion to its area, so every pixel of the
    training set is equally likely to be seen.
    """

    def __init__(self, items: Sequence[Prepared], augment: AugmentConfig, tile_size: int,
                 out_size: int, batch_size: int, seed: int, foreground: float = 0.0) -> None:
        if not items:
            raise ValueError("no training images")
        self.items = list(items)
        self.augment, self.tile_size, self.out_size = augment, tile_size, out_size
        self.batch_size, self.seed = batch_size, seed
        areas = np.array([it.target.size for it in self.items], dtype=np.float64)
        self.p = areas / areas.sum()
        # foreground-centred tiles: a share ``foreground`` of the tiles is centred on a random
        # (non-ignored) foreground pixel, drawn in proportion to each image's foreground
        self.foreground = foreground
        self._fg = [np.flatnonzero((it.target > 0) & (it.weights > 0)) for it in self.items]
        fg_counts = np.array([f.size for f in self._fg], dtype=np.float64)
        self.p_fg = fg_counts / fg_counts.sum() if fg_counts.sum() else None

    def sample(self, step: int, j: int = 0) -> tuple[np.ndarray, ...]:
        """Tile ``j`` of step ``step``: image (C, S, S), target, weights, ignore (So, So)."""
        rng = np.random.default_rng([self.seed, step, j])
        top_left = None
        if self.foreground > 0 and self.p_fg is not None and rng.random() < self.foreground:
            k = int(rng.choice(len(self.items), p=self.p_fg))
            item = self.items[k]
            cy, cx = divmod(int(self._fg[k][rng.integers(self._fg[k].size)]), item.target.shape[1])
            # the pixel lands anywhere in the middle half of the output crop
            jy, jx = rng.integers(-(self.out_size // 4), self.out_size // 4 + 1, size=2)
            top_left = (int(cy + jy) - self.tile_size // 2, int(cx + jx) - self.tile_size // 2)
        else:
            item = self.items[int(rng.choice(len(self.items), p=self.p))]
        t = augment_tile(item.image, item.target, item.weights, rng, self.augment,
                         self.tile_size, self.out_size, ignore=item.ignore, top_left=top_left)
        ignore = t.ignore if t.ignore is not None else np.zeros(t.target.shape, bool)
        return t.image, t.target.astype(np.int64), t.weights, ignore

    def batch(self, step: int, first: int = 0) -> Batch:
        """Tiles ``first ... first + batch_size - 1`` of ``step`` (data-parallel training: rank
        ``r`` takes ``first = r * batch_size``, so the ranks' tiles form one global batch)."""
        tiles = [self.sample(step, j) for j in range(first, first + self.batch_size)]
        image, target, weights, ignore = (np.stack(a) for a in zip(*tiles))
        return Batch(image, target, weights, ignore if ignore.any() else None)


class Prefetcher:
    """Produce ``make(step)`` for ``step = start, start + 1, ...`` in a background thread.

    At most ``depth`` results wait in the queue.  ``get(step)`` returns them in order;
    ``prep_seconds`` is the thread's time in ``make``, ``wait_seconds`` the caller's time blocked
    in ``get``.  ``threads``: torch intra-op threads of the background thread (None: torch's
    default).  An exception in ``make`` is re-raised by ``get``.  Use as a context manager (or
    call :meth:`close`) so the thread stops.
    """

    def __init__(self, make: Callable[[int], Any], start: int, depth: int = 2,
                 threads: int | None = None) -> None:
        self._make, self._threads = make, threads
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self.prep_seconds = 0.0
        self.wait_seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True,
                                        name="unetkit-data")
        self._thread.start()

    def _put(self, item: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, step: int) -> None:
        if self._threads is not None:
            # torch's intra-op thread count is per thread. When training runs on the CPU, an
            # OpenMP team here would stall the training step's team at every barrier (measured
            # on 2 cores: +33 % per step; with 1 thread +11 %).
            torch.set_num_threads(self._threads)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                item = (step, self._make(step), None)
            except BaseException as err:  # handed to the consumer, raised there
                self._put((step, None, err))
                return
            self.prep_seconds += time.perf_counter() - t0
            if not self._put(item):
                return
            step += 1

    def get(self, step: int) -> Any:
        t0 = time.perf_counter()
        while True:
            try:
                got, value, err = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the data thread stopped unexpectedly") from None
        self.wait_seconds += time.perf_counter() - t0
        if err is not None:
            raise err
        assert got == step, (got, step)  # internal: steps are consumed in order
        return value

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a waiting put
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=30)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
