"""The command line: predict, sizes, info; every error path exits 2 with one line naming the file."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unetkit import UNet, predict_tiled, save_model
from unetkit.cli.main import main


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    m = UNet(base_channels=4)
    m.meta = {"normalization": {"mode": "range"}, "class_names": ["bg", "cell"]}
    return save_model(tmp_path / "m.safetensors", m)


@pytest.fixture
def images(tmp_path, rng):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(rng.integers(0, 255, (70, 50), dtype=np.uint8)).save(d / "a.png")
    tifffile.imwrite(d / "s.tif", rng.integers(0, 65535, (3, 40, 60), dtype=np.uint16),
                     photometric="minisblack")
    return d


def run(*args):
    return main([str(a) for a in args])


def test_predict_labels_and_probabilities(tmp_path, model_file, images, capsys):
    out = tmp_path / "out"
    assert run("predict", "--model", model_file, "--input", images, "--out", out, "--tile", 220) == 0
    labels = tifffile.imread(out / "a.tif")
    assert labels.shape == (70, 50) and labels.dtype == np.uint8 and labels.max() <= 1
    assert tifffile.imread(out / "s.tif").shape == (3, 40, 60)  # a stack, slice by slice
    assert run("predict", "--model", model_file, "--input", images / "a.png", "--out", out,
               "--output", "probabilities", "--overwrite", "--tta", "--batch", "2") == 0
    prob = tifffile.imread(out / "a.tif")
    assert prob.shape == (2, 70, 50) and prob.dtype == np.float32
    # same as the API: normalisation comes from the model file
    from unetkit import load_model

    img = np.asarray(Image.open(images / "a.png"))
    ref = predict_tiled(load_model(model_file), img, tta=True)
    assert np.abs(prob - ref).max() < 1e-5
    assert "a.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [(["--tile", "570"], "556 or 572"),
     (["--tile", "188"], "too small"),
     (["--output", "colours"], "unknown output"),
     (["--device", "cuda:7"], "CUDA is not available")],
)
def test_predict_bad_arguments(tmp_path, model_file, images, capsys, extra, message):
    if "cuda" in extra[-1] and torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert run("predict", "--model", model_file, "--input", images, "--out", tmp_path / "o", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("unetkit: error:") and len(err.splitlines()) == 1


def test_predict_bad_files(tmp_path, model_file, images, capsys, rng):
    out = tmp_path / "o"
    (tmp_path / "bad.png").write_bytes(b"garbage")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    (tmp_path / "junk.safetensors").write_bytes(b"junk" * 10)
    cases = [
        (["--model", model_file, "--input", tmp_path / "missing.png"], "missing.png: no such"),
        (["--model", model_file, "--input", tmp_path / "bad.png"], "bad.png: cannot read"),
        (["--model", model_file, "--input", tmp_path / "rgb.png"], "rgb.png: image has 3 channel"),
        (["--model", tmp_path / "junk.safetensors", "--input", images], "junk.safetensors"),
        (["--model", tmp_path / "none.safetensors", "--input", images], "none.safetensors: no such"),
    ]
    for args, message in cases:
        assert run("predict", *args, "--out", out) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_existing_output_not_overwritten(tmp_path, model_file, images, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "a.tif").write_bytes(b"precious")
    assert run("predict", "--model", model_file, "--input", images / "a.png", "--out", out) == 2
    assert "output exists" in capsys.readouterr().err
    assert (out / "a.tif").read_bytes() == b"precious"


def test_sizes_and_info(model_file, capsys):
    assert run("sizes", "--max", "600") == 0
    text = capsys.readouterr().out
    assert "   572    388    384" in text and "margin 92" in text
    assert run("sizes", "--depth", "2", "--padding", "same", "--max", "64") == 0
    assert "    16     16" in capsys.readouterr().out
    assert run("info", model_file) == 0
    assert '"class_names"' in capsys.readouterr().out


def test_python_dash_m(model_file):
    res = subprocess.run([sys.executable, "-m", "unetkit", "sizes", "--max", "220"],
                         capture_output=True, text=True, check=True)
    assert "204" in res.stdout
    res = subprocess.run([sys.executable, "-m", "unetkit", "info", "nothing.safetensors"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("unetkit: error: nothing.safetensors")
