"""Tile plans, tile choices and memory estimates: pure integers, no torch.

How an image is cut (paper Sec. 2, Fig. 2): output tiles start on a grid of ``stride`` px, a
multiple of ``2**depth`` (model/geometry.py: the network is only equivariant to such shifts), and
each writes its own region once.  :func:`plan_tiles` covers a whole image; :func:`region_tiles`
writes any rectangle on the same *global* grid (streaming and dask), so that every region equals
the same pixels of ``predict_tiled``.

Choosing the tile (``tile_size=None``): every legal tile size is costed as (number of tiles) x
(convolution FLOPs of one tile), which weighs the margin overhead of small tiles against the area
wasted beyond the image edge by large ones, and the cheapest tile whose estimated activation memory
(``batch_size`` tiles at once) fits ``memory_budget`` is chosen (ties go to the smaller tile).
The tensor code (engine.py) calls these functions and never re-derives them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..model import geometry

__all__ = [
    "Tile",
    "plan_tiles",
    "region_tiles",
    "context",
    "choose_tile_size",
    "fit_tile_size",
    "estimate_memory",
    "DEFAULT_MEMORY_BUDGET",
    "STREAM_MEMORY_BUDGET",
    "OUTPUT_KINDS",
    "check_output_kind",
]

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of activations for the tiles in flight (2 GiB)
# Activation budget of the automatic tile when streaming: well under predict_tiled's 2 GiB, so
# that a large image gets the same tile whatever its size (flat peak memory, < 2 GB for the
# default 16-channel model with torch itself), at ~5 % more margin overhead than the largest tile.
STREAM_MEMORY_BUDGET = 512 * 2**20


@dataclass(frozen=True)
class Tile:
    """One tile of a plan, in image coordinates (rows ``y``, columns ``x``).

    The network reads the input window ``[in_y, in_y + size) x [in_x, in_x + size)`` (which may
    reach beyond the image: that part is mirrored), and the pixels ``[y, y + h) x [x, x + w)`` of
    the image are written from its output, starting at ``(off_y, off_x)`` of the output tile.
    """

    y: int
    x: int
    h: int
    w: int
    in_y: int
    in_x: int
    off_y: int
    off_x: int


def _axis_plan(n: int, stride: int, margin_: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(start, length, input start, output offset) along one axis; starts are multiples of stride."""
    plan = []
    for start in range(0, n, stride):
        length = min(stride, n - start)
        plan.append((start, length, start - margin_ - halo, halo))
    return plan


def plan_tiles(
    shape: tuple[int, int],
    size: int,
    depth: int = 4,
    padding: str = "valid",
    halo: int = 0,
) -> list[Tile]:
    """Cover an ``(H, W)`` image with tiles of input edge ``size``; every pixel written once.

    Valid padding: output tiles start at multiples of ``tile_stride`` (a multiple of ``2**depth``),
    the input window starts ``margin`` px before it.  Same padding: the input window also starts
    ``halo`` px earlier and the first ``halo`` output px of each tile are discarded (exact only when
    the halo covers the network's receptive field, see ``inference.tiled.predict_tiled``).
    """
    h_img, w_img = shape
    if h_img < 1 or w_img < 1:
        raise ValueError(f"image shape must be positive, got {shape}")
    if padding == "same" and halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    stride = geometry.tile_stride(size, depth, padding, halo)
    if stride < 2**depth:
        raise ValueError(
            f"input tile {size} is too small to tile with (it writes {stride} px per step); "
            f"use at least {geometry.min_tile_size(depth, padding, halo)}"
        )
    m = geometry.margin(depth, padding)
    hh = halo if padding == "same" else 0
    rows = _axis_plan(h_img, stride, m, hh)
    cols = _axis_plan(w_img, stride, m, hh)
    return [
        Tile(y, x, h, w, iy, ix, oy, ox)
        for (y, h, iy, oy) in rows
        for (x, w, ix, ox) in cols
    ]


def context(depth: int, padding: str, halo: int) -> int:
    """Input px needed beyond a region on each side: margin (+ halo) + grid phase (<= 2**depth - 1)."""
    return geometry.margin(depth, padding) + halo + 2**depth - 1


def region_tiles(y0: int, x0: int, h: int, w: int, tile_size: int, depth: int = 4,
                 padding: str = "valid", halo: int = 0) -> list[Tile]:
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

    return [Tile(y, x, hh, ww, iy, ix, oy, ox)
            for (y, hh, iy, oy) in axis(y0, h) for (x, ww, ix, ox) in axis(x0, w)]


def estimate_memory(size: int, depth: int, base_channels: int | Sequence[int], padding: str = "valid",
                    batch_size: int = 1, in_channels: int = 1) -> int:
    """Estimated peak bytes of a no-grad forward pass on ``batch_size`` tiles (float32).

    Three parts: the skip connections of every level, alive until the expanding path consumes
    them; the largest stage (its input, its output and, in the expanding path, the
    concatenation); and the convolution library's working copies at full resolution (oneDNN
    reorders feature maps into a blocked layout, channels padded to 16): measured as 1.6
    first-level feature maps of ``max(channels[0], 16)`` channels.  Without that last part the
    estimate was 2x below the measured peak (tests/inference/test_memory.py checks 25 %).
    """
    sizes = dict(geometry.iter_level_sizes(size, depth, padding))
    ch = geometry.level_channels(depth, base_channels)
    skips = sum(ch[lvl] * sizes[f"down{lvl}.conv2"] ** 2 for lvl in range(depth))
    peak_stage = max(
        [in_channels * size**2 + ch[0] * sizes["down0.conv1"] ** 2]
        + [3 * ch[lvl] * sizes[f"up{lvl}.upconv"] ** 2 + ch[lvl] * sizes[f"up{lvl}.conv1"] ** 2
           for lvl in range(depth)]
    )
    workspace = 1.6 * max(ch[0], 16) * sizes["down0.conv1"] ** 2
    return int(4 * batch_size * (skips + peak_stage + workspace))


def choose_tile_size(
    shape: tuple[int, int],
    depth: int = 4,
    base_channels: int | Sequence[int] = 64,
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


def needed_tile_size(shape: tuple[int, int], depth: int = 4, padding: str = "valid",
                     halo: int = 0) -> int:
    """The smallest legal tile that covers an ``(H, W)`` image in one tile (no larger helps)."""
    smallest = geometry.min_tile_size(depth, padding, halo)
    # a lazy walk: building the list of every legal size up to 2**30 took ~3 s per call
    for size in geometry.iter_legal_sizes(depth, padding):
        if size >= smallest and geometry.tile_stride(size, depth, padding, halo) >= max(shape):
            return size
    raise AssertionError("unreachable: legal sizes are unbounded")


def fit_tile_size(
    shape: tuple[int, int],
    size: int,
    depth: int = 4,
    base_channels: int | Sequence[int] = 64,
    padding: str = "valid",
    batch_size: int = 1,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    halo: int = 0,
    in_channels: int = 1,
) -> int:
    """An explicit tile ``size``, capped to what the image needs and checked against the budget.

    A tile larger than the one that covers the image only costs memory and time: it is reduced
    to that one (the output does not depend on the tile).  A tile whose estimated activations
    exceed ``memory_budget`` raises ValueError naming the largest that fits.
    """
    size = min(size, needed_tile_size(shape, depth, padding, halo))
    need = estimate_memory(size, depth, base_channels, padding, batch_size, in_channels)
    if need > memory_budget:
        fits = [s for s in geometry.legal_input_sizes(depth, size, padding)
                if s >= geometry.min_tile_size(depth, padding, halo)
                and estimate_memory(s, depth, base_channels, padding, batch_size,
                                    in_channels) <= memory_budget]
        smallest = geometry.min_tile_size(depth, padding, halo)
        hint = (f"use tile {fits[-1]} or smaller, or raise the budget" if fits else
                f"even the smallest tile ({smallest}) needs more: raise the budget")
        raise ValueError(
            f"tile {size}: needs about {need / 2**20:.0f} MiB at batch size {batch_size}, over "
            f"the memory budget of {memory_budget / 2**20:.0f} MiB (--memory-budget); {hint}"
        )
    return size


#: What a prediction writes, for every driver: class indices, per-class probabilities, objects.
OUTPUT_KINDS = ("labels", "probabilities", "instances")


def check_output_kind(output: str) -> None:
    """Raise ValueError naming the choices unless ``output`` is one of :data:`OUTPUT_KINDS`."""
    if output not in OUTPUT_KINDS:
        raise ValueError(f"unknown output {output!r}; choose from {', '.join(OUTPUT_KINDS)}")
