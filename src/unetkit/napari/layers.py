"""What the napari widgets compute, without Qt or napari: tested headless.

- :func:`open_model`: a model file (``.safetensors`` or a bioimage.io zip that unetkit wrote) or
  a run folder (its ``model.safetensors``);
- :func:`segment`: an image layer's data -> napari layer-data tuples ``(data, kwargs, kind)``
  for the probability, label and instance layers.  In-memory (numpy) images are predicted into
  numpy arrays; lazy images (dask, zarr: anything that is not a numpy array) go tile by tile
  into a zarr store on disk, and the layers are lazy views of it (dask), so an image larger than
  memory never is loaded whole;
- :func:`train_layers`: image + label arrays (or folders) -> a run folder, through
  :func:`unetkit.train`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from torch import nn

from ..inference.blockwise_labels import label_blocks
from ..inference.postprocess import (blockwise_threshold, foreground_maps, has_contact,
                                     model_postprocess, postprocess_instances)
from ..inference.runtime import with_runtime
from ..inference.tiled import predict_tiled
from ..io.images import write_tiff
from ..model import geometry
from ..model.modelfile import load_model
from ..training import model_path, run_config, train

__all__ = ["open_model", "segment", "train_layers", "image_array", "LayerData"]

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]  # napari's LayerDataTuple: (data, kwargs, kind)
_ZARR_CHUNK = 1024  # px per side of the lazy outputs' chunks (4 MiB of float32)


def open_model(path: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """A model file, a bioimage.io zip written by unetkit, or a run folder (``model.safetensors``)."""
    return load_model(model_path(path), device=device)


def image_array(data: Any, in_channels: int) -> Any:
    """An image layer's data as the (H, W) or (C, H, W) array-like the tiler reads.

    Multiscale data (a list of levels) is predicted at full resolution (level 0); RGB(A) images
    (H, W, 3|4) are moved channels-first.  Raises ValueError for other shapes.
    """
    if isinstance(data, (list, tuple)):
        data = data[0]
    shape = tuple(data.shape)
    if len(shape) == 3 and shape[-1] in (3, 4) and shape[0] not in (3, 4) and in_channels in (3, 4):
        data = np.moveaxis(np.asarray(data), -1, 0)  # RGB layers: channels last in napari
    elif len(shape) == 3 and in_channels == 1:
        raise ValueError(f"the model segments 2-D single-channel images; the layer has shape "
                         f"{shape} (choose one plane)")
    elif len(shape) not in (2, 3):
        raise ValueError(f"image layer must be 2-D (H, W) or (C, H, W), got shape {shape}")
    return data


def _lazy_out(shape: tuple[int, ...], dtype: str, folder: Path, name: str) -> zarr.Array:
    chunks = (1, _ZARR_CHUNK, _ZARR_CHUNK) if len(shape) == 3 else (_ZARR_CHUNK, _ZARR_CHUNK)
    return zarr.open_array(store=str(folder / f"{name}.zarr"), mode="w", shape=shape,
                           chunks=chunks, dtype=dtype)


def segment(
    model: nn.Module,
    data: Any,
    *,
    name: str = "image",
    tile_size: int | None = None,
    runtime: str = "torch",
    threshold: float | None = None,
    min_size: int | None = None,
    scratch: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[LayerData]:
    """Overlap-tile prediction of one image layer's ``data``; returns three layer tuples.

    - ``"<name> probability"`` (image): foreground probability ``1 - p(class 0)``, float32;
    - ``"<name> labels"`` (labels): class index per pixel;
    - ``"<name> instances"`` (labels): connected components of ``probability > threshold``
      with at least ``min_size`` px, with the model file's hole filling and growth, as
      ``unetkit predict`` makes them (``inference.postprocess.postprocess_instances``); for
      lazy images block by block, threshold (a two-class model's cores where it has them) and
      smallest object only (the same partition);
      ``None``: the model file's choice (``inference.postprocess.model_postprocess``).

    ``scratch``: folder for the lazy outputs of lazy images (default: a new temporary folder,
    left for napari to read; its path is in the layers' metadata).  ``progress(done, total)``
    after each batch of tiles.
    """
    cfg = model.config
    image = image_array(data, cfg.in_channels)
    lazy = not isinstance(image, np.ndarray)
    height, width = image.shape[-2:]
    net = with_runtime(model, runtime, tile_size=tile_size)
    pp = model_postprocess(model, threshold, min_size)
    if not lazy:
        prob = predict_tiled(net, image, tile_size=tile_size, progress=progress)
        labels = prob.argmax(axis=0).astype(np.uint8 if cfg.num_classes <= 256 else np.uint16)
        fg, interior = foreground_maps(prob, has_contact(model))
        instances = postprocess_instances(fg, pp, interior)
        meta: dict[str, Any] = {}
    else:
        folder = Path(scratch) if scratch is not None else Path(tempfile.mkdtemp(prefix="unetkit-"))
        folder.mkdir(parents=True, exist_ok=True)
        out = _lazy_out((cfg.num_classes, height, width), "float32", folder, f"{name}-prob")
        predict_tiled(net, image, tile_size=tile_size, out=out, progress=progress)
        prob_lazy = da.from_zarr(out)
        fg = 1.0 - prob_lazy[0]
        labels = prob_lazy.argmax(axis=0).astype(np.uint8 if cfg.num_classes <= 256 else np.uint16)
        inst = _lazy_out((height, width), "uint32", folder, f"{name}-instances")
        at = blockwise_threshold(pp, has_contact(model))
        label_blocks(fg > at, inst, (_ZARR_CHUNK, _ZARR_CHUNK), min_size=pp.min_size)
        instances = da.from_zarr(inst)
        meta = {"scratch": str(folder)}
    m = geometry.margin(cfg.depth, cfg.padding)
    info = {"unetkit": {"runtime": type(net).__name__, "margin": m, **meta}}
    return [
        (fg, {"name": f"{name} probability", "colormap": "magma", "contrast_limits": (0.0, 1.0),
              "blending": "additive", "metadata": info}, "image"),
        (labels, {"name": f"{name} labels", "opacity": 0.4, "visible": False, "metadata": info},
         "labels"),
        (instances, {"name": f"{name} instances", "opacity": 0.6, "metadata": info}, "labels"),
    ]


def _as_folder(images: Any, folder: Path, stem: str) -> Path:
    """A path as given, or the arrays (one (H, W) / (C, H, W) array or a list) written as TIFFs."""
    if isinstance(images, (str, os.PathLike)):
        return Path(images)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = images if isinstance(images, (list, tuple)) else [images]
    for i, array in enumerate(arrays):
        array = np.asarray(array)
        write_tiff(folder / f"{stem}{i:03d}.tif", array, axes="YX" if array.ndim == 2 else "CYX")
    return folder


def train_layers(
    images: Any,
    labels: Any,
    out_dir: str | os.PathLike,
    *,
    minutes: float | None = 5.0,
    iterations: int | None = None,
    preset_name: str = "default",
    seed: int = 0,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> Path:
    """Train on image + label arrays (napari layers' data) or folders; returns the run folder.

    Arrays are written to ``<out_dir>/data/{images,labels}/`` first (paired by file name), so
    the run folder documents its own training data; ``progress`` is :func:`unetkit.train`'s.
    """
    out = Path(out_dir)
    if not isinstance(images, (str, os.PathLike)) and not isinstance(labels, (str, os.PathLike)):
        shapes = [np.shape(a)[-2:] for a in (images if isinstance(images, (list, tuple))
                                             else [images])]
        label_shapes = [np.shape(a)[-2:] for a in (labels if isinstance(labels, (list, tuple))
                                                   else [labels])]
        if shapes != label_shapes:
            raise ValueError(f"image and label layers differ in size: {shapes} vs {label_shapes}")
    image_dir = _as_folder(images, out / "data" / "images", "image")
    label_dir = _as_folder(labels, out / "data" / "labels", "image")
    cfg = run_config(out, preset_name=preset_name, minutes=minutes, iterations=iterations,
                     seed=seed)
    return train(cfg, image_dir, label_dir, out, progress=progress)
