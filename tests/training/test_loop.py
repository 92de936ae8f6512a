"""The training loop: the loss falls, resume is exact, a seed reproduces the model, bad data is
rejected before training, the run folder is complete, the CLI trains and predicts, signals save a
checkpoint.  Tiny networks (4 channels, depth 2, 84 px tiles) on synthetic cells."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unetkit import load_model
from unetkit.config import AugmentConfig, apply_overrides, load_config, preset
from unetkit.data.dataset import TileSampler, load_pairs, prepare
from unetkit.training.loss import weighted_cross_entropy
from unetkit.model.unet import UNet
from unetkit.data.normalize import Normalization
from unetkit.data.synthetic import write_dataset
from unetkit.training import (
    CHECKPOINT,
    UNLIMITED_ITERATIONS,
    TrainingInterrupted,
    learning_rate,
    load_checkpoint,
    run_config,
    train,
)

TINY = ["model.padding=valid", "model.batch_norm=false",  # the tile / output sizes below
        "model.base_channels=4", "model.depth=2", "train.tile_size=84", "train.minutes=null",
        "train.iterations=12", "train.val_interval=4", "train.warmup_iterations=3",
        "train.lr=0.001", "train.optimizer=sgd", "train.momentum=0.99"]  # the paper's optimiser


def tiny(*more):
    return apply_overrides(preset("default"), [*TINY, *more])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    write_dataset(root, 4, (96, 96), seed=2, n_cells=7)
    return root / "images", root / "labels"


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted 12-step run with validation (the baseline of the resume tests)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    train(tiny(), *data, out, val_fraction=0.25)
    return out


def _state(run):
    return load_checkpoint(run / CHECKPOINT)


def _same_model(a, b):
    sa, sb = _state(a), _state(b)
    assert sa["step"] == sb["step"]
    for key, tensor in sa["model"].items():
        assert torch.equal(tensor, sb["model"][key]), key
    for key, st in sa["optimizer"]["state"].items():  # the momentum buffers too
        for name, value in st.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb["optimizer"]["state"][key][name]))


def test_run_folder_is_complete(reference):
    names = {p.name for p in reference.iterdir()}
    assert {"config.yaml", "model.safetensors", "model_last.safetensors", "checkpoint.pt",
            "metrics.csv", "curves.png"} <= names
    rows = (reference / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,time,loss,lr,val_pixel_error,val_iou,val_f1,val_score" and len(rows) == 13
    assert rows[4].split(",")[5] != "" and rows[5].split(",")[5] == ""  # validated at step 4
    assert (reference / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = load_model(reference / "model.safetensors")
    meta = model.meta
    assert meta["normalization"]["mode"] == "per_image"
    assert meta["class_names"] == ["background", "object"]
    assert meta["training"]["best_step"] in (4, 8, 12) and meta["training"]["seed"] == 0
    ckpt = torch.load(reference / CHECKPOINT, weights_only=True)  # no pickled objects
    assert ckpt["step"] == 12 and ckpt["best_step"] == meta["training"]["best_step"]


def test_same_seed_same_model(reference, data, tmp_path):
    train(tiny(), *data, tmp_path / "again", val_fraction=0.25)
    _same_model(reference, tmp_path / "again")
    train(tiny("train.seed=1", "train.iterations=2"), *data, tmp_path / "other")
    other = _state(tmp_path / "other")["model"]
    assert not torch.equal(other["head.weight"], _state(reference)["model"]["head.weight"])


def test_signal_then_resume_equals_uninterrupted(reference, data, tmp_path):
    out = tmp_path / "run"

    def stop_at_6(step, total, info):
        assert total == 12 and info["lr"] > 0
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="SIGTERM after step 6"):
        train(tiny(), *data, out, val_fraction=0.25, progress=stop_at_6)
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert _state(out)["step"] == 6
    train(tiny(), *data, out, val_fraction=0.25, resume=True)
    _same_model(reference, out)
    steps = [int(r.split(",")[0]) for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 13))


def test_crash_after_checkpoint_then_resume(reference, data, tmp_path):
    """A run killed between checkpoints (here at step 7, checkpoint at 4) replays steps 5-7."""
    out = tmp_path / "run"

    def crash(step, total, info):
        if step == 7:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        train(tiny(), *data, out, val_fraction=0.25, progress=crash)
    assert _state(out)["step"] == 4
    train(tiny(), *data, out, val_fraction=0.25, resume=True)
    _same_model(reference, out)
    assert len((out / "metrics.csv").read_text().splitlines()) == 13  # rows 5-7 not doubled


def test_resume_checks(reference, data, tmp_path):
    with pytest.raises(ValueError, match="already holds a training run"):
        train(tiny(), *data, reference)
    with pytest.raises(ValueError, match="no checkpoint to resume from"):
        train(tiny(), *data, tmp_path / "none", resume=True)
    with pytest.raises(ValueError, match=r"cannot resume: train.lr is 0.01 but the run used 0.001"):
        train(tiny("train.lr=0.01"), *data, reference, val_fraction=0.25, resume=True)


def test_training_lowers_the_loss(data, tmp_path):
    """40 SGD steps on unaugmented tiles: the loss on fixed tiles falls clearly."""
    cfg = replace(tiny("train.iterations=40", "train.lr=0.01", "train.schedule=constant",
                       "train.val_interval=40", "model.dropout=0"), augment=AugmentConfig.off())
    run = train(cfg, *data, tmp_path / "run")
    items = prepare(load_pairs(*data), cfg, Normalization())
    tiles = TileSampler(items, cfg.augment, 84, 44, 8, seed=99).batch(0)

    def loss_of(model):
        with torch.no_grad():
            logits = model.eval()(torch.from_numpy(tiles.image))
        return float(weighted_cross_entropy(logits, torch.from_numpy(tiles.target),
                                            torch.from_numpy(tiles.weights)))

    torch.manual_seed(cfg.train.seed)
    initial = UNet(base_channels=4, depth=2, dropout=0)
    trained = load_model(run / "model.safetensors")
    assert loss_of(trained) < 0.7 * loss_of(initial)


def test_time_budget_adam_ignore_and_classes(data, tmp_path):
    """Minutes only (no step limit), Adam, an ignore value, a 3-class mask, validation of it."""
    images, labels = data
    lab = tmp_path / "labels"
    lab.mkdir()
    for f in sorted(labels.iterdir()):
        inst = tifffile.imread(f).astype(np.int32)
        classes = np.where(inst > 0, 1 + inst % 2, 0)
        classes[:10, :10] = 9
        tifffile.imwrite(lab / f.name, classes.astype(np.uint8))
    cfg = run_config(tmp_path / "run", overrides=[*TINY, "model.num_classes=3",
                     "data.label_kind=classes", "data.ignore_value=9", "train.optimizer=adam",
                     "train.momentum=0.9",
                     "train.val_interval=2"], minutes=0.03)
    assert cfg.train.iterations == UNLIMITED_ITERATIONS and cfg.train.minutes == 0.03
    seen = []
    run = train(cfg, images, lab, tmp_path / "run", val_fraction=0.25,
                progress=lambda s, total, info: seen.append(info))
    assert 1 <= len(seen) < 10_000 and seen[-1]["elapsed"] >= 1.8
    assert "val_iou" in seen[-1] and 0 <= seen[-1]["val_pixel_error"] <= 1
    assert load_model(run / "model.safetensors").meta["class_names"][2] == "class_2"


def test_a_time_budget_validates_every_tenth_of_it_even_before_val_interval_steps(data, tmp_path):
    """On a slow machine the minutes may end long before val_interval steps: the run must still
    validate along the way, so that the best model is chosen among several."""
    images, labels = data
    cfg = run_config(tmp_path / "run", overrides=[*TINY, "train.val_interval=1000000"],
                     minutes=0.15)
    run = train(cfg, images, labels, tmp_path / "run", val_fraction=0.25)
    rows = [r.split(",") for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    validated = [float(r[1]) for r in rows if r[5] != ""]
    # one every tenth of the 9 s at most, fewer where validating (and saving) costs more than
    # a fifth of the time; never only the last one
    assert len(rows) > 12 and 3 <= len(validated) <= 11, (len(rows), validated)


def test_bad_label_file_is_rejected_before_training(data, tmp_path):
    images, labels = data
    lab = tmp_path / "labels"
    lab.mkdir()
    for f in sorted(labels.iterdir()):
        mask = (tifffile.imread(f) > 0).astype(np.uint8)
        if f.name == "002.tif":
            mask[5, 5] = 7
        Image.fromarray(mask).save(lab / (f.stem + ".png"))
    cfg = tiny("data.label_kind=binary")
    with pytest.raises(ValueError, match=r"002.png: binary labels must be 0/1 or 0/255, found value 7"):
        train(cfg, images, lab, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_learning_rate_schedule():
    cfg = tiny("train.lr=0.1", "train.warmup_iterations=10", "train.schedule=cosine")
    assert learning_rate(cfg, 1, 0.0) == pytest.approx(0.01)
    assert learning_rate(cfg, 10, 0.0) == pytest.approx(0.1)
    assert learning_rate(cfg, 50, 0.5) == pytest.approx(0.05)
    assert learning_rate(cfg, 99, 1.0) == pytest.approx(0.0)
    poly = tiny("train.lr=0.1", "train.warmup_iterations=0", "train.schedule=poly")
    assert learning_rate(poly, 5, 0.5) == pytest.approx(0.1 * 0.5**0.9)
    with pytest.raises(ValueError, match="either minutes or iterations"):
        run_config("x", minutes=1, iterations=2)


def _cli(*args):
    from unetkit.cli.main import main

    return main([str(a) for a in args])


def test_cli_train_then_predict(data, tmp_path, capsys):
    images, labels = data
    config = tmp_path / "tiny.yaml"
    config.write_text("preset: default\nmodel: {base_channels: 4, depth: 2}\n"
                      "train: {tile_size: 84, val_interval: 3}\n")
    run = tmp_path / "run"
    assert _cli("train", "--images", images, "--labels", labels, "--out", run, "--config", config,
                "--val-images", images, "--val-labels", labels, "--iterations", 4,
                "--seed", 3, "--set", "train.warmup_iterations=0") == 0
    assert "trained model:" in capsys.readouterr().out
    assert (run / "curves.png").is_file() and (run / "metrics.csv").is_file()
    assert "seed: 3" in (run / "config.yaml").read_text()
    assert _cli("train", "--images", images, "--labels", labels, "--out", run, "--resume",
                "--iterations", 5) == 0
    assert _state(run)["step"] == 5
    assert _cli("predict", "--model", run / "model.safetensors", "--input", images / "000.tif",
                "--out", tmp_path / "pred") == 0
    assert tifffile.imread(tmp_path / "pred" / "000.tif").shape == (96, 96)


@pytest.mark.parametrize("extra, message", [
    (["--resume"], "no checkpoint to resume from"),
    (["--preset", "paper", "--set", "train.tile_size=570"], "nearest legal sizes: 568 or 572"),
    (["--val-fraction", "0.5", "--val-images", "x", "--val-labels", "y"], "not both"),
    (["--set", "train.lrr=1"], "unknown key 'train.lrr'"),
])
def test_cli_train_errors(data, tmp_path, capsys, extra, message):
    images, labels = data
    rc = _cli("train", "--images", images, "--labels", labels, "--out", tmp_path / "r",
              "--set", "model.depth=2", "--iterations", 1, *extra)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("unetkit: error:") and message in err
    assert len(err.splitlines()) == 1


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(data, tmp_path):
    images, labels = data
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "unetkit", "train", "--images", str(images), "--labels",
           str(labels), "--out", str(run), "--minutes", "5",
           *[x for kv in TINY[:3] for x in ("--set", kv)], "--set", "train.val_interval=100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        csv = run / "metrics.csv"
        while time.monotonic() < deadline:  # wait until a few steps are done
            if csv.is_file() and len(csv.read_text().splitlines()) > 3:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    ckpt = _state(run)
    assert ckpt["step"] >= 3 and (run / "model.safetensors").is_file()


def test_ema_saves_the_average_and_resumes_exactly(data, tmp_path):
    """train.ema: model.safetensors / model_last hold the averaged weights (not the trained
    ones), the average follows min(ema, (1 + s) / (10 + s)) per step, and resume is exact."""
    bn = ["model.padding=same", "model.batch_norm=true", "train.ema=0.9",
          "train.val_interval=100",  # validated once, at the last step
          "train.schedule=constant"]  # so that a run of n steps is the first n steps of 6
    full = tmp_path / "full"
    train(tiny(*bn, "train.iterations=6"), *data, full)
    ckpt = _state(full)
    for name in ("model.safetensors", "model_last.safetensors"):
        saved = load_model(full / name).state_dict()
        for key, tensor in ckpt["ema"].items():
            assert torch.equal(saved[key], tensor), (name, key)
    assert not torch.equal(ckpt["ema"]["head.weight"], ckpt["model"]["head.weight"])
    counters = [v for k, v in ckpt["ema"].items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(v) == 6 for v in counters)
    # the average by hand from the weights after each step (runs of 1, 2, ... 6 steps)
    torch.manual_seed(0)
    avg = UNet(**load_config(full / "config.yaml").model.to_dict()).state_dict()["head.weight"]
    for step in range(1, 7):
        train(tiny(*bn, f"train.iterations={step}", "train.ema=0.0"), *data, tmp_path / f"s{step}")
        keep = min(0.9, (1 + step) / (10 + step))
        avg = keep * avg + (1 - keep) * _state(tmp_path / f"s{step}")["model"]["head.weight"]
    assert torch.allclose(ckpt["ema"]["head.weight"], avg, atol=1e-6)
    # cut at step 3 and resumed: the same average, bitwise
    cut = tmp_path / "cut"

    def stop_at_3(step, total, info):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        train(tiny(*bn, "train.iterations=6"), *data, cut, progress=stop_at_3)
    train(tiny(*bn, "train.iterations=6"), *data, cut, resume=True)
    for key, tensor in ckpt["ema"].items():
        assert torch.equal(_state(cut)["ema"][key], tensor), key
