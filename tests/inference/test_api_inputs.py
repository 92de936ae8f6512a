"""The Python API takes (H, W), (C, H, W), channels-last (axes="YXC") arrays and torch tensors;
``train`` takes a preset name or a Config."""

import numpy as np
import pytest
import torch

from unetkit import UNet, predict_tiled, preset, train


@pytest.fixture
def rgb_model():
    torch.manual_seed(0)
    m = UNet(in_channels=3, base_channels=2).eval()
    m.meta = {"normalization": {"mode": "range"}}
    return m


def test_channels_last_and_torch_inputs(rgb_model, rng):
    chw = rng.integers(0, 255, (3, 40, 50)).astype(np.uint8)
    ref = predict_tiled(rgb_model, chw, tile_size=252)
    hwc = np.ascontiguousarray(np.moveaxis(chw, 0, -1))  # as PIL / skimage give it
    np.testing.assert_allclose(predict_tiled(rgb_model, hwc, tile_size=252, axes="YXC"), ref,
                               atol=1e-6)
    np.testing.assert_allclose(predict_tiled(rgb_model, torch.from_numpy(chw), tile_size=252),
                               ref, atol=1e-6)
    with pytest.raises(ValueError, match='channels last\\? pass axes="YXC"'):
        predict_tiled(rgb_model, hwc, tile_size=252)
    with pytest.raises(ValueError, match="axes 'ZYX'"):
        predict_tiled(rgb_model, hwc, axes="ZYX")


def test_gray_2d_tensor_and_explicit_axes(rng):
    torch.manual_seed(0)
    m = UNet(base_channels=2).eval()
    img = rng.random((30, 30)).astype(np.float32)
    ref = predict_tiled(m, img, tile_size=204)
    np.testing.assert_allclose(predict_tiled(m, torch.from_numpy(img), axes="YX",
                                             tile_size=204), ref, atol=1e-6)
    np.testing.assert_allclose(predict_tiled(m, img[None], axes="CYX", tile_size=204), ref,
                               atol=1e-6)


def test_train_takes_a_preset_name(tmp_path):
    # the name is resolved like preset(): it reaches the data (here missing), no AttributeError
    with pytest.raises(ValueError, match="missing"):
        train("default", tmp_path / "missing", tmp_path / "missing", tmp_path / "run")
    with pytest.raises(ValueError):
        train("no-such-preset", tmp_path / "missing", tmp_path / "missing", tmp_path / "run")
    with pytest.raises(TypeError, match="Config or a preset name"):
        train({"model": {}}, tmp_path, tmp_path, tmp_path / "run")
    assert preset("default") is not None
