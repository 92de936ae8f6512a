"""Tile plans (inference/plan.py): every pixel written once, on the 2**depth grid."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unetkit.inference import plan
from unetkit.model import geometry as g


def test_too_small_tile_is_refused():
    with pytest.raises(ValueError, match="too small"):
        plan.plan_tiles((100, 100), 188)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 900), w=st.integers(1, 900),
       size=st.sampled_from([204, 220, 252, 380, 572]))
def test_plan_covers_every_pixel_once(h, w, size):
    tiles = plan.plan_tiles((h, w), size)
    count = np.zeros((h, w), np.int32)
    stride = g.tile_stride(size)
    out = g.output_size(size)
    for t in tiles:
        count[t.y : t.y + t.h, t.x : t.x + t.w] += 1
        assert t.y % stride == 0 and t.x % stride == 0
        assert t.in_y == t.y - g.margin() and t.in_x == t.x - g.margin()
        assert t.off_y + t.h <= out and t.off_x + t.w <= out
    assert (count == 1).all()


def test_needed_tile_size_is_the_smallest_legal_tile_that_covers_the_image():
    from unetkit.inference.plan import needed_tile_size
    from unetkit.model import geometry

    for shape in ((100, 80), (512, 512), (700, 1300), (5000, 4000)):
        expected = next(s for s in geometry.legal_input_sizes(4, 8000)
                        if s >= geometry.min_tile_size(4)
                        and geometry.tile_stride(s, 4) >= max(shape))
        assert needed_tile_size(shape) == expected
    sizes = geometry.iter_legal_sizes(4)
    assert [next(sizes) for _ in range(3)] == [188, 204, 220]  # lazy and unbounded
