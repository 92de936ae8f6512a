"""`unetkit export` (three formats) and `unetkit predict --runtime` from the command line."""

import json
import zipfile

import numpy as np
import pytest
import tifffile
import torch

from unetkit import UNet, load_model, predict_tiled, save_model
from unetkit.cli.main import main
from unetkit.inference import runtime

pytest.importorskip("onnx")


@pytest.fixture
def run_folder(tmp_path):
    torch.manual_seed(0)
    run = tmp_path / "run"
    run.mkdir()
    save_model(run / "model.safetensors", UNet(base_channels=4),
               {"normalization": {"mode": "range"}, "class_names": ["background", "cell"]})
    return run


def test_export_all_three_formats_from_a_run_folder(run_folder, tmp_path, capsys):
    for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.pt")):
        assert main(["export", str(run_folder), "--format", fmt, "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).stat().st_size > 1000
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"per_image": {}, "mean": {"iou": 0.75, "ap50": None}}))
    zip_path = tmp_path / "m.zip"
    assert main(["export", str(run_folder / "model.safetensors"), "--format", "bioimageio",
                 "--out", str(zip_path), "--name", "nuclei U-Net", "--author", "A. Person",
                 "--metrics", str(scores), "--training-data", "three synthetic images"]) == 0
    assert "bioimageio" in capsys.readouterr().out
    with zipfile.ZipFile(zip_path) as z:
        readme = z.read("README.md").decode()
        rdf = z.read("bioimageio.yaml").decode()
    assert "iou: 0.7500" in readme and "three synthetic images" in readme
    assert "A. Person" in rdf and "scale_linear" in rdf
    assert load_model(zip_path).meta["class_names"] == ["background", "cell"]


def test_export_rejects_bioimageio_options_for_onnx(run_folder, tmp_path, capsys):
    assert main(["export", str(run_folder), "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                 "--name", "x"]) == 2
    assert "apply to --format bioimageio only" in capsys.readouterr().err


def test_export_with_a_sample_of_an_illegal_size_fails_cleanly(run_folder, tmp_path, capsys):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((200, 200), np.uint8))
    assert main(["export", str(run_folder), "--format", "bioimageio", "--out",
                 str(tmp_path / "m.zip"), "--sample", str(tmp_path / "s.tif")]) == 2
    assert "200" in capsys.readouterr().err


def test_predict_runtime_gives_the_same_output(run_folder, tmp_path, rng, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("UNETKIT_CACHE_DIR", str(tmp_path / "cache"))
    # a verdict measured on a busy machine is not cached (by design, tests/inference/
    # test_runtime.py); here the cache must be written whatever else shares the cores
    monkeypatch.setattr(runtime, "_busy", lambda: False)
    image = rng.integers(0, 255, (150, 170), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", image)
    outs = {}
    for rt in ("torch", "onnxruntime", "auto"):
        assert main(["predict", "--model", str(run_folder), "--input", str(tmp_path / "img.tif"),
                     "--out", str(tmp_path / rt), "--output", "probabilities", "--tile", "252",
                     "--runtime", rt]) == 0
        outs[rt] = tifffile.imread(tmp_path / rt / "img.tif")
    assert np.abs(outs["onnxruntime"] - outs["torch"]).max() < 1e-4
    assert np.abs(outs["auto"] - outs["torch"]).max() < 1e-4
    assert (tmp_path / "cache" / "runtimes.json").is_file()
    ref = predict_tiled(load_model(run_folder / "model.safetensors"), image, tile_size=252)
    np.testing.assert_allclose(outs["torch"], ref, atol=1e-6)


def test_predict_runtime_with_a_dask_cluster_is_refused(run_folder, tmp_path, capsys):
    assert main(["predict", "--model", str(run_folder), "--input", "x.tif", "--out",
                 str(tmp_path / "o.zarr"), "--runtime", "onnxruntime",
                 "--dask-scheduler", "tcp://localhost:1"]) == 2
    assert "drop --runtime onnxruntime" in capsys.readouterr().err
