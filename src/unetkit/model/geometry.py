"""Pure integer geometry of U-Nets: sizes, margins and legal tiles (no torch).

A valid-convolution U-Net of depth ``D`` maps an input of edge ``s`` to an output of edge
``output_size(s, D)``: each level of the contracting path loses 4 px to its two 3x3 valid
convolutions and halves the size (the size must be even there), each level of the expanding path
doubles the size and loses 4 px again.  For the paper's depth 4: ``572 -> 388``, margin 92 px per
side, legal input edges ``16 * b + 124`` (``b >= 4``).

Why tiles sit on a ``2**D`` grid: max-pooling makes the network equivariant only to shifts that are
multiples of ``2**D`` (16 for the paper network).  The output of every legal tile is ``4 (mod 16)``
px wide (388 = 24 * 16 + 4), so tiles placed edge to edge at 388 px steps would each see a
different pooling phase and disagree with whole-image inference.  We therefore place output tiles at
multiples of ``stride = 2**D * floor(out / 2**D)`` (384 for the 572 tile) and write only ``stride``
px of each: every pixel is then computed exactly as the whole (mirror-padded) image would compute
it, and written exactly once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from ..config import UNetConfig

__all__ = [
    "output_size",
    "is_legal",
    "margin",
    "legal_input_sizes",
    "iter_legal_sizes",
    "nearest_legal_sizes",
    "check_input_size",
    "tile_stride",
    "min_tile_size",
    "min_legal_size",
    "iter_level_sizes",
    "conv_flops",
    "level_channels",
]

CONVS_PER_LEVEL = 2  # two 3x3 convolutions per level (paper, Fig. 1)
KERNEL = 3


def _valid_output(size: int, depth: int) -> int | None:
    """Output edge of a valid U-Net for input edge ``size``; None if some stage is illegal."""
    shrink = CONVS_PER_LEVEL * (KERNEL - 1)  # 4 px lost by the two valid convs of a level
    s = size
    for _ in range(depth):  # contracting path
        s -= shrink
        if s < 2 or s % 2:  # every max-pool must see an even size
            return None
        s //= 2
    s -= shrink  # bottom of the U
    if s < 1:
        return None
    for _ in range(depth):  # expanding path: up-conv doubles, two convs shrink
        s = 2 * s - shrink
        if s < 1:
            return None
    return s


def output_size(size: int, depth: int = 4, padding: str = "valid") -> int:
    """Output edge for input edge ``size``. Raises ValueError naming the nearest legal sizes."""
    check_input_size(size, depth, padding)
    if padding == "same":
        return size
    out = _valid_output(size, depth)
    assert out is not None
    return out


def is_legal(size: int, depth: int = 4, padding: str = "valid") -> bool:
    """True when ``size`` is a legal input edge for a U-Net of this depth and padding."""
    _check_depth(depth)
    if padding == "same":
        return size >= 2**depth and size % 2**depth == 0
    if padding != "valid":
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return _valid_output(size, depth) is not None


def margin(depth: int = 4, padding: str = "valid") -> int:
    """Context lost per side by a valid U-Net (92 px at depth 4); 0 for same padding."""
    if padding == "same":
        return 0
    s = min_legal_size(depth)
    return (s - output_size(s, depth)) // 2


def min_legal_size(depth: int = 4, padding: str = "valid") -> int:
    """Smallest legal input edge (188 at depth 4)."""
    _check_depth(depth)
    if padding == "same":
        return 2**depth
    s = 1
    while not is_legal(s, depth):
        s += 1
    return s


def legal_input_sizes(depth: int = 4, max_size: int = 1084, padding: str = "valid") -> list[int]:
    """All legal input edges up to ``max_size``: 188, 204, ..., 572, ... at depth 4."""
    first = min_legal_size(depth, padding)
    step = 2**depth
    return list(range(first, max_size + 1, step))


def iter_legal_sizes(depth: int = 4, padding: str = "valid") -> Iterator[int]:
    """The legal input edges in increasing order, without end (188, 204, ... at depth 4)."""
    return itertools.count(min_legal_size(depth, padding), 2**depth)


def nearest_legal_sizes(size: int, depth: int = 4, padding: str = "valid") -> tuple[int | None, int]:
    """The legal input edges just below (None if none) and just above ``size``.

    A legal ``size`` is returned as both.
    """
    first = min_legal_size(depth, padding)
    step = 2**depth
    if size < first:
        return (None, first)
    lower = first + (size - first) // step * step
    return (lower, lower) if lower == size else (lower, lower + step)


def check_input_size(size: int, depth: int = 4, padding: str = "valid") -> None:
    """Raise ValueError, naming the nearest legal edges, when ``size`` is not a legal input edge."""
    if not isinstance(size, int) or isinstance(size, bool):
        raise ValueError(f"tile size must be an integer, got {size!r}")
    if is_legal(size, depth, padding):
        return
    lower, upper = nearest_legal_sizes(size, depth, padding)
    near = f"{lower} or {upper}" if lower is not None else f"{upper}"
    rule = (
        f"{2**depth} * b + {min_legal_size(depth) - 4 * 2**depth}"
        if padding == "valid"
        else f"a multiple of {2**depth}"
    )
    raise ValueError(
        f"illegal input tile size {size} for a {padding}-padded U-Net of depth {depth} "
        f"(legal sizes are {rule}); nearest legal sizes: {near}"
    )


def tile_stride(size: int, depth: int = 4, padding: str = "valid", halo: int = 0) -> int:
    """Output pixels each tile writes: its output edge rounded down to a multiple of ``2**depth``.

    For same-padded networks the tile loses ``halo`` px per side to overlap (see :func:`plan_tiles`).
    """
    out = output_size(size, depth, padding) - 2 * (halo if padding == "same" else 0)
    return (out // 2**depth) * 2**depth


def min_tile_size(depth: int = 4, padding: str = "valid", halo: int = 0) -> int:
    """Smallest input tile that writes at least ``2**depth`` px per step (204 at depth 4)."""
    for s in itertools.islice(iter_legal_sizes(depth, padding), 1 << 12):
        if tile_stride(s, depth, padding, halo) >= 2**depth:
            return s
    raise ValueError(f"no legal tile for depth {depth} and halo {halo}")


def iter_level_sizes(size: int, depth: int, padding: str = "valid") -> Iterator[tuple[str, int]]:
    """Feature-map edges at each stage of the U, for FLOP and memory accounting."""
    shrink = 4 if padding == "valid" else 0
    one = 2 if padding == "valid" else 0
    s = size
    for lvl in range(depth):
        yield (f"down{lvl}.conv1", s - one)
        s -= shrink
        yield (f"down{lvl}.conv2", s)
        s //= 2
    yield ("bottom.conv1", s - one)
    s -= shrink
    yield ("bottom.conv2", s)
    for lvl in reversed(range(depth)):
        s *= 2
        yield (f"up{lvl}.upconv", s)
        yield (f"up{lvl}.conv1", s - one)
        s -= shrink
        yield (f"up{lvl}.conv2", s)


def level_channels(depth: int, base_channels: int | Sequence[int],
                   flat_levels: int = 0) -> list[int]:
    """Channels per level, top to bottom: ``base_channels`` kept for ``flat_levels`` levels below
    the top, then doubling per level (0: the paper's 64, 128, ... 1024), or, given a sequence
    (``model.channels``), those ``depth + 1`` numbers."""
    if isinstance(base_channels, int):  # the formula lives with the model's config
        return list(UNetConfig(depth=depth, base_channels=base_channels,
                               flat_levels=flat_levels).widths)
    ch = [int(c) for c in base_channels]
    if len(ch) != depth + 1:
        raise ValueError(f"channels must have {depth + 1} entries at depth {depth}, got {ch}")
    return ch


def conv_flops(
    size: int,
    depth: int = 4,
    base_channels: int | Sequence[int] = 64,
    in_channels: int = 1,
    num_classes: int = 2,
    padding: str = "valid",
) -> int:
    """Nominal multiply-add FLOPs (2 per MAC) of one forward pass on a ``size x size`` tile.

    Counts every convolution, up-convolution and the 1x1 head; pooling, ReLU and copies are free.
    """
    check_input_size(size, depth, padding)
    sizes = dict(iter_level_sizes(size, depth, padding))
    ch = level_channels(depth, base_channels)
    macs = 0
    for lvl in range(depth):
        cin = in_channels if lvl == 0 else ch[lvl - 1]
        macs += sizes[f"down{lvl}.conv1"] ** 2 * 9 * cin * ch[lvl]
        macs += sizes[f"down{lvl}.conv2"] ** 2 * 9 * ch[lvl] * ch[lvl]
    macs += sizes["bottom.conv1"] ** 2 * 9 * ch[depth - 1] * ch[depth]
    macs += sizes["bottom.conv2"] ** 2 * 9 * ch[depth] * ch[depth]
    for lvl in reversed(range(depth)):
        # transposed 2x2 conv stride 2: every output pixel gets one input pixel x cin MACs
        macs += sizes[f"up{lvl}.upconv"] ** 2 * ch[lvl + 1] * ch[lvl]
        macs += sizes[f"up{lvl}.conv1"] ** 2 * 9 * 2 * ch[lvl] * ch[lvl]
        macs += sizes[f"up{lvl}.conv2"] ** 2 * 9 * ch[lvl] * ch[lvl]
    macs += sizes["up0.conv2"] ** 2 * ch[0] * num_classes
    return 2 * macs


def _check_depth(depth: int) -> None:
    if not isinstance(depth, int) or depth < 1 or depth > 8:
        raise ValueError(f"depth must be an integer from 1 to 8, got {depth!r}")
