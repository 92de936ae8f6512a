"""The demo model as a BioImage Model Zoo package: bioimageio.core's test_model passes offline;
the geometry, pre/postprocessing and files are the ones stated; load_model opens the zip."""

import zipfile

import numpy as np
import pytest
import yaml

from unetkit import load_model, predict_tiled
from unetkit.demo.run import DemoSettings, run_demo
from unetkit.export.bioimageio import export_bioimageio

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    """The demo's model (default preset: 16 channels, depth 4, same-padded with batch norm),
    trained for a few steps."""
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, DemoSettings(iterations=3, train_images=2, val_images=1, image_size=160,
                               large_size=300))
    return out / "run" / "model.safetensors"


@pytest.fixture(scope="module")
def package(demo_model, tmp_path_factory):
    model = load_model(demo_model)
    path = tmp_path_factory.mktemp("zoo") / "demo.zip"
    return export_bioimageio(model, path, metrics={"iou": 0.5, "f1_50": 0.25},
                             model_file=demo_model)


def test_package_passes_bioimageio_core_test_model_offline(package, monkeypatch):
    pytest.importorskip("bioimageio.core")
    monkeypatch.setenv("BIOIMAGEIO_CACHE_PATH", str(package.parent / "cache"))
    from bioimageio.core import test_model

    summary = test_model(package)
    failed = [d.name for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    tested = " ".join(d.name for d in summary.details)
    for fmt in ("torchscript", "onnx", "pytorch_state_dict"):
        assert fmt in tested


def test_package_states_the_network_geometry(package):
    with zipfile.ZipFile(package) as z:
        rdf = yaml.safe_load(z.read("bioimageio.yaml"))
        names = set(z.namelist())
        readme = z.read("README.md").decode()
        x = np.load(z.open("test_input.npy"))
        y = np.load(z.open("test_output.npy"))
    assert rdf["format_version"].startswith("0.5")
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [a["type"] for a in inp["axes"]] == ["batch", "channel", "space", "space"]
    # same-padded: any multiple of 16 in, the same size out (valid convs: min 188, offset -184)
    assert inp["axes"][2]["size"] == {"min": 16, "step": 16}
    assert out["axes"][3]["size"] == {"tensor_id": "raw", "axis_id": "x", "offset": 0}
    mode = load_model(package).meta["normalization"]["mode"]
    expected = {"per_image": "zero_mean_unit_variance", "percentile": "scale_range"}[mode]
    assert inp["preprocessing"][0]["id"] == expected
    assert out["postprocessing"] == [{"id": "softmax", "kwargs": {"axis": "channel"}}]
    assert set(rdf["weights"]) == {"torchscript", "onnx", "pytorch_state_dict"}
    assert {"cover.png", "README.md", "unetkit_model.safetensors", "weights.onnx"} <= names
    assert x.shape[:2] == (1, 1) and y.shape == (1, 2, *x.shape[2:])
    for heading in ("## Training data", "## Metrics on validation data", "## Validation"):
        assert heading in readme
    assert "2 training image(s)" in readme and "iou: 0.5000" in readme


def test_load_model_opens_the_package_with_the_same_predictions(package, demo_model, rng):
    from_zip, original = load_model(package), load_model(demo_model)
    assert from_zip.meta == original.meta
    image = rng.integers(0, 255, (200, 220), dtype=np.uint8)
    np.testing.assert_array_equal(predict_tiled(from_zip, image, tile_size=256),
                                  predict_tiled(original, image, tile_size=256))


def test_sample_of_the_wrong_size_is_rejected(demo_model, tmp_path):
    with pytest.raises(ValueError, match="200"):
        export_bioimageio(load_model(demo_model), tmp_path / "x.zip",
                          sample=np.zeros((200, 200), np.uint8))
