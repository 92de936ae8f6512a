"""Runtimes: onnxruntime behind the model interface; 'auto' measures once and caches."""

import json

import numpy as np
import pytest
import torch

from unetkit import UNet, choose_tile_size, predict_tiled
from unetkit.inference import runtime
from unetkit.inference.runtime import OnnxRuntimeModel, with_runtime

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    net = UNet(base_channels=4).eval()
    net.meta = {"normalization": {"mode": "per_image"}}
    return net


def test_overlap_tile_output_is_the_same_whatever_the_runtime(model, rng):
    image = rng.integers(0, 255, (300, 410), dtype=np.uint8)
    ref = predict_tiled(model, image, tile_size=252)
    ort_model = with_runtime(model, "onnxruntime")
    assert isinstance(ort_model, OnnxRuntimeModel) and ort_model.meta == model.meta
    got = predict_tiled(ort_model, image, tile_size=252, batch_size=2, tta=True)
    ref_tta = predict_tiled(model, image, tile_size=252, batch_size=2, tta=True)
    assert np.abs(predict_tiled(ort_model, image, tile_size=252) - ref).max() < 1e-4
    assert np.abs(got - ref_tta).max() < 1e-4


def test_auto_measures_once_then_reads_the_cache(model, tmp_path, monkeypatch):
    calls = []
    real = runtime.measure_runtimes

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime, "measure_runtimes", spy)
    first = with_runtime(model, "auto", tile_size=188, cache=tmp_path)
    entries = json.loads((tmp_path / "runtimes.json").read_text())
    (key, entry), = entries.items()
    assert "w4" in key and "tile188" in key
    assert set(entry["seconds"]) == {"torch", "onnxruntime"}
    fastest = min(entry["seconds"], key=entry["seconds"].get)
    assert entry["choice"] == fastest
    assert (first is model) == (fastest == "torch")
    second = with_runtime(model, "auto", tile_size=188, cache=tmp_path)
    assert len(calls) == 1 and type(second) is type(first)


def test_auto_uses_the_cached_verdict(model, tmp_path):
    for choice, kind in (("torch", UNet), ("onnxruntime", OnnxRuntimeModel)):
        key = runtime._cache_key(model, 188, 1)
        (tmp_path / "runtimes.json").write_text(json.dumps({key: {"choice": choice}}))
        assert isinstance(with_runtime(model, "auto", tile_size=188, cache=tmp_path), kind)


def test_auto_default_tile_and_env_cache_dir(model, tmp_path, monkeypatch):
    monkeypatch.setenv("UNETKIT_CACHE_DIR", str(tmp_path / "c"))
    assert runtime.cache_dir() == tmp_path / "c"
    tile = choose_tile_size((2048, 2048), 4, 4)  # the default measuring tile at this width
    key = runtime._cache_key(model, tile, 1)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "runtimes.json").write_text(json.dumps({key: {"choice": "torch"}}))
    assert with_runtime(model, "auto") is model


def test_unknown_runtime_is_rejected(model):
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        with_runtime(model, "tensorrt")
    assert with_runtime(model, "torch") is model
