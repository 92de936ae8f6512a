"""Training-tile augmentation (paper Sec. 3.1): draw once, apply to image, target and weights.

One call of :func:`augment_tile` turns a source image ``(C, H, W)`` with its target and weight
map ``(H, W)`` into one training sample: the input tile ``(C, S, S)`` and the centred
output-size target and weights ``(So, So)`` (``So = S - 184`` for the paper's network).

1. :func:`sample_params` draws every random number from an explicit ``numpy.random.Generator``:
   rotation angle, flip, multiple of 90 degrees, shift, elastic displacements on a coarse
   3x3 grid (Gaussian, 10 px std), gray-value factors, a noise seed and a zoom factor.
2. :func:`sampling_grid` composes rotation, flip, shift and the elastic field into ONE map of
   source coordinates for every tile pixel: ``src = centre + M (p - c) + shift + elastic(p)``,
   where ``p`` is a tile pixel, ``c`` the tile centre and ``M`` the 2x2 rotation/flip matrix
   times the zoom (a zoom of 2 samples the source every 2 px: objects appear half as large).
   The elastic field is the coarse grid upsampled bicubically over the input tile
   (corner nodes on the corner pixels).
3. :func:`warp` samples image (bicubic), target (nearest) and weights (linear) at those
   coordinates; the target/weight crop uses the central ``So x So`` part of the same map, so
   output pixel ``(i, j)`` corresponds exactly to input pixel ``(i + m, j + m)``.
   Context outside the image is mirrored half-sample symmetrically (numpy ``symmetric``: the
   edge pixel repeats), as everywhere in unetkit; images smaller than the tile work.
4. :func:`adjust_gray_values` applies an optional smooth gain field (uneven brightness),
   gamma, contrast, brightness (optionally each channel its own: a colour shift) and
   optional noise.

The warp runs in float64 so that with everything off it is an exact crop of the mirror-padded
image. Coordinates are ``(y, x)`` in pixels, pixel centres at integers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..config import AugmentConfig

logger = logging.getLogger(__name__)

#: nodes per side of the uneven-brightness grid (AugmentConfig.illumination)
_GAIN_GRID = 3

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "AugmentedTile",
    "adjust_gray_values",
    "augment_tile",
    "displacement_field",
    "gain_field",
    "random_top_left",
    "sample_params",
    "sampling_grid",
    "warp",
]


@dataclass(frozen=True)
class AugmentParams:
    """Every random number of one sample (a draw of :func:`sample_params`)."""

    angle: float  # rotation in degrees
    flip: bool  # mirror x before rotating
    k90: int  # extra rotation by k90 * 90 degrees
    shift: tuple[float, float]  # (dy, dx) in px
    elastic: np.ndarray  # (2, g, g) displacements (dy, dx) in px at the coarse grid nodes
    gamma: float  # 1 = unchanged
    contrast: float  # 1 = unchanged
    brightness: float  # 0 = unchanged, in units of the tile's intensity range
    noise: float  # noise std in units of the tile's intensity range
    noise_seed: int  # seeds the noise field, so the params fully determine the sample
    scale: float = 1.0  # source px per tile px (> 1: objects appear smaller)
    # (3, 3) log-gains of the uneven-brightness field at its grid nodes; None: off
    illumination: np.ndarray | None = None
    # spread of the per-channel gamma, contrast and brightness (AugmentConfig.colour); their
    # values are drawn from ``noise_seed`` where the tile has several channels
    colour: float = 0.0

    def matrix(self) -> np.ndarray:
        """2x2 map from tile offsets (dy, dx) to source offsets: zoom * rotation @ flip."""
        if self.angle == 0:  # exact multiples of 90 degrees (no cos(pi/2) = 6e-17)
            cos, sin = (1.0, 0.0, -1.0, 0.0)[self.k90 % 4], (0.0, 1.0, 0.0, -1.0)[self.k90 % 4]
        else:
            theta = math.radians(self.angle) + self.k90 * math.pi / 2
            cos, sin = math.cos(theta), math.sin(theta)
        rot = np.array([[cos, -sin], [sin, cos]])
        return self.scale * (rot @ np.diag([1.0, -1.0 if self.flip else 1.0]))


@dataclass(frozen=True)
class AugmentedTile:
    """One training sample: image ``(C, S, S)`` float32; target ``(So, So)`` (input dtype),
    weights ``(So, So)`` float32, ignore ``(So, So)`` bool; ``None`` where none was given."""

    image: np.ndarray
    target: np.ndarray | None
    weights: np.ndarray | None
    ignore: np.ndarray | None
    params: AugmentParams


def sample_params(cfg: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    """Draw all random numbers of one sample. The same number of values is drawn whatever is
    switched off, so changing one magnitude leaves the other draws of a seed unchanged."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    g = cfg.elastic_grid
    angle = rng.uniform(-1.0, 1.0) * cfg.rotation
    flip = bool(rng.random() < 0.5)
    k90 = int(rng.integers(4))
    shift = rng.uniform(-1.0, 1.0, 2) * cfg.shift
    elastic = rng.standard_normal((2, g, g)) * cfg.elastic_sigma
    log_gamma = rng.uniform(-1.0, 1.0) * math.log1p(cfg.gamma)
    contrast = 1.0 + rng.uniform(-1.0, 1.0) * cfg.contrast
    brightness = rng.uniform(-1.0, 1.0) * cfg.brightness
    noise_seed = int(rng.integers(2**63))
    # drawn last, so seeds drawn before the zoom existed give the same other values
    log_scale = rng.uniform(-1.0, 1.0) * math.log1p(cfg.scale)
    # drawn after the zoom for the same reason
    log_gains = rng.uniform(-1.0, 1.0, (_GAIN_GRID, _GAIN_GRID)) * math.log1p(cfg.illumination)
    return AugmentParams(
        angle=float(angle), flip=flip and cfg.flip, k90=k90 if cfg.rot90 else 0,
        shift=(float(shift[0]), float(shift[1])), elastic=elastic, gamma=math.exp(log_gamma),
        contrast=float(contrast), brightness=float(brightness), noise=float(cfg.noise),
        noise_seed=noise_seed, scale=math.exp(log_scale),
        illumination=log_gains if cfg.illumination > 0 else None, colour=float(cfg.colour),
    )


def _upsample(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Coarse grids ``(k, g, g)`` -> ``(k, h, w)`` by bicubic interpolation
    (``align_corners=True``: the corner nodes sit on the corner pixels)."""
    field = F.interpolate(
        torch.from_numpy(coarse)[None], size=tuple(shape), mode="bicubic", align_corners=True
    )
    return field[0].numpy()


def displacement_field(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Coarse displacements ``(2, g, g)`` -> per-pixel field ``(2, h, w)`` by bicubic
    interpolation (``align_corners=True``: the corner nodes sit on the corner pixels)."""
    coarse = np.asarray(coarse, dtype=np.float64)
    if coarse.ndim != 3 or coarse.shape[0] != 2:
        raise ValueError(f"coarse displacements must be (2, g, g), got shape {coarse.shape}")
    if not np.any(coarse):
        return np.zeros((2, *shape))
    return _upsample(coarse, shape)


def sampling_grid(
    params: AugmentParams, top_left: tuple[float, float], shape: tuple[int, int]
) -> np.ndarray:
    """Source coordinates ``(2, h, w)`` (y, x) for a tile of ``shape`` whose unaugmented
    placement starts at ``top_left``; rotation is about the tile centre."""
    h, w = shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    dy, dx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    m = params.matrix()
    src_y = top_left[0] + cy + params.shift[0] + m[0, 0] * dy + m[0, 1] * dx
    src_x = top_left[1] + cx + params.shift[1] + m[1, 0] * dy + m[1, 1] * dx
    field = displacement_field(params.elastic, (h, w))
    return np.stack([src_y + field[0], src_x + field[1]])


def warp(array: np.ndarray, coords: np.ndarray, mode: str) -> np.ndarray:
    """Sample ``(C, H, W)`` at source coordinates ``(2, h, w)`` -> ``(C, h, w)`` float64.

    ``mode``: ``"bicubic"`` (images), ``"nearest"`` (labels: output values are input values),
    ``"bilinear"`` (weights). Outside the image: half-sample symmetric mirroring, repeated as
    often as needed (torch ``reflection`` with ``align_corners=False``).
    """
    if mode not in ("bicubic", "nearest", "bilinear"):
        raise ValueError(f"mode must be bicubic, nearest or bilinear, got {mode!r}")
    _, height, width = array.shape
    src = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))[None]
    # pixel (y, x) -> normalised [-1, 1] with align_corners=False: pixel edges at -1 and 1
    gy = (2.0 * coords[0] + 1.0) / height - 1.0
    gx = (2.0 * coords[1] + 1.0) / width - 1.0
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1))[None]
    out = F.grid_sample(src, grid, mode=mode, padding_mode="reflection", align_corners=False)
    return out[0].numpy()


def gain_field(log_gains: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Coarse log-gains ``(g, g)`` -> smooth per-pixel gains ``(h, w)`` (bicubic, corner nodes
    on the corner pixels, as the elastic field)."""
    return np.exp(_upsample(np.asarray(log_gains, dtype=np.float64)[None], shape)[0])


def adjust_gray_values(tile: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Uneven brightness, gamma, contrast, brightness, noise on a float tile ``(C, h, w)`` ->
    same shape/dtype.

    First, where ``params.illumination`` is set, ``d + G (x - d)`` with ``d`` each channel's
    dark level (the 1st percentile of the tile smoothed over 5x5 px, so near the mean of a
    noisy background) and ``G`` the smooth :func:`gain_field`.  Then
    per channel, with lo/hi the tile's min/max and r = hi - lo: gamma on the min-max range
    ``lo + r ((x - lo) / r) ** gamma``; contrast about the mean ``m + c (x - m)``; brightness
    ``x + b r``; noise ``N(0, (noise r)^2)``. Range-relative, so any normalisation works.
    Where ``params.colour`` is set and the tile has several channels, each channel's gamma,
    contrast and brightness deviate from the shared ones by its own draw (a colour shift).
    """
    x = tile.astype(np.float64)
    if params.illumination is not None:
        # the dark level of the smoothed tile: about the background's mean where the background
        # is noisy (the raw 1st percentile lies far below it, and the gain would amplify it)
        smooth = ndimage.uniform_filter(x, size=(1, 5, 5), mode="reflect")
        dark = np.percentile(smooth, 1.0, axis=(1, 2), keepdims=True)
        x = dark + gain_field(params.illumination, x.shape[1:]) * (x - dark)
    lo = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - lo
    span = np.where(span > 0, span, 1.0)
    gamma, contrast, brightness = _channel_values(params, x.shape[0])
    if np.any(gamma != 1.0):
        x = lo + span * np.clip((x - lo) / span, 0.0, 1.0) ** gamma
    if np.any(contrast != 1.0):
        mean = x.mean(axis=(1, 2), keepdims=True)
        x = mean + contrast * (x - mean)
    x = x + brightness * span
    if params.noise > 0:
        x = x + np.random.default_rng(params.noise_seed).normal(size=x.shape) * params.noise * span
    return x.astype(tile.dtype)


def _channel_values(params: AugmentParams, channels: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gamma, contrast and brightness per channel ``(C, 1, 1)``: the shared values, each
    channel shifted by its own draw where ``params.colour`` is set and there are several."""
    shape = (channels, 1, 1)
    gamma = np.full(shape, params.gamma)
    contrast = np.full(shape, params.contrast)
    brightness = np.full(shape, params.brightness)
    if params.colour > 0 and channels > 1:
        # a stream of its own from the noise seed: the params still fix the sample, and tiles
        # of one channel draw nothing more
        u = np.random.default_rng([params.noise_seed, 1]).uniform(-1.0, 1.0, (3, *shape))
        gamma = gamma * np.exp(u[0] * math.log1p(params.colour))
        contrast = contrast * (1.0 + u[1] * params.colour)
        brightness = brightness + u[2] * params.colour / 4
    return gamma, contrast, brightness


def random_top_left(
    image_shape: tuple[int, int],
    tile_size: int | tuple[int, int],
    out_size: int | tuple[int, int],
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Top-left (y, x) of a random input tile whose centred output crop lies in the image
    (uniform over all integer placements; where the image is smaller than the output crop,
    over placements that contain the image). May be negative: the context is mirrored."""
    (s_h, s_w), (o_h, o_w) = _pair(tile_size), _pair(out_size)
    corner = []
    for size, tile, out in ((image_shape[0], s_h, o_h), (image_shape[1], s_w, o_w)):
        low, high = min(0, size - out), max(0, size - out)
        corner.append(int(rng.integers(low, high + 1)) - (tile - out) // 2)
    return corner[0], corner[1]


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or any(int(s) < 1 for s in pair):
        raise ValueError(f"size must be a positive int or (h, w), got {size!r}")
    return int(pair[0]), int(pair[1])


def augment_tile(
    image: np.ndarray,
    target: np.ndarray | None,
    weights: np.ndarray | None,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    tile_size: int | tuple[int, int],
    out_size: int | tuple[int, int],
    *,
    ignore: np.ndarray | None = None,
    top_left: tuple[int, int] | None = None,
) -> AugmentedTile:
    """One augmented training sample from a source image.

    Args:
        image: ``(C, H, W)`` source image (any real dtype).
        target: ``(H, W)`` integer class map, or ``None``.
        weights: ``(H, W)`` weight map, or ``None``.
        rng: the only source of randomness (tile position, then :func:`sample_params`).
        cfg: augmentation magnitudes.
        tile_size: input tile ``S`` (int or (h, w)).
        out_size: centred output crop ``So`` (``S - So`` even and >= 0).
        ignore: optional ``(H, W)`` bool mask, warped like the target.
        top_left: fixed tile position instead of :func:`random_top_left`.

    Returns:
        :class:`AugmentedTile`: image ``(C, S, S)`` float32, target ``(So, So)``,
        weights ``(So, So)`` float32, ignore ``(So, So)`` bool.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
    hw = image.shape[1:]
    for name, arr in (("target", target), ("weights", weights), ("ignore", ignore)):
        if arr is not None and np.shape(arr) != hw:
            raise ValueError(f"{name} shape {np.shape(arr)} != image (H, W) {hw}")
    (s_h, s_w), (o_h, o_w) = _pair(tile_size), _pair(out_size)
    m_h, m_w = (s_h - o_h) // 2, (s_w - o_w) // 2
    if s_h - o_h < 0 or s_w - o_w < 0 or (s_h - o_h) % 2 or (s_w - o_w) % 2:
        raise ValueError(f"out_size {out_size} must be tile_size {tile_size} minus an even margin")
    if top_left is None:
        top_left = random_top_left(hw, (s_h, s_w), (o_h, o_w), rng)
    params = sample_params(cfg, rng)
    coords = sampling_grid(params, top_left, (s_h, s_w))  # (2, S, S)
    inner = coords[:, m_h : m_h + o_h, m_w : m_w + o_w]  # (2, So, So): same map, centred crop
    tile = adjust_gray_values(warp(image, coords, "bicubic"), params).astype(np.float32)
    out_target = out_weights = out_ignore = None
    if target is not None:
        target = np.asarray(target)
        out_target = warp(target[None], inner, "nearest")[0].astype(target.dtype)
    if weights is not None:
        out_weights = warp(np.asarray(weights)[None], inner, "bilinear")[0].astype(np.float32)
    if ignore is not None:
        out_ignore = warp(np.asarray(ignore, bool)[None], inner, "nearest")[0] > 0.5
    return AugmentedTile(tile, out_target, out_weights, out_ignore, params)
