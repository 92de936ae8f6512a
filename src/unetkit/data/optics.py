"""Steps 3-4 of a synthetic image (data/synthetic.py): render the ideal signal from the labels,
then image it (PSF blur, haze, illumination, shot and read noise, quantisation). numpy/scipy only."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .cell_params import CellParams

__all__ = ["render_signal", "haze", "illumination", "expose"]


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """White noise blurred to correlation length ``sigma`` px, std 1: (H, W) float32."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, np.float32), sigma)
    field /= np.float32(1.0 / (2 * np.sqrt(np.pi) * sigma))  # std of blurred unit white noise
    return field


def _resample(small: np.ndarray, shape: tuple[int, int], step: int | None = None) -> np.ndarray:
    """Smooth (h, w) field -> (H, W) float32, bilinear; sample i sits at pixel i * step, or the
    samples span the whole image if ``step`` is None."""
    if step is None:
        ys = np.linspace(0, small.shape[0] - 1, shape[0], dtype=np.float32)
        xs = np.linspace(0, small.shape[1] - 1, shape[1], dtype=np.float32)
    else:
        ys = np.minimum(np.arange(shape[0], dtype=np.float32) / step, small.shape[0] - 1)
        xs = np.minimum(np.arange(shape[1], dtype=np.float32) / step, small.shape[1] - 1)
    rows = np.stack([np.interp(xs, np.arange(small.shape[1]), row) for row in small])  # (h, W)
    rows = rows.astype(np.float32)
    i0 = np.minimum(ys.astype(np.intp), small.shape[0] - 2)
    w = (ys - i0)[:, None].astype(np.float32)  # (H, 1)
    out = rows[i0 + 1] - rows[i0]  # (H, W) float32; in place below to bound memory at 4096^2
    out *= w
    out += rows[i0]
    return out


def render_signal(labels: np.ndarray, depth: np.ndarray, p: CellParams,
            rng: np.random.Generator) -> np.ndarray:
    """Ideal in-focus fluorophore density from the labels: (H, W) -> (H, W) float32."""
    n = int(labels.max())
    sigma = p.intensity_cv
    brightness = rng.lognormal(-0.5 * sigma**2, sigma, n + 1).astype(np.float32)  # mean 1
    brightness[0] = 0.0
    s = np.minimum(depth, np.float32(1.0))
    profile = p.edge_level + (1 - p.edge_level) * np.sqrt(1 - s * s)  # dome: dim at the outline
    if p.nucleus_dim:  # a nucleus-shaped core at ~45 % of the cell's radius, soft edge
        profile *= 1 - p.nucleus_dim / (1 + np.exp((s - np.float32(0.45)) / np.float32(0.04)))
    texture = _smooth_noise(labels.shape, 1.0, rng)
    texture *= np.float32(p.texture)
    texture += _smooth_noise(labels.shape, 4.0, rng) * np.float32(0.6 * p.texture)
    texture += 1
    np.clip(texture, 0.1, None, out=texture)
    texture += _spots(labels.shape, p.spot_density, rng)
    signal = brightness[labels]
    signal *= profile
    signal *= texture
    return signal


def _spots(shape: tuple[int, int], density: float, rng: np.random.Generator) -> np.ndarray:
    """Small bright blobs (chromocentres, granules) of peak ~0.6-1.2: (H, W) float32."""
    n = rng.poisson(density * shape[0] * shape[1])
    deltas = np.zeros(shape, np.float32)
    ys, xs = rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)
    np.add.at(deltas, (ys, xs), rng.uniform(0.6, 1.2, n).astype(np.float32))
    sigma = 1.0
    return ndimage.gaussian_filter(deltas, sigma) * np.float32(2 * np.pi * sigma**2)


def illumination(shape: tuple[int, int], p: CellParams, rng: np.random.Generator) -> np.ndarray:
    """Smooth excitation field, mean about 1: vignetting x gradient x random ripple: (H, W)."""
    h, w = shape
    half = max(h, w) / 2
    y = (np.arange(h, dtype=np.float32) - h / 2) / half  # (H,) in about [-1, 1]
    x = (np.arange(w, dtype=np.float32) - w / 2) / half
    cy, cx = rng.uniform(-0.3, 0.3, 2)  # the optical axis is rarely the image centre
    r2 = ((y - cy) ** 2)[:, None] + ((x - cx) ** 2)[None, :]
    field = 1 - np.float32(p.vignetting / 2) * r2  # corners (r2 ~ 2) lose `vignetting`
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.sin(angle) * y)[:, None] + (np.cos(angle) * x)[None, :]
    field *= 1 + np.float32(p.gradient / 2) * ramp.astype(np.float32)
    field *= 1 + 0.05 * _resample(rng.standard_normal((4, 4)), shape)
    return field


def haze(signal: np.ndarray, p: CellParams) -> np.ndarray:
    """Out-of-focus light: the signal blurred by ~16 px, computed at 1/8 resolution: (H, W)."""
    if not p.haze:
        return np.zeros_like(signal)
    small = signal[::8, ::8]
    small = ndimage.gaussian_filter(small.astype(np.float64), 2.0, mode="reflect")
    return _resample(small * p.haze, signal.shape, step=8)


def expose(expected: np.ndarray, p: CellParams, rng: np.random.Generator) -> np.ndarray:
    """Photon counts -> camera values: shot + read noise, offset, gain, clip. (H, W) -> (H, W)."""
    dtype = np.dtype(p.dtype)
    top = float(np.iinfo(dtype).max)
    peak = float(np.percentile(expected[::4, ::4], 99.9))  # of the noise-free image: deterministic
    counts = rng.poisson(expected).astype(np.float32)
    counts += rng.standard_normal(expected.shape, np.float32) * np.float32(p.read_noise)
    counts *= np.float32(0.85 * top / max(peak, 1e-6))  # gain: bright objects at 85 % of range
    counts += np.float32(0.02 * top)  # camera offset keeps the noise floor off zero
    np.clip(np.rint(counts, out=counts), 0, top, out=counts)
    return counts.astype(dtype)
