"""Predict image files: read, segment with overlap-tile inference, write TIFF outputs (no CLI here).

Outputs are named after the input (``<out_dir>/<stem>.tif``).  A multi-page stack is predicted
slice by slice and written as a stack with the same number of pages:

- ``labels``: class indices (uint8, or uint16 beyond 255 classes), ``(H, W)`` or ``(N, H, W)``;
  for a two-class model the foreground is cleaned as the model file says (threshold, holes,
  smallest object: :func:`unetkit.inference.postprocess.model_postprocess`); for a model with a
  contact class (:func:`unetkit.inference.postprocess.has_contact`) too: 0/1, the foreground
  ``1 - p(background)``, touching objects one pixel apart;
- ``probabilities``: float32 softmax probabilities, ``(K, H, W)`` or ``(N, K, H, W)``;
- ``instances``: labelled objects (uint16, or uint32 beyond 65535 objects) from the foreground
  probability ``1 - p(class 0)``: connected components of ``p > threshold``, or a seeded
  watershed that splits touching objects (:func:`unetkit.inference.instances.probabilities_to_instances`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn

from ..model import geometry
from .postprocess import (clean_mask, foreground_maps, has_contact, model_postprocess,
                          postprocess_instances)
from ..io.images import read_stack, stack_shape, tiff_metadata, write_tiff
from .plan import DEFAULT_MEMORY_BUDGET, check_output_kind
from .streaming import predict_to_file
from .tiled import predict_tiled

__all__ = ["check_predict_args", "predict_file", "output_path", "plan_batch", "held_bytes"]

log = logging.getLogger(__name__)

def output_path(out_dir: str | os.PathLike, input_path: str | os.PathLike) -> Path:
    return Path(out_dir) / f"{Path(input_path).stem}.tif"


def check_predict_args(model: nn.Module, tile: int | None, output: str,
                       threshold: float | None = None, min_size: int | None = None,
                       batch: int = 1) -> None:
    """Fail before any work: illegal tile for this model, unknown output kind, a threshold
    outside [0, 1), a negative min_size, a batch below 1."""
    check_output_kind(output)
    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold {threshold:g}: must be in [0, 1) (a foreground probability)")
    if min_size is not None and min_size < 0:
        raise ValueError(f"min_size {min_size}: must be >= 0 (pixels)")
    if batch < 1:
        raise ValueError(f"batch {batch}: must be >= 1")
    if tile is not None:
        cfg = model.config
        smallest = geometry.min_tile_size(cfg.depth, cfg.padding)
        if tile < smallest:  # before the legality check, whose nearest size may be too small
            raise ValueError(f"tile {tile}: too small to tile with; use at least {smallest}")
        geometry.check_input_size(tile, cfg.depth, cfg.padding)


def held_bytes(shape: tuple[int, int, int, int], itemsize: int, num_classes: int) -> int:
    """Memory :func:`predict_file` holds for an ``(N, C, H, W)`` input: the stack, one slice's
    float32 probabilities and the outputs (at most one float32 per class and pixel)."""
    n, c, h, w = shape
    return n * c * h * w * itemsize + num_classes * h * w * 4 * (1 + n)


def plan_batch(files: list[Path], out_dir: str | os.PathLike, in_channels: int, *,
               overwrite: bool = False, skip_existing: bool = False
               ) -> tuple[list[tuple[Path, Path]], list[str], list[Path]]:
    """Check every input of a batch before the first compute.

    Returns ``(jobs, problems, skipped)``: ``(input, output)`` pairs to compute; one message
    per input that cannot be (unreadable, wrong channel count, output exists, two inputs with
    the same stem and so the same output); inputs whose output exists (``skip_existing``).
    """
    by_target: dict[Path, list[Path]] = {}
    for f in files:
        by_target.setdefault(output_path(out_dir, f), []).append(f)
    jobs, problems, skipped = [], [], []
    for f in files:
        target = output_path(out_dir, f)
        same = [g for g in by_target[target] if g != f]
        if same:
            problems.append(f"{f}: same stem as {', '.join(map(str, same))}: both would be "
                            f"written to {target}; rename one or predict them into different "
                            f"folders")
            continue
        if target.exists() and skip_existing:
            skipped.append(f)
            continue
        if target.exists() and not overwrite:
            problems.append(f"{target}: output exists (use --overwrite to replace it or "
                            f"--skip-existing to keep it)")
            continue
        try:
            c = stack_shape(f)[1]
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if c != in_channels:
            problems.append(f"{f}: image has {c} channel(s), the model expects {in_channels}")
            continue
        jobs.append((f, target))
    return jobs, problems, skipped


def predict_file(
    model: nn.Module,
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    output: str = "labels",
    tile: int | None = None,
    batch: int = 1,
    tta: bool | None = None,
    device: str | None = None,
    overwrite: bool = False,
    progress: Callable[..., None] | None = None,
    instances: dict | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Path:
    """Segment every slice of one image file and write ``<out_dir>/<stem>.tif``; return its path.

    ``instances``: options of :func:`probabilities_to_instances` (threshold, method, min_size);
    a threshold or min_size of None (or absent) takes the model file's post-processing.

    Memory: an input whose stack and probabilities (:func:`held_bytes`) exceed
    ``memory_budget`` is streamed tile by tile from disk into the output TIFF
    (:func:`unetkit.inference.streaming.predict_to_file`, needs the ``[dask]`` extra's zarr;
    TIFF inputs only) instead of held; its labels then keep objects of every size, as in
    streaming.  Otherwise the output keeps the input's slice axes (Z, T...), pixel size and
    ImageJ metadata, and labels carry their display range (visible in Fiji).
    """
    opts = dict(instances or {})
    check_predict_args(model, tile, output, opts.get("threshold"), opts.get("min_size"), batch)
    target = output_path(out_dir, path)
    if target.exists() and not overwrite:
        raise ValueError(f"{target}: output exists (use --overwrite to replace it)")
    shape = stack_shape(path)
    itemsize = 4  # upper bound before reading: pixel types up to 32 bits
    if held_bytes(shape, itemsize, model.config.num_classes) > memory_budget and \
            Path(path).suffix.lower() in (".tif", ".tiff"):
        return _stream_file(model, path, target, output, tile, batch, tta, device, overwrite,
                            progress, opts)
    stack = read_stack(path)  # (N, C, H, W)
    n, c = stack.shape[:2]
    if c != model.config.in_channels:
        raise ValueError(
            f"{path}: image has {c} channel(s), the model expects {model.config.in_channels}"
        )
    options = dict(instances or {})
    pp = model_postprocess(model, options.pop("threshold", None), options.pop("min_size", None))
    contact = has_contact(model)
    if contact and options.get("method", "components") != "components":
        log.info("%s: a model with a contact class splits touching objects itself; the "
                 "instance method %r is not used", path, options["method"])
    results = []
    for i in range(n):
        try:
            prob = predict_tiled(model, stack[i], tile_size=tile, batch_size=batch,
                                 device=device, tta=tta, progress=progress,
                                 memory_budget=memory_budget)
        except ValueError as exc:
            where = f" (slice {i})" if n > 1 else ""
            raise ValueError(f"{path}{where}: {exc}") from None
        if output == "labels" and (prob.shape[0] == 2 or contact):
            fg, interior = foreground_maps(prob, contact)
            results.append(clean_mask(fg, pp, interior).astype(np.uint8))
        elif output == "labels":
            dtype = np.uint8 if prob.shape[0] <= 256 else np.uint16
            results.append(prob.argmax(axis=0).astype(dtype))
        elif output == "instances":  # a contact model's split ignores the method options
            fg, interior = foreground_maps(prob, contact)
            labels = postprocess_instances(fg, pp, interior, **options)
            results.append(labels.astype(np.uint16) if labels.max() < 2**16 else labels)
        else:
            results.append(prob)
    data = results[0] if n == 1 else np.stack(results)  # mixed uint16/uint32 stack as uint32
    meta = tiff_metadata(path)
    slices = meta.get("axes", "") if n > 1 else ""
    if n > 1 and len(slices) != 1:  # several slice axes were read as one: keep them apart
        sizes = meta.get("slice_shape")
        if sizes and int(np.prod(sizes)) == n and len(sizes) == len(slices):
            data = data.reshape(*sizes, *data.shape[1:])
        else:
            slices = "Q"
    axes = slices + ("CYX" if output == "probabilities" else "YX")
    display = None if output == "probabilities" else (0, max(int(data.max()), 1))
    write_tiff(target, data, axes=axes, display_range=display,
               resolution=meta.get("resolution"), imagej=meta.get("imagej"))
    log.info("wrote %s", target)
    return target


def _stream_file(model: nn.Module, path: str | os.PathLike, target: Path, output: str,
                 tile: int | None, batch: int, tta: bool | None, device: str | None, overwrite: bool,
                 progress: Callable[..., None] | None, opts: dict) -> Path:
    """``predict_file`` for an input too large to hold: streamed tile by tile into ``target``."""
    log.info("%s: larger than the memory budget, streamed tile by tile", path)
    method = opts.get("method", "components")
    return predict_to_file(model, path, target, output=output, tile_size=tile, batch_size=batch,
                           tta=tta, device=device, overwrite=overwrite,
                           threshold=opts.get("threshold"), min_size=opts.get("min_size"),
                           method=method, progress=progress)
