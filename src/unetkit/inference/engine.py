"""The tile engine: read mirrored windows, normalise, forward (with TTA), the one tile loop.

:func:`run_tiles` is the only loop that turns tiles of a plan (plan.py) into network output; the
drivers (``predict_tiled`` in tiled.py, streaming.py, dask_arrays.py) all call it, so that they
compute the very same numbers.  Windows beyond the image are mirrored half-sample symmetrically
(:func:`read_window`).  :class:`TileRunner` binds one model to a tile choice and predicts any
rectangular region of an image on the *global* tile grid (``plan.region_tiles``): any region,
computed this way, equals the same pixels of ``predict_tiled`` to float rounding.

Sources are (C, H, W) array-likes in *image* coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.normalize import Normalization
from ..model import geometry
from .plan import (STREAM_MEMORY_BUDGET, Tile, choose_tile_size, fit_tile_size, plan_tiles,
                   region_tiles)

__all__ = [
    "run_tiles",
    "TileRunner",
    "model_tta",
    "as_chw",
    "model_geometry",
    "model_device",
    "to_channels_last",
    "resolve_halo",
    "input_affine",
    "model_normalization",
    "forward_tta",
    "read_window",
    "mirror_indices",
]


def mirror_indices(start: int, length: int, n: int) -> np.ndarray:
    """Source indices of ``[start, start + length)`` on an axis of ``n`` px, mirrored symmetrically.

    Periodic with period ``2n``: index ``-1`` maps to ``0``, ``n`` to ``n - 1``; works for any
    distance beyond the image (repeated mirroring), and for ``n == 1``.
    """
    i = np.arange(start, start + length) % (2 * n)
    return np.where(i >= n, 2 * n - 1 - i, i)


def read_window(image: Any, y: int, x: int, size_y: int, size_x: int) -> np.ndarray:
    """Read the mirrored window ``[y, y+size_y) x [x, x+size_x)`` of a (C, H, W) array-like.

    Only the bounding box of the needed source pixels is read (at most the window's size), so a
    memmap or zarr source is never loaded whole.  Returns (C, size_y, size_x) in the source dtype.
    """
    _, h, w = image.shape
    rows = mirror_indices(y, size_y, h)
    cols = mirror_indices(x, size_x, w)
    r0, r1 = int(rows.min()), int(rows.max()) + 1
    c0, c1 = int(cols.min()), int(cols.max()) + 1
    block = np.asarray(image[:, r0:r1, c0:c1])
    return block[:, rows - r0][:, :, cols - c0]


class _ChannelView:
    """A (H, W) array-like seen as (1, H, W), without reading it."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = (1, *array.shape)
        self.dtype = array.dtype

    def __getitem__(self, key: tuple) -> np.ndarray:
        return np.asarray(self.array[key[1:]])[None]


def as_chw(image: Any, in_channels: int, axes: str | None = None) -> Any:
    """``(H, W)``, ``(C, H, W)`` or, with ``axes="YXC"``, ``(H, W, C)`` -> a ``(C, H, W)`` view.

    numpy arrays, array-likes (memmap, zarr: read lazily) and torch tensors (copied to the
    CPU) are accepted.  ``axes``: ``"YX"``, ``"CYX"``, ``"YXC"`` or None (from ``ndim``).
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    shape = tuple(getattr(image, "shape", ()))
    if axes is not None:
        axes = axes.upper()
        if axes not in ("YX", "CYX", "YXC"):
            raise ValueError(f"axes {axes!r}: use YX, CYX or YXC")
        if len(axes) != len(shape):
            raise ValueError(f"axes {axes!r} do not match an image of shape {shape}")
        if axes == "YXC":
            image = np.moveaxis(np.asarray(image), -1, 0)
            shape = image.shape
    if len(shape) == 2:
        view = _ChannelView(image)
    elif len(shape) == 3:
        view = image
    else:
        raise ValueError(f"image must be (H, W) or (C, H, W), got shape {shape}")
    if view.shape[0] != in_channels:
        hint = (' (channels last? pass axes="YXC")' if axes is None and len(shape) == 3
                and shape[-1] == in_channels else "")
        raise ValueError(f"image has {view.shape[0]} channel(s) (shape {shape}), the model "
                         f"expects {in_channels}{hint}")
    if min(view.shape[1:]) < 1:
        raise ValueError(f"image is empty: shape {shape}")
    if not (np.issubdtype(view.dtype, np.number) or view.dtype == np.bool_):
        raise ValueError(f"image dtype must be numeric, got {view.dtype}")
    return view


# The 8 symmetries of the square: (number of 90-degree rotations, flip left-right first).
_DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def model_tta(model: nn.Module, tta: bool | None) -> bool:
    """Whether to average the 8 flips / rotations: ``tta`` where given, else the model file's
    choice (``meta["inference"]["tta"]``, written by training from ``postprocess.tta``; False
    for a model without it)."""
    if tta is not None:
        return bool(tta)
    meta = getattr(model, "meta", None) or {}
    return bool((meta.get("inference") or {}).get("tta", False))


def forward_tta(model: nn.Module, x: torch.Tensor, tta: bool, softmax: bool) -> torch.Tensor:
    """(B, C, S, S) -> (B, K, S', S'): probabilities (or raw outputs), averaged over the 8
    flips/rotations when ``tta``; each prediction is mapped back before averaging."""

    def run(t: torch.Tensor) -> torch.Tensor:
        y = model(t)
        return torch.softmax(y, dim=1) if softmax else y

    if not tta:
        return run(x)
    acc = None
    for k, flip in _DIHEDRAL:
        t = torch.flip(x, dims=(-1,)) if flip else x
        y = run(torch.rot90(t, k, dims=(-2, -1)))
        y = torch.rot90(y, -k, dims=(-2, -1))
        y = torch.flip(y, dims=(-1,)) if flip else y
        acc = y if acc is None else acc + y
    return acc / len(_DIHEDRAL)


def _raise_non_finite(raw: np.ndarray, tile: Tile) -> None:
    bad = np.argwhere(~np.isfinite(raw))
    where = f" near row {tile.in_y + bad[0][1]}, column {tile.in_x + bad[0][2]}" if len(bad) else ""
    raise ValueError(f"image holds NaN or infinite values{where}")


def _batches(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def model_geometry(model: nn.Module) -> tuple[int, str, int, int, tuple[int, ...]]:
    """(depth, padding, in_channels, num_classes, channels per level) of a unetkit model."""
    cfg = getattr(model, "config", None)
    try:
        widths = getattr(cfg, "widths", None)  # a plain config: base_channels doubling
        if widths is None:
            widths = tuple(geometry.level_channels(cfg.depth, cfg.base_channels))
        return (cfg.depth, cfg.padding, cfg.in_channels, cfg.num_classes, widths)
    except AttributeError:
        raise TypeError(
            "predict_tiled needs a model with a `config` (depth, padding, in_channels, "
            "num_classes, base_channels), such as unetkit.UNet"
        ) from None


def resolve_halo(depth: int, padding: str, halo: int | None) -> int:
    """The halo actually used: 0 for valid models (exact without one); for same-padded models the
    given halo (default: the receptive-field radius) rounded up to a multiple of ``2**depth``."""
    if padding != "same":
        if halo:
            raise ValueError("halo applies to same-padded models only: valid tiles are exact")
        return 0
    halo = geometry.margin(depth) if halo is None else halo  # receptive-field radius
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    return math.ceil(halo / 2**depth) * 2**depth


def input_affine(model: nn.Module, src: Any, normalization: Normalization | dict | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(scale, offset)`` that turn raw pixels of the (C, H, W) ``src`` into network
    input: ``normalization``, else ``model.meta["normalization"]`` (``per_image`` statistics of
    the whole image, streamed)."""
    return model_normalization(model, normalization).affine(src, src.shape[0])


def model_normalization(model: nn.Module, normalization: Normalization | dict | None = None
                        ) -> Normalization:
    """``normalization`` if given, else the model's own (``model.meta["normalization"]``)."""
    norm = normalization if normalization is not None else getattr(model, "meta", {}).get(
        "normalization")
    return norm if isinstance(norm, Normalization) else Normalization.from_dict(norm)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def run_tiles(
    model: nn.Module,
    src: Any,
    tiles: list[Tile],
    tile_size: int,
    scale: np.ndarray,
    offset: np.ndarray,
    *,
    batch_size: int = 1,
    tta: bool = False,
    softmax: bool = True,
    device: str | torch.device | None = None,
) -> Iterator[tuple[list[Tile], np.ndarray]]:
    """Run ``tiles`` of a (C, H, W) source in batches; yield ``(batch, (B, K, S', S') float32)``.

    Each window is read mirrored (:func:`read_window`), normalised as ``raw * scale + offset``
    (per-channel arrays of shape (C,)), checked for NaN/inf and run in eval/inference mode; the
    model's training mode is restored afterwards.  Shared by :func:`predict_tiled`, streaming and
    dask so that all three compute the very same numbers.
    """
    device = torch.device(device) if device is not None else model_device(model)
    scale, offset = np.asarray(scale)[:, None, None], np.asarray(offset)[:, None, None]
    to_channels_last(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in _batches(tiles, batch_size):
                windows = []
                for t in batch:
                    raw = read_window(src, t.in_y, t.in_x, tile_size, tile_size)
                    win = raw.astype(np.float32) * scale + offset
                    if not np.isfinite(win).all():
                        _raise_non_finite(raw, t)
                    windows.append(win)
                # channels_last input for the channels_last model (see to_channels_last)
                x = _to_device(torch.from_numpy(np.stack(windows)), device)
                x = x.contiguous(memory_format=torch.channels_last)
                yield batch, forward_tta(model, x, tta, softmax).float().cpu().numpy()
    finally:
        model.train(was_training)


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D weights channels_last, in place (a no-op when they already are).

    oneDNN's and cuDNN's fast convolution layout: with channels_last input, the default network
    in a channels_last layout runs a 256 px tile 1.4-1.6x faster than a contiguous one on a
    2-core CPU (``benchmarks/README.md``).
    The values are unchanged; saved model files are written contiguous.
    """
    if any(p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last)
           for p in model.parameters()):
        model.to(memory_format=torch.channels_last)
    return model


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of windows on ``device``; to a GPU from pinned memory without blocking the host."""
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


@dataclass
class TileRunner:
    """Runs batches of tiles of one model: read mirrored windows, normalise, forward, crop.

    ``tile_size`` None: the cheapest legal tile for the image shape under ``memory_budget``
    (``choose_tile_size``, as ``predict_tiled`` does with its own budget).
    """

    model: nn.Module
    tile_size: int | None = None
    batch_size: int = 1
    tta: bool | None = None  # None: the model file's choice (model_tta)
    softmax: bool = True
    device: str | torch.device | None = None
    halo: int | None = None
    memory_budget: int = STREAM_MEMORY_BUDGET

    def __post_init__(self) -> None:
        depth, padding, self.in_channels, self.num_classes, self.base = model_geometry(self.model)
        self.depth, self.padding = depth, padding
        self.tta = model_tta(self.model, self.tta)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self.halo = resolve_halo(depth, padding, self.halo)
        if self.tile_size is not None:
            geometry.check_input_size(self.tile_size, depth, padding)
        self.device = torch.device(self.device) if self.device else model_device(self.model)
        self._fitted = False

    def resolve_tile(self, shape: tuple[int, int]) -> int:
        """The tile size for an (H, W) image: the given one (capped to the image and checked
        against ``memory_budget``, as in ``predict_tiled``), or ``predict_tiled``'s choice."""
        if self.tile_size is not None and not self._fitted:
            self.tile_size = fit_tile_size(shape, self.tile_size, self.depth, self.base,
                                           self.padding, self.batch_size, self.memory_budget,
                                           self.halo, self.in_channels)
        if self.tile_size is None:
            self.tile_size = choose_tile_size(shape, self.depth, self.base, self.padding,
                                              self.batch_size, self.memory_budget,
                                              halo=self.halo,
                                              in_channels=self.in_channels,
                                              num_classes=self.num_classes)
        self._fitted = True
        return self.tile_size

    @property
    def stride(self) -> int:
        assert self.tile_size is not None
        return geometry.tile_stride(self.tile_size, self.depth, self.padding, self.halo)

    def plan(self, shape: tuple[int, int]) -> list[Tile]:
        """``predict_tiled``'s plan for an (H, W) image (tiles at multiples of the stride)."""
        size = self.resolve_tile(shape)
        return plan_tiles(shape, size, self.depth, self.padding, self.halo)

    def region(self, shape: tuple[int, int], y0: int, x0: int, h: int, w: int
               ) -> list[Tile]:
        size = self.resolve_tile(shape)
        return region_tiles(y0, x0, h, w, size, self.depth, self.padding, self.halo)

    def run(self, src: Any, tiles: list[Tile], scale: np.ndarray, offset: np.ndarray
            ) -> Iterator[tuple[list[Tile], np.ndarray]]:
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
