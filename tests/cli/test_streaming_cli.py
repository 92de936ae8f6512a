"""`unetkit predict --out FILE`: streaming, kill + --resume, --axes, --dask-scheduler, errors."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import torch

from unetkit import UNet, load_model, predict_tiled, save_model
from unetkit.cli.main import main

zarr = pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_model(path, UNet(base_channels=2), {"normalization": {"mode": "per_image"}})
    return path


def _stack(path, rng, shape=(2, 100, 120)):
    img = (rng.random(shape) * 255).astype(np.uint8)
    arr = zarr.create_array(str(path), shape=img.shape, dtype=img.dtype, chunks=(1, 64, 64))
    arr[...] = img
    return img


def test_stream_to_zarr_with_axes_then_no_silent_overwrite(model_file, tmp_path, rng, capsys):
    img = _stack(tmp_path / "in.zarr", rng)
    out = tmp_path / "out.ome.zarr"
    args = ["predict", "--model", str(model_file), "--input", str(tmp_path / "in.zarr"),
            "--out", str(out), "--tile", "252"]
    assert main(args) == 2
    assert "--axes" in capsys.readouterr().err  # a 3D plain Zarr: axes are needed
    assert main([*args, "--axes", "ZYX"]) == 0
    net = load_model(model_file)
    ref = predict_tiled(net, img[1], tile_size=252).argmax(0)
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["0"][1], ref)
    assert main([*args, "--axes", "ZYX"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--axes", "ZYX", "--resume"]) == 0  # complete: nothing to do
    assert main([*args, "--axes", "ZYX", "--overwrite"]) == 0


def test_kill_then_resume(model_file, tmp_path, rng):
    img = (rng.random((300, 260)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", img, tile=(128, 128))
    out = tmp_path / "big.tif.out.tif"
    cmd = [sys.executable, "-m", "unetkit", "predict", "--model", str(model_file), "--input",
           str(tmp_path / "big.tif"), "--out", str(out), "--tile", "236"]  # 7 x 6 tiles
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = tmp_path / "big.tif.out.tif.partial.zarr" / "unetkit-progress" / "done.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().split("\n")) > 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = set(log.read_text().split("\n")[:-1])
    assert 2 <= len(done_before) < 42 and not out.exists()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 2 and "--resume" in res.stderr
    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    net = load_model(model_file)
    np.testing.assert_array_equal(tifffile.imread(out),
                                  predict_tiled(net, img, tile_size=236).argmax(0))


def test_dask_scheduler_option(model_file, tmp_path, rng):
    distributed = pytest.importorskip("distributed")
    img = _stack(tmp_path / "in.zarr", rng, (1, 90, 110))
    out = tmp_path / "d.ome.zarr"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        rc = main(["predict", "--model", str(model_file), "--input", str(tmp_path / "in.zarr"),
                   "--out", str(out), "--axes", "QYX", "--output", "probabilities",
                   "--dask-scheduler", cluster.scheduler_address, "--tile", "252"])
    assert rc == 0
    net = load_model(model_file)
    res = zarr.open_group(str(out), mode="r")["0"][...]
    assert res.shape == (1, 2, 90, 110)  # axes QCYX (OME-Zarr order: slices, classes, Y, X)
    assert np.abs(res[0] - predict_tiled(net, img[0], tile_size=252)).max() < 1e-6


def test_streaming_flag_errors(model_file, tmp_path, capsys):
    base = ["predict", "--model", str(model_file), "--input", "a.tif"]
    assert main([*base, "--out", str(tmp_path / "folder"), "--resume"]) == 2
    assert "--out FILE" in capsys.readouterr().err
    assert main([*base, "b.tif", "--out", str(tmp_path / "o.ome.zarr")]) == 2
    assert "one --input" in capsys.readouterr().err
