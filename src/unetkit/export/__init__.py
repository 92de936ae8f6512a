"""Model export for other tools: BioImage Model Zoo packages (bioimageio), ONNX, TorchScript.

``export_model(model, out, "bioimageio" | "onnx" | "torchscript")``; the modules: ``bioimageio``
(spec 0.5 zip), ``onnx`` (dynamic batch/height/width graph), ``torchscript`` (traced module).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from .bioimageio import export_bioimageio
from .onnx import export_onnx
from .torchscript import export_torchscript

__all__ = ["export_model", "export_bioimageio", "export_onnx", "export_torchscript", "FORMATS"]

FORMATS = {"bioimageio": export_bioimageio, "onnx": export_onnx, "torchscript": export_torchscript}


def export_model(model: nn.Module, out: str | os.PathLike, format: str, **options: Any) -> Path:
    """Write ``model`` to ``out`` in ``format`` (``FORMATS``); ``options`` go to the bioimageio
    exporter (name, authors, training_data, metrics, sample, model_file)."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    if options and format != "bioimageio":
        raise ValueError(f"options {sorted(options)} apply to --format bioimageio only")
    return FORMATS[format](model, out, **options)
