"""Overlap-tile inference (paper Sec. 2, Fig. 2): any image size, exact stitching, bounded memory.

How it works:

1. The image is extended beyond its borders by **half-sample symmetric mirroring** (numpy's
   ``"symmetric"``: ``... c b a | a b c ... z y x | x y z ...``, the edge pixel repeated).  We chose
   it over ``"reflect"`` (``c b | a b c``) because it is defined for every image size, a single
   pixel included, and it is what dask's ``map_overlap(boundary="reflect")`` does, so tiled,
   whole-image and dask inference agree to the bit.  Training crops mirror the same way.
2. Output tiles start on a grid of ``stride`` px, a multiple of ``2**depth`` (see geometry.py: the
   network is only equivariant to such shifts), and each writes its own ``stride x stride`` region
   once: no blending, no seams.  The output equals whole-image inference on the mirrored image.
3. Input windows are read lazily from the source (a numpy array, memmap, zarr array, anything
   sliceable), a bounding box of mirrored indices at a time, and results go straight into ``out``:
   memory is bounded by the tiles in flight, not by the image.

Choosing the tile (``tile_size=None``): every legal tile size is costed as (number of tiles) x
(convolution FLOPs of one tile), which weighs the margin overhead of small tiles against the area
wasted beyond the image edge by large ones, and the cheapest tile whose estimated activation memory
(``batch_size`` tiles at once) fits ``memory_budget`` is chosen (ties go to the smaller tile).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..model import geometry
from ..data.normalize import Normalization

__all__ = [
    "predict_tiled",
    "choose_tile_size",
    "estimate_memory",
    "mirror_indices",
    "read_window",
    "DEFAULT_MEMORY_BUDGET",
]

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of activations for the tiles in flight (2 GiB)


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


def as_chw(image: Any, in_channels: int) -> Any:
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) == 2:
        view = _ChannelView(image)
    elif len(shape) == 3:
        view = image
    else:
        raise ValueError(f"image must be (H, W) or (C, H, W), got shape {shape}")
    if view.shape[0] != in_channels:
        raise ValueError(
            f"image has {view.shape[0]} channel(s) (shape {shape}), the model expects {in_channels}"
        )
    if min(view.shape[1:]) < 1:
        raise ValueError(f"image is empty: shape {shape}")
    if not (np.issubdtype(view.dtype, np.number) or view.dtype == np.bool_):
        raise ValueError(f"image dtype must be numeric, got {view.dtype}")
    return view


def estimate_memory(size: int, depth: int, base_channels: int, padding: str = "valid",
                    batch_size: int = 1, in_channels: int = 1) -> int:
    """Estimated peak activation bytes of a no-grad forward pass on ``batch_size`` tiles.

    The skip connections of every level stay alive until the expanding path consumes them; on top
    of those, the largest stage holds its input, its output and (in the expanding path) the
    concatenation.  float32 throughout.
    """
    sizes = dict(geometry.iter_level_sizes(size, depth, padding))
    ch = [base_channels * 2**lvl for lvl in range(depth + 1)]
    skips = sum(ch[lvl] * sizes[f"down{lvl}.conv2"] ** 2 for lvl in range(depth))
    peak_stage = max(
        [in_channels * size**2 + ch[0] * sizes["down0.conv1"] ** 2]
        + [3 * ch[lvl] * sizes[f"up{lvl}.upconv"] ** 2 + ch[lvl] * sizes[f"up{lvl}.conv1"] ** 2
           for lvl in range(depth)]
    )
    return 4 * batch_size * (skips + peak_stage)


def choose_tile_size(
    shape: tuple[int, int],
    depth: int = 4,
    base_channels: int = 64,
    padding: str = "valid",
    batch_size: int = 1,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    halo: int = 0,
    in_channels: int = 1,
    num_classes: int = 2,
) -> int:
    """The legal input tile that minimises total convolution FLOPs for an ``(H, W)`` image.

    Raises ValueError when not even the smallest tile fits ``memory_budget``.
    """
    m = geometry.margin(depth, padding) + (halo if padding == "same" else 0)
    smallest = geometry.min_tile_size(depth, padding, halo)
    # No tile needs to be larger than the one that covers the whole image at once.
    largest = max(smallest, max(shape) + 2 * m + 2 * 2**depth)
    best: tuple[float, int] | None = None
    for size in geometry.legal_input_sizes(depth, largest, padding):
        if size < smallest:
            continue
        if estimate_memory(size, depth, base_channels, padding, batch_size, in_channels) > memory_budget:
            break
        stride = geometry.tile_stride(size, depth, padding, halo)
        n_tiles = math.ceil(shape[0] / stride) * math.ceil(shape[1] / stride)
        # Tiles run in batches: a half-empty last batch costs as much as a full one.
        n_runs = math.ceil(n_tiles / batch_size) * batch_size
        cost = n_runs * geometry.conv_flops(size, depth, base_channels, in_channels,
                                            num_classes, padding)
        if best is None or cost < best[0]:
            best = (cost, size)
    if best is None:
        need = estimate_memory(smallest, depth, base_channels, padding, batch_size, in_channels)
        raise ValueError(
            f"memory budget {memory_budget / 2**20:.0f} MiB is too small: the smallest tile "
            f"({smallest}) needs about {need / 2**20:.0f} MiB at batch size {batch_size}"
        )
    return best[1]


# The 8 symmetries of the square: (number of 90-degree rotations, flip left-right first).
_DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


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


def _raise_non_finite(raw: np.ndarray, tile: geometry.Tile) -> None:
    bad = np.argwhere(~np.isfinite(raw))
    where = f" near row {tile.in_y + bad[0][1]}, column {tile.in_x + bad[0][2]}" if len(bad) else ""
    raise ValueError(f"image holds NaN or infinite values{where}")


def _batches(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def model_geometry(model: nn.Module) -> tuple[int, str, int, int, int]:
    cfg = getattr(model, "config", None)
    try:
        return (cfg.depth, cfg.padding, cfg.in_channels, cfg.num_classes, cfg.base_channels)
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
    norm = normalization if normalization is not None else getattr(model, "meta", {}).get(
        "normalization")
    norm = norm if isinstance(norm, Normalization) else Normalization.from_dict(norm)
    return norm.affine(src, src.shape[0])


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def run_tiles(
    model: nn.Module,
    src: Any,
    tiles: list[geometry.Tile],
    tile_size: int,
    scale: np.ndarray,
    offset: np.ndarray,
    *,
    batch_size: int = 1,
    tta: bool = False,
    softmax: bool = True,
    device: str | torch.device | None = None,
) -> Iterator[tuple[list[geometry.Tile], np.ndarray]]:
    """Run ``tiles`` of a (C, H, W) source in batches; yield ``(batch, (B, K, S', S') float32)``.

    Each window is read mirrored (:func:`read_window`), normalised as ``raw * scale + offset``
    (per-channel arrays of shape (C,)), checked for NaN/inf and run in eval/inference mode; the
    model's training mode is restored afterwards.  Shared by :func:`predict_tiled`, streaming and
    dask so that all three compute the very same numbers.
    """
    device = torch.device(device) if device is not None else model_device(model)
    scale, offset = np.asarray(scale)[:, None, None], np.asarray(offset)[:, None, None]
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
                # channels_last: oneDNN/cuDNN's fast convolution layout (1.4-1.7x on a 2-core CPU)
                x = torch.from_numpy(np.stack(windows)).to(device)
                x = x.contiguous(memory_format=torch.channels_last)
                yield batch, forward_tta(model, x, tta, softmax).float().cpu().numpy()
    finally:
        model.train(was_training)


def predict_tiled(
    model: nn.Module,
    image: Any,
    tile_size: int | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    tta: bool = False,
    out: Any = None,
    *,
    halo: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    normalization: Normalization | dict | None = None,
    softmax: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Any:
    """Segment an image of any size tile by tile; the result equals whole-image inference.

    Args:
        model: a :class:`unetkit.UNet` (or any module with the same ``config``).
        image: (H, W) or (C, H, W) array-like: numpy array, memmap, zarr array... read lazily.
        tile_size: input tile edge, legal for the model (572 for the paper network); None picks
            the cheapest legal tile under ``memory_budget`` (module docstring).
        batch_size: tiles per forward pass.
        device: where the network runs; None uses the device of the model's parameters.
        tta: average the 8 flips / 90-degree rotations (the paper averaged 7 rotations).
        out: optional (K, H, W) float32 array-like to fill (e.g. a zarr array or memmap).
        halo: same-padded models only: extra context per side, discarded after the forward pass;
            rounded up to a multiple of ``2**depth``.  Default: the receptive-field radius of the
            network (92 px at depth 4, rounded up to 96).  With a halo that covers the receptive
            field, the zero padding at tile edges never reaches a kept pixel and stitching is
            exact to float rounding (measured: 3e-6); a narrower halo is faster but not exact.
        memory_budget: bytes of activations allowed for the tiles in flight (``tile_size=None``).
        normalization: overrides ``model.meta["normalization"]`` (see normalize.py).
        softmax: return softmax probabilities (True) or the raw network output (False).
        progress: called as ``progress(tiles_done, tiles_total)`` after each batch.

    Returns:
        ``out``, or a new (K, H, W) float32 numpy array: per-class probabilities.
    """
    depth, padding, in_ch, n_cls, base = model_geometry(model)
    src = as_chw(image, in_ch)
    _, height, width = src.shape
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    halo = resolve_halo(depth, padding, halo)
    if tile_size is None:
        tile_size = choose_tile_size((height, width), depth, base, padding, batch_size,
                                     memory_budget, halo, in_ch, n_cls)
        log.info("automatic tile size: %d", tile_size)
    geometry.check_input_size(tile_size, depth, padding)
    tiles = geometry.plan_tiles((height, width), tile_size, depth, padding, halo)
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
