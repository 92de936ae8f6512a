"""Targets: label kinds, separation borders and the paper's weight map (Eq. 2)."""

import math

import numpy as np
import pytest
from scipy import ndimage

from unetkit.data.targets import (
    CUTOFF_SIGMAS,
    build_targets,
    class_weight_map,
    detect_kind,
    instances_to_target,
    nearest_two_distances,
    weight_map,
)


def disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def random_instances(rng, shape=(40, 48), n=7):
    """Non-touching random boxes and disks with ids 1..n."""
    labels = np.zeros(shape, dtype=np.int32)
    for i in range(1, n + 1):
        c = rng.integers(0, shape)
        labels[disk(shape, c, rng.integers(1, 5)) & (labels == 0)] = i
    return labels


def touching_grid():
    """Four 12x12 squares that touch along full edges (instance ids 1..4)."""
    labels = np.zeros((30, 30), dtype=np.int32)
    labels[3:15, 3:15] = 1
    labels[3:15, 15:27] = 2
    labels[15:27, 3:15] = 3
    labels[15:27, 15:27] = 4
    return labels


# ---- label kinds -------------------------------------------------------------------------


def test_detect_kind_rules():
    binary = np.zeros((10, 10), np.uint8)
    binary[2:5, 2:5] = 255
    assert detect_kind(binary) == "binary"
    assert detect_kind(binary // 255) == "binary"
    assert detect_kind(binary.astype(bool)) == "binary"
    assert detect_kind(touching_grid()) == "instances"
    classes = np.zeros((10, 10), np.uint8)
    classes[0:2, :] = 1
    classes[5:7, :] = 1  # every class in separate regions -> not instances
    classes[8:, :5] = 2
    classes[3, 2:8] = 2
    assert detect_kind(classes) == "classes"
    classes[3, 2:8] = 0  # class 2 one blob, class 1 two: half the evidence each way
    with pytest.raises(ValueError, match=r"labels: value 1 forms several separate blobs.*"
                       r"--set data.label_kind="):
        detect_kind(classes)
    # with a model of three classes the values fit: classes, even one blob per class
    classes[5:7, :] = 0
    assert detect_kind(classes, num_classes=3) == "classes"
    assert detect_kind(classes) == "instances"
    many = np.arange(100).reshape(10, 10) % 20  # fragmented but too many values for classes
    assert detect_kind(many) == "instances"


def test_detect_kind_respects_ignore_value():
    labels = np.zeros((8, 8), np.uint8)
    labels[1:3, 1:3] = 1
    labels[5:, 5:] = 255
    assert detect_kind(labels, ignore_value=255) == "binary"  # {0, 1} once 255 is ignored
    labels[0, 7] = 2
    labels[7, 0] = 2
    labels[1:3, 4] = 1  # both values now in separate blobs
    assert detect_kind(labels, ignore_value=255) == "classes"


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([[0, -1], [1, 2]]), "-1"),
        (np.array([[0.0, 1.5], [1, 2]]), "1.5"),
        (np.array([[0, 1], [1, 2]], np.int64)[None], "2-D"),
    ],
)
def test_illegal_labels_name_the_value(labels, match):
    with pytest.raises(ValueError, match=match):
        detect_kind(labels)


def test_binary_kind_rejects_other_values():
    labels = np.array([[0, 1], [255, 7]])
    with pytest.raises(ValueError, match="7"):
        build_targets(labels, kind="binary")
    with pytest.raises(ValueError, match="kind"):
        build_targets(labels, kind="semantic")
    with pytest.raises(ValueError, match="5"):
        build_targets(np.array([[0, 1], [5, 2]]), kind="classes", num_classes=3)


def test_build_targets_binary_255_and_ignore():
    labels = np.zeros((20, 20), np.uint8)
    labels[2:8, 2:8] = 255
    labels[12:18, 12:18] = 255
    labels[0, :] = 7  # the configured ignore value
    out = build_targets(labels, ignore_value=7)
    assert out.kind == "binary"
    assert set(np.unique(out.target)) == {0, 1}
    np.testing.assert_array_equal(out.ignore, labels == 7)
    assert np.all(out.weights[out.ignore] == 0)
    assert np.all(out.target[out.ignore] == 0)
    assert out.objects.max() == 2  # two connected components
    assert np.all(out.weights[~out.ignore] > 0)


def test_build_targets_classes_keeps_classes():
    labels = np.zeros((20, 20), np.int64)
    labels[2:6, 2:6] = 1
    labels[2:6, 10:14] = 1
    labels[12:18, 12:18] = 2
    out = build_targets(labels, kind="classes", num_classes=3)
    np.testing.assert_array_equal(out.target, labels)
    assert out.objects.max() == 3  # components of each class


# ---- separation borders ------------------------------------------------------------------


def test_separation_disconnects_touching_objects():
    labels = touching_grid()
    target = instances_to_target(labels)
    _, count = ndimage.label(target, structure=np.ones((3, 3)))
    assert count == 4
    # borders are exactly the 2 px where two objects meet; object/background edges stay
    assert target[3, 3] == 1 and target[14, 13] == 0 and target[14, 15] == 0
    assert np.array_equal(target[8, 12:18], [1, 1, 0, 0, 1, 1])
    four = instances_to_target(labels, connectivity=1)
    assert ndimage.label(four)[1] == 4  # 4-connected borders separate 4-connected components
    assert four[14, 14] == 0 and four[13, 13] == 1


def test_separation_on_random_touching_cells():
    rng = np.random.default_rng(3)
    markers = np.zeros((64, 64), np.int32)
    pts = rng.choice(64 * 64, 12, replace=False)
    markers.flat[pts] = np.arange(1, 13)
    # Voronoi cells (every cell touches its neighbours), clipped to a disk
    _, (iy, ix) = ndimage.distance_transform_edt(markers == 0, return_indices=True)
    labels = markers[iy, ix] * disk((64, 64), (32, 32), 30)
    n = len(np.unique(labels)) - 1
    target = instances_to_target(labels)
    comp, count = ndimage.label(target, structure=np.ones((3, 3)))
    assert count >= n  # no two objects remain connected
    for c in range(1, count + 1):  # each component lies inside a single object
        assert len(np.unique(labels[comp == c])) == 1


def test_separation_is_noop_without_contacts_and_supports_classes():
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8] = 1
    labels[9:15, 2:8] = 2  # one background row between objects 1 and 2: no contact
    labels[2:8, 10:20] = 3  # touches the image edge only
    np.testing.assert_array_equal(instances_to_target(labels), labels > 0)
    grid = touching_grid()
    classes = np.where(grid > 0, 1 + (grid % 2), 0)
    target = instances_to_target(grid, classes)
    assert set(np.unique(target)) == {0, 1, 2}
    assert target[5, 5] == 2 and target[5, 20] == 1
    with pytest.raises(ValueError, match="connectivity"):
        instances_to_target(grid, connectivity=3)


# ---- class weights -----------------------------------------------------------------------


def test_balanced_class_weights_equal_totals():
    target = np.zeros((10, 10), np.int64)
    target[:2] = 1
    target[2:3] = 2
    ignore = np.zeros_like(target, bool)
    ignore[-1] = True
    wc = class_weight_map(target, "balanced", ignore)
    n = (~ignore).sum()
    for c in (0, 1, 2):
        assert wc[(target == c) & ~ignore].sum() == pytest.approx(n / 3)
    assert wc[~ignore].mean() == pytest.approx(1.0)
    assert np.all(wc[ignore] == 0)
    np.testing.assert_array_equal(class_weight_map(target, None), np.ones((10, 10)))
    fixed = class_weight_map(target, [1.0, 2.0, 3.0])
    assert fixed[0, 0] == 2.0 and fixed[2, 0] == 3.0 and fixed[5, 5] == 1.0
    with pytest.raises(ValueError, match="class 2"):
        class_weight_map(target, {0: 1.0, 1: 1.0})


# ---- weight map --------------------------------------------------------------------------


def test_two_disks_closed_form():
    shape, r, w0, sigma = (61, 101), 10, 10.0, 5.0
    c1, c2 = (30, 25), (30, 63)  # gap between the disks: 63 - 25 - 2 * 10 = 18 px
    labels = disk(shape, c1, r) * 1 + disk(shape, c2, r) * 2
    wm = weight_map(labels, w0, sigma, class_weights=None)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d1 = np.hypot(yy - c1[0], xx - c1[1]) - r
    d2 = np.hypot(yy - c2[0], xx - c2[1]) - r
    expected = 1 + w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    # on the axis between the disks: d1 + d2 = gap exactly (grid-aligned nearest pixels)
    axis = wm[30, 36:53]
    np.testing.assert_allclose(axis, 1 + w0 * math.exp(-(18**2) / (2 * sigma**2)), rtol=1e-6)
    # elsewhere between the disks: within the pixel discretisation of the disk boundary
    between = (xx > 36) & (xx < 52) & (np.abs(yy - 30) < 8)
    d_sum = (d1 + d2)[between]
    slope = w0 * np.exp(-(d_sum**2) / (2 * sigma**2)) * d_sum / sigma**2
    assert np.all(np.abs(wm[between] - expected[between]) <= slope * 1.0 + 1e-6)
    # inside the disks only the class weight
    assert np.all(wm[labels > 0] == 1)


def test_equals_brute_force():
    rng = np.random.default_rng(7)
    labels = random_instances(rng, (36, 44), n=6)
    labels = np.where(labels > 0, labels, 0)
    w0, sigma = 10.0, 4.0
    wm = weight_map(labels, w0, sigma, class_weights="balanced")
    target = instances_to_target(labels)
    objects = np.where(target > 0, labels, 0)
    ids = [i for i in np.unique(objects) if i]
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    expected = class_weight_map(target, "balanced")
    for y, x in zip(*np.nonzero(target == 0), strict=True):
        dists = sorted(
            np.sqrt(((yy[objects == i] - y) ** 2 + (xx[objects == i] - x) ** 2).min())
            for i in ids
        )
        expected[y, x] += w0 * math.exp(-((dists[0] + dists[1]) ** 2) / (2 * sigma**2))
    assert len(ids) >= 4
    np.testing.assert_allclose(wm, expected, rtol=1e-5, atol=1e-6 * w0)


def test_nearest_two_distances_cutoff_is_harmless():
    rng = np.random.default_rng(1)
    labels = random_instances(rng, (50, 50), n=8)
    full = nearest_two_distances(labels)
    cut = nearest_two_distances(labels, cutoff=6)
    for exact, approx in zip(full, cut, strict=True):
        near = exact <= 6
        np.testing.assert_array_equal(approx[near], exact[near])
        assert np.all(approx >= exact)
    assert abs(CUTOFF_SIGMAS - 5.2565) < 1e-3


def test_fewer_than_two_objects_no_border_term():
    labels = np.zeros((30, 30), np.int32)
    np.testing.assert_array_equal(weight_map(labels, class_weights=None), np.ones((30, 30)))
    labels[5:10, 5:10] = 3
    wm = weight_map(labels, class_weights="balanced")
    expected = class_weight_map(labels > 0, "balanced")
    np.testing.assert_allclose(wm, expected, rtol=1e-6)


def test_border_weight_peaks_on_separation_borders():
    labels = touching_grid()
    wm = weight_map(labels, w0=10.0, sigma=5.0, class_weights=None)
    target = instances_to_target(labels)
    sep = (target == 0) & (labels > 0)
    # on a 2 px border between two objects d1 + d2 = 1 + 2 (8-connected contact: >= 3)
    assert wm[sep].max() == pytest.approx(1 + 10 * math.exp(-9 / 50), rel=1e-6)
    assert wm[sep].min() > wm[0, 0]
    assert wm.dtype == np.float32 and wm.shape == labels.shape


def test_binary_mask_objects_are_its_components():
    labels = np.zeros((30, 40), np.int32)
    labels[5:25, 4:16] = 1
    labels[5:25, 20:36] = 2
    mask = (labels > 0).astype(np.uint8) * 255  # ISBI style: 255 cells, 0 membrane
    expected = weight_map(labels, kind="instance")
    np.testing.assert_array_equal(weight_map(mask), expected)
    np.testing.assert_array_equal(weight_map(mask > 0, kind="binary"), expected)
    assert weight_map(mask)[15, 18] > 5  # border term in the 4 px gap
    # read as one instance (id 255 + id 0), there is no second object and no border term
    assert weight_map(mask, kind="instance")[15, 18] < 2
    with pytest.raises(ValueError, match="3"):
        weight_map(labels + (labels > 0), kind="binary")
    with pytest.raises(ValueError, match="'classes'"):
        weight_map(labels, kind="classes")


def test_weight_map_rejects_bad_parameters():
    labels = touching_grid()
    with pytest.raises(ValueError, match="-1"):
        weight_map(labels, sigma=-1.0)
    with pytest.raises(ValueError, match="w0"):
        weight_map(labels, w0=-2.0)
    with pytest.raises(ValueError, match="shape"):
        weight_map(labels, target=np.zeros((3, 3), int))


def test_diagonal_one_pixel_membrane_separates_two_objects():
    # cells on both sides of a diagonal membrane touch only at corners: two objects under
    # 4-connectivity (as the metrics count them), so the membrane gets its Eq. 2 border term
    labels = np.full((9, 9), 255, np.uint8)
    np.fill_diagonal(labels, 0)
    t = build_targets(labels, kind="binary", w0=10.0, sigma=5.0)
    assert t.objects.max() == 2
    # w_c of the membrane: 81 / (2 * 9) = 4.5; d1 = d2 = 1 on every membrane pixel
    expected = 4.5 + 10.0 * math.exp(-((1 + 1) ** 2) / (2 * 5.0**2))  # 13.73
    assert np.allclose(t.weights[np.eye(9, dtype=bool)], expected)
    assert np.allclose(weight_map(labels, kind="binary")[np.eye(9, dtype=bool)], expected)
