"""Lazy image access for images larger than memory: TIFF/BigTIFF, Zarr and OME-Zarr (no torch).

:func:`open_image` returns a :class:`LazyImage`: a zarr array (nothing read yet), its axes as
letters (``T`` time, ``C`` channel, ``Z`` depth, ``Y``/``X`` rows/columns, ``Q`` anything else)
and its pixel sizes.  :meth:`LazyImage.plane` gives one 2D plane as a (C, H, W) array-like that
reads only what is sliced, which is what ``predict_tiled`` and the streaming writer consume.

Axes come from the file: TIFF series axes (tifffile; ``S`` samples are channels, ``I``/``Q``
unlabelled slices), OME-Zarr ``multiscales`` axes (NGFF 0.4 and 0.5, level 0), a plain Zarr's
``_ARRAY_DIMENSIONS`` (xarray) or ``dimension_names`` (Zarr v3); or from the caller (``--axes``).
A 2D array without metadata is ``YX``; other shapes without metadata are an error that asks for
``axes``.  zarr is imported lazily: the core install works without it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .images import ImageReadError

__all__ = ["LazyImage", "open_image", "require_zarr", "is_zarr_path", "parse_axes",
           "NGFF_UNITS", "canonical_axes"]

log = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'unetkit[dask]'"
_ZARR_SUFFIXES = (".zarr",)
# NGFF unit names <-> short forms used by OME-TIFF / ImageJ
NGFF_UNITS = {"µm": "micrometer", "um": "micrometer", "micron": "micrometer", "nm": "nanometer",
              "mm": "millimeter", "cm": "centimeter", "m": "meter", "s": "second",
              "ms": "millisecond", "min": "minute", "h": "hour", "\\u00B5m": "micrometer"}
_AXIS_RANK = {"T": 0, "Q": 1, "C": 2, "Z": 3, "Y": 4, "X": 5}


def require_zarr() -> Any:
    """Import zarr or raise an ImportError naming the extra that provides it."""
    try:
        import zarr
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"streaming to/from Zarr needs zarr: {EXTRA_HINT}") from None
    return zarr


def is_zarr_path(path: str | os.PathLike) -> bool:
    return str(path).rstrip("/").lower().endswith(_ZARR_SUFFIXES)


def parse_axes(axes: str, ndim: int, where: str = "axes") -> str:
    """Validate axes letters (``ZYX``, ``TCYX``...): one per dimension, one Y and one X."""
    ax = axes.upper()
    ax = ax.replace("S", "C")  # tifffile's samples (RGB) are channels
    if len(ax) != ndim:
        raise ValueError(f"{where} {axes!r} has {len(ax)} letters for {ndim} dimensions")
    bad = set(ax) - set("TCZYXQI")
    if bad:
        raise ValueError(f"{where} {axes!r}: unknown letter(s) {sorted(bad)} (use T C Z Y X Q)")
    ax = ax.replace("I", "Q")
    if ax.count("Y") != 1 or ax.count("X") != 1:
        raise ValueError(f"{where} {axes!r} must hold exactly one Y and one X")
    if ax.count("C") > 1 or ax.count("T") > 1 or ax.count("Z") > 1:
        raise ValueError(f"{where} {axes!r}: repeated T, C or Z")
    return ax


def canonical_axes(axes: str) -> str:
    """Reorder letters as OME-Zarr wants them: time, other, channel, depth, Y, X (stable)."""
    return "".join(sorted(axes, key=lambda a: _AXIS_RANK[a]))


@dataclass
class LazyImage:
    """An n-D array-like with axes letters and pixel sizes; planes are read lazily."""

    array: Any
    axes: str
    scale: dict[str, float] = field(default_factory=dict)  # per axis letter (pixel size)
    units: dict[str, str] = field(default_factory=dict)  # NGFF unit names per axis letter
    name: str = "image"

    def __post_init__(self) -> None:
        self.axes = parse_axes(self.axes, len(self.array.shape), f"{self.name}: axes")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def plane_axes(self) -> str:
        """Axes other than C, Y, X, in array order: one 2D prediction per index."""
        return "".join(a for a in self.axes if a not in "CYX")

    @property
    def plane_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[self.axes.index(a)] for a in self.plane_axes)

    @property
    def channels(self) -> int:
        return self.shape[self.axes.index("C")] if "C" in self.axes else 1

    @property
    def yx(self) -> tuple[int, int]:
        return (self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")])

    def plane(self, index: tuple[int, ...]) -> _PlaneView:
        """Plane ``index`` (one int per ``plane_axes``) as a lazy (C, H, W) array-like."""
        return _PlaneView(self, tuple(int(i) for i in index))


class _PlaneView:
    """One plane of a :class:`LazyImage` as (C, H, W); slicing reads only the slice."""

    def __init__(self, image: LazyImage, index: tuple[int, ...]) -> None:
        self.image, self.index = image, index
        self.shape = (image.channels, *image.yx)
        self.dtype = image.dtype

    def __getitem__(self, key: tuple) -> np.ndarray:
        key = key + (slice(None),) * (3 - len(key))
        img = self.image
        where = dict(zip(img.plane_axes, self.index))
        sel, kept = [], []
        for a in img.axes:
            if a in where:
                sel.append(where[a])
            else:
                sel.append({"C": key[0], "Y": key[1], "X": key[2]}[a])
                kept.append(a)
        block = np.asarray(img.array[tuple(sel)])
        if "C" not in img.axes:
            block = block[None]
            kept.insert(0, "C")
            if not isinstance(key[0], slice):  # an int channel of a single-channel image
                block = block[0]
                kept.pop(0)
        order = [kept.index(a) for a in "CYX" if a in kept]
        return np.transpose(block, order)


# --- opening -----------------------------------------------------------------------------------

def open_image(source: Any, axes: str | None = None) -> LazyImage:
    """Open a TIFF (``.tif``/``.tiff``), Zarr or OME-Zarr path lazily, or wrap an array.

    ``axes`` overrides the file's metadata (e.g. ``"ZYX"``, ``"TCYX"``).
    """
    if isinstance(source, LazyImage):
        return source if axes is None else LazyImage(source.array, axes, source.scale,
                                                     source.units, source.name)
    if not isinstance(source, (str, os.PathLike)):
        arr = source
        meta_axes = "YX" if len(arr.shape) == 2 else None
        return LazyImage(arr, _need_axes(axes or meta_axes, arr.shape, "array"), name="array")
    path = Path(source)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    if path.suffix.lower() in (".tif", ".tiff"):
        return _open_tiff(path, axes)
    if is_zarr_path(path) or (path / ".zgroup").exists() or (path / "zarr.json").exists():
        return _open_zarr(path, axes)
    raise ImageReadError(f"{path}: cannot stream this file type (use .tif/.tiff, .zarr or .ome.zarr)")


def _need_axes(axes: str | None, shape: tuple, where: str) -> str:
    if axes is None:
        raise ValueError(f"{where}: cannot tell the axes of shape {tuple(shape)} from metadata; "
                         f"give them (e.g. --axes ZYX, CYX, TCYX)")
    return axes


def _open_tiff(path: Path, axes: str | None) -> LazyImage:
    import tifffile

    zarr = require_zarr()
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageReadError(f"{path}: TIFF holds no image")
            series = tif.series[0]
            file_axes = series.axes.upper()
            scale, units = _tiff_pixel_size(tif, file_axes)
        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        arr = zarr.open_array(store, mode="r")
    except (OSError, ValueError, KeyError, IndexError, tifffile.TiffFileError) as exc:
        raise ImageReadError(f"{path}: cannot read TIFF ({type(exc).__name__}: {exc})") from None
    if arr.ndim != len(file_axes):  # pragma: no cover - tifffile keeps them in step
        file_axes = None
    return LazyImage(arr, _need_axes(axes or file_axes, arr.shape, str(path)), scale, units,
                     name=str(path))


def _tiff_pixel_size(tif: Any, axes: str) -> tuple[dict[str, float], dict[str, str]]:
    """Pixel sizes from OME-XML, else ImageJ/resolution tags; {} when the file has none."""
    import tifffile

    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    if tif.is_ome and tif.ome_metadata:
        try:
            image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
        except (KeyError, IndexError, TypeError, ValueError):
            pixels = {}
        for a in "XYZ":
            if f"PhysicalSize{a}" in pixels:
                scale[a] = float(pixels[f"PhysicalSize{a}"])
                unit = str(pixels.get(f"PhysicalSize{a}Unit", "µm"))
                units[a] = NGFF_UNITS.get(unit, unit)
        if "TimeIncrement" in pixels:
            scale["T"] = float(pixels["TimeIncrement"])
            unit = str(pixels.get("TimeIncrementUnit", "s"))
            units["T"] = NGFF_UNITS.get(unit, unit)
        return scale, units
    page = tif.pages.first
    ij = tif.imagej_metadata or {}
    res_unit = page.tags.get("ResolutionUnit")
    unit = ij.get("unit") or {2: "inch", 3: "cm"}.get(int(res_unit.value) if res_unit else 0)
    for a, tag in (("X", "XResolution"), ("Y", "YResolution")):
        t = page.tags.get(tag)
        if t is None or unit in (None, "inch"):
            continue
        num, den = t.value
        if num and den and num != den:  # 1/1 is "no resolution"
            size = den / num
            if unit == "cm":  # TIFF's ResolutionUnit: express in micrometres
                size, unit_name = size * 1e4, "micrometer"
            else:
                unit_name = NGFF_UNITS.get(str(unit), str(unit))
            scale[a], units[a] = size, unit_name
    if "spacing" in ij and "Z" in axes:
        scale["Z"] = float(ij["spacing"])
        if "X" in units:
            units["Z"] = units["X"]
    return scale, units


def _ngff_multiscales(attrs: dict) -> list | None:
    if "multiscales" in attrs:  # NGFF <= 0.4
        return attrs["multiscales"]
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:  # NGFF 0.5
        return ome["multiscales"]
    return None


def _ngff_letter(axis: Any) -> str:
    name = axis["name"] if isinstance(axis, dict) else str(axis)
    kind = axis.get("type") if isinstance(axis, dict) else None
    letter = name[:1].upper() if name.lower() in ("t", "c", "z", "y", "x") else "Q"
    if kind == "channel":
        letter = "C"
    elif kind == "time":
        letter = "T"
    return letter


def _open_zarr(path: Path, axes: str | None) -> LazyImage:
    zarr = require_zarr()
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a foreign folder
        raise ImageReadError(f"{path}: cannot open as Zarr ({type(exc).__name__}: {exc})") from None
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    file_axes = None
    if isinstance(node, zarr.Group):
        ms = _ngff_multiscales(dict(node.attrs))
        if ms:
            m0 = ms[0]
            ds = m0["datasets"][0]
            arr = node[ds["path"]]
            if "axes" in m0:
                file_axes = "".join(_ngff_letter(a) for a in m0["axes"])
                for a in m0["axes"]:
                    if isinstance(a, dict) and a.get("unit"):
                        units[_ngff_letter(a)] = a["unit"]
            elif arr.ndim <= 5:  # NGFF 0.1-0.3: always TCZYX, trailing dims
                file_axes = "TCZYX"[5 - arr.ndim:]
            for tr in ds.get("coordinateTransformations", []):
                if tr.get("type") == "scale" and file_axes:
                    scale = {a: float(s) for a, s in zip(file_axes, tr["scale"])}
        else:
            arrays = list(node.array_keys())
            if len(arrays) != 1:
                raise ImageReadError(f"{path}: Zarr group without OME multiscales holds "
                                 f"{len(arrays)} arrays; open the array itself")
            arr = node[arrays[0]]
    else:
        arr = node
    if file_axes is None:
        dims = arr.attrs.get("_ARRAY_DIMENSIONS") or getattr(arr.metadata, "dimension_names", None)
        if dims and all(d for d in dims):
            try:
                file_axes = parse_axes("".join(str(d)[:1] for d in dims), arr.ndim)
            except ValueError:
                file_axes = None
        if file_axes is None and arr.ndim == 2:
            file_axes = "YX"
    scale = {a: s for a, s in scale.items() if a in "TZYX" and a != "C"}
    return LazyImage(arr, _need_axes(axes or file_axes, arr.shape, str(path)), scale, units,
                     name=str(path))
