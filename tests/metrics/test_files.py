"""`unetkit evaluate` and `unetkit predict --output instances`: pairing, metrics, JSON, errors."""

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from scipy import ndimage as ndi

from unetkit import UNet, save_model
from unetkit.cli.main import main
from unetkit.metrics.files import evaluate_files, pair_images


def disks(shape=(64, 64), centres=((16, 16), (16, 44), (44, 30)), r=9):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for i, (cy, cx) in enumerate(centres, 1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    return labels


@pytest.fixture
def folders(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    lab = disks()
    Image.fromarray(((lab > 0) * 255).astype(np.uint8)).save(truth / "a.png")
    Image.fromarray(((lab > 0) * 255).astype(np.uint8)).save(truth / "b.png")
    prob = ndi.gaussian_filter((lab > 0).astype(np.float32), 1.0)
    tifffile.imwrite(pred / "a.tif", np.stack([1 - prob, prob]), metadata={"axes": "CYX"})
    tifffile.imwrite(pred / "b.tif", lab)  # an instance image
    return pred, truth


def test_perfect_and_imperfect_scores(folders):
    pred, truth = folders
    res = evaluate_files(pred, truth)
    a, b = res["per_image"]["a"], res["per_image"]["b"]
    assert set(a) == {"pixel_error", "rand_error", "warping_error", "v_rand", "v_info", "iou",
                      "dice", "ap50", "f1_50", "seg"}
    assert b["pixel_error"] == 0 and b["iou"] == 1 and b["ap50"] == 1 and b["seg"] == 1
    assert a["pixel_error"] < 0.05 and a["warping_error"] == 0 and a["f1_50"] == 1
    assert res["mean"]["iou"] == pytest.approx((a["iou"] + b["iou"]) / 2)


def test_cli_writes_json_and_table(folders, tmp_path, capsys):
    pred, truth = folders
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--json",
                 str(tmp_path / "m.json"), "--metrics", "pixel_error", "iou"]) == 0
    out = capsys.readouterr().out
    assert "mean" in out and "pixel_error" in out
    data = json.loads((tmp_path / "m.json").read_text())
    assert set(data) == {"per_image", "mean"} and set(data["mean"]) == {"pixel_error", "iou"}


def test_stacks_pair_slice_by_slice(tmp_path):
    lab = np.stack([disks(), disks(centres=((30, 30),))])
    tifffile.imwrite(tmp_path / "p.tif", lab, photometric="minisblack")
    tifffile.imwrite(tmp_path / "t.tif", lab, photometric="minisblack")
    pairs = pair_images(tmp_path / "p.tif", tmp_path / "t.tif")
    assert [n for n, _, _ in pairs] == ["p_0", "p_1"]
    assert evaluate_files(tmp_path / "p.tif", tmp_path / "t.tif")["mean"]["seg"] == 1


def test_missing_partner_and_shape_mismatch(folders, tmp_path, capsys):
    pred, truth = folders
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(pred / "c.png")
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err
    assert "no ground truth" in err and "c" in err and str(truth) in err
    (pred / "c.png").unlink()
    Image.fromarray(np.zeros((60, 64), np.uint8)).save(truth / "a.png")
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err
    assert "a:" in err and "64x64" in err and "60x64" in err


def test_predict_instances_output(tmp_path, rng):
    torch.manual_seed(0)
    m = UNet(base_channels=2)
    with torch.no_grad():  # a 'network' whose foreground probability follows the image
        for p in m.parameters():
            p.zero_()
        m.head.weight[1, 0] = 0.0
    m.meta = {"normalization": {"mode": "none"}}
    model = save_model(tmp_path / "m.safetensors", m)
    lab = disks()
    img = np.where(lab > 0, 1.0, 0.0).astype(np.float32)
    tifffile.imwrite(tmp_path / "img.tif", img)
    # zero network -> probability 0.5 everywhere: a threshold below it gives one object
    assert main(["predict", "--model", str(model), "--input", str(tmp_path / "img.tif"),
                 "--out", str(tmp_path / "o"), "--output", "instances", "--threshold", "0.4"]) == 0
    inst = tifffile.imread(tmp_path / "o" / "img.tif")
    assert inst.dtype == np.uint16 and inst.shape == (64, 64) and inst.max() == 1


def test_predict_instances_watershed_splits_touching(tmp_path):
    # a stand-in network whose foreground probability is the (float) image itself
    from unetkit.inference.files import predict_file

    class Passthrough(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = UNet(base_channels=2).config
            self.meta = {"normalization": {"mode": "none"}}
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):  # logits whose softmax foreground equals the centre crop of x
            p = x[..., 92:-92, 92:-92].clamp(1e-6, 1 - 1e-6)
            return torch.cat([torch.log(1 - p), torch.log(p)], 1)

    yy, xx = np.mgrid[:60, :80]
    two = (((yy - 30) ** 2 + (xx - 28) ** 2 <= 144) | ((yy - 30) ** 2 + (xx - 50) ** 2 <= 144))
    prob = two.astype(np.float32) * 0.98 + 0.01
    tifffile.imwrite(tmp_path / "two.tif", prob)
    comp = predict_file(Passthrough(), tmp_path / "two.tif", tmp_path / "c", output="instances")
    ws = predict_file(Passthrough(), tmp_path / "two.tif", tmp_path / "w", output="instances",
                      instances={"method": "watershed", "threshold": 0.5, "min_size": 5})
    assert tifffile.imread(comp).max() == 1  # touching disks merge as one component
    assert tifffile.imread(ws).max() == 2  # the watershed splits them


def test_cli_threshold_sweep_default_and_given(folders, tmp_path):
    pred, truth = folders
    names = ["--metrics", "warping_error", "warping_error_threshold", "pixel_error_threshold"]
    base = ["evaluate", "--pred", str(pred), "--truth", str(truth)]
    # default: the reference's sweeps (the warping error's ends at 0.9)
    assert main([*base, "--json", str(tmp_path / "d.json"), *names]) == 0
    a = json.loads((tmp_path / "d.json").read_text())["per_image"]["a"]
    assert a["warping_error_threshold"] <= 0.9
    # given: one sweep for every metric
    assert main([*base, "--json", str(tmp_path / "g.json"), "--thresholds", "0.3", "0.3", "0.1",
                 *names]) == 0
    a = json.loads((tmp_path / "g.json").read_text())["per_image"]["a"]
    assert a["warping_error_threshold"] == a["pixel_error_threshold"] == 0.3
