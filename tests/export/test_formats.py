"""ONNX and TorchScript exports reproduce eager torch on several legal sizes and batch sizes."""

import numpy as np
import pytest
import torch

from unetkit import UNet
from unetkit.export.onnx import export_onnx
from unetkit.export.torchscript import export_torchscript
from unetkit.model import geometry

SIZES = [(1, 188), (2, 252), (3, 316)]  # (batch, edge): legal sizes 188 + 16 n


@pytest.fixture(scope="module")
def small_unet():
    torch.manual_seed(0)
    return UNet(base_channels=4).eval()


def _eager(model, x):
    with torch.inference_mode():
        return model(x).numpy()


def test_onnx_matches_torch_with_dynamic_batch_height_width(small_unet, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = export_onnx(small_unet, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "raw" and out.name == "logits"
    assert all(isinstance(d, str) for d in (inp.shape[0], inp.shape[2], inp.shape[3]))
    for batch, size in SIZES:
        x = torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(size))
        got = session.run(None, {"raw": x.numpy()})[0]
        m = geometry.output_size(size)
        assert got.shape == (batch, 2, m, m)
        np.testing.assert_allclose(got, _eager(small_unet, x), atol=1e-4, rtol=0)


def test_torchscript_matches_torch_on_every_size(small_unet, tmp_path):
    path = export_torchscript(small_unet, tmp_path / "m.pt")
    loaded = torch.jit.load(str(path))
    for batch, size in SIZES:
        x = torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(size))
        with torch.inference_mode():
            got = loaded(x).numpy()
        np.testing.assert_allclose(got, _eager(small_unet, x), atol=1e-4, rtol=0)


def test_exports_leave_the_model_in_training_mode_untouched(tmp_path):
    model = UNet(base_channels=2, depth=2).train()
    export_torchscript(model, tmp_path / "m.pt")
    assert model.training
