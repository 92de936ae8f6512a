"""Augmentation: identity when off, mirror padding, label preservation, elastic statistics,
reproducibility, one shared grid for image / target / weights."""

import dataclasses

import numpy as np
import pytest

from unetkit.data.augment import (
    AugmentConfig,
    adjust_gray_values,
    augment_tile,
    displacement_field,
    gain_field,
    random_top_left,
    sample_params,
    sampling_grid,
    warp,
)

OFF = AugmentConfig.off()


def source(seed=0, shape=(2, 40, 52)):
    rng = np.random.default_rng(seed)
    image = rng.random(shape)
    target = rng.integers(0, 4, shape[1:]).astype(np.int64) * 3  # values {0, 3, 6, 9}
    weights = rng.random(shape[1:]).astype(np.float32) + 1
    return image, target, weights


def test_all_off_is_an_exact_mirrored_crop():
    image, target, weights = source()
    pad = 100
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")
    for top_left in [(0, 0), (-7, 11), (25, 30), (-60, -45)]:
        out = augment_tile(
            image, target, weights, np.random.default_rng(0), OFF, 36, 20,
            ignore=target == 3, top_left=top_left,
        )
        y, x = top_left[0] + pad, top_left[1] + pad
        np.testing.assert_allclose(out.image, padded[:, y : y + 36, x : x + 36], atol=1e-6)
        tp = np.pad(target, pad, mode="symmetric")[y + 8 : y + 28, x + 8 : x + 28]
        wp = np.pad(weights, pad, mode="symmetric")[y + 8 : y + 28, x + 8 : x + 28]
        np.testing.assert_array_equal(out.target, tp)
        np.testing.assert_array_equal(out.ignore, tp == 3)
        np.testing.assert_allclose(out.weights, wp, atol=1e-6)
        assert out.image.shape == (2, 36, 36) and out.image.dtype == np.float32
    coords = sampling_grid(sample_params(OFF, np.random.default_rng(1)), (-3, 5), (9, 9))
    assert np.abs(warp(image, coords, "bicubic") - padded[:, 97:106, 105:114]).max() < 1e-12


def test_image_smaller_than_tile_is_mirrored_repeatedly():
    image, target, weights = source(shape=(1, 7, 5))
    out = augment_tile(image, target, weights, np.random.default_rng(0), OFF, 60, 24)
    assert out.image.shape == (1, 60, 60) and out.target.shape == (24, 24)
    assert set(np.unique(out.target)) <= set(np.unique(target))
    # any warp of the original equals the same warp of an explicitly mirror-padded copy
    params = sample_params(AugmentConfig(), np.random.default_rng(5))
    coords = sampling_grid(params, (-20, -30), (60, 60))
    big = np.pad(image, ((0, 0), (300, 300), (300, 300)), mode="symmetric")
    for mode in ("bicubic", "bilinear", "nearest"):
        np.testing.assert_allclose(
            warp(image, coords, mode), warp(big, coords + 300, mode), atol=1e-10
        )


def test_labels_keep_their_values_and_the_grid_is_shared():
    # piecewise-constant blocks: target = block index k (nearest), image and weights = T[k]
    # (bicubic, linear) for random table values T. Inside a block every interpolation returns
    # T[k] exactly; near edges bicubic / linear mix values (a mix matching some T[j] by chance
    # is improbable). Wherever image / weights equal a table value, it must be T[target].
    blocks = np.kron(np.arange(20).reshape(4, 5), np.ones((12, 12), int))  # (48, 60)
    table = np.random.default_rng(0).uniform(0, 100, 20)
    image = np.stack([table[blocks], table[blocks]])
    target = blocks.astype(np.int32)
    weights = table[blocks].astype(np.float32)
    cfg = dataclasses.replace(AugmentConfig(), brightness=0.0, contrast=0.0, gamma=0.0)
    for seed in range(5):
        out = augment_tile(image, target, weights, np.random.default_rng(seed), cfg, 48, 20)
        assert out.target.dtype == np.int32
        assert set(np.unique(out.target)) <= set(np.unique(target))
        centre = out.image[0, 14:34, 14:34]  # input pixels of the output crop
        for values in (centre, out.weights):
            nearest = np.abs(values[..., None] - table).argmin(axis=-1)
            inside = np.abs(values - table[nearest]) < 1e-3
            assert inside.mean() > 0.3
            np.testing.assert_array_equal(nearest[inside], out.target[inside])


def test_random_top_left_keeps_output_inside_the_image():
    rng = np.random.default_rng(0)
    corners = np.array([random_top_left((50, 40), 36, 20, rng) for _ in range(2000)])
    out_y, out_x = corners[:, 0] + 8, corners[:, 1] + 8
    assert out_y.min() == 0 and out_y.max() == 30 and out_x.min() == 0 and out_x.max() == 20
    small = np.array([random_top_left((10, 10), 36, 20, rng) for _ in range(500)])
    assert (small[:, 0] + 8).min() == -10 and (small[:, 0] + 8).max() == 0


def test_elastic_statistics_at_the_grid_nodes():
    cfg = AugmentConfig()
    rng = np.random.default_rng(0)
    nodes = []
    for _ in range(2000):
        params = sample_params(cfg, rng)
        field = displacement_field(params.elastic, (31, 31))
        np.testing.assert_allclose(field[:, ::15, ::15], params.elastic, atol=1e-9)
        nodes.append(field[:, ::15, ::15])
    nodes = np.array(nodes)  # (2000, 2, 3, 3)
    assert abs(nodes.mean()) < 0.2
    np.testing.assert_allclose(nodes.std(axis=0), 10.0, rtol=0.08)
    assert params.elastic.shape == (2, 3, 3)
    # between the nodes the field is smooth (bicubic): small steps between neighbours
    assert np.abs(np.diff(field, axis=1)).max() < 5


def test_same_seed_same_sample_different_seed_different():
    image, target, weights = source(seed=3)
    cfg = dataclasses.replace(AugmentConfig(), noise=0.05, shift=1.5)
    a = augment_tile(image, target, weights, np.random.default_rng(42), cfg, 36, 20)
    b = augment_tile(image, target, weights, np.random.default_rng(42), cfg, 36, 20)
    c = augment_tile(image, target, weights, np.random.default_rng(43), cfg, 36, 20)
    for x, y in ((a.image, b.image), (a.target, b.target), (a.weights, b.weights)):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.image, c.image)


def test_params_are_drawn_in_a_fixed_order():
    """Switching one augmentation off leaves the other draws of a seed unchanged."""
    a = sample_params(AugmentConfig(), np.random.default_rng(9))
    b = sample_params(dataclasses.replace(AugmentConfig(), rotation=0.0, flip=False),
                      np.random.default_rng(9))
    np.testing.assert_array_equal(a.elastic, b.elastic)
    assert a.gamma == b.gamma and b.angle == 0.0 and b.flip is False
    with pytest.raises(ValueError, match="Generator"):
        sample_params(AugmentConfig(), np.random.RandomState(0))


def test_rotation_by_90_and_flip_are_exact():
    image = source(seed=4, shape=(1, 30, 30))[0]
    base = sample_params(OFF, np.random.default_rng(0))
    for k90 in range(4):
        for flip in (False, True):
            params = dataclasses.replace(base, k90=k90, flip=flip)
            out = warp(image, sampling_grid(params, (0, 0), (30, 30)), "bicubic")[0]
            # source = R(k90) F (tile offset): the 8 combinations are the 8 dihedral images
            expected = np.rot90(image[0][:, ::-1], k90) if flip else np.rot90(image[0], -k90)
            assert np.abs(out - expected).max() < 1e-12
    angles = sample_params(AugmentConfig(), np.random.default_rng(1)).angle
    assert -180 <= angles <= 180


def test_gray_values_keep_shape_and_dtype():
    image, _, _ = source(seed=5)
    tile = image.astype(np.float32)
    cfg = dataclasses.replace(AugmentConfig(), noise=0.1)
    params = sample_params(cfg, np.random.default_rng(0))
    out = adjust_gray_values(tile, params)
    assert out.shape == tile.shape and out.dtype == np.float32
    assert not np.allclose(out, tile)
    unchanged = adjust_gray_values(tile, sample_params(OFF, np.random.default_rng(0)))
    np.testing.assert_array_equal(unchanged, tile)
    # gamma / contrast / brightness are monotone: pixel order is preserved without noise
    params = dataclasses.replace(params, noise=0.0)
    ranked = adjust_gray_values(tile, params)
    assert np.array_equal(np.argsort(ranked[0].ravel()), np.argsort(tile[0].ravel()))


def test_uneven_brightness_scales_each_part_about_the_dark_level():
    """A noisy background keeps its level; bright squares in two corners are scaled by the
    gain field's values there, so one can end up dimmer than the other."""
    rng = np.random.default_rng(0)
    tile = 0.2 + 0.05 * rng.standard_normal((1, 64, 64))
    tile[0, :12, :12] += 1.0  # top-left object
    tile[0, -12:, -12:] += 1.0  # bottom-right object
    cfg = dataclasses.replace(OFF, illumination=1.0)
    params = sample_params(cfg, np.random.default_rng(3))
    assert params.illumination.shape == (3, 3)
    gains = np.exp(params.illumination)
    assert gains.min() >= 0.5 - 1e-12 and gains.max() <= 2.0 + 1e-12
    out = adjust_gray_values(tile, params)
    field = gain_field(params.illumination, (64, 64))
    np.testing.assert_allclose(field[[0, -1], [0, -1]], gains[[0, -1], [0, -1]], rtol=1e-9)
    background = np.ones((64, 64), bool)
    background[:16, :16] = background[-16:, -16:] = False
    assert abs(np.median(out[0][background]) - 0.2) < 0.02  # the dark level stays
    top, bottom = out[0, :4, :4].mean() - 0.2, out[0, -4:, -4:].mean() - 0.2
    ratio = (field[:4, :4].mean() / field[-4:, -4:].mean())
    assert abs(top / bottom - ratio) < 0.1 * ratio
    # off: no field drawn into the params, the tile unchanged; the other draws of a seed stay
    off = sample_params(OFF, np.random.default_rng(3))
    assert off.illumination is None
    np.testing.assert_array_equal(adjust_gray_values(tile, off), tile)
    assert off.noise_seed == params.noise_seed and off.scale == params.scale
    with pytest.raises(ValueError, match="illumination"):
        AugmentConfig(illumination=-0.5)


def test_colour_shifts_each_channel_of_a_multichannel_tile_on_its_own():
    """Three equal channels come out different, each still an increasing map of its input; a
    tile of one channel is left as the shared values make it; the other draws stay."""
    ramp = np.linspace(0.0, 1.0, 32 * 32).reshape(32, 32)
    tile = np.stack([ramp] * 3)
    cfg = dataclasses.replace(OFF, colour=0.5)
    params = sample_params(cfg, np.random.default_rng(4))
    plain = sample_params(OFF, np.random.default_rng(4))
    assert params.colour == 0.5 and plain.colour == 0.0
    assert params.noise_seed == plain.noise_seed and params.angle == plain.angle
    out = adjust_gray_values(tile, params)
    np.testing.assert_array_equal(out, adjust_gray_values(tile, params))  # the params fix it
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert np.abs(out[a] - out[b]).max() > 0.02
    flat = out.reshape(3, -1)
    assert np.all(np.diff(flat, axis=1) > 0)  # gamma, contrast > 0 and shift keep the order
    # every channel's spread within the contrast and gamma bounds of c = 0.5
    spread = np.ptp(flat, axis=1)
    assert np.all(spread > 0.5 - 1e-9) and np.all(spread < 1.5 + 1e-9)
    np.testing.assert_array_equal(adjust_gray_values(tile, plain), tile)
    one = tile[:1]
    np.testing.assert_array_equal(adjust_gray_values(one, params), one)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="colour"):
            AugmentConfig(colour=bad)


def test_bad_inputs_name_the_value():
    image, target, weights = source()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="minus an even margin"):
        augment_tile(image, target, weights, rng, OFF, 36, 21)
    with pytest.raises(ValueError, match=r"\(5, 5\)"):
        augment_tile(image, target[:5, :5], weights, rng, OFF, 36, 20)
    with pytest.raises(ValueError, match="C, H, W"):
        augment_tile(image[0], target, weights, rng, OFF, 36, 20)
    with pytest.raises(ValueError, match="'cubic'"):
        warp(image, np.zeros((2, 3, 3)), "cubic")


def test_zoom_is_drawn_last_within_its_range_and_scales_the_objects():
    a = sample_params(AugmentConfig(), np.random.default_rng(9))
    b = sample_params(dataclasses.replace(AugmentConfig(), scale=0.5), np.random.default_rng(9))
    assert a.scale == 1.0  # off by default (the paper has no zoom)
    np.testing.assert_array_equal(a.elastic, b.elastic)  # drawn after every other value
    assert (a.gamma, a.angle, a.noise_seed) == (b.gamma, b.angle, b.noise_seed)
    zooms = [sample_params(dataclasses.replace(OFF, scale=0.5), np.random.default_rng(s)).scale
             for s in range(300)]
    assert 1 / 1.5 <= min(zooms) < 0.75 and 1.35 < max(zooms) <= 1.5
    # a zoom of 2 shows a disk of radius 12 with radius 6; image and target stay aligned
    yy, xx = np.mgrid[:120, :120]
    disk = ((yy - 60) ** 2 + (xx - 60) ** 2 <= 144).astype(np.int64)
    params = dataclasses.replace(sample_params(OFF, np.random.default_rng(0)), scale=2.0)
    coords = sampling_grid(params, (60 - 20, 60 - 20), (41, 41))
    target = warp(disk[None], coords, "nearest")[0]
    image = warp(disk[None].astype(float), coords, "bicubic")[0]
    assert abs(target.sum() - np.pi * 36) < 12
    assert target[20, 20] == 1 and target[20, 27] == 0
    assert np.abs((image > 0.5) ^ (target > 0)).sum() <= 8
