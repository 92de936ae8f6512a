"""Two-class objects split at cores: the mask from a low threshold, touching objects told apart at
a high one (inference.postprocess.split_cores), chosen on validation data, stored, applied."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from unetkit.inference.postprocess import (Postprocess, choose_postprocess, clean_mask,
                                           postprocess_instances, split_cores, uses_cores)

FOUR = ndi.generate_binary_structure(2, 1)


def _touching_disks(shape=(48, 80), r=11):
    """Two disks that overlap along a chord (touching nuclei) and a lone one; the probability a
    network gives: ~1 inside, falling towards each outline, with a shallow dip (0.6) where the
    two touch, so no single threshold gives both the extent and the split."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = ((24, 18), (24, 38), (24, 66))
    dist = np.stack([np.hypot(yy - cy, xx - cx) for cy, cx in centres])
    truth = np.where(dist.min(0) <= r, dist.argmin(0) + 1, 0).astype(np.int32)
    prob = np.clip((r + 1 - dist.min(0)) / 3, 0, 1)  # 1 inside, 0.33 on the outline
    d1, d2 = np.sort(dist[:2], axis=0)
    contact = np.clip(1 - (d2 - d1) / 4, 0, 1)  # 1 on the line between the first two disks
    prob = np.minimum(prob, 1 - 0.4 * contact * (truth > 0) * (truth < 3))
    return truth, prob


def _adjacent(labels):
    a, b = labels[:, :-1], labels[:, 1:]
    c, d = labels[:-1], labels[1:]
    return bool((((a > 0) & (b > 0) & (a != b)).any()) or ((c > 0) & (d > 0) & (c != d)).any())


def test_cores_split_touching_objects_one_pixel_apart_and_keep_their_extent():
    truth, prob = _touching_disks()
    mask = prob > 0.3
    assert ndi.label(mask, FOUR)[1] == 2  # at the low threshold the touching pair is one object
    assert ndi.label(prob > 0.7, FOUR)[1] == 3  # at a high one they part, but shrink
    out = split_cores(prob, mask, 0.8)
    assert out.max() == 3 and not _adjacent(out)
    # the objects are the mask's 4-connected components, and only the parting line is lost
    assert ndi.label(out > 0, FOUR)[1] == 3
    lost = mask & (out == 0)
    assert lost.sum() <= 2 * 21 and not ((out > 0) & ~mask).any()
    for k in (1, 2, 3):  # each true object is one predicted object
        ids = np.unique(out[truth == k])
        assert len(ids[ids > 0]) == 1
    iou = ((out > 0) & (truth > 0)).sum() / ((out > 0) | (truth > 0)).sum()
    high = prob > 0.7
    assert iou > 0.95 > (high & (truth > 0)).sum() / (high | (truth > 0)).sum()


def test_a_mask_piece_without_a_core_is_an_object_and_seed_at_or_below_threshold_is_off():
    prob = np.zeros((20, 30))
    prob[3:9, 3:9] = 0.6  # no pixel above the core probability
    prob[12:18, 12:25] = 0.95
    out = split_cores(prob, prob > 0.5, 0.9)
    assert out.max() == 2 and (out > 0).sum() == 36 + 78
    for seed in (0.0, 0.5, 0.4):  # at or below the threshold: the mask's components, as before
        pp = Postprocess(threshold=0.5, seed=seed)
        assert not uses_cores(pp)
        np.testing.assert_array_equal(postprocess_instances(prob, pp),
                                      ndi.label(prob > 0.5, FOUR)[0])
    assert not uses_cores(Postprocess(threshold=0.3, seed=0.8), ndim=3)


def test_choose_postprocess_takes_a_low_mask_and_high_cores_when_objects_touch():
    truth, prob = _touching_disks()
    pp, s = choose_postprocess([prob], [truth > 0], [truth], thresholds=(0.2, 0.3, 0.5, 0.7),
                               seeds=(0.0, 0.8, 0.9))
    assert pp.threshold <= 0.3 and pp.seed > pp.threshold and uses_cores(pp)
    assert s["f1"] == 1.0 and s["iou"] > 0.95
    plain, p = choose_postprocess([prob], [truth > 0], [truth], thresholds=(0.2, 0.3, 0.5, 0.7))
    assert plain.seed == 0.0 and p["score"] < s["score"]
    # the foreground IoU alone (no objects scored) never looks for cores
    iou_only, _ = choose_postprocess([prob], [truth > 0], None, thresholds=(0.3,),
                                     seeds=(0.0, 0.8))
    assert iou_only.seed == 0.0
    # a seed fixed by the user is kept
    fixed, _ = choose_postprocess([prob], [truth > 0], [truth], thresholds=(0.3,),
                                  seeds=(0.0, 0.8), fixed={"seed": 0.9})
    assert fixed.seed == 0.9


def test_labels_and_instances_share_the_split_and_holes_seed_nothing():
    _, prob = _touching_disks()
    prob[24, 66] = 0.1  # a pin-hole in the lone disk's core
    prob[22:27, 16:21] = 0.5  # a dimmer patch inside the first disk, below the cores
    prob[23:26, 17:20] = 0.05  # holding a hole: filled, it must not seed an object of its own
    pp = Postprocess(threshold=0.3, min_size=20, fill_holes=30, seed=0.8)
    inst = postprocess_instances(prob, pp)
    np.testing.assert_array_equal(clean_mask(prob, pp), inst > 0)
    assert inst.max() == 3 and inst[24, 66] > 0 and inst[24, 18] > 0
    # with growth on top the objects stay apart
    grown = postprocess_instances(prob, Postprocess(threshold=0.3, fill_holes=30, seed=0.8,
                                                    grow=2))
    assert grown.max() == 3 and not _adjacent(grown)
    # an explicit instance method other than components uses that method instead
    from dataclasses import replace

    ws = postprocess_instances(prob, pp, method="watershed")
    np.testing.assert_array_equal(ws, postprocess_instances(prob, replace(pp, seed=0.0),
                                                            method="watershed"))


def test_the_selection_searches_cores_for_two_class_objects_only():
    from unetkit.training import selection

    assert 0.0 in selection.CORES and max(selection.CORES) < 1
    assert 0.0 in selection.QUICK_CORES


def test_streamed_instances_use_the_cores(tmp_path):
    zarr = pytest.importorskip("zarr")
    from tests.inference.test_streaming import TILE, TwoClassCrop
    from unetkit.inference.streaming import predict_to_file

    _, prob = _touching_disks(shape=(96, 100))
    src = tmp_path / "p.zarr"
    arr = zarr.create_array(str(src), shape=prob.shape, dtype=np.float32, chunks=(32, 32))
    q = np.clip(prob, 1e-4, 1 - 1e-4)
    arr[...] = (0.5 + np.log(q / (1 - q)) / 80).astype(np.float32)  # the stand-in gives p = q
    net = TwoClassCrop()
    net.meta["postprocess"] = {"threshold": 0.3, "seed": 0.8}
    out = predict_to_file(net, src, tmp_path / "i.ome.zarr", output="instances", tile_size=TILE)
    res = zarr.open_group(str(out), mode="r")["0"][...]
    assert res.max() == 3  # the cores: the touching pair stays two objects
    net.meta["postprocess"] = {"threshold": 0.3}
    out = predict_to_file(net, src, tmp_path / "j.ome.zarr", output="instances", tile_size=TILE)
    assert zarr.open_group(str(out), mode="r")["0"][...].max() == 2


def test_predict_writes_labels_and_instances_split_at_the_stored_cores(tmp_path):
    import tifffile
    from tests.inference.test_streaming import TwoClassCrop
    from unetkit.inference.files import predict_file

    _, prob = _touching_disks(shape=(96, 100))
    q = np.clip(prob, 1e-4, 1 - 1e-4)
    image = tmp_path / "p.tif"
    tifffile.imwrite(image, (0.5 + np.log(q / (1 - q)) / 80).astype(np.float32))
    net = TwoClassCrop()
    got = {}
    for seed in (0.0, 0.8):
        net.meta["postprocess"] = {"threshold": 0.3, "seed": seed}
        for kind in ("labels", "instances"):
            got[seed, kind] = tifffile.imread(predict_file(net, image, tmp_path / f"{seed}{kind}",
                                                           output=kind))
    assert ndi.label(got[0.0, "labels"] > 0, FOUR)[1] == 2 == got[0.0, "instances"].max()
    # with the cores the touching pair is two objects in both outputs, one pixel apart
    assert ndi.label(got[0.8, "labels"] > 0, FOUR)[1] == 3 == got[0.8, "instances"].max()
    np.testing.assert_array_equal(got[0.8, "labels"] > 0, got[0.8, "instances"] > 0)
    assert not _adjacent(got[0.8, "instances"])


def test_small_cores_seed_no_object_so_a_textured_object_stays_whole():
    """A nucleus whose chromatin leaves a few small peaks above the core probability is one
    object when cores smaller than core_size seed nothing; touching objects with cores of
    their own still part.  Old model files (no core_size) keep every core."""
    truth, prob = _touching_disks()
    textured = prob.copy()
    lone = truth == 3  # the lone disk: its plateau lowered to 0.85, three 2x2 peaks above 0.9
    textured[lone & (textured > 0.85)] = 0.85
    for y, x in ((20, 62), (27, 62), (24, 69)):
        textured[y:y + 2, x:x + 2] = 0.95
    mask = textured > 0.3

    def ids(labels):
        found = np.unique(labels)
        return len(found[found > 0])

    assert ids(split_cores(textured, mask, 0.9)[lone]) == 3  # every core its object: split in 3
    out = split_cores(textured, mask, 0.9, core_size=10)
    assert out.max() == 3 and ids(out[lone]) == 1 and not _adjacent(out)
    pp = Postprocess(threshold=0.3, seed=0.9, core_size=10)
    np.testing.assert_array_equal(postprocess_instances(textured, pp) > 0, out > 0)
    assert Postprocess.from_dict(pp.to_dict()) == pp
    assert Postprocess.from_dict({"threshold": 0.3, "seed": 0.9}).core_size == 0
    chosen, s = choose_postprocess([textured], [truth > 0], [truth], thresholds=(0.3,),
                                   seeds=(0.0, 0.9), core_size=10)
    assert chosen.core_size == 10 and chosen.seed == 0.9 and s["f1"] == 1.0
    with pytest.raises(ValueError, match="core_size must be >= 0, got -1"):
        Postprocess(core_size=-1)
