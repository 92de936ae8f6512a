"""Outputs written piece by piece: OME-Zarr or tiled BigTIFF, with a resume record (no torch).

Format by the output's extension: ``.zarr`` / ``.ome.zarr`` -> OME-Zarr (NGFF 0.4 on Zarr v2, the
version most viewers read: napari, Fiji/MoBIE, QuPath, vizarr), one resolution level ``0``;
``.tif`` / ``.tiff`` -> tiled (256 x 256, zlib) OME-BigTIFF.

Axes are written in OME-Zarr order: time, other slices, class channel (probabilities only),
depth, Y, X; pixel sizes and units are copied from the input.

**Resume record.**  An output being written holds a folder ``unetkit-progress/`` with
``run.json`` (what is being computed: model digest, input shape, tile size, output kind...) and
``done.log``, one line per finished unit (tile or dask block), appended *after* the unit's pixels
are in the store.  A kill at any moment leaves every logged unit complete on disk; an unlogged
unit may be half written and is simply computed again.  When the run completes the folder is
removed and ``attrs["unetkit"]["complete"]`` set.  A TIFF cannot be written out of order, so a
TIFF output is built in ``<out>.partial.zarr`` (same layout, same record) and converted to TIFF
at the end, band of 256 rows by band (memory: 256 x width x classes), into a temporary file that
is renamed into place.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .images import atomic_path
from .lazy import NGFF_UNITS, is_zarr_path, require_zarr

__all__ = ["Sink", "output_format", "TIFF_TILE"]

log = logging.getLogger(__name__)

TIFF_TILE = 256
PROGRESS = "unetkit-progress"
_AXIS_TYPE = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
_OME_TIFF_UNITS = {v: k for k, v in NGFF_UNITS.items() if k in ("µm", "nm", "mm", "cm", "m", "s",
                                                                 "ms", "min", "h")}


def output_format(path: str | Path) -> str:
    """``"zarr"`` or ``"tiff"`` from the output's extension; ValueError otherwise."""
    p = str(path).rstrip("/").lower()
    if is_zarr_path(p):
        return "zarr"
    if p.endswith((".tif", ".tiff")):
        return "tiff"
    raise ValueError(f"{path}: output must end in .ome.zarr, .zarr, .tif or .tiff")


class Sink:
    """A streamed output: a zarr array ``array`` to fill, plus the resume record.

    Open with :meth:`open`; write pixels into ``array``, then :meth:`mark` the unit; end with
    :meth:`finish`.  ``array`` axes: ``axes`` (see module docstring).
    """

    def __init__(self, path: Path, store: Path, fmt: str, run: dict, done: set[str]) -> None:
        zarr = require_zarr()
        self.path, self.store, self.format, self.run, self.done = path, store, fmt, run, done
        self.root = zarr.open_group(str(store), mode="r+")
        self.array = self.root["0"]
        self.axes: str = run["out_axes"]
        self._log = open(store / PROGRESS / "done.log", "a")  # noqa: SIM115 (closed in finish)

    # --- opening / state ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, run: dict, *, shape: tuple[int, ...], dtype: Any,
             chunks: tuple[int, ...], scale: dict[str, float], units: dict[str, str],
             resume: bool = False, overwrite: bool = False, check: tuple[str, ...] = ()
             ) -> Sink | None:
        """Create the output, or reopen an interrupted one (``resume``).

        Returns None when ``resume`` finds the output already complete.  An existing output is
        replaced only with ``overwrite``; an interrupted one is continued only with ``resume``,
        and only if ``run[k]`` matches the record for every ``k`` in ``check``.
        """
        path = Path(path)
        fmt = output_format(path)
        store = path.with_name(path.name + ".partial.zarr") if fmt == "tiff" else path
        partial = (store / PROGRESS).is_dir()
        complete = not partial and path.exists()
        if (partial or complete) and overwrite:
            for p in {path, store}:
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
            partial = complete = False
        if complete:
            if resume:
                log.info("%s: already complete", path)
                return None
            raise ValueError(f"{path}: output exists (use --overwrite to replace it)")
        if partial and not resume:
            raise ValueError(f"{path}: holds an interrupted run; finish it with --resume "
                             f"or replace it with --overwrite")
        if partial:
            old = json.loads((store / PROGRESS / "run.json").read_text())
            for k in check:
                if old.get(k) != run.get(k):
                    raise ValueError(f"{path}: cannot resume: {k} was {old.get(k)!r}, now "
                                     f"{run.get(k)!r} (use --overwrite to start again)")
            return cls(path, store, fmt, old, _read_done(store / PROGRESS / "done.log"))
        _create_store(store, run, shape, dtype, chunks, scale, units)
        return cls(path, store, fmt, run, set())

    @staticmethod
    def recorded(path: str | Path) -> dict | None:
        """The run record of an interrupted output at ``path``, or None."""
        path = Path(path)
        store = path.with_name(path.name + ".partial.zarr") if output_format(path) == "tiff" \
            else path
        record = store / PROGRESS / "run.json"
        return json.loads(record.read_text()) if record.is_file() else None

    def is_done(self, unit: str) -> bool:
        return unit in self.done

    def mark(self, unit: str) -> None:
        """Record ``unit`` as finished; call only after its pixels are written."""
        self._log.write(unit + "\n")
        self._log.flush()
        self.done.add(unit)

    def scratch(self, name: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]
                ) -> Any:
        """A zarr array inside the progress folder (e.g. a foreground mask), created once."""
        zarr = require_zarr()
        p = self.store / PROGRESS / f"{name}.zarr"
        if p.exists():
            return zarr.open_array(str(p), mode="r+")
        return zarr.create_array(str(p), shape=shape, dtype=dtype, chunks=chunks, fill_value=0,
                                 zarr_format=2)

    def close(self) -> None:
        self._log.close()

    def finish(self) -> Path:
        """Mark complete (zarr) or convert to TIFF; remove the record. Returns the output path."""
        self._log.close()
        if self.format == "tiff":
            _zarr_to_tiff(self.array, self.path, self.axes, self.run)
            shutil.rmtree(self.store)
        else:
            meta = dict(self.root.attrs["unetkit"])
            meta["complete"] = True
            self.root.attrs["unetkit"] = meta
            shutil.rmtree(self.store / PROGRESS)
        return self.path


def _read_done(path: Path) -> set[str]:
    """Finished units; a line cut short by a kill (no newline) does not count."""
    if not path.exists():
        return set()
    text = path.read_text()
    lines = text.split("\n")
    return {ln for ln in lines[:-1] if ln}  # the last element follows the final newline


def _create_store(store: Path, run: dict, shape: tuple[int, ...], dtype: Any,
                  chunks: tuple[int, ...], scale: dict[str, float], units: dict[str, str]) -> None:
    zarr = require_zarr()
    if store.exists():
        raise ValueError(f"{store}: exists (use --overwrite to replace it)")
    # built beside the target and renamed into place: a kill during creation leaves no
    # half-made output that would look complete or crash a resume
    final, store = store, store.with_name(f".{store.name}.creating")
    final.parent.mkdir(parents=True, exist_ok=True)
    if store.exists():
        shutil.rmtree(store)
    root = zarr.open_group(str(store), mode="w", zarr_format=2)
    root.create_array("0", shape=shape, dtype=dtype, chunks=chunks, fill_value=0,
                      chunk_key_encoding={"name": "v2", "separator": "/"})
    axes = run["out_axes"]
    ngff_axes = []
    for a in axes:
        entry: dict[str, Any] = {"name": a.lower() if a != "Q" else "q"}
        if a in _AXIS_TYPE:
            entry["type"] = _AXIS_TYPE[a]
        if a in units:
            entry["unit"] = units[a]
        ngff_axes.append(entry)
    attrs: dict[str, Any] = {
        "multiscales": [{
            "version": "0.4", "name": Path(run.get("input", "image")).name, "axes": ngff_axes,
            "datasets": [{"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [float(scale.get(a, 1.0)) for a in axes]}]}],
        }],
        "unetkit": {"output": run["output"], "complete": False, "input": run.get("input")},
    }
    if run["output"] in ("labels", "instances"):
        attrs["image-label"] = {"version": "0.4"}
    root.attrs.update(attrs)
    (store / PROGRESS).mkdir()
    (store / PROGRESS / "run.json").write_text(json.dumps(run, indent=1))
    store.rename(final)


def _tiff_tiles(array: Any, tile: int) -> Iterator[np.ndarray]:
    """Tiles of every page in TIFF order, read one band of ``tile`` rows at a time."""
    h, w = array.shape[-2:]
    for page in np.ndindex(*array.shape[:-2]):
        for y in range(0, h, tile):
            band = np.asarray(array[(*page, slice(y, y + tile), slice(None))])
            for x in range(0, w, tile):
                yield band[:, x : x + tile]


def _zarr_to_tiff(array: Any, path: Path, axes: str, run: dict) -> None:
    import tifffile

    meta: dict[str, Any] = {"axes": axes}
    scale, units = run.get("scale", {}), run.get("units", {})
    for a in "XYZ":
        if a in scale and a in axes:
            meta[f"PhysicalSize{a}"] = scale[a]
            if a in units:
                meta[f"PhysicalSize{a}Unit"] = _OME_TIFF_UNITS.get(units[a], units[a])
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, _tiff_tiles(array, TIFF_TILE), shape=array.shape,
                         dtype=array.dtype, tile=(TIFF_TILE, TIFF_TILE), bigtiff=True, ome=True,
                         metadata=meta, compression="zlib", photometric="minisblack")
