"""Training data that cannot train is refused; data that trains poorly is warned about."""

import logging

import numpy as np
import pytest
import tifffile

from unetkit.cli.main import main
from unetkit.data.checks import refuse_untrainable, warn_poor_data
from unetkit.data.dataset import Pair
from unetkit.data.targets import build_targets


def pair(image, labels, name="a"):
    return Pair(name, np.asarray(image)[None], np.asarray(labels), f"{name}.tif", f"{name}_l.tif")


def test_refused_without_foreground_or_with_constant_images(rng):
    img = rng.integers(0, 255, (32, 32))
    lab = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="no foreground in any label"):
        refuse_untrainable([pair(img, lab), pair(img, lab, "b")])
    lab[4:9, 4:9] = 1
    with pytest.raises(ValueError, match="every training image is constant"):
        refuse_untrainable([pair(np.full((32, 32), 7), lab)])
    refuse_untrainable([pair(img, lab), pair(np.full((32, 32), 7), lab, "b")])  # one is enough


def test_warnings_constant_small_unlabelled_missing_class(rng, caplog):
    lab = np.zeros((32, 32), np.uint8)
    lab[4:9, 4:9] = 1
    pairs = [pair(rng.integers(0, 255, (32, 32)), lab),
             pair(np.full((32, 32), 3), np.zeros((32, 32), np.uint8), "flat"),
             pair(np.ones((1, 1)), np.ones((1, 1), np.uint8), "dot")]
    with caplog.at_level(logging.WARNING):
        warn_poor_data(pairs, tile_size=252, num_classes=3, label_kind="classes")
    text = caplog.text
    assert "flat_l.tif: no foreground" in text and "flat.tif: constant image" in text
    assert "dot.tif: 1x1 px, smaller than the 252 px training tile" in text and "mirrored" in text
    assert "class(es) 2 of model.num_classes=3 never present" in text


def test_cli_train_refuses_all_zero_labels(tmp_path, rng, capsys):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for i in range(2):
        tifffile.imwrite(tmp_path / "img" / f"{i}.tif", rng.integers(0, 255, (48, 48), np.uint8))
        tifffile.imwrite(tmp_path / "lab" / f"{i}.tif", np.zeros((48, 48), np.uint8))
    assert main(["train", "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--out", str(tmp_path / "run"), "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no foreground in any label image" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_stray_values_in_a_0_255_mask_are_named():
    lab = np.zeros((40, 40), np.uint8)
    lab[2:5, 2:5] = 255
    lab[20:25, 20:25] = 255
    lab[10:12, 10:12] = 128
    with pytest.raises(ValueError, match=r"0/255 mask with stray value.s. 128"):
        build_targets(lab, kind="classes", num_classes=2)
    classes = np.zeros((20, 20), np.uint8)
    classes[2:4, 2:4], classes[10:12, 10:12], classes[15:17, 2:4] = 1, 2, 2
    with pytest.raises(ValueError, match=r"--set model\.num_classes=3"):
        build_targets(classes, kind="classes", num_classes=2)


def test_class_weights_capped_by_default_uncapped_in_the_paper_preset():
    from unetkit import preset
    from unetkit.data.targets import class_weight_map

    target = np.zeros((512, 512), np.int64)
    target[0, :3] = 1  # a class of 3 pixels
    paper = class_weight_map(target, "balanced", None, preset("paper").weights.max_class_weight)
    capped = class_weight_map(target, "balanced", None,
                              preset("default").weights.max_class_weight)
    assert paper[0, 0] > 40_000  # the paper's formula: N / (K * N_c)
    assert capped[0, 0] == pytest.approx(10.0 * capped[5, 5])  # at most 10x the frequent class
