"""Predict any rectangular region of an image on the *global* tile grid (streaming and dask).

``predict_tiled`` covers a whole image with tiles that start at multiples of the tile stride.  To
write a large output piece by piece (a zarr chunk, a dask block, one tile at a time after a
resume) we need the same numbers for a *part* of the image.  The network is equivariant only to
shifts by multiples of ``2**depth`` (geometry.py), so every tile here also starts on that global
grid: a region whose origin is not on the grid starts its first tile up to ``2**depth - 1`` px
earlier and discards those output pixels.  Any region, computed this way, equals the same pixels
of ``predict_tiled`` to float rounding, whatever the tile size.

Sources are (C, H, W) array-likes in *image* coordinates; windows beyond the image are mirrored
symmetrically exactly as in tiling.py (``read_window``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..model import geometry
from .tiled import as_chw, choose_tile_size, model_device, model_geometry, resolve_halo, run_tiles

__all__ = ["TileRunner", "region_tiles", "context", "STREAM_MEMORY_BUDGET"]

# Activation budget of the automatic tile when streaming: well under predict_tiled's 2 GiB, so
# that a large image gets the same tile whatever its size (flat peak memory, < 2 GB for the
# default 16-channel model with torch itself), at ~5 % more margin overhead than the largest tile.
STREAM_MEMORY_BUDGET = 512 * 2**20


def context(depth: int, padding: str, halo: int) -> int:
    """Input px needed beyond a region on each side: margin (+ halo) + grid phase (<= 2**depth - 1)."""
    return geometry.margin(depth, padding) + halo + 2**depth - 1


def region_tiles(y0: int, x0: int, h: int, w: int, tile_size: int, depth: int = 4,
                 padding: str = "valid", halo: int = 0) -> list[geometry.Tile]:
    """Tiles writing exactly the output region ``[y0, y0+h) x [x0, x0+w)`` (image coordinates).

    Tiles start on the global ``2**depth`` grid and step by ``tile_stride``; the written part of
    each is clipped to the region (``off_y``/``off_x`` say where it lies in the tile's output).
    """
    stride = geometry.tile_stride(tile_size, depth, padding, halo)
    m = geometry.margin(depth, padding) + halo
    g = 2**depth

    def axis(start: int, length: int) -> list[tuple[int, int, int, int]]:
        plan = []
        first = start - start % g
        for t in range(first, start + length, stride):
            a, b = max(t, start), min(t + stride, start + length)
            plan.append((a, b - a, t - m, halo + a - t))
        return plan

    return [geometry.Tile(y, x, hh, ww, iy, ix, oy, ox)
            for (y, hh, iy, oy) in axis(y0, h) for (x, ww, ix, ox) in axis(x0, w)]


@dataclass
class TileRunner:
    """Runs batches of tiles of one model: read mirrored windows, normalise, forward, crop.

    ``tile_size`` None: the cheapest legal tile for the image shape under ``memory_budget``
    (``choose_tile_size``, as ``predict_tiled`` does with its own budget).
    """

    model: nn.Module
    tile_size: int | None = None
    batch_size: int = 1
    tta: bool = False
    softmax: bool = True
    device: str | torch.device | None = None
    halo: int | None = None
    memory_budget: int = STREAM_MEMORY_BUDGET

    def __post_init__(self) -> None:
        depth, padding, self.in_channels, self.num_classes, self.base = model_geometry(self.model)
        self.depth, self.padding = depth, padding
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self.halo = resolve_halo(depth, padding, self.halo)
        if self.tile_size is not None:
            geometry.check_input_size(self.tile_size, depth, padding)
        self.device = torch.device(self.device) if self.device else model_device(self.model)

    def resolve_tile(self, shape: tuple[int, int]) -> int:
        """The tile size for an (H, W) image: the given one, or ``predict_tiled``'s choice."""
        if self.tile_size is None:
            self.tile_size = choose_tile_size(shape, self.depth, self.base, self.padding,
                                              self.batch_size, self.memory_budget,
                                              halo=self.halo,
                                              in_channels=self.in_channels,
                                              num_classes=self.num_classes)
        return self.tile_size

    @property
    def stride(self) -> int:
        assert self.tile_size is not None
        return geometry.tile_stride(self.tile_size, self.depth, self.padding, self.halo)

    def plan(self, shape: tuple[int, int]) -> list[geometry.Tile]:
        """``predict_tiled``'s plan for an (H, W) image (tiles at multiples of the stride)."""
        size = self.resolve_tile(shape)
        return geometry.plan_tiles(shape, size, self.depth, self.padding, self.halo)

    def region(self, shape: tuple[int, int], y0: int, x0: int, h: int, w: int
               ) -> list[geometry.Tile]:
        size = self.resolve_tile(shape)
        return region_tiles(y0, x0, h, w, size, self.depth, self.padding, self.halo)

    def run(self, src: Any, tiles: list[geometry.Tile], scale: np.ndarray, offset: np.ndarray
            ) -> Iterator[tuple[list[geometry.Tile], np.ndarray]]:
        """Yield ``(batch, probs)`` per batch: ``probs`` (B, K, S', S') float32 for ``batch``.

        ``src``: (C, H, W) or (H, W) array-like in image coordinates.
        """
        size = self.tile_size
        assert size is not None, "call resolve_tile/plan/region first"
        yield from run_tiles(self.model, as_chw(src, self.in_channels), tiles, size, scale, offset,
                             batch_size=self.batch_size, tta=self.tta, softmax=self.softmax,
                             device=self.device)

    def predict_region(self, src: Any, y0: int, x0: int, h: int, w: int, scale: np.ndarray,
                       offset: np.ndarray, image_shape: tuple[int, int] | None = None,
                       on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """(K, h, w) float32 output of the region, equal to the same pixels of ``predict_tiled``.

        ``image_shape`` (H, W) only picks the automatic tile size (default: ``src``'s shape).
        """
        shape = image_shape or tuple(src.shape[-2:])
        out = np.zeros((self.num_classes, h, w), np.float32)
        for batch, y in self.run(src, self.region(shape, y0, x0, h, w), scale, offset):
            for t, prob in zip(batch, y):
                out[:, t.y - y0 : t.y - y0 + t.h, t.x - x0 : t.x - x0 + t.w] = prob[
                    :, t.off_y : t.off_y + t.h, t.off_x : t.off_x + t.w]
            if on_batch is not None:
                on_batch(len(batch))
        return out
