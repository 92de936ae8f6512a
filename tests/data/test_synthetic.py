"""Tests for unetkit.data.synthetic: determinism, exact labels, touching objects, image realism, I/O."""

import dataclasses
import logging
import re

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unetkit.data import synthetic
from unetkit.data.synthetic import (
    PRESETS,
    CellParams,
    iter_dataset,
    make_cells,
    make_dataset,
    resolve_params,
    touching_fraction,
    touching_pairs,
    write_dataset,
)

KINDS = ["nuclei", "cells"]


@pytest.fixture(scope="module", params=KINDS)
def sample(request):
    """(kind, image, instances) at 512 x 512, seed 0."""
    image, instances = make_cells((512, 512), 0, kind=request.param)
    return request.param, image, instances


def _background_only(instances: np.ndarray, margin: int = 8) -> np.ndarray:
    """Pixels at least ``margin`` px from any object (beyond blur and most haze)."""
    return ~ndimage.binary_dilation(instances > 0, iterations=margin)


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_arrays():
    a_img, a_lab = make_cells((128, 160), 7)
    b_img, b_lab = make_cells((128, 160), np.random.default_rng(7))
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert a_img.shape == a_lab.shape == (128, 160)


def test_different_seeds_differ():
    a_img, a_lab = make_cells((128, 128), 1)
    b_img, b_lab = make_cells((128, 128), 2)
    assert not np.array_equal(a_img, b_img)
    assert not np.array_equal(a_lab, b_lab)


def test_dataset_image_depends_only_on_seed_and_index():
    three = make_dataset(3, (64, 64), seed=5)
    two = list(iter_dataset(2, (64, 64), seed=5))
    for (img3, lab3), (img2, lab2) in zip(three[:2], two, strict=True):
        np.testing.assert_array_equal(img3, img2)
        np.testing.assert_array_equal(lab3, lab2)
    assert not np.array_equal(three[0][0], three[1][0])


# --- labels -----------------------------------------------------------------------------------


def test_labels_are_consecutive_with_background_zero(sample):
    _, _, instances = sample
    assert instances.dtype == np.uint16
    n = int(instances.max())
    assert n > 20
    np.testing.assert_array_equal(np.unique(instances), np.arange(n + 1))
    assert 0.1 < (instances > 0).mean() < 0.7  # both background and objects are plentiful


def test_each_object_is_one_4_connected_piece(sample):
    _, _, instances = sample
    for k, sl in enumerate(ndimage.find_objects(instances), start=1):
        _, n_pieces = ndimage.label(instances[sl] == k)  # default structure: 4-connectivity
        assert n_pieces == 1, f"object {k} has {n_pieces} pieces"


@pytest.mark.parametrize(("kind", "radius_range"),
                         [("nuclei", None), ("cells", None), ("nuclei", (5.0, 9.0))])
def test_object_sizes_respect_radius_range(kind, radius_range):
    overrides = {} if radius_range is None else {"radius_range": radius_range}
    _, instances = make_cells((384, 384), 3, kind=kind, **overrides)
    lo, hi = radius_range or PRESETS[kind].radius_range
    h, w = instances.shape
    radii = []
    for k, sl in enumerate(ndimage.find_objects(instances), start=1):
        if sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w:
            continue  # cut by the image border
        radii.append(np.sqrt((instances[sl] == k).sum() / np.pi))
    radii = np.asarray(radii)
    assert radii.size > 20
    assert radii.min() >= 0.75 * lo and radii.max() <= 1.1 * hi
    assert np.ptp(radii) > 0.4 * (hi - lo)  # sizes really vary across the range


def test_n_cells_places_that_many_objects():
    _, instances = make_cells((256, 256), 0, n_cells=12)
    assert instances.max() == 12


def test_too_many_cells_for_the_image_logs_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="unetkit.data.synthetic"):
        _, instances = make_cells((32, 32), 0, n_cells=200)
    assert 0 < instances.max() < 200
    assert "n_cells=200" in caplog.text


def test_more_than_65535_objects_switch_labels_to_uint32():
    # 1-px objects on a grid: the cleaning step alone decides the dtype.
    labels = np.zeros((2 * 190, 2 * 190), np.int32)
    labels[::2, ::2] = np.arange(1, 190 * 190 + 1).reshape(190, 190)
    labels[1::2, ::2] = labels[::2, ::2]  # 2-px objects, 36100 of them: still uint16
    depth = np.where(labels > 0, 0.5, np.inf).astype(np.float32)
    assert synthetic._clean(labels.copy(), depth.copy(), 1).dtype == np.uint16
    big = np.zeros((2, 70000), np.int32)
    big[0] = np.arange(1, 70001)
    out = synthetic._clean(big, np.where(big > 0, 0.5, np.inf).astype(np.float32), 1)
    assert out.dtype == np.uint32 and out.max() == 70000


def test_objects_below_min_area_are_dropped_and_labels_renumbered():
    labels = np.zeros((20, 20), np.int32)
    labels[1:3, 1:3] = 1  # 4 px: dropped
    labels[5:12, 5:12] = 2  # 49 px: kept, becomes 1
    labels[14:16, 14:16] = 3  # dropped
    labels[5, 15] = 2  # a stray second piece of object 2: removed
    depth = np.where(labels > 0, 0.5, np.inf).astype(np.float32)
    out = synthetic._clean(labels, depth, min_area=10)
    assert out.max() == 1 and (out == 1).sum() == 49
    assert np.isinf(depth[1, 1]) and np.isinf(depth[5, 15])


# --- touching objects -------------------------------------------------------------------------


def test_touching_pairs_on_a_hand_made_case():
    lab = np.array([[1, 1, 2, 0, 3],
                    [1, 1, 2, 0, 0],
                    [0, 0, 0, 4, 0],
                    [5, 0, 4, 4, 0]], np.uint16)
    np.testing.assert_array_equal(touching_pairs(lab), [[1, 2]])  # 3/4 only meet diagonally
    assert touching_fraction(lab) == pytest.approx(2 / 5)
    assert touching_fraction(np.zeros((4, 4), np.uint16)) == 0.0
    assert touching_pairs(np.zeros((4, 4), np.uint16)).shape == (0, 2)


def test_many_objects_touch_and_a_threshold_would_merge_them(sample):
    kind, _, instances = sample
    n = int(instances.max())
    assert touching_fraction(instances) >= (0.5 if kind == "cells" else 0.2)
    _, n_blobs = ndimage.label(instances > 0)
    assert n_blobs < 0.8 * n  # foreground components merge touching objects


def test_touching_objects_share_real_boundaries(sample):
    _, _, instances = sample
    lab = instances.astype(np.int64)
    contact = {}
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :])):
        hit = (a != b) & (a > 0) & (b > 0)
        for pair in zip(np.minimum(a[hit], b[hit]), np.maximum(a[hit], b[hit]), strict=True):
            contact[pair] = contact.get(pair, 0) + 1
    assert set(contact) == {tuple(p) for p in touching_pairs(instances)}
    assert np.median(list(contact.values())) >= 5  # borders, not corner contacts


def test_cells_touch_more_than_20_percent_across_seeds():
    for seed in range(3):
        _, instances = make_cells((256, 256), seed, kind="cells")
        assert touching_fraction(instances) >= 0.2, seed


# --- image ------------------------------------------------------------------------------------


def test_image_dtype_range_and_contrast(sample):
    _, image, instances = sample
    assert image.dtype == np.uint8
    fg = image[instances > 0].astype(float)
    bg = image[_background_only(instances)].astype(float)
    assert fg.mean() > 2.5 * bg.mean()
    assert image.max() >= 200 and bg.mean() > 3  # uses the range, noise floor off zero


def test_noise_is_present(sample):
    _, image, instances = sample
    residual = image.astype(float) - ndimage.uniform_filter(image.astype(float), 5)
    assert residual[_background_only(instances)].std() > 1.0  # DN of shot + read noise
    assert np.unique(image[_background_only(instances)]).size > 5


def _corner_background_ratio(image: np.ndarray, instances: np.ndarray) -> float:
    """max / min of the mean background in the four corner blocks (a quarter of each side)."""
    bg = _background_only(instances)
    q = image.shape[0] // 4
    corners = [(slice(0, q), slice(0, q)), (slice(0, q), slice(-q, None)),
               (slice(-q, None), slice(0, q)), (slice(-q, None), slice(-q, None))]
    means = [image[c][bg[c]].mean() for c in corners]
    return max(means) / min(means)


def test_uneven_illumination_background_differs_between_corners():
    # One object, so that the background shows the illumination and no haze from clusters.
    for seed in range(3):
        image, instances = make_cells((256, 256), seed, n_cells=1)
        assert _corner_background_ratio(image, instances) > 1.15, seed
        flat = make_cells((256, 256), seed, n_cells=1, vignetting=0, gradient=0)
        assert _corner_background_ratio(*flat) < 1.12, seed


def test_uint16_output_uses_the_wider_range():
    image, instances = make_cells((128, 128), 0, dtype="uint16")
    assert image.dtype == np.uint16 and image.max() > 255 * 20
    assert image[instances > 0].mean() > 2 * image[_background_only(instances)].mean()


def test_blur_smooths_the_image():
    sharp, _ = make_cells((128, 128), 0, blur_sigma=0, photons=1e5)
    soft, _ = make_cells((128, 128), 0, blur_sigma=3, photons=1e5)
    assert np.abs(np.diff(soft.astype(float), axis=1)).mean() < np.abs(
        np.diff(sharp.astype(float), axis=1)).mean()


def test_params_object_is_used_as_given():
    p = dataclasses.replace(PRESETS["cells"], coverage=0.2)
    assert resolve_params("cells", coverage=0.2) == p
    a = make_cells((96, 96), 4, params=p)
    b = make_cells((96, 96), 4, kind="cells", coverage=0.2)
    np.testing.assert_array_equal(a[0], b[0])
    assert isinstance(p, CellParams)


# --- files ------------------------------------------------------------------------------------


def test_write_dataset_round_trips(tmp_path):
    written = write_dataset(tmp_path / "synth", 2, (64, 80), seed=3)
    expected = make_dataset(2, (64, 80), seed=3)
    assert [(p.parent.name, p.name) for pair in written for p in pair] == [
        ("images", "000.tif"), ("labels", "000.tif"), ("images", "001.tif"), ("labels", "001.tif")]
    for (img_path, lab_path), (image, instances) in zip(written, expected, strict=True):
        got_img, got_lab = tifffile.imread(img_path), tifffile.imread(lab_path)
        assert got_img.dtype == image.dtype and got_lab.dtype == instances.dtype
        np.testing.assert_array_equal(got_img, image)
        np.testing.assert_array_equal(got_lab, instances)
    leftovers = [p.name for p in (tmp_path / "synth").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_write_dataset_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    def broken_imwrite(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"II*\0half")
        raise OSError("disk full")

    monkeypatch.setattr(synthetic.tifffile, "imwrite", broken_imwrite)
    with pytest.raises(OSError, match="disk full"):
        write_dataset(tmp_path, 1, (32, 32))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# --- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "value"), [
    (lambda: make_cells((-5, 64)), "(-5, 64)"),
    (lambda: make_cells((64, 0)), "(64, 0)"),
    (lambda: make_cells((64,)), "(64,)"),
    (lambda: make_cells((64, 64), n_cells=0), "0"),
    (lambda: make_cells((64, 64), n_cells=-3), "-3"),
    (lambda: make_cells((64, 64), rng=-1), "-1"),
    (lambda: make_cells((64, 64), rng="abc"), "'abc'"),
    (lambda: make_cells((64, 64), kind="bacteria"), "'bacteria'"),
    (lambda: make_cells((64, 64), radius_range=(0.0, 5.0)), "(0.0, 5.0)"),
    (lambda: make_cells((64, 64), radius_range=(10, 5)), "(10, 5)"),
    (lambda: make_cells((64, 64), coverage=-0.1), "-0.1"),
    (lambda: make_cells((64, 64), blur_sigma=-1), "-1"),
    (lambda: make_cells((64, 64), vignetting=1.5), "1.5"),
    (lambda: make_cells((64, 64), dtype="float32"), "'float32'"),
    (lambda: make_cells((64, 64), colour="red"), "colour"),
    (lambda: make_cells((64, 64), params=PRESETS["cells"], coverage=0.2), "coverage"),
    (lambda: make_cells(64), "64"),
    (lambda: make_cells((64.5, 64)), "(64.5, 64)"),
    (lambda: make_dataset(0), "0"),
    (lambda: make_dataset(2, seed=-4), "-4"),
    (lambda: make_dataset(2, (8, 8)), "(8, 8)"),
    (lambda: touching_pairs(np.zeros(5)), "(5,)"),
])
def test_bad_arguments_raise_value_error_naming_the_value(call, value):
    with pytest.raises(ValueError, match=re.escape(value)):
        call()
