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
    monkeypatch.setattr(runtime, "_busy", lambda: False)
    first = with_runtime(model, "auto", tile_size=188, cache=tmp_path)
    entries = json.loads((tmp_path / "runtimes.json").read_text())
    (key, entry), = entries.items()
    assert "w4" in key and "tile188" in key
    sec = entry["seconds"]
    assert set(sec) == {"torch", "onnxruntime"}
    lead = sec["onnxruntime"] <= (1 - runtime.MARGIN) * sec["torch"]
    assert entry["choice"] == ("onnxruntime" if lead else "torch")
    assert (first is model) == (not lead)
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


@pytest.mark.parametrize("ratio, choice", [(0.95, "torch"), (1.2, "torch"), (0.85, "onnxruntime")])
def test_auto_switches_to_onnxruntime_only_with_a_clear_lead(model, tmp_path, monkeypatch,
                                                              ratio, choice):
    # measured: onnxruntime at 0.95x torch's time on the paper network is noise-level; a
    # cache written under load once chose it, so it must lead by MARGIN (10 %) to be used
    monkeypatch.setattr(runtime, "measure_runtimes",
                        lambda *a, **k: {"torch": 1.0, "onnxruntime": ratio})
    monkeypatch.setattr(runtime, "_busy", lambda: False)
    net = with_runtime(model, "auto", tile_size=188, cache=tmp_path)
    assert isinstance(net, OnnxRuntimeModel) == (choice == "onnxruntime")
    (entry,) = json.loads((tmp_path / "runtimes.json").read_text()).values()
    assert entry["choice"] == choice and entry["margin"] == runtime.MARGIN


def test_auto_does_not_cache_a_verdict_measured_on_a_busy_machine(model, tmp_path, monkeypatch):
    calls = []

    def fake(*a, **k):
        calls.append(1)
        return {"torch": 1.0, "onnxruntime": 0.5}

    monkeypatch.setattr(runtime, "measure_runtimes", fake)
    monkeypatch.setattr(runtime, "_busy", lambda: True)
    assert isinstance(with_runtime(model, "auto", tile_size=188, cache=tmp_path),
                      OnnxRuntimeModel)  # used for this call
    assert not (tmp_path / "runtimes.json").exists()
    with_runtime(model, "auto", tile_size=188, cache=tmp_path)
    assert len(calls) == 2  # measured again
    monkeypatch.setattr(runtime, "_busy", lambda: False)
    with_runtime(model, "auto", tile_size=188, cache=tmp_path)
    with_runtime(model, "auto", tile_size=188, cache=tmp_path)
    assert len(calls) == 3  # quiet: measured once more, then cached


def test_runtimes_are_timed_in_alternation():
    order = []

    class Net(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            order.append(self.name)
            return x

    x = torch.zeros(1)
    best = runtime._time_alternating({"a": (Net("a"), x), "b": (Net("b"), x)}, repeats=3)
    assert set(best) == {"a", "b"}
    assert order[4:] == ["a", "b"] * 3  # after two warm-up passes each
