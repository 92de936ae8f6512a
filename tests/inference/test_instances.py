"""Instances from probability maps (unetkit.instances)."""

import numpy as np
import pytest

from unetkit.inference.instances import probabilities_to_instances


def touching_disks(radius=10, gap=17):
    """Two disks whose centres are `gap` apart (they overlap: one component)."""
    yy, xx = np.mgrid[:40, :60]
    a = (yy - 20) ** 2 + (xx - 20) ** 2 <= radius ** 2
    b = (yy - 20) ** 2 + (xx - 20 - gap) ** 2 <= radius ** 2
    return a, b, np.where(a | b, 0.8, 0.1)


def test_components_merge_touching_disks_watershed_splits_them():
    a, b, prob = touching_disks()
    comps = probabilities_to_instances(prob)
    assert comps.dtype == np.uint32 and comps.max() == 1
    ws = probabilities_to_instances(prob, method="watershed")
    assert ws.max() == 2
    assert set(np.unique(ws[a & ~b])) == {ws[20, 20]}   # each disk core in one object
    assert set(np.unique(ws[b & ~a])) == {ws[20, 37]}
    assert ws[20, 20] != ws[20, 37]
    assert np.array_equal(ws > 0, a | b)                # no foreground lost


def test_core_seeds_split_touching_disks():
    a, b, prob = touching_disks()
    yy, xx = np.mgrid[:40, :60]
    prob[((yy - 20) ** 2 + (xx - 20) ** 2 <= 9) | ((yy - 20) ** 2 + (xx - 37) ** 2 <= 9)] = 0.95
    ws = probabilities_to_instances(prob, method="watershed", seeds="core")
    assert ws.max() == 2 and np.array_equal(ws > 0, a | b)


def test_seedless_component_is_kept_and_min_size_removes():
    prob = np.zeros((10, 10))
    prob[1:7, 1:7] = 0.9     # 36 px
    prob[8, 8] = 0.9         # 1 px: no core above 0.95, still an object
    ws = probabilities_to_instances(prob, method="watershed", seeds="core",
                                    core_threshold=0.95)
    assert ws.max() == 2
    big = probabilities_to_instances(prob, min_size=2)
    assert big.max() == 1 and big[8, 8] == 0 and big[3, 3] == 1


def test_threshold_is_strict_and_3d_works():
    prob = np.full((2, 3, 3), 0.5)
    assert probabilities_to_instances(prob).max() == 0
    prob[0, 0, 0] = prob[1, 0, 0] = 0.6    # face-connected across slices
    assert probabilities_to_instances(prob).max() == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": 1.0}, "threshold"),
    ({"method": "magic"}, "method"),
    ({"min_size": -1}, "min_size"),
    ({"seeds": "random"}, "seeds"),
    ({"h": 0}, "h must"),
    ({"core_threshold": 0.4}, "core_threshold"),
])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        probabilities_to_instances(np.zeros((4, 4)), **kwargs)


def test_bad_maps_raise():
    with pytest.raises(ValueError, match="NaN"):
        probabilities_to_instances(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="range"):
        probabilities_to_instances(np.full((3, 3), 2.0))
    with pytest.raises(ValueError, match="shape"):
        probabilities_to_instances(np.zeros(3))
