"""Defaults that the data decide: channels, normalisation, tiles, sampling, validation held out,
post-processing chosen on validation data, stored in the model file and used by predict."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import tifffile

from unetkit import load_model
from unetkit.config import apply_overrides, load_config, preset
from unetkit.data.dataset import TileSampler
from unetkit.data.fingerprint import measure
from unetkit.data.synthetic import write_dataset
from unetkit.inference.files import predict_file
from unetkit.training.choices import derive
from unetkit.training.checkpoint import FINGERPRINT
from unetkit.training.loop import train
from unetkit.training.selection import auto_holdout

TINY = ["model.base_channels=4", "model.depth=2", "train.minutes=null", "train.iterations=6",
        "train.val_interval=3", "train.warmup_iterations=2"]


def _cfg(*more):
    return apply_overrides(preset("default"), [*TINY, *more])


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    """Three RGB images (a stain-like colouring of synthetic nuclei) with instance labels."""
    root = tmp_path_factory.mktemp("rgb")
    write_dataset(root, 3, (96, 96), seed=4, n_cells=6)
    for f in sorted((root / "images").glob("*.tif")):
        gray = tifffile.imread(f).astype(np.float32)
        rgb_image = np.stack([255 - gray / 2, 200 - gray / 3, 255 - gray / 4], -1)
        tifffile.imwrite(f, np.clip(rgb_image, 0, 255).astype(np.uint8), photometric="rgb")
    return root / "images", root / "labels"


def test_rgb_is_detected_and_the_run_folder_holds_the_fingerprint(rgb, tmp_path):
    run = train(_cfg(), *rgb, tmp_path / "run")
    info = json.loads((run / FINGERPRINT).read_text())
    assert info["fingerprint"]["channels"] == 3
    assert info["choices"]["model.in_channels"]["value"] == 3
    for key in ("data.normalization", "train.tile_size", "augment.elastic_sigma",
                "data.foreground_sampling", "validation"):
        assert info["choices"][key]["reason"]
    model = load_model(run / "model.safetensors")
    assert model.config.in_channels == 3
    pp = model.meta["postprocess"]
    assert set(pp) == {"threshold", "min_size", "fill_holes", "grow", "seed", "core_size"}
    assert model.meta["training"]["validation"]["metric"].startswith("(IoU + F1")
    assert model.meta["inference"] == {"tta": True}  # the default preset's; predict reads it
    # the resolved configuration leaves nothing to the data any more
    saved = load_config(run / "config.yaml")
    assert saved.train.tile_size and saved.augment.elastic_sigma and saved.train.iterations
    assert saved.data.normalization in ("percentile", "per_image")
    assert saved.data.foreground_sampling is not None


def test_predict_applies_the_stored_threshold_and_min_size(rgb, tmp_path):
    run = train(_cfg(), *rgb, tmp_path / "run")
    model = load_model(run / "model.safetensors")
    image = sorted(rgb[0].glob("*.tif"))[0]
    outs = {}
    for name, pp in (("loose", {"threshold": 0.05, "min_size": 0, "fill_holes": 0}),
                     ("strict", {"threshold": 0.05, "min_size": 10**6, "fill_holes": 0})):
        model.meta["postprocess"] = pp
        for kind in ("labels", "instances"):
            path = predict_file(model, image, tmp_path / name / kind, output=kind)
            outs[name, kind] = tifffile.imread(path)
    assert outs["loose", "labels"].any() and outs["loose", "instances"].any()
    assert not outs["strict", "labels"].any() and not outs["strict", "instances"].any()
    # an explicit option wins over the model file's
    model.meta["postprocess"] = {"threshold": 0.05, "min_size": 10**6, "fill_holes": 0}
    path = predict_file(model, image, tmp_path / "override", output="instances",
                        instances={"min_size": 0})
    assert tifffile.imread(path).any()


def test_predict_applies_the_stored_growth_to_labels_and_instances(rgb, tmp_path):
    from scipy import ndimage as ndi

    run = train(_cfg(), *rgb, tmp_path / "run")
    model = load_model(run / "model.safetensors")
    image = sorted(rgb[0].glob("*.tif"))[0]
    outs = {}
    for grow in (0, 2):
        model.meta["postprocess"] = {"threshold": 0.5, "min_size": 0, "fill_holes": 0,
                                     "grow": grow}
        for kind in ("labels", "instances"):
            path = predict_file(model, image, tmp_path / f"g{grow}" / kind, output=kind)
            outs[grow, kind] = tifffile.imread(path)
    if not outs[0, "labels"].any():
        pytest.skip("the tiny model predicts no foreground at 0.5")
    four = ndi.generate_binary_structure(2, 1)
    for kind in ("labels", "instances"):
        assert (outs[2, kind] > 0).sum() > (outs[0, kind] > 0).sum()
        assert np.all(outs[2, kind][outs[0, kind] > 0] > 0)  # objects only gain pixels
    # growth keeps the objects apart: as many components as before
    assert ndi.label(outs[2, "labels"] > 0, four)[1] == ndi.label(outs[0, "labels"] > 0, four)[1]
    assert outs[2, "instances"].max() == outs[0, "instances"].max()


def test_auto_holdout_bands_for_few_images_and_images_for_many(rgb):
    from unetkit.data.dataset import load_pairs

    pairs = load_pairs(*rgb)
    train_pairs, val, bands, how = auto_holdout(pairs, seed=0)
    assert len(train_pairs) == 3 and len(val) == 3 and len(bands) == 3
    assert all(v.labels.shape == (96 - 77, 96) for v in val) and "20%" in how
    many = pairs * 2
    many = [replace(p, name=f"{p.name}_{i}") for i, p in enumerate(many)]
    train_pairs, val, bands, how = auto_holdout(many, seed=0)
    assert (len(train_pairs), len(val), bands) == (5, 1, [])


def test_tile_and_elastic_strength_follow_the_objects():
    small = np.zeros((600, 600), np.uint16)
    small[10:20, 10:20] = 1
    big = np.zeros((600, 600), np.uint16)
    big[50:250, 50:250] = 1
    image = np.zeros((1, 600, 600), np.uint16)
    cfg = preset("default")  # same-padded: legal tiles are multiples of 16, from 256
    c_small, ch_small = derive(cfg, measure([image], [small]))
    c_big, _ = derive(cfg, measure([image], [big]))
    assert c_small.train.tile_size == 256 < c_big.train.tile_size <= 508
    assert c_small.augment.elastic_sigma == pytest.approx(10 * 256 / 572, abs=0.01)
    valid = apply_overrides(cfg, ["model.padding=valid", "model.batch_norm=false"])
    v_small, _ = derive(valid, measure([image], [small]))
    v_big, _ = derive(valid, measure([image], [big]))
    assert v_small.train.tile_size == 316 < v_big.train.tile_size <= 508
    assert c_small.data.foreground_sampling > 0  # 0.03 % foreground: sparse
    assert "train.iterations" in ch_small
    # the paper preset keeps the paper's values: nothing is left to the data
    paper, choices = derive(preset("paper"), measure([image], [small]))
    assert paper.train.tile_size == 572 and paper.augment.elastic_sigma == 10.0
    assert set(choices) == {"model.in_channels"}


def test_foreground_sampling_centres_tiles_on_objects():
    from unetkit.config import AugmentConfig
    from unetkit.data.dataset import Prepared

    target = np.zeros((400, 400), np.int64)
    target[300:310, 300:310] = 1
    item = Prepared("a", np.zeros((1, 400, 400), np.float32), target,
                    np.ones((400, 400), np.float32), None, "binary", "a")
    seen = []
    for share in (0.0, 1.0):
        s = TileSampler([item], AugmentConfig.off(), 84, 44, 1, seed=0, foreground=share)
        seen.append(np.mean([s.sample(k)[1].any() for k in range(40)]))
    assert seen[0] < 0.2 and seen[1] == 1.0


def test_min_size_candidates_stay_below_the_small_objects():
    """New images may hold smaller objects than the validation images: the smallest-object
    size stays under a quarter of the 5th percentile of the training objects' areas; for
    countable objects it is that cap, for a network (one large component) it is searched
    from 0."""
    from unetkit.training.selection import Validator

    labels = np.zeros((400, 400), np.uint16)
    labels[10:30, 10:30] = 1  # 400 px: the small ones
    labels[50:250, 50:250] = 2  # 40000 px
    labels[260:390, 260:390] = 3  # 16900 px
    image = np.zeros((1, 400, 400), np.uint16)
    fp = measure([image], [labels])
    assert fp.small_object_area < fp.object_area / 5
    v = Validator(preset("default"), [], [], fp, "cpu")
    # countable objects: specks under the cap go whatever the validation says (no search from 0)
    cap = int(0.25 * fp.small_object_area)
    assert v.objects_metric and v.min_sizes == v.quick_sizes == [cap] and cap > 0
    # cores (split_cores) smaller than a tenth of the median object, within the same cap
    assert 0 < v.core_size == min(int(0.1 * fp.object_area), int(0.25 * fp.small_object_area))


def test_a_vessel_like_mask_is_scored_by_iou_and_blobs_by_objects():
    """A binary network (vessels, membranes) with fragments is not objects to count: its
    validation metric is the foreground IoU; several blobs per image are counted."""
    from unetkit.training.selection import Validator

    tree = np.zeros((200, 200), np.uint8)
    tree[100:104, 10:190] = 1  # a trunk and branches: one component
    for x in (40, 80, 120, 160):
        tree[20:100, x:x + 3] = 1
    for y, x in ((10, 10), (180, 30), (185, 170), (15, 185)):  # four small fragments
        tree[y:y + 3, x:x + 3] = 1
    blobs = np.zeros((200, 200), np.uint8)
    for y, x in ((20, 20), (20, 120), (120, 20), (120, 120), (60, 70)):
        blobs[y:y + 25, x:x + 25] = 1
    image = np.zeros((1, 200, 200), np.uint8)
    fp_tree, fp_blobs = measure([image], [tree]), measure([image], [blobs])
    assert fp_tree.objects_per_image == 5 and fp_tree.largest_object_share > 0.9
    assert fp_blobs.largest_object_share == pytest.approx(0.2)
    v_tree = Validator(preset("default"), [], [], fp_tree, "cpu")
    assert v_tree.metric == "foreground IoU"
    # a network's fragments are not specks to drop: its smallest size is searched from 0
    assert v_tree.min_sizes[0] == 0 and len(v_tree.min_sizes) > 1
    assert max(v_tree.min_sizes) <= 0.25 * fp_tree.small_object_area
    assert Validator(preset("default"), [], [], fp_blobs, "cpu").objects_metric


def test_presets_store_whether_predict_averages_flips():
    from unetkit.config import preset

    assert preset("default").postprocess.tta is True
    assert preset("paper").postprocess.tta is False


def test_the_final_search_keeps_the_argmax_threshold_when_others_only_tie():
    """Thresholds that score alike on validation keep the softmax's own 0.5 (ties used to go
    to the lowest threshold tried, which fattens every object on new images)."""
    from unetkit.training.selection import Validator

    labels = np.zeros((96, 96), np.uint16)
    for k, (y, x) in enumerate(((10, 10), (10, 60), (60, 10), (60, 60)), start=1):
        labels[y:y + 20, x:x + 20] = k
    image = np.zeros((1, 96, 96), np.uint16)
    fp = measure([image], [labels])
    v = Validator(preset("default"), [], [], fp, "cpu")
    v.truths, v.objects = [labels > 0], [labels]
    prob = np.where(labels > 0, 0.9, 0.1)  # every threshold 0.2-0.8 gives the same mask
    v.probabilities = lambda model, tta=False: ([prob], None)
    _, pp = v.final(None)
    assert pp.threshold == 0.5 and pp.grow == 0


def _touching_objects(n=12):
    """Instance labels of squares in pairs that touch along one side, and a blank image."""
    labels = np.zeros((256, 256), np.uint16)
    k = 0
    for r in range(n // 2):
        y, x = 8 + (r // 3) * 60, 8 + (r % 3) * 80
        for dx in (0, 20):
            k += 1
            labels[y:y + 20, x + dx:x + dx + 20] = k
    return np.zeros((1, 256, 256), np.uint16), labels


def test_touching_auto_takes_a_contact_class_only_with_touching_objects_and_a_long_budget():
    image, labels = _touching_objects()
    fp = measure([image], [labels], "instances")
    assert fp.contact_fraction > 0.005
    cfg = preset("default")
    assert cfg.data.touching == "auto"
    # the default's 10 minutes (a time budget alone: --minutes) learn the contacts
    timed = apply_overrides(cfg, ["train.minutes=10", "train.iterations=1000000000"])
    c, choices = derive(timed, fp)
    assert c.data.touching == "class" and c.model.num_classes == 3
    assert choices["data.touching"]["value"] == "class"
    assert "touch" in choices["data.touching"]["reason"]
    # too short a budget, in minutes or in steps: the paper's separation borders
    for short in (["train.minutes=2", "train.iterations=1000000000"],
                  ["train.minutes=null", "train.iterations=1000"]):
        c, choices = derive(apply_overrides(cfg, short), fp)
        assert c.data.touching == "border" and c.model.num_classes == 2
        assert "too" in choices["data.touching"]["reason"]
    # objects that do not touch, and binary masks, keep the borders whatever the budget
    lone = np.zeros_like(labels)
    lone[10:30, 10:30], lone[100:120, 100:120] = 1, 2
    for fp_other in (measure([image], [lone], "instances"),
                     measure([image], [(labels > 0).astype(np.uint8)], "binary")):
        c, _ = derive(timed, fp_other)
        assert c.data.touching == "border" and c.model.num_classes == 2
    # set by the user, or the paper preset: kept as given
    c, choices = derive(apply_overrides(timed, ["data.touching=border"]), fp)
    assert c.data.touching == "border" and "data.touching" not in choices
    assert derive(preset("paper"), fp)[0].data.touching == "border"
