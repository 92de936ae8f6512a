"""Simple points and topology-preserving warping (unetkit.metrics.topology)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from unetkit.metrics.topology import (
    NEIGHBOUR_OFFSETS,
    simple_point_lut,
    simple_points,
    splits_and_mergers,
    warp_towards,
    warping_error_binary,
)


def code_of(*neighbours):
    """Configuration code with the given (dy, dx) neighbours set to foreground."""
    return sum(1 << NEIGHBOUR_OFFSETS.index(n) for n in neighbours)


@pytest.mark.parametrize("neighbours, simple", [
    ((), False),                                   # isolated pixel: removal deletes an object
    (tuple(NEIGHBOUR_OFFSETS), False),             # interior pixel: removal makes a hole
    (((0, 1),), True),                             # end of a line
    (((-1, -1),), False),                          # diagonal only: isolated under 4-connectivity
    (((0, -1), (0, 1)), False),                    # bridge between left and right
    (((-1, 0), (-1, 1), (0, 1)), True),            # corner of a blob
    (((-1, -1), (-1, 0), (-1, 1), (1, -1), (1, 0), (1, 1)), False),  # bridge top to bottom
    (((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1)), True),  # notch in a blob
])
def test_simple_point_table_hand_cases(neighbours, simple):
    assert simple_point_lut()[code_of(*neighbours)] == simple


def _component_counts(image):
    padded = np.pad(image, 1)  # outside is background
    fg = ndi.label(padded, ndi.generate_binary_structure(2, 1))[1]
    bg = ndi.label(~padded, np.ones((3, 3)))[1]
    return fg, bg


def test_flipping_a_simple_point_keeps_component_counts():
    rng = np.random.default_rng(0)
    for _ in range(60):
        image = rng.random((6, 6)) < 0.5
        before = _component_counts(image)
        for y, x in zip(*np.nonzero(simple_points(image)), strict=True):
            flipped = image.copy()
            flipped[y, x] ^= True
            assert _component_counts(flipped) == before


def _two_cells(shape=(12, 20), membrane=(9, 10)):
    image = np.ones(shape, bool)
    image[:, membrane[0]:membrane[1] + 1] = False
    return image


def test_shifted_boundary_warps_away():
    truth = _two_cells(membrane=(9, 10))
    for shift in (1, 2):
        pred = _two_cells(membrane=(9 + shift, 10 + shift))
        assert (truth != pred).sum() > 0
        assert warping_error_binary(truth, pred) == 0.0
        assert np.array_equal(warp_towards(truth, pred), pred)


def test_split_of_a_cell_costs_one_pixel():
    truth = _two_cells()
    pred = truth.copy()
    pred[:, 4] = False  # a cut through the left cell, top to bottom
    assert warping_error_binary(truth, pred) == 1 / truth.size


def test_merger_through_a_thin_membrane_costs_the_gap():
    truth = _two_cells(membrane=(9, 9))  # one-pixel membrane
    pred = truth.copy()
    pred[3:6, 9] = True  # a 3-pixel gap merges the cells
    assert warping_error_binary(truth, pred) == 3 / truth.size


def test_missing_object_leaves_one_pixel():
    truth = np.zeros((9, 9), bool)
    truth[2:7, 2:7] = True
    pred = np.zeros_like(truth)
    warped = warp_towards(truth, pred)
    assert warped.sum() == 1  # shrinks to a point, cannot vanish


def test_warping_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        warp_towards(np.zeros((3, 3), bool), np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match="binary"):
        warp_towards(np.full((3, 3), 2), np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="2D"):
        warp_towards(np.zeros(3, bool), np.zeros(3, bool))


def test_warping_preserves_topology_of_random_blobs():
    rng = np.random.default_rng(5)
    for _ in range(20):
        truth = ndi.gaussian_filter(rng.random((40, 40)), 2) > 0.5
        target = ndi.gaussian_filter(rng.random((40, 40)), 2) > 0.5
        warped = warp_towards(truth, target)
        assert _component_counts(warped) == _component_counts(truth)
        # nothing simple is left to flip among the remaining disagreements
        assert not (simple_points(warped) & (warped != target)).any()
        assert (warped != target).sum() <= (truth != target).sum()


def test_splits_and_mergers_by_hand():
    truth = _two_cells(membrane=(9, 9))
    pred = truth.copy()
    pred[:, 4] = False          # split of the left cell (1 pixel left after warping)
    pred[3:6, 9] = True         # merger through a 3-pixel gap
    pred[8, 15] = False         # a hole inside the right cell
    # pixels: the split's last bridge, the 3 gap pixels, the hole (a hole addition)
    assert splits_and_mergers(truth, pred) == {"splits": 1, "mergers": 3, "other": 1,
                                               "mismatches": 5}
    assert splits_and_mergers(truth, truth) == {"splits": 0, "mergers": 0, "other": 0,
                                                "mismatches": 0}
