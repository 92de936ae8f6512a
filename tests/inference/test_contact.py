"""The contact class: targets whose foreground is label > 0, and objects split where they touch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from unetkit import load_model
from unetkit.config import apply_overrides, preset
from unetkit.data.fingerprint import measure
from unetkit.data.synthetic import write_dataset
from unetkit.data.targets import CONTACT, build_targets, instances_to_target
from unetkit.inference.files import predict_file
from unetkit.inference.postprocess import (CONTACT_CLASSES, Postprocess, choose_postprocess,
                                           clean_mask, postprocess_instances, split_touching)
from unetkit.training.checkpoint import FINGERPRINT
from unetkit.training.choices import derive
from unetkit.training.loop import train

FOUR = ndi.generate_binary_structure(2, 1)


def _touching(shape=(48, 64)):
    """Two 20 x 20 squares that share an edge (column 30 | 31), and a lone disk."""
    labels = np.zeros(shape, np.int32)
    labels[10:30, 11:31] = 1
    labels[10:30, 31:51] = 2
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels[(yy - 40) ** 2 + (xx - 8) ** 2 <= 16] = 3
    return labels


def _perfect_probs(labels):
    """(3, H, W) probabilities of a network that learned the contact target exactly."""
    target = build_targets(labels, kind="instances", contact=True).target
    return np.stack([target == k for k in range(3)]).astype(np.float32)


def test_contact_target_keeps_the_whole_foreground_and_marks_the_contacts():
    labels = _touching()
    t = build_targets(labels, kind="instances", contact=True)
    np.testing.assert_array_equal(t.target > 0, labels > 0)  # foreground = label > 0
    cleared = (labels > 0) & (instances_to_target(labels) == 0)
    np.testing.assert_array_equal(t.target == CONTACT, cleared)
    assert cleared.sum() == 2 * 20  # columns 30 and 31 of the 20 rows
    # the contacts are weighted as a (rare) class, without the Eq. 2 border term, which stays
    # on the background gaps
    plain = build_targets(labels, kind="instances", contact=True, w0=0.0).weights
    contact = t.target == CONTACT
    np.testing.assert_allclose(t.weights[contact], plain[contact])
    assert plain[contact].min() > plain[t.target == 1].max()
    gap = (t.target == 0) & (t.weights > plain + 1.0)
    assert gap.any()
    # the objects the distances are measured to are the whole objects
    np.testing.assert_array_equal(t.objects[contact], labels[contact])
    # binary masks have no contacts: contact=True changes nothing there
    mask = (labels > 0).astype(np.uint8)
    np.testing.assert_array_equal(build_targets(mask, kind="binary", contact=True).target,
                                  build_targets(mask, kind="binary").target)


def test_split_touching_separates_touching_objects_by_one_pixel():
    labels = _touching()
    prob = _perfect_probs(labels)
    out = split_touching(1.0 - prob[0], prob[1], 0.5)
    assert out.max() == 3
    # one pixel between the two squares, nothing else lost
    lost = (labels > 0) & (out == 0)
    cols = lost.any(axis=0).nonzero()[0]
    assert lost.sum() == 20 and len(cols) == 1 and 30 <= cols[0] <= 32
    assert not ((out > 0) & (labels == 0)).any()
    # the mask's 4-connected components are the objects
    assert ndi.label(out > 0, FOUR)[1] == 3
    for k in (1, 2, 3):
        ids = np.unique(out[labels == k])
        assert len(ids[ids > 0]) == 1


def test_a_component_without_interior_is_kept_as_an_object():
    fg = np.zeros((20, 20), np.float32)
    fg[5:10, 5:10] = 0.9
    interior = np.zeros_like(fg)  # all contact: no seed
    out = split_touching(fg, interior, 0.5)
    assert out.max() == 1 and (out > 0).sum() == 25


def test_labels_and_instances_of_a_contact_model_share_the_mask():
    labels = _touching()
    prob = _perfect_probs(labels)
    pp = Postprocess(threshold=0.5, min_size=60)  # drops the disk (49 px)
    inst = postprocess_instances(1.0 - prob[0], pp, prob[1])
    mask = clean_mask(1.0 - prob[0], pp, prob[1])
    np.testing.assert_array_equal(mask, inst > 0)
    assert sorted(np.bincount(inst.ravel())[1:].tolist()) == [380, 400]


def test_choose_postprocess_with_interiors_scores_the_split_objects():
    labels = _touching()
    prob = _perfect_probs(labels)
    fg = np.clip(1.0 - prob[0] + 0.2 * (prob[0] > 0), 0, 1)  # background at 0.2
    pp, scores = choose_postprocess([fg], [labels > 0], [labels], thresholds=(0.1, 0.3, 0.5),
                                    interiors=[prob[1]])
    assert pp.threshold == 0.3
    assert scores["f1"] == 1.0 and scores["iou"] > 0.97
    # without the interiors the squares are one object
    _, merged = choose_postprocess([fg], [labels > 0], [labels], thresholds=(0.3,))
    assert merged["f1"] < 1.0


def _contact_cfg(*more):
    return apply_overrides(preset("default"), ["data.touching=class", *more])


def test_fingerprint_measures_contacts_and_touching_class_derives_three_classes():
    labels = _touching()
    image = np.random.default_rng(0).random((1, *labels.shape)).astype(np.float32)
    fp = measure([image], [labels], "instances")
    assert fp.contact_fraction == pytest.approx(40 / (labels > 0).sum())
    cfg, choices = derive(_contact_cfg(), fp)
    assert cfg.model.num_classes == 3 and cfg.data.label_kind == "instances"
    assert "contact" in choices["model.num_classes"]["reason"]
    apart = np.where(labels == 2, 0, labels)
    cfg2, _ = derive(_contact_cfg(), measure([image], [apart], "instances"))
    assert cfg2.model.num_classes == 2  # nothing touches: no contact class
    for name in ("paper", "default"):  # both presets keep the separation borders
        assert derive(preset(name), fp)[0].model.num_classes == 2


def test_a_contact_model_trains_and_predict_writes_a_mask_and_split_instances(tmp_path):
    root = tmp_path / "data"
    write_dataset(root, 3, (96, 96), seed=4, n_cells=12)
    cfg = _contact_cfg(*[
        "model.base_channels=4", "model.depth=2", "train.minutes=null", "train.iterations=6",
        "train.val_interval=3", "train.warmup_iterations=2"])
    run = train(cfg, root / "images", root / "labels", tmp_path / "run")
    info = json.loads((run / FINGERPRINT).read_text())
    assert info["fingerprint"]["contact_fraction"] > 0
    model = load_model(run / "model.safetensors")
    assert model.config.num_classes == 3
    assert tuple(model.meta["class_names"]) == CONTACT_CLASSES
    assert set(model.meta["postprocess"]) == {"threshold", "min_size", "fill_holes", "grow", "seed",
                                             "core_size"}
    model.meta["postprocess"] = {"threshold": 0.3, "min_size": 0, "fill_holes": 0, "grow": 0}
    image = sorted((root / "images").glob("*.tif"))[0]
    out = {kind: tifffile.imread(predict_file(model, image, tmp_path / kind, output=kind))
           for kind in ("labels", "instances", "probabilities")}
    assert set(np.unique(out["labels"]).tolist()) <= {0, 1}  # a mask, not class indices
    assert out["probabilities"].shape[0] == 3
    np.testing.assert_array_equal(out["labels"] > 0, out["instances"] > 0)
    # the mask is the foreground, less the pixels that keep objects apart
    fg = 1.0 - out["probabilities"][0] > 0.3
    assert not (out["labels"] > fg).any()
    # the mask's 4-connected components are the instances
    assert ndi.label(out["labels"] > 0, FOUR)[1] == len(np.unique(out["instances"])) - 1

    # streamed tile by tile: the labels are the thresholded foreground, the instances the
    # interiors (growing them over the contacts needs whole objects)
    from unetkit.inference.streaming import predict_to_file

    streamed = {kind: tifffile.imread(predict_to_file(model, image, tmp_path / f"s-{kind}.tif",
                                                      output=kind))
                for kind in ("labels", "instances")}
    np.testing.assert_array_equal(streamed["labels"] > 0, fg)
    p = out["probabilities"]
    inner = fg & (p[1] >= 0.5 * (1.0 - p[0]))
    np.testing.assert_array_equal(streamed["instances"] > 0, inner)

def test_a_seed_threshold_splits_objects_that_a_weak_contact_class_merges():
    labels = _touching()
    prob = _perfect_probs(labels)
    # a network that learned the contacts weakly: the object class still wins there (0.6)
    weak = prob.copy()
    band = prob[2] > 0
    weak[1][band], weak[2][band] = 0.6, 0.4
    weak[1][prob[1] > 0] = 0.95
    weak[0][prob[1] > 0] = 0.05
    fg, interior = 1.0 - weak[0], weak[1]
    assert split_touching(fg, interior, 0.5).max() == 2  # the squares merge
    assert split_touching(fg, interior, 0.5, seed=0.7).max() == 3
    pp, scores = choose_postprocess([fg], [labels > 0], [labels], thresholds=(0.5,),
                                    interiors=[interior], seeds=(0.0, 0.7))
    assert pp.seed == 0.7 and scores["f1"] == 1.0


def test_the_train_command_reports_the_seed_of_a_contact_model(tmp_path, capsys):
    from unetkit.cli.main import main

    root = tmp_path / "data"
    write_dataset(root, 3, (96, 96), seed=4, n_cells=12)
    code = main(["train", "--images", str(root / "images"), "--labels", str(root / "labels"),
                 "--out", str(tmp_path / "run"), "--set", "data.touching=class",
                 "--set", "model.base_channels=4", "--set", "model.depth=2",
                 "--set", "train.minutes=null", "--set", "train.iterations=4",
                 "--set", "train.val_interval=2", "--set", "train.warmup_iterations=1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "model.num_classes" in out and "contact" in out
    assert "seed " in out.split("validation:")[1]
