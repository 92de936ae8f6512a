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
    "stack_shape",
    "tiff_metadata",
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


def stack_shape(path: str | os.PathLike) -> tuple[int, int, int, int]:
    """The ``(N, C, H, W)`` shape :func:`read_stack` would return, from the header only.

    Cheap enough to check every input of a batch before the first compute; a file whose pixel
    data is damaged behind a good header still fails later, in :func:`read_stack`.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such file")
    try:
        if p.suffix.lower() in _TIFF:
            with tifffile.TiffFile(p) as tif:
                if not tif.series:
                    raise ImageReadError(f"{p}: TIFF holds no image")
                series = tif.series[0]
                shape, axes = tuple(series.shape), series.axes.upper()
                dtype = series.dtype
        else:
            with Image.open(p) as img:
                frames = getattr(img, "n_frames", 1)
                gray = img.mode in ("1", "L", "LA", "I", "I;16", "F", "PA") or (
                    img.mode == "P" and _palette_is_gray(img))
                shape, axes = ((frames, img.height, img.width) if gray
                               else (frames, 3, img.height, img.width)), "QYX" if gray else "QSYX"
                dtype = np.uint8
    except ImageReadError:
        raise
    except (OSError, ValueError, UnidentifiedImageError, KeyError, IndexError) as exc:
        raise ImageReadError(f"{p}: cannot read image ({type(exc).__name__}: {exc})") from None
    if len(shape) != len(axes) or "Y" not in axes or "X" not in axes:
        raise ImageReadError(f"{p}: cannot interpret axes {axes!r} of shape {shape}")
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise ImageReadError(f"{p}: unsupported pixel type {dtype}")
    sizes = dict(zip(axes, shape))
    chan = [a for a in axes if a in _CHANNEL_AXES]
    if len(chan) > 1:
        raise ImageReadError(f"{p}: more than one channel axis in {axes!r}")
    c = sizes[chan[0]] if chan else 1
    if c == 4 and chan == ["S"]:
        c = 3  # alpha dropped
    n = int(np.prod([v for a, v in zip(axes, shape) if a not in "YX" and a not in chan]))
    if n * c * sizes["Y"] * sizes["X"] == 0:
        raise ImageReadError(f"{p}: image is empty (shape {shape})")
    return n, c, sizes["Y"], sizes["X"]


def _palette_is_gray(img: Image.Image) -> bool:
    rgb = np.asarray(img.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def tiff_metadata(path: str | os.PathLike) -> dict:
    """What a prediction of this file should keep: ``axes`` of its slices (``""`` for one
    image; ``Z``, ``T``, ``TZ``...), ``imagej`` metadata (spacing, unit, ...) and ``resolution``
    (pixels per unit in X and Y); empty for files that are not TIFF."""
    p = Path(path)
    if p.suffix.lower() not in _TIFF:
        return {}
    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        axes = series.axes.upper()
        page = tif.pages.first
        slices = [(a, n) for a, n in zip(axes, series.shape) if a not in "YX" + _CHANNEL_AXES]
        meta: dict = {"axes": "".join(a for a, _ in slices),
                      "slice_shape": tuple(n for _, n in slices)}
        tags = page.tags
        if "XResolution" in tags and "YResolution" in tags:
            xr, yr = tags["XResolution"].value, tags["YResolution"].value
            if xr[0] and yr[0]:
                meta["resolution"] = (xr[0] / xr[1], yr[0] / yr[1])
        if tif.is_imagej and tif.imagej_metadata:
            keep = ("spacing", "unit", "finterval", "fps", "xorigin", "yorigin", "zorigin")
            meta["imagej"] = {k: v for k, v in tif.imagej_metadata.items() if k in keep}
    return meta


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


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600 and the rename keeps that mode: give it the mode any new
        # file gets under the user's umask (0644 under 022), so lab-mates can read models and
        # outputs (set last: some writers replace the temporary file rather than fill it)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tiff(path: str | os.PathLike, array: np.ndarray, *, axes: str | None = None,
               compression: str | None = "zlib", display_range: tuple[float, float] | None = None,
               resolution: tuple[float, float] | None = None, imagej: dict | None = None) -> Path:
    """Write ``array`` to a (BigTIFF when large) TIFF atomically; ``axes`` e.g. "YX", "CYX".

    ``display_range`` (labels: ``(0, largest label)``) is stored as ImageJ's display range, so a
    0/1 mask is not black in Fiji; ``resolution`` (pixels per unit, X and Y) and ``imagej``
    metadata (spacing, unit...) are those of the input.  An ImageJ hyperstack is written when
    the axes and dtype allow it (axes a subsequence of TZCYX, not 64-bit, not uint32, < 4 GiB).
    """
    array = np.asarray(array)
    axes = axes.upper() if axes else None
    ij_axes = axes.replace("Q", "Z").replace("I", "Z") if axes else None
    ij_ok = (ij_axes is not None and _is_subsequence(ij_axes, "TZCYX") and len(set(ij_axes)) ==
             len(ij_axes) and array.dtype in (np.uint8, np.uint16, np.float32)
             and array.nbytes < 2**32 - 2**25)
    kwargs: dict = {}
    if resolution is not None:
        kwargs["resolution"] = tuple(float(r) for r in resolution)
    if ij_ok:
        metadata = {"axes": ij_axes, **(imagej or {})}
        if display_range is not None:
            metadata["min"], metadata["max"] = (float(v) for v in display_range)
            metadata["Ranges"] = tuple(float(v) for v in display_range) * (
                array.shape[ij_axes.index("C")] if "C" in ij_axes else 1)
        kwargs.update(imagej=True, metadata=metadata)
    else:
        kwargs.update(metadata={"axes": axes} if axes else None,
                      bigtiff=array.nbytes > 2**31)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, compression=compression, photometric="minisblack", **kwargs)
    return Path(path)


def _is_subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(c in it for c in short)
