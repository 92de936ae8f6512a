"""Overlap-tile inference (paper Sec. 2, Fig. 2): any image size, exact stitching, bounded memory.

How it works:

1. The image is extended beyond its borders by **half-sample symmetric mirroring** (numpy's
   ``"symmetric"``: ``... c b a | a b c ... z y x | x y z ...``, the edge pixel repeated).  We chose
   it over ``"reflect"`` (``c b | a b c``) because it is defined for every image size, a single
   pixel included, and it is what dask's ``map_overlap(boundary="reflect")`` does, so tiled,
   whole-image and dask inference agree to the bit.  Training crops mirror the same way.
2. Output tiles start on a grid of ``stride`` px, a multiple of ``2**depth`` (see model/geometry.py: the
   network is only equivariant to such shifts), and each writes its own ``stride x stride`` region
   once: no blending, no seams.  The output equals whole-image inference on the mirrored image.
3. Input windows are read lazily from the source (a numpy array, memmap, zarr array, anything
   sliceable), a bounding box of mirrored indices at a time, and results go straight into ``out``:
   memory is bounded by the tiles in flight, not by the image.

The tile plan and the automatic tile choice are in plan.py; the tile loop is engine.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.normalize import Normalization
from ..model import geometry
from .engine import as_chw, input_affine, model_geometry, model_tta, resolve_halo, run_tiles
from .plan import DEFAULT_MEMORY_BUDGET, choose_tile_size, fit_tile_size, plan_tiles
from .runtime import with_runtime

__all__ = ["predict_tiled"]

log = logging.getLogger(__name__)


def predict_tiled(
    model: nn.Module,
    image: Any,
    tile_size: int | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    tta: bool | None = None,
    out: Any = None,
    *,
    halo: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    normalization: Normalization | dict | None = None,
    softmax: bool = True,
    progress: Callable[[int, int], None] | None = None,
    runtime: str = "torch",
    axes: str | None = None,
) -> Any:
    """Segment an image of any size tile by tile; the result equals whole-image inference.

    Args:
        model: a :class:`unetkit.UNet` (or any module with the same ``config``).
        image: (H, W) or (C, H, W) array-like: numpy array, memmap, zarr array... read lazily;
            or a torch tensor; with ``axes="YXC"`` a channels-last (H, W, C) array (PIL,
            skimage).
        tile_size: input tile edge, legal for the model (572 for the paper network); None picks
            the cheapest legal tile under ``memory_budget`` (module docstring).
        batch_size: tiles per forward pass.
        device: where the network runs; None uses the device of the model's parameters.
        tta: average the 8 flips / 90-degree rotations (the paper averaged 7 rotations);
            None: the model file's choice (on for the default preset's models, off for
            the paper's and for models without one; ``engine.model_tta``).
        out: optional (K, H, W) float32 array-like to fill (e.g. a zarr array or memmap).
        halo: same-padded models only: extra context per side, discarded after the forward pass;
            rounded up to a multiple of ``2**depth``.  Default: the receptive-field radius of the
            network (92 px at depth 4, rounded up to 96).  With a halo that covers the receptive
            field, the zero padding at tile edges never reaches a kept pixel and stitching is
            exact to float rounding (measured: 3e-6); a narrower halo is faster but not exact.
        memory_budget: bytes of activations allowed for the tiles in flight: bounds the automatic
            tile; an explicit ``tile_size`` over it is an error (one larger than the image
            needs is first reduced to the one that covers it).
        normalization: overrides ``model.meta["normalization"]`` (see data/normalize.py).
        softmax: return softmax probabilities (True) or the raw network output (False).
        progress: called as ``progress(tiles_done, tiles_total)`` after each batch.
        runtime: ``"torch"`` (eager), ``"onnxruntime"`` (the exported ONNX graph, CPU) or
            ``"auto"`` (whichever measured faster for this network and tile; see
            inference/runtime.py).  The output is the same to < 1e-4 whatever the runtime.
        axes: ``"YX"``, ``"CYX"`` or ``"YXC"``; None: (H, W) or (C, H, W) by ``ndim``.

    Returns:
        ``out``, or a new (K, H, W) float32 numpy array: per-class probabilities.
    """
    depth, padding, in_ch, n_cls, base = model_geometry(model)
    src = as_chw(image, in_ch, axes)
    _, height, width = src.shape
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    halo = resolve_halo(depth, padding, halo)
    if tile_size is None:
        tile_size = choose_tile_size((height, width), depth, base, padding, batch_size,
                                     memory_budget, halo, in_ch, n_cls)
        log.info("automatic tile size: %d", tile_size)
    else:
        geometry.check_input_size(tile_size, depth, padding)
        capped = fit_tile_size((height, width), tile_size, depth, base, padding, batch_size,
                               memory_budget, halo, in_ch)
        if capped != tile_size:
            log.info("tile %d capped to %d, enough for a %dx%d image", tile_size, capped,
                     height, width)
        tile_size = capped
    tta = model_tta(model, tta)  # before the runtime wraps the model and its meta
    model = with_runtime(model, runtime, tile_size=tile_size, batch_size=batch_size)
    tiles = plan_tiles((height, width), tile_size, depth, padding, halo)
    if out is None:
        out = np.zeros((n_cls, height, width), dtype=np.float32)
    elif tuple(out.shape) != (n_cls, height, width):
        raise ValueError(f"out must have shape {(n_cls, height, width)}, got {tuple(out.shape)}")

    scale, offset = input_affine(model, src, normalization)
    done = 0
    for batch, y in run_tiles(model, src, tiles, tile_size, scale, offset, batch_size=batch_size,
                              tta=tta, softmax=softmax, device=device):
        for t, prob in zip(batch, y):
            out[:, t.y : t.y + t.h, t.x : t.x + t.w] = prob[
                :, t.off_y : t.off_y + t.h, t.off_x : t.off_x + t.w
            ]
        done += len(batch)
        if progress is not None:
            progress(done, len(tiles))
    return out
