"""Post-processing: no specks, small holes filled, the best threshold found on validation data."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.inference.postprocess import (Postprocess, choose_postprocess, clean_mask,
                                           model_postprocess, object_scores)


def _disks(shape=(64, 64), centres=((16, 16), (40, 44)), r=7):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return labels


def test_clean_mask_drops_specks_and_fills_small_holes():
    truth = _disks()
    prob = (truth > 0).astype(float) * 0.9
    prob[16, 16] = 0.1  # a pin-hole
    prob[2, 60] = prob[60, 3] = 0.8  # two one-pixel specks
    mask = clean_mask(prob, Postprocess(threshold=0.5, min_size=10, fill_holes=5))
    np.testing.assert_array_equal(mask, truth > 0)
    raw = clean_mask(prob, Postprocess())
    assert raw.sum() == (truth > 0).sum() + 1  # two specks in, one hole out


def test_a_noisy_background_yields_no_specks_after_choosing_on_validation():
    rng = np.random.default_rng(0)
    truth = _disks(centres=((12, 12), (12, 48), (48, 12), (48, 48)), r=6)
    probs, truths, objs = [], [], []
    for _ in range(3):
        p = np.where(truth > 0, 0.85, 0.15) + rng.normal(0, 0.2, truth.shape)
        probs.append(np.clip(p, 0, 1))
        truths.append(truth > 0)
        objs.append(truth)
    pp, scores = choose_postprocess(probs, truths, objs, min_sizes=(0, 5, 20, 40))
    assert pp.min_size > 0
    for p in probs:  # every object found, no speck left
        tp, fp, fn = object_scores(np.asarray(__import__("scipy").ndimage.label(
            clean_mask(p, pp))[0]), truth)
        assert (tp, fp, fn) == (4, 0, 0)
    assert scores["f1"] == 1.0
    raw = [np.asarray(__import__("scipy").ndimage.label(p > 0.5)[0]).max() for p in probs]
    assert min(raw) > 4  # without post-processing the noise is counted as objects


def test_choose_postprocess_finds_the_threshold_of_a_biased_network():
    truth = _disks(r=8)
    yy, xx = np.mgrid[:64, :64]
    dist = np.min([np.hypot(yy - 16, xx - 16), np.hypot(yy - 40, xx - 44)], axis=0)
    prob = np.clip(1.2 - dist / 10, 0, 1)  # p = 0.4 exactly on the true outline
    pp, scores = choose_postprocess([prob], [truth > 0], None,
                                    thresholds=(0.3, 0.4, 0.5, 0.6))
    assert pp.threshold == 0.4 and scores["iou"] > 0.95


def test_a_threshold_must_beat_the_preferred_one_by_the_least_gain():
    # p = 0.42 on the true outline: 0.4 scores above the argmax's 0.5
    truth = _disks(r=8)
    yy, xx = np.mgrid[:64, :64]
    dist = np.min([np.hypot(yy - 16, xx - 16), np.hypot(yy - 40, xx - 44)], axis=0)
    prob = np.clip(1.22 - dist / 10, 0, 1)

    def iou(thr):
        m = clean_mask(prob, Postprocess(threshold=thr))
        return (m & (truth > 0)).sum() / (m | (truth > 0)).sum()

    gain = iou(0.4) - iou(0.5)
    assert gain > 0
    ths = (0.3, 0.4, 0.5, 0.6)
    plain, _ = choose_postprocess([prob], [truth > 0], None, thresholds=ths, min_gain=2 * gain)
    assert plain.threshold == 0.4  # without a preference the best threshold wins
    kept, scores = choose_postprocess([prob], [truth > 0], None, thresholds=ths,
                                      min_gain=2 * gain, prefer=0.5)
    assert kept.threshold == 0.5 and scores["iou"] == pytest.approx(iou(0.5))
    moved, _ = choose_postprocess([prob], [truth > 0], None, thresholds=ths,
                                  min_gain=gain / 2, prefer=0.5)
    assert moved.threshold == 0.4


def test_fixed_values_are_kept():
    truth = _disks()
    pp, _ = choose_postprocess([truth * 0.9], [truth > 0], None,
                               fixed={"threshold": 0.3, "min_size": 7})
    assert (pp.threshold, pp.min_size) == (0.3, 7)


def test_model_postprocess_reads_the_model_file_and_takes_overrides():
    class M:
        def __init__(self) -> None:
            self.meta = {"postprocess": {"threshold": 0.35, "min_size": 40, "fill_holes": 9}}

    assert model_postprocess(M()) == Postprocess(0.35, 40, 9)
    assert model_postprocess(M(), threshold=0.6) == Postprocess(0.6, 40, 9)
    assert model_postprocess(object()) == Postprocess()  # an old model file: plain argmax
    with pytest.raises(ValueError, match="threshold"):
        Postprocess(threshold=1.0)


def _four_adjacent_pairs(labels):
    """Pairs of different nonzero labels that touch as 4-neighbours."""
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        touch = (a > 0) & (b > 0) & (a != b)
        pairs |= {tuple(sorted(p)) for p in zip(a[touch].tolist(), b[touch].tolist())}
    return pairs


def test_growth_keeps_one_pixel_between_objects_and_grows_lone_objects_fully():
    from scipy import ndimage as ndi
    from unetkit.inference.postprocess import grow_labels

    labels = np.zeros((40, 60), np.int32)
    labels[10:30, 5:25] = 1
    labels[10:30, 29:49] = 2  # 4 px of background between 1 and 2 (columns 25-28)
    labels[2:4, 55:57] = 3  # a lone object near the edge
    grown = grow_labels(labels, 3)
    assert not _four_adjacent_pairs(grown)  # no two objects touch
    # the 4 px gap closes to exactly one background column between the two objects
    row = grown[20]
    assert row[25:29].tolist().count(0) == 1 and set(row[25:29]) - {0} == {1, 2}
    # objects only gain pixels, and a lone object gains all of its 3 px ring
    assert np.all(grown[labels > 0] == labels[labels > 0])
    ring = ndi.distance_transform_edt(labels != 3) <= 3
    np.testing.assert_array_equal(grown == 3, ring)
    # the components of the grown mask are still the three objects
    assert ndi.label(grown > 0, structure=ndi.generate_binary_structure(2, 1))[1] == 3


def test_growth_never_joins_an_object_to_another_one_it_was_apart_from():
    from unetkit.inference.postprocess import grow_labels

    rng = np.random.default_rng(3)
    for _ in range(5):
        from scipy import ndimage as ndi
        mask = ndi.binary_opening(rng.random((80, 80)) > 0.55, iterations=1)
        labels, _ = ndi.label(mask, structure=ndi.generate_binary_structure(2, 1))
        n = labels.max()
        for d in (1, 2, 4):
            grown = grow_labels(labels, d)
            assert not _four_adjacent_pairs(grown)
            # no object is lost, and none is added: pieces cut off by a gap are dropped
            assert ndi.label(grown > 0, structure=ndi.generate_binary_structure(2, 1))[1] == n
            assert set(np.unique(grown)) == set(np.unique(labels))


def test_growth_is_chosen_when_the_network_shrinks_the_objects():
    from scipy import ndimage as ndi

    truth = _disks(centres=((14, 14), (14, 30), (44, 44)), r=8)  # the first two touch
    core = np.zeros_like(truth)
    for k in (1, 2, 3):
        core[ndi.binary_erosion(truth == k, iterations=2)] = k
    prob = np.where(core > 0, 0.9, 0.1)  # objects 2 px smaller than the truth
    pp, s = choose_postprocess([prob], [truth > 0], [truth], grow_sizes=(0, 1, 2, 3))
    assert pp.grow == 2
    assert s["f1"] == 1.0 and s["iou"] > 0.95
    fitted, _ = choose_postprocess([np.where(truth > 0, 0.9, 0.1)], [truth > 0], [truth],
                                   grow_sizes=(0, 1, 2, 3))
    assert fitted.grow == 0  # a network that fits the outlines gets no growth


def test_growth_and_cores_need_min_gain_over_the_simpler_choice():
    """min_gain: growth and a split at cores are chosen only where they score at least that much
    above the best candidate without them (a tiny gain on a small validation set is noise)."""
    from scipy import ndimage as ndi

    truth = _disks(centres=((14, 14), (14, 30), (44, 44)), r=8)
    core = np.zeros_like(truth)
    for k in (1, 2, 3):
        core[ndi.binary_erosion(truth == k, iterations=2)] = k
    prob = np.where(core > 0, 0.9, 0.1)  # 2 px too small: growth gains a lot
    _, plain = choose_postprocess([prob], [truth > 0], [truth], grow_sizes=(0,))
    pp, s = choose_postprocess([prob], [truth > 0], [truth], grow_sizes=(0, 1, 2, 3))
    gain = s["score"] - plain["score"]
    assert pp.grow == 2 and gain > 0.05
    kept, _ = choose_postprocess([prob], [truth > 0], [truth], grow_sizes=(0, 1, 2, 3),
                                 min_gain=gain - 1e-3)
    assert kept.grow == 2
    simple, s2 = choose_postprocess([prob], [truth > 0], [truth], grow_sizes=(0, 1, 2, 3),
                                    min_gain=gain + 1e-3)
    assert simple.grow == 0 and s2 == plain
    # cores: two touching disks that only cores part
    tt = _disks(centres=((20, 20), (20, 36)), r=8)
    tp = np.where(tt > 0, 0.7, 0.05)
    for k in (1, 2):
        tp[ndi.binary_erosion(tt == k, iterations=4)] = 0.95
    split, s3 = choose_postprocess([tp], [tt > 0], [tt], thresholds=(0.3, 0.5), seeds=(0.9,))
    merged, s4 = choose_postprocess([tp], [tt > 0], [tt], thresholds=(0.3, 0.5))
    assert split.seed == 0.9 and merged.seed == 0.0 and s3["score"] > s4["score"]
    gain = s3["score"] - s4["score"]
    assert choose_postprocess([tp], [tt > 0], [tt], thresholds=(0.3, 0.5), seeds=(0.9,),
                              min_gain=gain - 1e-3)[0].seed == 0.9
    assert choose_postprocess([tp], [tt > 0], [tt], thresholds=(0.3, 0.5), seeds=(0.9,),
                              min_gain=gain + 1e-3)[0].seed == 0.0


def test_growth_is_stored_and_applied_by_clean_mask():
    truth = _disks(centres=((20, 20),), r=5)
    pp = Postprocess.from_dict({"threshold": 0.5, "min_size": 0, "fill_holes": 0, "grow": 2})
    assert pp.grow == 2 and Postprocess.from_dict({"threshold": 0.5}).grow == 0
    grown = clean_mask(truth.astype(float), pp)
    assert grown.sum() > (truth > 0).sum() and grown[truth > 0].all()
    with pytest.raises(ValueError, match="grow"):
        Postprocess(grow=-1)


def test_instances_fill_holes_then_grow_once():
    from scipy import ndimage as ndi
    from unetkit.inference.postprocess import grow_labels, postprocess_instances

    truth = _disks()
    prob = (truth > 0).astype(float) * 0.9
    prob[16, 16] = 0.1  # a pin-hole
    prob[2, 60] = 0.8  # a speck
    pp = Postprocess(threshold=0.5, min_size=10, fill_holes=5, grow=2)
    got = postprocess_instances(prob, pp)
    expected = grow_labels(ndi.label(truth > 0, structure=ndi.generate_binary_structure(2, 1))[0],
                           2)
    np.testing.assert_array_equal(got > 0, expected > 0)  # holes filled, speck gone, grown once
    assert got.max() == 2
    # the labels output is the same foreground
    np.testing.assert_array_equal(clean_mask(prob, pp), got > 0)
