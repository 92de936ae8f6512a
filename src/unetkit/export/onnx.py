"""ONNX files: the graph of ``model/onnxgraph.py`` (dynamic batch, height, width) on disk."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..model.onnxgraph import onnx_bytes

__all__ = ["export_onnx"]


def export_onnx(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` as an ONNX file (input ``raw``, output ``logits``); return the path."""
    path = Path(path)
    path.write_bytes(onnx_bytes(model))
    return path
