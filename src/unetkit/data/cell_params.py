"""Parameters of synthetic microscopy images (data/synthetic.py): objects, optics, camera."""

from __future__ import annotations

import dataclasses

__all__ = ["CellParams", "PRESETS", "resolve_params"]


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")


@dataclasses.dataclass(frozen=True)
class CellParams:
    """How synthetic objects and the image are drawn. Start from ``PRESETS[kind]``.

    Brightness values are relative to the mean object brightness (1.0).
    """

    radius_range: tuple[float, float] = (8.0, 20.0)  # equivalent radius sqrt(a*b) in px, uniform
    max_aspect: float = 1.6  # major/minor axis ratio drawn uniformly from [1, max_aspect]
    irregularity: float = 0.06  # std of the radial harmonics 2..6 (relative to the radius)
    coverage: float = 0.3  # fraction of the image area to cover when n_cells is not given
    cluster_fraction: float = 0.25  # chance that a new group is a cluster rather than a lone object
    mean_cluster_size: float = 3.0  # clusters have 2 + Poisson(mean - 2) members
    gap: float = 3.0  # least distance in px between objects that are not meant to touch
    min_area: int = 30  # objects cut smaller than this (by neighbours or the border) are dropped
    intensity_cv: float = 0.35  # per-object brightness: lognormal sigma (cell cycle, staining)
    edge_level: float = 0.6  # brightness at the outline relative to the centre (dome profile)
    nucleus_dim: float = 0.0  # dimming of a central nucleus-shaped core (cytoplasm stains)
    texture: float = 0.25  # std of the internal texture (chromatin / granularity)
    spot_density: float = 0.002  # bright spots per px of image area
    background: float = 0.1  # autofluorescence
    haze: float = 0.15  # out-of-focus glow: fraction of a widely blurred copy of the signal
    vignetting: float = 0.4  # relative darkening at the corners
    gradient: float = 0.4  # relative linear illumination change across the image
    blur_sigma: float = 1.2  # Gaussian PSF sigma in px
    photons: float = 120.0  # expected photon count of a mean object at full illumination
    read_noise: float = 3.0  # camera read noise, in photons
    dtype: str = "uint8"  # "uint8" or "uint16"

    def __post_init__(self) -> None:
        lo, hi = self.radius_range
        if not 1.0 <= lo <= hi:
            raise ValueError(f"radius_range must satisfy 1 <= min <= max, got {self.radius_range}")
        _check_range("max_aspect", self.max_aspect, 1.0, 4.0)
        _check_range("irregularity", self.irregularity, 0.0, 0.3)
        _check_range("coverage", self.coverage, 1e-6, 0.9)
        _check_range("cluster_fraction", self.cluster_fraction, 0.0, 1.0)
        _check_range("mean_cluster_size", self.mean_cluster_size, 2.0, 100.0)
        _check_range("edge_level", self.edge_level, 0.0, 1.0)
        _check_range("nucleus_dim", self.nucleus_dim, 0.0, 1.0)
        _check_range("photons", self.photons, 1e-3, 1e7)
        for name in ("gap", "min_area", "intensity_cv", "texture", "spot_density", "background",
                     "haze", "vignetting", "gradient", "blur_sigma", "read_noise"):
            _check_range(name, getattr(self, name), 0.0, 1e6)
        if self.vignetting >= 1 or self.gradient >= 1:
            raise ValueError(f"vignetting and gradient must be < 1, got {self.vignetting}, "
                             f"{self.gradient}")
        if self.dtype not in ("uint8", "uint16"):
            raise ValueError(f"dtype must be 'uint8' or 'uint16', got {self.dtype!r}")


PRESETS: dict[str, CellParams] = {
    # Stained nuclei (DAPI/Hoechst-like): compact, fairly regular, speckled chromatin.
    "nuclei": CellParams(),
    # Cytoplasm-stained cells in a dense monolayer: larger, irregular, mostly touching.
    "cells": CellParams(radius_range=(12.0, 30.0), max_aspect=2.0, irregularity=0.12,
                        coverage=0.45, cluster_fraction=0.6, mean_cluster_size=6.0,
                        edge_level=0.45, nucleus_dim=0.45, texture=0.3, spot_density=0.004),
}


def resolve_params(kind: str = "nuclei", **overrides) -> CellParams:
    """``PRESETS[kind]`` with ``overrides`` applied; unknown kinds or fields raise ValueError."""
    if kind not in PRESETS:
        raise ValueError(f"kind must be one of {sorted(PRESETS)}, got {kind!r}")
    fields = {f.name for f in dataclasses.fields(CellParams)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown synthetic parameter(s) {unknown}; known: {sorted(fields)}")
    return dataclasses.replace(PRESETS[kind], **overrides)
