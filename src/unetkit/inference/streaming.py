"""Predict images larger than memory from disk to disk, tile by tile, resumable.

:func:`predict_to_file` opens the input lazily (io/lazy.py: TIFF/BigTIFF, Zarr, OME-Zarr), runs
the overlap-tile plan of ``predict_tiled`` plane by plane (stacks and time series: every index of
the axes other than C, Y, X is one 2D image) and writes each tile's output straight into an
OME-Zarr or tiled BigTIFF output (sinks.py).  Output chunks are exactly the tiles' output
squares (``tile_stride``), so each tile writes whole chunks and nothing is read back.

Memory is bounded by the tile (plus one zarr chunk of input per window read), not by the image:
see ``benchmarks/bench_streaming.py``.  The output equals ``predict_tiled`` on the same plane
(same tiles, same normalisation, same mirroring).

Resume: every finished tile is logged in the output after its pixels (sinks.py); a rerun with
``resume=True`` computes only the tiles not logged.  Instances (``output="instances"``): the
foreground ``1 - p(class 0) > threshold`` is streamed into a scratch mask, then labelled block by
block and merged across block borders (blockwise_labels.py): one label per object over the whole plane.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from torch import nn

from .engine import TileRunner
from .engine import input_affine
from .plan import check_output_kind
from ..io.lazy import LazyImage, canonical_axes, open_image
from ..data.normalize import Normalization
from .postprocess import has_contact, interior_seeds, model_postprocess
from ..io.sinks import Sink
from .blockwise_labels import label_blocks

__all__ = ["predict_to_file", "open_run", "run_to_sink", "OpenedRun", "label_planes",
           "model_digest", "OutputLayout"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int, int], None]  # (units done, units total, pixels done this run)


def model_digest(model: nn.Module) -> str:
    """sha256 of the weights and configuration: identifies the model across a resume."""
    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    h.update(json.dumps(cfg.to_dict() if hasattr(cfg, "to_dict") else repr(cfg),
                        sort_keys=True).encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class OutputLayout:
    """Where each plane of the input goes in the output array.

    Output axes: the input's plane axes, ``C`` (classes) for probabilities, then Y X, in
    OME-Zarr order (``canonical_axes``).  Chunks: 1 per plane axis, all classes, ``block`` px.
    """

    def __init__(self, image: LazyImage, output: str, num_classes: int, block: int) -> None:
        self.image = image
        letters = image.plane_axes + ("C" if output == "probabilities" else "") + "YX"
        self.axes = canonical_axes(letters)
        sizes = dict(zip(image.plane_axes, image.plane_shape))
        sizes.update({"C": num_classes, "Y": image.yx[0], "X": image.yx[1]})
        self.shape = tuple(sizes[a] for a in self.axes)
        h, w = image.yx
        self.chunks = tuple(min(block, h) if a == "Y" else min(block, w) if a == "X"
                            else sizes[a] if a == "C" else 1 for a in self.axes)
        self.dtype = {"labels": np.uint8 if num_classes <= 256 else np.uint16,
                      "probabilities": np.float32, "instances": np.uint32}[output]

    def index(self, plane: tuple[int, ...], ys: slice, xs: slice) -> tuple:
        where = dict(zip(self.image.plane_axes, plane))
        where.update({"C": slice(None), "Y": ys, "X": xs})
        return tuple(where[a] for a in self.axes)


def _run_record(model: nn.Module, image: LazyImage, output: str, runner: TileRunner,
                normalization: Any, instances: dict, layout: OutputLayout) -> dict:
    norm = normalization.to_dict() if isinstance(normalization, Normalization) else normalization
    return {
        "input": image.name, "input_shape": list(image.shape), "axes": image.axes,
        "out_axes": layout.axes, "output": output, "model": model_digest(model),
        "tile_size": runner.tile_size, "tta": runner.tta, "normalization": norm,
        "instances": instances if output == "instances" else None,
        "scale": image.scale, "units": image.units,
    }


CHECKED = ("input_shape", "axes", "output", "model", "tile_size", "tta", "normalization",
           "instances")


def predict_to_file(
    model: nn.Module,
    source: Any,
    out: str | os.PathLike,
    *,
    output: str = "labels",
    axes: str | None = None,
    tile_size: int | None = None,
    batch_size: int = 1,
    tta: bool | None = None,
    device: Any = None,
    normalization: Normalization | dict | None = None,
    resume: bool = False,
    overwrite: bool = False,
    threshold: float | None = None,
    min_size: int | None = None,
    method: str = "components",
    progress: Progress | None = None,
) -> Path:
    """Segment ``source`` (path or :class:`LazyImage`) into ``out`` (.ome.zarr/.zarr/.tif/.tiff).

    Args:
        output: ``labels`` (class indices), ``probabilities`` (float32 per class) or
            ``instances`` (uint32 objects, connected components of ``1 - p0 > threshold``).
        axes: the input's axes letters when its metadata lacks them or is wrong (``ZYX``...).
        resume: finish an interrupted output (only its unfinished tiles are computed).
        overwrite: replace an existing output; without it an existing output is an error.
        threshold, min_size: None takes the model file's post-processing (a two-class model's
            labels use the threshold too; streamed labels keep objects of every size).  Hole
            filling and growth need whole objects and are not applied tile by tile (logged).
        progress: ``progress(tiles_done, tiles_total, pixels_done_this_run)`` after each batch.

    Returns the output path.  Raises ValueError for bad arguments, inputs and existing outputs.
    """
    pp = model_postprocess(model, threshold, min_size)
    threshold, min_size = pp.threshold, pp.min_size
    if output in ("labels", "instances") and (pp.fill_holes or pp.grow):
        log.info("streamed %s: the model file's hole filling (%d px) and growth (%d px) are not "
                 "applied tile by tile", output, pp.fill_holes, pp.grow)
    if output == "instances" and has_contact(model):
        log.info("streamed instances of a model with a contact class: the objects are the "
                 "interiors (not grown over the contacts, which needs whole objects)")
    elif output == "instances" and pp.seed > pp.threshold:
        log.info("streamed instances: the objects are the cores above %g (not flooded over the "
                 "mask above %g, which needs whole objects)", pp.seed, pp.threshold)

    def write(run: OpenedRun) -> None:
        _predict_planes(run.runner, run.image, run.runner.plan(run.image.yx), run.layout,
                        run.sink, output, normalization, threshold, progress, pp.seed)
        if output == "instances":
            label_planes(run.sink, run.image, run.layout, min_size)

    return run_to_sink(model, source, out, write, output=output, axes=axes, tile_size=tile_size,
                       batch_size=batch_size, tta=tta, device=device,
                       normalization=normalization, resume=resume, overwrite=overwrite,
                       threshold=threshold, min_size=min_size, method=method)


class OpenedRun(NamedTuple):
    image: LazyImage
    runner: TileRunner
    layout: OutputLayout
    sink: Sink | None  # None: the output is already complete (resume)


def open_run(model: nn.Module, source: Any, out: str | os.PathLike, *, output: str,
             axes: str | None, tile_size: int | None, batch_size: int, tta: bool | None, device: Any,
             normalization: Any, resume: bool, overwrite: bool, threshold: float,
             min_size: int, method: str) -> OpenedRun:
    """Check the arguments, open the input and create (or reopen, ``resume``) the output."""
    check_output_kind(output)
    if output == "instances" and method != "components":
        raise ValueError("streamed instances support method 'components' only (exact across "
                         "tiles); a watershed needs the whole image, see docs/large-images.md")
    image = open_image(source, axes)
    recorded = Sink.recorded(out) if resume else None
    if tile_size is None and recorded is not None:  # resuming without --tile: the recorded one
        tile_size = recorded.get("tile_size")
    runner = TileRunner(model, tile_size, batch_size, tta, softmax=True, device=device)
    if image.channels != runner.in_channels:
        raise ValueError(f"{image.name}: image has {image.channels} channel(s) (axes "
                         f"{image.axes}, shape {image.shape}), the model expects "
                         f"{runner.in_channels}")
    if runner.num_classes < 2 and output != "probabilities":
        raise ValueError(f"output {output!r} needs a model with at least 2 classes")
    runner.resolve_tile(image.yx)
    layout = OutputLayout(image, output, runner.num_classes, runner.stride)
    inst = {"threshold": threshold, "min_size": min_size}
    run = _run_record(model, image, output, runner, normalization, inst, layout)
    sink = Sink.open(out, run, shape=layout.shape, dtype=layout.dtype, chunks=layout.chunks,
                     scale=image.scale, units=image.units, resume=resume, overwrite=overwrite,
                     check=CHECKED)
    return OpenedRun(image, runner, layout, sink)


def run_to_sink(model: nn.Module, source: Any, out: str | os.PathLike,
                write: Callable[[OpenedRun], None], **options: Any) -> Path:
    """Open (or resume) a run with :func:`open_run`, let ``write`` fill its sink, finish it.

    ``options`` are :func:`open_run`'s.  A resumed output that is already complete is returned
    as it is; on any error the sink is closed (its progress kept for ``resume``) and the error
    re-raised.  Shared by :func:`predict_to_file` and the dask cluster driver.
    """
    run = open_run(model, source, out, **options)
    if run.sink is None:
        return Path(out)
    try:
        write(run)
    except BaseException:
        run.sink.close()
        raise
    return run.sink.finish()


def _predict_planes(runner: TileRunner, image: LazyImage, plan: list, layout: OutputLayout,
                    sink: Sink, output: str, normalization: Any, threshold: float,
                    progress: Progress | None, seed: float = 0.0) -> None:
    planes = list(np.ndindex(*image.plane_shape))
    total = len(planes) * len(plan)
    done = sum(1 for p in range(len(planes)) for t in range(len(plan)) if sink.is_done(f"{p} {t}"))
    pixels = 0
    contact = has_contact(runner.model)
    if progress is not None:
        progress(done, total, 0)
    mask = None
    if output == "instances":
        h, w = image.yx
        mask = sink.scratch("mask", (len(planes), h, w), np.uint8,
                            (1, min(runner.stride, h), min(runner.stride, w)))
    index = {t: i for i, t in enumerate(plan)}
    for p, plane in enumerate(planes):
        todo = [t for i, t in enumerate(plan) if not sink.is_done(f"{p} {i}")]
        if not todo:
            continue
        src = image.plane(plane)
        scale, offset = input_affine(runner.model, src, normalization)
        for batch, probs in runner.run(src, todo, scale, offset):
            for t, prob in zip(batch, probs):
                part = prob[:, t.off_y : t.off_y + t.h, t.off_x : t.off_x + t.w]
                ys, xs = slice(t.y, t.y + t.h), slice(t.x, t.x + t.w)
                if output == "probabilities":
                    sink.array[layout.index(plane, ys, xs)] = part
                elif output == "labels":
                    labels = ((1.0 - part[0]) > threshold if part.shape[0] == 2 or contact
                              else part.argmax(0))
                    sink.array[layout.index(plane, ys, xs)] = labels.astype(layout.dtype)
                elif contact:  # objects: the interiors (the contacts keep them apart)
                    mask[p, ys, xs] = interior_seeds(1.0 - part[0], part[1], threshold, seed)
                else:  # cores above the seed keep touching objects apart (split_cores)
                    mask[p, ys, xs] = (1.0 - part[0]) > max(threshold, seed)
                sink.mark(f"{p} {index[t]}")
                pixels += t.h * t.w
            done += len(batch)
            if progress is not None:
                progress(done, total, pixels)


class _PlaneIn:
    """Plane ``p`` of an (N, H, W) array-like, read only where sliced."""

    def __init__(self, array: Any, p: int) -> None:
        self.array, self.p, self.shape = array, p, tuple(array.shape[1:])

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return np.asarray(self.array[(self.p, *key)])


class _PlaneOut:
    """Writes (H, W) blocks into one plane of the output array."""

    def __init__(self, array: Any, layout: OutputLayout, plane: tuple[int, ...]) -> None:
        self.array, self.layout, self.plane = array, layout, plane

    def __setitem__(self, key: tuple[slice, slice], value: np.ndarray) -> None:
        self.array[self.layout.index(self.plane, *key)] = value


def label_planes(sink: Sink, image: LazyImage, layout: OutputLayout, min_size: int) -> None:
    """Connected components across tiles, plane by plane, from the scratch mask."""
    mask = sink.scratch("mask", (0,), np.uint8, (1,))
    chunks = sink.array.chunks
    block = (chunks[layout.axes.index("Y")], chunks[layout.axes.index("X")])
    for p, plane in enumerate(np.ndindex(*image.plane_shape)):
        n = label_blocks(_PlaneIn(mask, p), _PlaneOut(sink.array, layout, plane), block, min_size)
        log.info("plane %s: %d objects", plane, n)
