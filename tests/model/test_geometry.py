"""Pure geometry: sizes, margins, legal tiles."""

import pytest

from unetkit.model import geometry as g


def test_paper_sizes():
    assert g.output_size(572) == 388
    assert g.margin(4) == 92
    assert g.legal_input_sizes(4, 620)[:3] == [188, 204, 220]
    assert all((s - 124) % 16 == 0 for s in g.legal_input_sizes(4, 2000))
    assert 572 in g.legal_input_sizes(4) and 1084 in g.legal_input_sizes(4)


def test_legal_rule_matches_simulation():
    legal = [s for s in range(1, 1200) if g.is_legal(s, 4)]
    assert legal == [16 * b + 124 for b in range(4, 68)]


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_every_depth_consistent(depth):
    sizes = g.legal_input_sizes(depth, 1200)
    for s in sizes:
        out = g.output_size(s, depth)
        assert s - out == 2 * g.margin(depth)
        assert out % 2**depth == 4 % 2**depth  # all outputs share a phase: why tiles sit on a grid


def test_illegal_size_names_nearest():
    with pytest.raises(ValueError, match="556 or 572"):
        g.check_input_size(570)
    with pytest.raises(ValueError, match="188"):
        g.output_size(100)
    assert g.nearest_legal_sizes(570) == (556, 572)
    assert g.nearest_legal_sizes(572) == (572, 572)
    assert g.nearest_legal_sizes(10) == (None, 188)
    with pytest.raises(ValueError, match="multiple of 16"):
        g.check_input_size(100, padding="same")


def test_same_padding_sizes():
    assert g.output_size(256, 4, "same") == 256
    assert g.margin(4, "same") == 0
    assert g.tile_stride(256, 4, "same", halo=32) == 192


def test_stride_is_grid_aligned():
    assert g.tile_stride(572) == 384
    assert g.min_tile_size(4) == 204


def test_conv_flops_paper():
    # first conv of the paper net: 570^2 outputs x 9 x 1 x 64 MACs
    f = g.conv_flops(572)
    assert f > 2 * 570**2 * 9 * 64
    assert 2.9e11 < f < 3.1e11  # ~301 GFLOP per 572 tile (hand count of Fig. 1)
