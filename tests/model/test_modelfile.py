"""Model files: round trip, no pickle, clear errors for foreign and truncated files."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from unetkit import Normalization, UNet, load_model, predict_tiled, save_model
from unetkit.model.modelfile import ModelFileError, read_model_meta


def test_round_trip_preserves_weights_config_meta(tmp_path):
    torch.manual_seed(0)
    m = UNet(in_channels=3, num_classes=4, depth=3, base_channels=4, padding="same",
             batch_norm=True, dropout=0.2)
    path = save_model(tmp_path / "m.safetensors", m,
                      {"normalization": Normalization("dataset", mean=(1, 2, 3), std=(4, 5, 6)),
                       "class_names": ["bg", "a", "b", "c"], "trained_iterations": 10})
    back = load_model(path)
    assert back.config == m.config and not back.training
    for (k, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    assert back.meta["class_names"] == ["bg", "a", "b", "c"]
    assert back.meta["trained_iterations"] == 10
    assert Normalization.from_dict(back.meta["normalization"]).mean == (1.0, 2.0, 3.0)
    # explicit channels per level travel in the architecture too
    m = UNet(depth=2, channels=(4, 4, 6), padding="same", batch_norm=True)
    back = load_model(save_model(tmp_path / "c.safetensors", m))
    assert back.config.widths == (4, 4, 6) and back.config == m.config


def test_loaded_model_predicts_like_original(tmp_path, rng):
    torch.manual_seed(1)
    m = UNet(base_channels=4)
    m.meta = {"normalization": {"mode": "range"}}
    save_model(tmp_path / "m.safetensors", m)
    img = rng.integers(0, 255, (100, 90), dtype=np.uint8)
    a = predict_tiled(m, img, tile_size=204)
    b = predict_tiled(load_model(tmp_path / "m.safetensors"), img, tile_size=204)
    assert np.array_equal(a, b)


def test_header_is_readable_json(tmp_path):
    save_model(tmp_path / "m.safetensors", UNet(base_channels=2), {"class_names": ["bg", "cell"]})
    raw = (tmp_path / "m.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    config = json.loads(header["__metadata__"]["unetkit"])
    assert config["architecture"]["base_channels"] == 2
    assert read_model_meta(tmp_path / "m.safetensors")["class_names"] == ["bg", "cell"]


def test_bad_files_give_clear_errors(tmp_path):
    good = save_model(tmp_path / "good.safetensors", UNet(base_channels=2))
    data = good.read_bytes()
    cases = {
        "trunc.safetensors": data[: len(data) // 2],
        "foreign.safetensors": b"\x00" * 100,
        "pickle.safetensors": b"\x80\x04\x95" + b"x" * 50,
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelFileError, match=name.replace(".", r"\.")):
            load_model(tmp_path / name)
    save_file({"w": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelFileError, match="without a unetkit header"):
        load_model(tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="no such"):
        load_model(tmp_path / "missing.safetensors")
    # weights that do not fit the stated architecture
    save_file({"w": torch.zeros(3)}, str(tmp_path / "mismatch.safetensors"),
              metadata={"unetkit": json.dumps({"format": "unetkit-model", "version": 1,
                                               "architecture": {"base_channels": 2}})})
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(tmp_path / "mismatch.safetensors")


def test_save_is_atomic(tmp_path):
    path = save_model(tmp_path / "m.safetensors", UNet(base_channels=2))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="JSON"):
        save_model(path, UNet(base_channels=2), {"bad": object()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
