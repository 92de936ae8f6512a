"""The network as an ONNX graph: dynamic batch, height and width (no file I/O here).

``(B, in_channels, S, S) -> (B, num_classes, S', S')`` raw logits (no softmax), ``S`` any legal
input size of the model (``geometry.legal_input_sizes``), ``S' = S - 2 * margin``.  Input and
output are named ``raw`` and ``logits``.  Used by ``export/onnx.py`` (files, bioimage.io) and by
``inference/runtime.py`` (onnxruntime), so both run the very same graph.

We use torch's TorchScript-based exporter (``dynamo=False``): on a valid-convolution U-Net it
exports in ~2 s where the ``torch.export`` route takes ~30 s on 2 CPU cores, and both give the
same numbers (onnxruntime vs torch: < 1e-4 on legal sizes, ``tests/export/test_formats.py``).
The export runs on a copy in eval mode, so dropout is off and the caller's model is untouched.
"""

from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import nn

from . import geometry

__all__ = ["onnx_bytes", "example_input", "INPUT_NAME", "OUTPUT_NAME", "OPSET"]

INPUT_NAME, OUTPUT_NAME = "raw", "logits"
OPSET = 18  # onnxruntime >= 1.14 and the BioImage Model Zoo's runners read it


def example_input(model: nn.Module) -> torch.Tensor:
    """A zero (1, in_channels, S, S) tensor at the smallest legal input size S of the model."""
    cfg = model.config
    size = geometry.min_legal_size(cfg.depth, cfg.padding)
    return torch.zeros(1, cfg.in_channels, size, size)


def onnx_bytes(model: nn.Module) -> bytes:
    """The ONNX graph of ``model`` (a :class:`unetkit.UNet`) as bytes."""
    net = copy.deepcopy(model).to("cpu").eval()
    dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
               OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(net, (example_input(net),), buf, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=dynamic, opset_version=OPSET,
                          dynamo=False)
    return buf.getvalue()
