"""Predict image files: read, segment with overlap-tile inference, write TIFF outputs (no CLI here).

Outputs are named after the input (``<out_dir>/<stem>.tif``).  A multi-page stack is predicted
slice by slice and written as a stack with the same number of pages:

- ``labels``: class indices (uint8, or uint16 beyond 255 classes), ``(H, W)`` or ``(N, H, W)``;
  for a two-class model the foreground is cleaned as the model file says (threshold, holes,
  smallest object: :func:`unetkit.inference.postprocess.model_postprocess`);
- ``probabilities``: float32 softmax probabilities, ``(K, H, W)`` or ``(N, K, H, W)``;
- ``instances``: labelled objects (uint16, or uint32 beyond 65535 objects) from the foreground
  probability ``1 - p(class 0)``: connected components of ``p > threshold``, or a seeded
  watershed that splits touching objects (:func:`unetkit.inference.instances.probabilities_to_instances`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn

from ..model import geometry
from .instances import probabilities_to_instances
from .postprocess import clean_mask, model_postprocess
from ..io.images import read_stack, write_tiff
from .plan import check_output_kind
from .tiled import predict_tiled

__all__ = ["check_predict_args", "predict_file", "output_path"]

log = logging.getLogger(__name__)

def output_path(out_dir: str | os.PathLike, input_path: str | os.PathLike) -> Path:
    return Path(out_dir) / f"{Path(input_path).stem}.tif"


def check_predict_args(model: nn.Module, tile: int | None, output: str) -> None:
    """Fail before any work: illegal tile for this model, unknown output kind."""
    check_output_kind(output)
    if tile is not None:
        cfg = model.config
        geometry.check_input_size(tile, cfg.depth, cfg.padding)
        if geometry.tile_stride(tile, cfg.depth, cfg.padding) < 2**cfg.depth:
            raise ValueError(
                f"tile {tile} is too small to tile with; use at least "
                f"{geometry.min_tile_size(cfg.depth, cfg.padding)}"
            )


def predict_file(
    model: nn.Module,
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    output: str = "labels",
    tile: int | None = None,
    batch: int = 1,
    tta: bool = False,
    device: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    instances: dict | None = None,
) -> Path:
    """Segment every slice of one image file and write ``<out_dir>/<stem>.tif``; return its path.

    ``instances``: options of :func:`probabilities_to_instances` (threshold, method, min_size);
    a threshold or min_size of None (or absent) takes the model file's post-processing.
    """
    check_predict_args(model, tile, output)
    target = output_path(out_dir, path)
    if target.exists() and not overwrite:
        raise ValueError(f"{target}: output exists (use --overwrite to replace it)")
    stack = read_stack(path)  # (N, C, H, W)
    n, c = stack.shape[:2]
    if c != model.config.in_channels:
        raise ValueError(
            f"{path}: image has {c} channel(s), the model expects {model.config.in_channels}"
        )
    options = dict(instances or {})
    pp = model_postprocess(model, options.pop("threshold", None), options.pop("min_size", None))
    results = []
    for i in range(n):
        try:
            prob = predict_tiled(model, stack[i], tile_size=tile, batch_size=batch,
                                 device=device, tta=tta, progress=progress)
        except ValueError as exc:
            where = f" (slice {i})" if n > 1 else ""
            raise ValueError(f"{path}{where}: {exc}") from None
        if output == "labels" and prob.shape[0] == 2:
            results.append(clean_mask(1.0 - prob[0], pp).astype(np.uint8))
        elif output == "labels":
            dtype = np.uint8 if prob.shape[0] <= 256 else np.uint16
            results.append(prob.argmax(axis=0).astype(dtype))
        elif output == "instances":
            fg = 1.0 - prob[0]
            if pp.fill_holes:  # fill small holes first: an object with a pin-hole stays whole
                fg = np.where(clean_mask(fg, replace(pp, min_size=0)), np.maximum(fg, 1.0), fg)
            labels = probabilities_to_instances(fg, threshold=pp.threshold,
                                                min_size=pp.min_size, **options)
            results.append(labels.astype(np.uint16) if labels.max() < 2**16 else labels)
        else:
            results.append(prob)
    data = results[0] if n == 1 else np.stack(results)  # mixed uint16/uint32 stack as uint32
    axes = ("CYX" if output == "probabilities" else "YX")
    axes = axes if n == 1 else "Q" + axes
    write_tiff(target, data, axes=axes)
    log.info("wrote %s", target)
    return target
