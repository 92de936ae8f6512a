"""TorchScript export: the network runnable from C++/Java (deepImageJ) without Python.

``(B, in_channels, S, S) -> (B, num_classes, S', S')`` raw logits, for any legal ``S`` and any
batch size.  The module is *traced* on the smallest legal input: the tracer records the centre
crops of the skip connections as size arithmetic (``aten::size``), so the trace follows the input
size instead of freezing the example's (checked on several sizes and batch sizes in
``tests/export/test_formats.py``: identical to eager torch).  ``torch.jit.script`` is not an option
without changing the network's code: it rejects ``zip(..., strict=False)`` and the ``margin``
property.  The copy is traced in eval mode (dropout off); the caller's model is untouched.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..model.onnxgraph import example_input

__all__ = ["export_torchscript", "trace_model"]


def trace_model(model: nn.Module) -> torch.jit.ScriptModule:
    """``model`` (a :class:`unetkit.UNet`) in eval mode, traced to a ScriptModule."""
    net = copy.deepcopy(model).to("cpu").eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        return torch.jit.trace(net, example_input(net))


def export_torchscript(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` as a TorchScript file (``torch.jit.load`` reads it); return the path."""
    path = Path(path)
    trace_model(model).save(str(path))
    return path
