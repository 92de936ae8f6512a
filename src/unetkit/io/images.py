"""Read and write images and stacks (PNG, TIFF incl. compressed/BigTIFF, JPEG, BMP, GIF); no torch.

Every reader returns arrays in one layout, ``(N, C, H, W)``: ``N`` slices (pages of a multi-page
TIFF, frames of a GIF; 1 for a plain image) of ``C`` channels (1 for grayscale, 3 for RGB).
Axes come from the TIFF's metadata (``S``/``C`` are channels, ``Z``/``T``/``Q``/``I``... are
slices; tifffile marks RGB samples as ``S`` and an unlabelled leading axis as ``Q``).  An alpha
channel is dropped.  Errors name the file.  Writers write to a temporary file in the same
folder and rename it into place, so an interrupted run never leaves a half-written output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageSequence, UnidentifiedImageError

__all__ = [
    "ImageReadError",
    "IMAGE_SUFFIXES",
    "image_files",
    "read_stack",
    "read_image",
    "iter_images",
    "write_tiff",
    "atomic_path",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".gif")
_TIFF = (".tif", ".tiff")
_CHANNEL_AXES = "CS"
_SPATIAL_AXES = "YX"


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message starts with the file name."""


def image_files(path: str | os.PathLike) -> list[Path]:
    """The image files at ``path``: the file itself, or a folder's images sorted by name."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise ImageReadError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if not p.exists():
        raise ImageReadError(f"{p}: no such file or folder")
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageReadError(f"{p}: unsupported file type {p.suffix!r} (use {', '.join(IMAGE_SUFFIXES)})")
    return [p]


def read_stack(path: str | os.PathLike) -> np.ndarray:
    """Read an image or stack as ``(N, C, H, W)`` in its own dtype."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such file")
    try:
        arr = _read_tiff(p) if p.suffix.lower() in _TIFF else _read_pillow(p)
    except ImageReadError:
        raise
    except (OSError, ValueError, UnidentifiedImageError, KeyError, IndexError) as exc:
        raise ImageReadError(f"{p}: cannot read image ({type(exc).__name__}: {exc})") from None
    if arr.size == 0 or min(arr.shape[2:]) < 1:
        raise ImageReadError(f"{p}: image is empty (shape {arr.shape[2:]})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ImageReadError(f"{p}: unsupported pixel type {arr.dtype}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    return arr


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a single image as (H, W) (grayscale) or (C, H, W); a multi-page stack is an error."""
    arr = read_stack(path)
    if arr.shape[0] != 1:
        raise ImageReadError(f"{path}: holds {arr.shape[0]} slices, expected a single image")
    return arr[0, 0] if arr.shape[1] == 1 else arr[0]


def iter_images(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, (C, H, W) array)`` for every image and every slice of every stack.

    ``paths``: files and/or folders.  A plain image is named by its stem; slice ``i`` of a stack of
    ``N > 1`` slices is named ``<stem>_<i>`` (zero-padded), so that two stacks pair slice by slice.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for path in paths:
        for f in image_files(path):
            stack = read_stack(f)
            if stack.shape[0] == 1:
                yield f.stem, stack[0]
                continue
            digits = len(str(stack.shape[0] - 1))
            for i, plane in enumerate(stack):
                yield f"{f.stem}_{i:0{digits}d}", plane


def _read_tiff(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ImageReadError(f"{path}: TIFF holds no image")
        series = tif.series[0]
        axes = series.axes.upper()
        arr = series.asarray()
    return _to_nchw(arr, axes, path)


def _to_nchw(arr: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """Reorder an array with tifffile axes letters to (N, C, H, W)."""
    if arr.ndim != len(axes) or "Y" not in axes or "X" not in axes:
        raise ImageReadError(f"{path}: cannot interpret axes {axes!r} of shape {arr.shape}")
    chan = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    if len(chan) > 1:
        raise ImageReadError(f"{path}: more than one channel axis in {axes!r}")
    spatial = [axes.index("Y"), axes.index("X")]
    slices = [i for i in range(arr.ndim) if i not in spatial and i not in chan]
    arr = np.transpose(arr, slices + chan + spatial)
    n = int(np.prod([arr.shape[i] for i in range(len(slices))])) if slices else 1
    c = arr.shape[len(slices)] if chan else 1
    arr = arr.reshape(n, c, *arr.shape[-2:])
    if c == 4 and chan and axes[chan[0]] == "S":
        arr = arr[:, :3]  # drop alpha
    return arr


def _read_pillow(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        frames = [_frame_array(frame) for frame in ImageSequence.Iterator(img)]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise ImageReadError(f"{path}: frames of different sizes {sorted(shapes)}")
    return np.stack(frames)


def _frame_array(frame: Image.Image) -> np.ndarray:
    """One Pillow frame as (C, H, W): palettes become gray (if gray) or RGB, alpha is dropped."""
    mode = frame.mode
    if mode == "P":
        frame = frame.convert("RGB")
        rgb = np.asarray(frame)
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[None, ..., 0].copy()
        return np.moveaxis(rgb, -1, 0).copy()
    if mode in ("1", "LA", "PA"):
        frame = frame.convert("L")
    elif mode in ("RGBA", "CMYK", "YCbCr", "RGBX", "LAB", "HSV"):
        frame = frame.convert("RGB")
    arr = np.asarray(frame)
    if arr.ndim == 2:
        return arr[None].copy()
    return np.moveaxis(arr, -1, 0).copy()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tiff(path: str | os.PathLike, array: np.ndarray, *, axes: str | None = None,
               compression: str | None = "zlib") -> Path:
    """Write ``array`` to a (BigTIFF when large) TIFF atomically; ``axes`` e.g. "YX", "CYX"."""
    array = np.asarray(array)
    metadata = {"axes": axes} if axes else None
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, array, metadata=metadata, compression=compression,
            bigtiff=array.nbytes > 2**31, photometric="minisblack",
        )
    return Path(path)
