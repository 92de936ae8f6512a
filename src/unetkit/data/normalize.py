"""Input normalisation, saved with the model so that prediction normalises exactly as training did.

Modes:

- ``"range"``: map ``[low, high]`` to ``[0, 1]``; without an explicit range the dtype's range
  (uint8: 0..255, uint16: 0..65535; float images are taken as already in ``[0, 1]``).
- ``"per_image"``: subtract the image's mean and divide by its std, per channel.  The statistics
  are computed over the *whole* image (streamed in row blocks, so memory stays bounded), never per
  tile: a per-tile statistic would make the output depend on the tiling.
- ``"dataset"``: subtract fixed per-channel means and divide by fixed stds (measured on the
  training set and stored in the model file).
- ``"percentile"``: map the image's own ``low_percentile`` / ``high_percentile`` (1 and 99.8,
  CSBDeep/StarDist's ``normalize(x, 1, 99.8)``) to 0 and 1, jointly over all channels (so the
  colour balance of an RGB stain is kept).  Sparse bright objects barely move these percentiles,
  and a gain or offset change of the camera cancels exactly, which mean/std of a mostly dark
  fluorescence frame does not do as well (the background dominates both).  Percentiles come from
  a regular subsample of the whole image (at most ``PERCENTILE_SAMPLE`` pixels, read in row
  blocks): bounded memory, and the same values whatever the tiling.
- ``"none"``: cast to float32 only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Normalization", "image_stats", "image_percentiles", "NORMALIZATION_MODES"]

NORMALIZATION_MODES = ("range", "per_image", "percentile", "dataset", "none")
#: most pixels the "percentile" mode reads to estimate an image's percentiles (a regular grid)
PERCENTILE_SAMPLE = 1 << 22
_ROW_BLOCK_PIXELS = 1 << 22  # pixels read at once when streaming statistics (16 MiB of float32)


@dataclass(frozen=True)
class Normalization:
    """How raw pixels become network input; JSON-serialisable for the model file."""

    mode: str = "per_image"
    low: float | None = None  # "range": explicit input range (None: the dtype's range)
    high: float | None = None
    mean: tuple[float, ...] | None = None  # "dataset": per-channel statistics
    std: tuple[float, ...] | None = None
    eps: float = 1e-6  # guards the std of a constant image
    low_percentile: float = 1.0  # "percentile": mapped to 0
    high_percentile: float = 99.8  # "percentile": mapped to 1

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATION_MODES:
            raise ValueError(f"normalization mode must be one of {NORMALIZATION_MODES}, got {self.mode!r}")
        if self.mode == "range" and (self.low is None) != (self.high is None):
            raise ValueError("normalization 'range' needs both low and high, or neither")
        if self.mode == "range" and self.low is not None and not self.high > self.low:
            raise ValueError(f"normalization range must have high > low, got [{self.low}, {self.high}]")
        if not 0 <= self.low_percentile < self.high_percentile <= 100:
            raise ValueError(f"normalization percentiles must satisfy 0 <= low < high <= 100, got "
                             f"{self.low_percentile:g} and {self.high_percentile:g}")
        if self.mode == "dataset" and (self.mean is None or self.std is None):
            raise ValueError("normalization 'dataset' needs mean and std per channel")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Normalization:
        if not d:
            return cls(mode="none")
        d = dict(d)
        for key in ("mean", "std"):
            if d.get(key) is not None:
                d[key] = tuple(float(v) for v in d[key])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown normalization key(s): {sorted(unknown)}")
        return cls(**d)

    def affine(self, image: Any, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(scale, offset)`` with ``normalised = raw * scale + offset`` for ``image``.

        ``image``: (C, H, W) array-like (read in row blocks for "per_image").
        """
        if self.mode == "none":
            return np.ones(channels, np.float32), np.zeros(channels, np.float32)
        if self.mode == "range":
            low, high = (self.low, self.high) if self.low is not None else _dtype_range(image.dtype)
            scale = np.full(channels, 1.0 / (high - low))
            return scale.astype(np.float32), (-low * scale).astype(np.float32)
        if self.mode == "percentile":
            low, high = image_percentiles(image, (self.low_percentile, self.high_percentile))
            scale = np.full(channels, 1.0 / max(high - low, self.eps))
            return scale.astype(np.float32), np.full(channels, -low * scale[0], np.float32)
        if self.mode == "dataset":
            mean, std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        else:
            mean, std = image_stats(image)
        if mean.shape != (channels,):
            raise ValueError(
                f"normalization has statistics for {mean.shape[0]} channel(s), image has {channels}"
            )
        scale = 1.0 / np.maximum(std, self.eps)
        return scale.astype(np.float32), (-mean * scale).astype(np.float32)


def _dtype_range(dtype: np.dtype) -> tuple[float, float]:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return (0.0, 1.0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return (float(info.min), float(info.max))
    return (0.0, 1.0)


def image_stats(image: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of a (C, H, W) array-like, streamed in row blocks (float64 sums).

    Raises ValueError when the image holds NaN or infinite values.
    """
    c, h, w = image.shape
    rows = max(1, _ROW_BLOCK_PIXELS // max(1, w * c))
    total = np.zeros(c)
    total_sq = np.zeros(c)
    for y in range(0, h, rows):
        block = np.asarray(image[:, y : y + rows, :], dtype=np.float64)
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(
                f"image holds a non-finite value {block[tuple(bad)]} at channel {bad[0]}, "
                f"row {y + bad[1]}, column {bad[2]}"
            )
        total += block.sum(axis=(1, 2))
        total_sq += np.square(block).sum(axis=(1, 2))
    n = float(h * w)
    mean = total / n
    var = np.maximum(total_sq / n - mean**2, 0.0)
    return mean, np.sqrt(var)


def image_percentiles(image: Any, q: tuple[float, ...]) -> tuple[float, ...]:
    """Percentiles ``q`` of a (C, H, W) array-like over all channels, from a regular subsample of
    at most :data:`PERCENTILE_SAMPLE` pixels read in row blocks.  NaN/inf raise ValueError."""
    c, h, w = image.shape
    step = max(1, int(np.ceil(np.sqrt(c * h * w / PERCENTILE_SAMPLE))))
    rows = max(step, (_ROW_BLOCK_PIXELS // max(1, w * c)) // step * step)
    parts = []
    for y in range(0, h, rows):
        block = np.asarray(image[:, y : y + rows, :])[:, ::step, ::step]
        parts.append(block.reshape(-1))
    sample = np.concatenate(parts).astype(np.float64)
    if not np.isfinite(sample).all():
        raise ValueError(f"image holds a non-finite value {sample[~np.isfinite(sample)][0]}")
    return tuple(float(v) for v in np.percentile(sample, q))
