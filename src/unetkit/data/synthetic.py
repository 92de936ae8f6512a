"""Synthetic fluorescence microscopy with exact instance labels; numpy/scipy only, no torch.

The project ships no data, so tests and ``unetkit demo`` draw their images here, deterministically
from a seed. An image is made in four steps:

1. **Place** star-convex objects (ellipses with random axes and orientation whose outline is
   perturbed by low-frequency radial harmonics). Some are lone, many are grown in clusters whose
   members are set closer than the sum of their radii in that direction, so they overlap a little.
2. **Paint** the labels, one local bounding box per object (never a full-image array per object).
   A pixel covered by several objects goes to the one whose outline it is deepest inside
   (smallest ``distance / radius(angle)``), so clustered neighbours *share a boundary* without
   overlapping: a plain threshold would merge them, which is what the U-Net's border weights are for.
   Each object is kept as its largest 4-connected piece; objects cut below ``min_area`` are dropped.
3. **Render** the ideal signal from the labels: per-object brightness, a dome profile dimming
   towards the outline, fine and coarse texture, bright spots (chromocentres / granules), and for
   ``kind="cells"`` a dimmer nucleus-shaped core (a cytoplasm stain).
4. **Image** it: Gaussian PSF blur, out-of-focus haze, autofluorescence, uneven illumination
   (vignetting, a linear gradient, a smooth random field), Poisson shot noise, Gaussian read noise,
   camera offset and quantisation to uint8 or uint16.

The labels are the truth before blur and noise. Shapes: ``image`` and ``instances`` are both
``(H, W)``; ``instances`` is uint16 (uint32 if more than 65535 objects) with 0 = background and
objects numbered 1..N consecutively.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from ..io.images import atomic_path
from .cell_params import PRESETS, CellParams, resolve_params
from .optics import expose, haze, illumination, render_signal

__all__ = ["PRESETS", "CellParams", "iter_dataset", "make_cells", "make_dataset",
           "resolve_params", "touching_fraction", "touching_pairs", "write_dataset"]

logger = logging.getLogger(__name__)

_N_ANGLES = 64  # samples of each outline's radius function; harmonics go up to 6, so 64 is ample
_HARMONICS = np.arange(2, 7)
_MAX_FAILURES = 300  # consecutive failed placements before an image counts as full


def _as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy Generator or a non-negative int seed, got {rng!r}")


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or any(not isinstance(s, (int, np.integer)) or s < 16 for s in shape)):
        raise ValueError(f"shape must be two integers >= 16, got {shape!r}")
    return int(shape[0]), int(shape[1])


# ---------------------------------------------------------------------------------------------
# 1. placement
# ---------------------------------------------------------------------------------------------


def _draw_outline(rng: np.random.Generator, p: CellParams) -> np.ndarray:
    """Radius in px at angles ``2*pi*i/_N_ANGLES`` (angle measured from the +x axis): (A,)."""
    angles = np.linspace(0.0, 2 * np.pi, _N_ANGLES, endpoint=False)
    r_eq = rng.uniform(*p.radius_range)
    aspect = rng.uniform(1.0, p.max_aspect)
    a, b = r_eq * np.sqrt(aspect), r_eq / np.sqrt(aspect)
    phi = angles - rng.uniform(0.0, np.pi)
    ellipse = a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)
    amp = rng.normal(0.0, p.irregularity, _HARMONICS.size) * 2.0 / _HARMONICS  # smooth: 1/k decay
    phase = rng.uniform(0.0, 2 * np.pi, _HARMONICS.size)
    wobble = 1.0 + (amp[:, None] * np.cos(_HARMONICS[:, None] * angles + phase[:, None])).sum(0)
    return ellipse * np.clip(wobble, 0.7, 1.3)


def _radius_at(tables: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Linear interpolation of outline radii: tables (..., A) at angles theta (...) -> (...)."""
    pos = np.mod(theta, 2 * np.pi) * (_N_ANGLES / (2 * np.pi))
    i0 = np.floor(pos).astype(np.intp) % _N_ANGLES
    w = pos - np.floor(pos)
    r0 = np.take_along_axis(tables, i0[..., None], -1)[..., 0]
    r1 = np.take_along_axis(tables, ((i0 + 1) % _N_ANGLES)[..., None], -1)[..., 0]
    return r0 * (1 - w) + r1 * w


class _Placer:
    """Centres and outlines placed so far, with a grid hash for neighbour queries."""

    def __init__(self, shape: tuple[int, int], p: CellParams):
        self.shape, self.p = shape, p
        self.centres: list[tuple[float, float]] = []
        self.tables: list[np.ndarray] = []
        self.area = 0.0
        # Largest possible radius (ellipse major axis x wobble) bounds the interaction distance.
        r_bound = p.radius_range[1] * np.sqrt(p.max_aspect) * 1.3
        self.cell = 2 * r_bound + p.gap + 1
        self.grid: dict[tuple[int, int], list[int]] = defaultdict(list)

    def fits(self, c: np.ndarray, table: np.ndarray, factor: float, gap: float, skip: int = -1):
        """True if for every neighbour i: dist >= factor * (r_i + r_new) + gap, radii facing."""
        gy, gx = int(c[0] // self.cell), int(c[1] // self.cell)
        near = [i for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                for i in self.grid.get((gy + dy, gx + dx), ()) if i != skip]
        if not near:
            return True
        d = np.asarray([self.centres[i] for i in near]) - c  # (n, 2): new centre -> neighbour
        theta = np.arctan2(d[:, 0], d[:, 1])
        r_new = _radius_at(np.broadcast_to(table, (len(near), _N_ANGLES)), theta)
        r_old = _radius_at(np.stack([self.tables[i] for i in near]), theta + np.pi)
        return bool(np.all(np.hypot(d[:, 0], d[:, 1]) >= factor * (r_new + r_old) + gap))

    def add(self, c: np.ndarray, table: np.ndarray) -> int:
        self.centres.append((float(c[0]), float(c[1])))
        self.tables.append(table)
        self.grid[(int(c[0] // self.cell), int(c[1] // self.cell))].append(len(self.centres) - 1)
        self.area += 0.5 * np.mean(table**2) * 2 * np.pi
        return len(self.centres) - 1


def _try_lone(placer: _Placer, rng: np.random.Generator) -> int | None:
    c = rng.uniform((0.0, 0.0), placer.shape)
    table = _draw_outline(rng, placer.p)
    if placer.fits(c, table, 1.0, placer.p.gap):
        return placer.add(c, table)
    return None


def _try_neighbour(placer: _Placer, parent: int, rng: np.random.Generator) -> int | None:
    """Put a new object against ``parent``, overlapping it by 5-20 % of the summed radii."""
    table = _draw_outline(rng, placer.p)
    theta = rng.uniform(0.0, 2 * np.pi)
    reach = (_radius_at(placer.tables[parent], np.asarray(theta))
             + _radius_at(table, np.asarray(theta + np.pi)))
    dist = min(rng.uniform(0.8, 0.95) * reach, reach - 2.0)  # >= 2 px overlap: a shared border
    c = np.asarray(placer.centres[parent]) + dist * np.array([np.sin(theta), np.cos(theta)])
    inside = 0 <= c[0] < placer.shape[0] and 0 <= c[1] < placer.shape[1]
    if inside and placer.fits(c, table, 0.8, 0.0, skip=parent):
        return placer.add(c, table)
    return None


def _place(shape: tuple[int, int], p: CellParams, rng: np.random.Generator,
           n_cells: int | None) -> _Placer:
    placer = _Placer(shape, p)
    target_n = n_cells if n_cells is not None else np.inf
    target_area = np.inf if n_cells is not None else p.coverage * shape[0] * shape[1]
    failures = 0
    while len(placer.centres) < target_n and placer.area < target_area:
        if failures >= _MAX_FAILURES:
            if n_cells is not None:
                logger.warning("only %d of n_cells=%d objects fit in %s", len(placer.centres),
                               n_cells, shape)
            break
        seed = _try_lone(placer, rng)
        if seed is None:
            failures += 1
            continue
        failures = 0
        if rng.random() < p.cluster_fraction:
            members = [seed]
            size = 2 + rng.poisson(p.mean_cluster_size - 2)
            for _ in range(10 * size):
                if len(members) >= size or len(placer.centres) >= target_n:
                    break
                new = _try_neighbour(placer, members[rng.integers(len(members))], rng)
                if new is not None:
                    members.append(new)
    return placer


# ---------------------------------------------------------------------------------------------
# 2. labels
# ---------------------------------------------------------------------------------------------


def _paint(placer: _Placer) -> tuple[np.ndarray, np.ndarray]:
    """-> labels (H, W) int32 (object k+1 = placed object k) and depth s = dist / radius (H, W)."""
    h, w = placer.shape
    labels = np.zeros((h, w), np.int32)
    depth = np.full((h, w), np.inf, np.float32)
    for k, ((cy, cx), table) in enumerate(zip(placer.centres, placer.tables, strict=True), start=1):
        r = float(table.max())
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, h)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, w)
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)  # (h_k, 1)
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)  # (1, w_k)
        theta = np.arctan2(yy, xx)  # (h_k, w_k)
        s = np.hypot(yy, xx) / _radius_at(np.broadcast_to(table, theta.shape + table.shape),
                                          theta).astype(np.float32)
        box_l, box_d = labels[y0:y1, x0:x1], depth[y0:y1, x0:x1]  # views
        win = (s < 1) & (s < box_d)
        box_l[win] = k
        box_d[win] = s[win]
    return labels, depth


def _clean(labels: np.ndarray, depth: np.ndarray, min_area: int) -> np.ndarray:
    """Keep each object's largest 4-connected piece, drop small ones, number 1..N in place order.

    (H, W) int32 -> (H, W) uint16, or uint32 beyond 65535 objects. ``depth`` is set to inf
    wherever a pixel returns to background.
    """
    slices = ndimage.find_objects(labels)
    keep = np.zeros(len(slices) + 1, bool)
    for k, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        box_l, box_d = labels[sl], depth[sl]
        mask = box_l == k
        pieces, n = ndimage.label(mask)  # default structure: 4-connectivity
        if n > 1:
            largest = 1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))
            mask &= pieces == largest
            stray = (pieces > 0) & ~mask
            box_l[stray], box_d[stray] = 0, np.inf
        if mask.sum() >= min_area:
            keep[k] = True
        else:
            box_l[mask], box_d[mask] = 0, np.inf
    n_kept = int(keep.sum())
    lut = np.zeros(keep.size, np.uint16 if n_kept <= np.iinfo(np.uint16).max else np.uint32)
    lut[keep] = np.arange(1, n_kept + 1)
    return lut[labels]


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------


def make_cells(shape: tuple[int, int] = (512, 512), rng: np.random.Generator | int = 0, *,
               kind: str = "nuclei", n_cells: int | None = None,
               params: CellParams | None = None, **overrides) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic fluorescence image and its exact instance labels.

    Args:
        shape: (H, W) in px, each >= 16. 4096 x 4096 takes a few seconds.
        rng: a numpy Generator, or an int seed; the same seed gives identical arrays.
        kind: "nuclei" (compact, speckled, about half touching) or "cells" (larger, irregular,
            cytoplasm stain with a dim nucleus, mostly touching); picks ``PRESETS[kind]``.
        n_cells: number of objects to place; None fills ``coverage`` of the image instead.
            Objects that cannot fit, or that end up under ``min_area``, are left out (logged).
        params: full parameters, instead of ``kind`` and ``overrides``.
        **overrides: any :class:`CellParams` field, e.g. ``radius_range=(5, 10)``,
            ``dtype="uint16"``, ``blur_sigma=2``.

    Returns:
        image (H, W) uint8 or uint16, and instances (H, W) uint16 (uint32 beyond 65535 objects):
        0 = background, objects 1..N, each one 4-connected piece; neighbours in a cluster share
        a boundary. ``touching_fraction(instances)`` tells how many touch.
    """
    h, w = _check_shape(shape)
    if n_cells is not None and (int(n_cells) != n_cells or n_cells < 1):
        raise ValueError(f"n_cells must be a positive integer or None, got {n_cells!r}")
    if params is not None and overrides:
        raise ValueError(f"pass either params or overrides, not both; got overrides "
                         f"{sorted(overrides)}")
    p = params if params is not None else resolve_params(kind, **overrides)
    gen = _as_rng(rng)
    placer = _place((h, w), p, gen, n_cells)
    labels, depth = _paint(placer)
    instances = _clean(labels, depth, p.min_area)
    del labels
    signal = render_signal(instances, depth, p, gen)
    del depth
    if p.blur_sigma:
        signal = ndimage.gaussian_filter(signal, p.blur_sigma)
    signal += haze(signal, p)
    signal += np.float32(p.background)
    signal *= illumination((h, w), p, gen)
    signal *= np.float32(p.photons)
    image = expose(signal, p, gen)
    logger.debug("make_cells %s: %d objects placed, %d kept", shape,
                 len(placer.centres), int(instances.max()))
    return image, instances


def touching_pairs(instances: np.ndarray) -> np.ndarray:
    """Pairs of labels that share an edge (4-adjacent pixels): (H, W) -> (P, 2), a < b, sorted."""
    lab = np.asarray(instances)
    if lab.ndim != 2:
        raise ValueError(f"instances must be 2-D (H, W), got shape {lab.shape}")
    lab = lab.astype(np.int64, copy=False)
    codes = []
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :])):
        hit = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[hit], b[hit]), np.maximum(a[hit], b[hit])
        codes.append(lo * (int(lab.max()) + 1) + hi)
    code = np.unique(np.concatenate(codes))
    base = int(lab.max()) + 1
    return np.stack([code // base, code % base], axis=1)


def touching_fraction(instances: np.ndarray) -> float:
    """Fraction of objects that share an edge with at least one other; 0.0 if none."""
    labels = np.unique(instances)
    labels = labels[labels > 0]
    if labels.size == 0:
        return 0.0
    return np.unique(touching_pairs(instances)).size / labels.size


def iter_dataset(n_images: int, shape: tuple[int, int] = (512, 512), seed: int = 0,
                 **kwargs) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``n_images`` pairs ``(image, instances)`` from :func:`make_cells`.

    Image i depends only on (seed, i), not on n_images (numpy SeedSequence spawning).
    ``kwargs`` go to :func:`make_cells` (kind, n_cells, any CellParams field).
    """
    if int(n_images) != n_images or n_images < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    _check_shape(shape)
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for child in np.random.SeedSequence(int(seed)).spawn(int(n_images)):
        yield make_cells(shape, np.random.default_rng(child), **kwargs)


def make_dataset(n_images: int, shape: tuple[int, int] = (512, 512), seed: int = 0,
                 **kwargs) -> list[tuple[np.ndarray, np.ndarray]]:
    """The list form of :func:`iter_dataset`."""
    return list(iter_dataset(n_images, shape, seed, **kwargs))


def write_dataset(folder: str | os.PathLike, n_images: int, shape: tuple[int, int] = (512, 512),
                  seed: int = 0, **kwargs) -> list[tuple[Path, Path]]:
    """Write ``images/NNN.tif`` and ``labels/NNN.tif`` under ``folder``; return the path pairs.

    Names are zero-padded to at least 3 digits. Labels are zlib-compressed. ``kwargs`` go to
    :func:`make_cells`. Existing files of the same names are replaced.
    """
    root = Path(folder)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(int(n_images) - 1)))
    written = []
    for i, (image, instances) in enumerate(iter_dataset(n_images, shape, seed, **kwargs)):
        name = f"{i:0{width}d}.tif"
        img_path, lab_path = root / "images" / name, root / "labels" / name
        with atomic_path(img_path) as tmp:
            tifffile.imwrite(tmp, image)
        with atomic_path(lab_path) as tmp:
            tifffile.imwrite(tmp, instances, compression="zlib")
        written.append((img_path, lab_path))
    logger.info("wrote %d synthetic image/label pairs to %s", len(written), root)
    return written
