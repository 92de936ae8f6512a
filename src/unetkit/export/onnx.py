"""ONNX export: the network as an ONNX graph with dynamic batch, height and width.

``(B, in_channels, S, S) -> (B, num_classes, S', S')`` raw logits (no softmax), ``S`` any legal
input size of the model (``geometry.legal_input_sizes``), ``S' = S - 2 * margin``.  Input and
output are named ``raw`` and ``logits``.

We use torch's TorchScript-based exporter (``dynamo=False``): on a valid-convolution U-Net it
exports in ~2 s where the ``torch.export`` route takes ~30 s on 2 CPU cores, and both give the
same graph numerically (onnxruntime vs torch: < 1e-4 on legal sizes, ``tests/test_export.py``).
The export runs on a copy in eval mode, so dropout is off and the caller's model is untouched.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import geometry

__all__ = ["export_onnx", "onnx_bytes", "example_input", "INPUT_NAME", "OUTPUT_NAME", "OPSET"]

INPUT_NAME, OUTPUT_NAME = "raw", "logits"
OPSET = 18  # onnxruntime >= 1.14 and the BioImage Model Zoo's runners read it


def example_input(model: nn.Module) -> torch.Tensor:
    """A zero (1, in_channels, S, S) tensor at the smallest legal input size S of the model."""
    cfg = model.config
    size = geometry.min_legal_size(cfg.depth, cfg.padding)
    return torch.zeros(1, cfg.in_channels, size, size)


def _export(model: nn.Module, target) -> None:
    net = copy.deepcopy(model).to("cpu").eval()
    dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
               OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(net, (example_input(net),), target, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=dynamic, opset_version=OPSET,
                          dynamo=False)


def onnx_bytes(model: nn.Module) -> bytes:
    """The ONNX graph of ``model`` (a :class:`unetkit.UNet`) as bytes."""
    buf = io.BytesIO()
    _export(model, buf)
    return buf.getvalue()


def export_onnx(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` as an ONNX file (dynamic batch, height, width); return the path."""
    path = Path(path)
    path.write_bytes(onnx_bytes(model))
    return path
