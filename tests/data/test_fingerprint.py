"""The training set's fingerprint and the percentile normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.data.fingerprint import measure, object_ids
from unetkit.data.normalize import Normalization, image_percentiles


def _blobs(h: int = 96, w: int = 96, n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.uint16)
    yy, xx = np.mgrid[:h, :w]
    for k in range(1, n + 1):
        cy, cx = rng.integers(12, h - 12), rng.integers(12, w - 12)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = k
    image = (100 + 800 * (labels > 0) + rng.normal(0, 20, (h, w))).astype(np.uint16)
    return image[None], labels


def test_fingerprint_measures_channels_objects_and_classes():
    pairs = [_blobs(seed=s) for s in range(3)]
    rgb = [np.repeat(img, 3, axis=0) for img, _ in pairs]
    fp = measure(rgb, [lab for _, lab in pairs])
    assert fp.channels == 3 and fp.n_images == 3 and fp.dtype == "uint16"
    assert fp.label_kind == "instances"
    assert 3 <= fp.objects_per_image <= 5
    assert 80 <= fp.object_area <= 120  # disks of radius 6: 113 px, some overlap
    assert fp.foreground_fraction == pytest.approx(1 - fp.class_frequencies["0"])
    assert set(fp.normalization_spread) == {"percentile", "per_image"}


def test_objects_are_four_connected():
    mask = np.zeros((5, 5), np.uint8)
    mask[1, 1] = mask[2, 2] = 1  # touch diagonally only
    assert object_ids(mask, "binary").max() == 2


@pytest.mark.parametrize("gain, offset", [(0.5, 0.0), (3.0, 1000.0), (1.0, -50.0)])
def test_percentile_normalisation_is_invariant_to_gain_and_offset(gain, offset):
    image = np.random.default_rng(0).gamma(2.0, 100.0, (2, 64, 80)) + 100
    norm = Normalization(mode="percentile")
    s1, o1 = norm.affine(image, 2)
    changed = image * gain + offset
    s2, o2 = norm.affine(changed, 2)
    a = image * s1[:, None, None] + o1[:, None, None]
    b = changed * s2[:, None, None] + o2[:, None, None]
    np.testing.assert_allclose(a, b, atol=1e-4)
    # all channels share one scale (the colour balance of a stain survives)
    assert s1[0] == s1[1]


def test_percentiles_from_a_subsample_of_a_large_image(monkeypatch):
    import unetkit.data.normalize as normalize

    monkeypatch.setattr(normalize, "PERCENTILE_SAMPLE", 1000)
    image = np.random.default_rng(1).uniform(0, 1, (1, 300, 300))
    low, high = image_percentiles(image, (1, 99.8))
    assert low == pytest.approx(0.01, abs=0.02) and high == pytest.approx(0.998, abs=0.02)


def test_percentile_normalisation_round_trips_through_the_model_file_dict():
    norm = Normalization(mode="percentile", low_percentile=2.0, high_percentile=99.0)
    assert Normalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(ValueError, match="percentiles"):
        Normalization(mode="percentile", low_percentile=50, high_percentile=10)
