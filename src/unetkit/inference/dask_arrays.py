"""Lazy, distributed overlap-tile prediction with Dask: ``predict_dask(model, array)``.

``array``: a dask array ``(..., H, W)`` for a single-channel model, ``(..., C, H, W)`` otherwise
(e.g. ``dask.array.from_zarr``); the leading axes are planes (Z, T, ...), predicted in 2D one by
one.  Returns a lazy ``(..., K, H, W)`` float32 array of probabilities (``output="labels"``:
``(..., H, W)`` uint8 class indices), equal to ``predict_tiled`` on every plane for *any*
chunking.

How the blocks stay exact:

- ``dask.array.overlap`` gives each block ``context`` extra px per side from its neighbours
  (plan.context: margin + halo + ``2**depth - 1``; ``boundary="none"``: nothing is invented at the
  image border).  Inside the block the network's tiles start on the *global* ``2**depth`` grid
  (the block's position comes from ``block_id`` and the chunk sizes), which the network needs to
  reproduce whole-image numbers; that is why the overlap holds ``2**depth - 1`` px more than the
  margin.  Context beyond the image is mirrored from the block itself (``read_window``'s
  symmetric mirroring in image coordinates, identical to dask's ``boundary="reflect"``): the
  block at an image edge holds every pixel the mirror needs.
- Chunks smaller than the overlap are merged with a neighbour first (dask needs chunks >= depth);
  the channel axis is one chunk.
- Normalisation: ``per_image`` statistics are lazy dask reductions over each whole plane (never
  per block), so blocks normalise exactly as ``predict_tiled`` does.

Model shipping: the model is pickled once into a single graph key (``dask.delayed``); every
block task depends on that key, so a distributed worker fetches it once and unpickles it once per
process (cached by digest), not per chunk.  Each task sets ``torch.set_num_threads(torch_threads)``
(default 1): with several worker processes/threads per node, one torch thread each avoids
oversubscribing the cores.  Workers need unetkit installed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from typing import Any

import numpy as np
import torch
from torch import nn

from .engine import TileRunner, model_normalization
from .plan import context
from .postprocess import blockwise_threshold, has_contact, model_postprocess
from ..io.lazy import open_image
from ..data.normalize import Normalization
from .streaming import OpenedRun, label_planes, run_to_sink

__all__ = ["predict_dask", "require_dask", "merge_small_chunks", "LazySource", "model_loads",
           "predict_to_file_dask"]

EXTRA_HINT = "pip install 'unetkit[dask]'"


def require_dask() -> Any:
    """Import dask.array or raise an ImportError naming the extra that provides it."""
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"Dask prediction needs dask: {EXTRA_HINT}") from None
    return da


class _ModelBlob:
    """A pickled model and its digest: one graph key, unpickled once per worker process."""

    def __init__(self, model: nn.Module) -> None:
        self.data = pickle.dumps(model)
        self.digest = hashlib.sha256(self.data).hexdigest()


_MODELS: dict[str, nn.Module] = {}  # per-process cache: digest -> model (see module docstring)
LOADS = {"count": 0}  # how many times this process unpickled a model (tests read it)


def model_loads() -> int:
    """How many models this process has unpickled (``client.run(model_loads)`` per worker)."""
    return LOADS["count"]


def _load(blob: _ModelBlob) -> nn.Module:
    model = _MODELS.get(blob.digest)
    if model is None:
        model = pickle.loads(blob.data)  # our own bytes, made by predict_dask in the client
        _MODELS.clear()  # keep one model per process
        _MODELS[blob.digest] = model
        LOADS["count"] += 1
    return model


def merge_small_chunks(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """Merge chunks smaller than ``minimum`` into a neighbour (a single chunk may stay small)."""
    merged: list[int] = []
    for c in chunks:
        if merged and merged[-1] < minimum:
            merged[-1] += c
        else:
            merged.append(c)
    if len(merged) > 1 and merged[-1] < minimum:
        last = merged.pop()
        merged[-1] += last
    return tuple(merged)


class _BlockSource:
    """A block of (C, rows [a, b), cols [c, e)) seen in image coordinates, (C, H, W).

    Reads outside the block (they only feed output pixels that are thrown away) are clamped to
    its edge."""

    def __init__(self, block: np.ndarray, a: int, c: int, shape: tuple[int, int]) -> None:
        self.block, self.a, self.c = block, a, c
        self.shape = (block.shape[0], *shape)
        self.dtype = block.dtype

    def __getitem__(self, key: tuple) -> np.ndarray:
        _, ys, xs = key
        bh, bw = self.block.shape[1:]
        rows = np.clip(np.arange(ys.start, ys.stop) - self.a, 0, bh - 1)
        cols = np.clip(np.arange(xs.start, xs.stop) - self.c, 0, bw - 1)
        return self.block[:, rows][:, :, cols]


def _predict_block(block: np.ndarray, scale: np.ndarray, offset: np.ndarray, *,
                   blob: _ModelBlob, starts: tuple[tuple[int, ...], tuple[int, ...]],
                   sizes: tuple[tuple[int, ...], tuple[int, ...]], shape: tuple[int, int],
                   depth: tuple[int, int], params: dict, block_id: tuple[int, ...]) -> np.ndarray:
    """(..., C, h + overlap, w + overlap) -> (..., K, h, w) for the block at ``block_id``."""
    if params["torch_threads"]:
        torch.set_num_threads(params["torch_threads"])
    runner = TileRunner(_load(blob), params["tile_size"], params["batch_size"], params["tta"],
                        params["softmax"], params["device"], params["halo"])
    iy, ix = block_id[-2], block_id[-1]
    y0, x0 = starts[0][iy], starts[1][ix]
    h, w = sizes[0][iy], sizes[1][ix]
    a = y0 - depth[0] if iy > 0 else 0  # boundary="none": no overlap beyond the image
    c = x0 - depth[1] if ix > 0 else 0
    lead = block.shape[:-3]
    out = np.zeros((*lead, runner.num_classes, h, w), np.float32)
    for p in np.ndindex(*lead):
        src = _BlockSource(block[p], a, c, shape)
        sc = np.asarray(scale[p], np.float32).reshape(-1)
        of = np.asarray(offset[p], np.float32).reshape(-1)
        out[p] = runner.predict_region(src, y0, x0, h, w, sc, of, image_shape=shape)
    return out


def predict_dask(model: nn.Module, array: Any, *, tile_size: int | None = None,
                 batch_size: int = 1, tta: bool | None = None, softmax: bool = True,
                 normalization: Normalization | dict | None = None, output: str = "probabilities",
                 device: str | None = None, halo: int | None = None,
                 torch_threads: int | None = 1) -> Any:
    """Lazy overlap-tile prediction of a dask array (module docstring for layout and exactness).

    ``tile_size`` None: ``predict_tiled``'s automatic choice for the whole (H, W) image.
    ``output``: ``"probabilities"`` (float32, classes axis before H, W) or ``"labels"``
    (uint8 argmax, classes axis dropped).  ``torch_threads``: torch threads per task (None
    leaves torch's setting alone).
    """
    da = require_dask()
    import dask  # delayed; imported lazily like dask.array (optional extra)

    if output not in ("probabilities", "labels"):
        raise ValueError(f"output must be 'probabilities' or 'labels', got {output!r}")
    runner = TileRunner(model, tile_size, batch_size, tta, softmax, device, halo)
    x = da.asarray(array)
    if runner.in_channels == 1:
        x = x[..., None, :, :]
    if x.ndim < 3 or x.shape[-3] != runner.in_channels:
        raise ValueError(f"array of shape {tuple(array.shape)}: expected (..., H, W) for one "
                         f"channel or (..., C, H, W) with C = {runner.in_channels}")
    shape = (int(x.shape[-2]), int(x.shape[-1]))
    runner.resolve_tile(shape)
    d = context(runner.depth, runner.padding, runner.halo)
    chunks = (*x.chunks[:-3], (runner.in_channels,),
              merge_small_chunks(x.chunks[-2], d), merge_small_chunks(x.chunks[-1], d))
    x = x.rechunk(chunks)
    scale, offset = _lazy_affine(model, x, normalization)
    depth = tuple(d if len(x.chunks[i]) > 1 else 0 for i in (-2, -1))
    xo = da.overlap.overlap(x, depth={x.ndim - 2: depth[0], x.ndim - 1: depth[1]},
                            boundary="none")
    starts = tuple(tuple(int(s) for s in np.cumsum((0, *c[:-1]))) for c in x.chunks[-2:])
    params = {"tile_size": runner.tile_size, "batch_size": batch_size, "tta": runner.tta,
              "softmax": softmax, "device": None if device is None else str(device),
              "halo": halo, "torch_threads": torch_threads}
    blob = dask.delayed(_ModelBlob(model), pure=True)
    out_chunks = (*x.chunks[:-3], (runner.num_classes,), *x.chunks[-2:])
    probs = da.map_blocks(
        _predict_block, xo, scale, offset, dtype=np.float32, chunks=out_chunks,
        meta=np.empty((0,) * x.ndim, np.float32), blob=blob, starts=starts,
        sizes=x.chunks[-2:], shape=shape, depth=depth, params=params,
    )
    if output == "labels":
        return probs.argmax(axis=-3).astype(np.uint8)
    return probs


def _lazy_affine(model: nn.Module, x: Any, normalization: Any) -> tuple[Any, Any]:
    """Per-plane, per-channel (scale, offset), shaped (..., C, 1, 1): lazy for ``per_image``."""
    da = require_dask()
    norm = model_normalization(model, normalization)
    lead = x.shape[:-3]
    c = x.shape[-3]
    if norm.mode != "per_image":
        scale, offset = norm.affine(x, c)
        ones = np.ones((*lead, c, 1, 1), np.float32)
        s = da.from_array(ones * scale[:, None, None], chunks=(*x.chunks[:-3], c, 1, 1))
        o = da.from_array(ones * offset[:, None, None], chunks=(*x.chunks[:-3], c, 1, 1))
        return s, o
    xf = x.astype(np.float64)
    mean = xf.mean(axis=(-2, -1), keepdims=True)
    std = da.sqrt(da.maximum((xf**2).mean(axis=(-2, -1), keepdims=True) - mean**2, 0.0))
    scale = 1.0 / da.maximum(std, norm.eps)
    return scale.astype(np.float32), (-mean * scale).astype(np.float32)


class LazySource:
    """A picklable, lazily opened image file (TIFF, Zarr, OME-Zarr) for ``dask.array.from_array``:
    workers open the path themselves (it must be on a shared file system)."""

    def __init__(self, path: str, axes: str | None = None) -> None:
        self.path, self.axes_arg = str(path), axes
        img = open_image(self.path, axes)
        self.shape, self.dtype, self.ndim = img.shape, img.dtype, len(img.shape)
        self.axes, self.chunks = img.axes, getattr(img.array, "chunks", None)
        self._image = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_image": None}

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._image is None:
            self._image = open_image(self.path, self.axes_arg)
        return np.asarray(self._image.array[key])


def predict_to_file_dask(model: nn.Module, source: str | Any, out: Any, client: Any, *,
                         output: str = "labels", axes: str | None = None,
                         tile_size: int | None = None, block: int = 2048, batch_size: int = 1,
                         tta: bool | None = None, normalization: Any = None, resume: bool = False,
                         overwrite: bool = False, threshold: float | None = None,
                         min_size: int | None = None,
                         method: str = "components", progress: Any = None) -> Any:
    """:func:`unetkit.inference.streaming.predict_to_file` on a ``dask.distributed`` cluster.

    Workers read the input file and write their blocks of the output themselves, so ``source``
    and ``out`` must be on a file system every worker sees.  Units of work (and of resume) are
    output blocks of about ``block`` px (a multiple of the output chunk); the client logs each
    block after its write task has finished.  ``progress(blocks_done, blocks_total, pixels)``.
    """
    from dask.distributed import as_completed

    da = require_dask()
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError("on a cluster the input must be a file path the workers can read")
    pp = model_postprocess(model, threshold, min_size)
    threshold, min_size = pp.threshold, pp.min_size
    objects_at = blockwise_threshold(pp, has_contact(model))


    def write(run: OpenedRun) -> None:
        image, runner, layout, sink = run
        step = max(1, block // runner.stride) * runner.stride  # whole output chunks per block
        lazy = LazySource(str(source), image.axes)
        arr = da.from_array(lazy, chunks=_input_chunks(image, step), name=False)
        planes = list(np.ndindex(*image.plane_shape))
        target = sink.array if output != "instances" else sink.scratch(
            "mask", (len(planes), *image.yx), np.uint8,
            (1, min(runner.stride, image.yx[0]), min(runner.stride, image.yx[1])))
        tasks, units, pixels = [], {}, {}
        for p, plane in enumerate(planes):
            pending = [(y, x) for y in range(0, image.yx[0], step)
                       for x in range(0, image.yx[1], step) if not sink.is_done(f"{p} {y} {x}")]
            if not pending:
                continue
            res = _plane_result(model, arr, image, plane, runner, step, output, normalization,
                                objects_at)
            for y, x in pending:
                ys, xs = slice(y, y + step), slice(x, x + step)
                region = (p, ys, xs) if output == "instances" else layout.index(plane, ys, xs)
                piece = res[..., ys, xs]
                task = da.store(piece, target, regions=region, lock=False, compute=False)
                units[len(tasks)] = f"{p} {y} {x}"
                pixels[len(tasks)] = piece.shape[-2] * piece.shape[-1]
                tasks.append(task)
        total = len(planes) * len(range(0, image.yx[0], step)) * len(range(0, image.yx[1], step))
        done, px = total - len(tasks), 0
        if progress is not None:
            progress(done, total, 0)
        futures = client.compute(tasks)
        which = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            fut.result()  # raises a worker's error here
            i = which[fut.key]
            sink.mark(units[i])
            done, px = done + 1, px + pixels[i]
            if progress is not None:
                progress(done, total, px)
        if output == "instances":
            label_planes(sink, image, layout, min_size)

    return run_to_sink(model, source, out, write, output=output, axes=axes, tile_size=tile_size,
                       batch_size=batch_size, tta=tta, device=None,
                       normalization=normalization, resume=resume, overwrite=overwrite,
                       threshold=threshold, min_size=min_size, method=method)


def _input_chunks(image: Any, block: int) -> tuple[int, ...]:
    """Dask chunks of the input: whole channels, one plane, ``block`` px in Y and X."""
    return tuple(image.channels if a == "C" else block if a in "YX" else 1 for a in image.axes)


def _plane_result(model: nn.Module, arr: Any, image: Any, plane: tuple[int, ...],
                  runner: TileRunner, step: int, output: str, normalization: Any,
                  threshold: float) -> Any:
    """Lazy output of one plane: (K, H, W) probabilities, (H, W) labels or a uint8 mask."""
    where = dict(zip(image.plane_axes, plane))
    sel = tuple(where.get(a, slice(None)) for a in image.axes)
    kept = [a for a in image.axes if a not in where]
    x = arr[sel].transpose([kept.index(a) for a in "CYX" if a in kept])  # (C, H, W) or (H, W)
    kind = "labels" if output == "labels" else "probabilities"
    res = predict_dask(model, x, tile_size=runner.tile_size, batch_size=runner.batch_size,
                       tta=runner.tta, normalization=normalization, output=kind)
    if output == "instances":
        return ((1.0 - res[0]) > threshold).astype(np.uint8)
    return res
