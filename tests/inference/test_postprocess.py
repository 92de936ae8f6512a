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
