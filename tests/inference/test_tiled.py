"""Overlap-tile prediction: exact, independent of tiling, every pixel written once."""


import numpy as np
import pytest
import torch

from unetkit import UNet, predict_tiled
from unetkit.model import geometry
from unetkit.inference.engine import mirror_indices, read_window
from unetkit.inference.plan import choose_tile_size, estimate_memory


def whole_image_reference(model, image):
    """The network once on the whole mirror-padded image (independent of the tiler)."""
    m = geometry.margin(model.config.depth)
    h, w = image.shape[-2:]
    s = geometry.nearest_legal_sizes(max(h, w) + 2 * m)[1]
    while geometry.output_size(s) < max(h, w):
        s += 16
    img = image if image.ndim == 3 else image[None]
    pad = np.pad(img, ((0, 0), (m, s - m - h), (m, s - m - w)), mode="symmetric")
    with torch.no_grad():
        y = torch.softmax(model.eval()(torch.from_numpy(pad)[None].float()), 1)
    return y[0, :, :h, :w].numpy()


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(3)
    net = UNet(base_channels=4).eval()
    net.meta = {"normalization": {"mode": "none"}}
    return net


def test_mirror_indices_symmetric():
    assert mirror_indices(-3, 9, 4).tolist() == [2, 1, 0, 0, 1, 2, 3, 3, 2]
    assert mirror_indices(-5, 12, 1).tolist() == [0] * 12
    # agrees with numpy's 'symmetric' pad for distances beyond the image (repeated mirroring)
    a = np.arange(5)
    assert (a[mirror_indices(-13, 31, 5)] == np.pad(a, (13, 13), mode="symmetric")).all()


def test_read_window_reads_only_a_bounding_box():
    class Spy:
        def __init__(self, a):
            self.a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

        def __getitem__(self, key):
            self.reads.append(key)
            return self.a[key]

    a = np.arange(3 * 50 * 60).reshape(3, 50, 60)
    spy = Spy(a)
    win = read_window(spy, 40, -5, 20, 20)
    ref = np.pad(a, ((0, 0), (0, 20), (20, 0)), mode="symmetric")[:, 40:60, 15:35]
    assert (win == ref).all()
    (_, rs, cs), = spy.reads
    assert rs.stop - rs.start <= 20 and cs.stop - cs.start <= 20


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (97, 131), (211, 17), (389, 257)])
def test_crop_model_reproduces_image_bit_exactly(crop_model, shape, rng):
    img = rng.random(shape, dtype=np.float32)
    for tile in (204, 300, 572):
        out = predict_tiled(crop_model, img, tile_size=tile, batch_size=3, softmax=False,
                            normalization={"mode": "none"})
        assert out.dtype == np.float32 and out.shape == (1, *shape)
        assert np.array_equal(out[0], img)


def test_every_pixel_written_exactly_once(crop_model, rng):
    class Counter:
        def __init__(self, shape):
            self.shape = shape
            self.count = np.zeros(shape, np.int32)

        def __setitem__(self, key, value):
            self.count[key] += 1

    img = rng.random((301, 263), dtype=np.float32)
    for tile in (204, 236, 572):
        counter = Counter((1, 301, 263))
        predict_tiled(crop_model, img, tile_size=tile, out=counter, softmax=False)
        assert (counter.count == 1).all()


@pytest.mark.parametrize("shape", [(1, 1), (13, 7), (97, 131), (263, 149)])
def test_output_independent_of_tile_and_batch(small_net, shape, rng):
    img = rng.random(shape, dtype=np.float32)
    ref = whole_image_reference(small_net, img)
    covering = geometry.nearest_legal_sizes(max(shape) + 2 * 92 + 16)[1]  # one tile for all
    for tile, batch in [(204, 1), (220, 4), (268, 2), (380, 1), (covering, 1)]:
        out = predict_tiled(small_net, img, tile_size=tile, batch_size=batch)
        assert np.abs(out - ref).max() < 1e-5, (tile, batch)
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)


def test_tta_equals_whole_image_tta(small_net, rng):
    img = rng.random((150, 121), dtype=np.float32)
    m = 92
    size = 380  # one tile covering the image: output 196 >= 150
    pad = torch.from_numpy(np.pad(img, ((m, size - m - 150), (m, size - m - 121)), mode="symmetric"))
    acc = 0
    with torch.no_grad():
        for flip in (False, True):
            for k in range(4):
                x = torch.flip(pad, (-1,)) if flip else pad
                y = torch.softmax(small_net(torch.rot90(x, k)[None, None]), 1)[0]
                y = torch.rot90(y, -k, (-2, -1))
                acc = acc + (torch.flip(y, (-1,)) if flip else y)
    ref = (acc / 8)[:, :150, :121].numpy()
    for tile, batch in [(204, 3), (252, 1), (508, 2)]:
        out = predict_tiled(small_net, img, tile_size=tile, batch_size=batch, tta=True)
        assert np.abs(out - ref).max() < 1e-5, tile
    plain = predict_tiled(small_net, img, tile_size=508)
    assert np.abs(plain - ref).max() > 1e-4  # it does average something


def test_multichannel_and_normalisation(rng):
    torch.manual_seed(0)
    net = UNet(in_channels=3, num_classes=3, base_channels=4).eval()
    img = (rng.random((3, 70, 90)) * 1000).astype(np.uint16)
    net.meta = {"normalization": {"mode": "per_image"}}
    a = predict_tiled(net, img, tile_size=204)
    # per-image statistics come from the whole image, not the tile: equal to manual normalising
    x = img.astype(np.float64)
    manual = ((x - x.mean((1, 2), keepdims=True)) / x.std((1, 2), keepdims=True)).astype(np.float32)
    b = predict_tiled(net, manual, tile_size=380, normalization={"mode": "none"})
    assert np.abs(a - b).max() < 1e-4
    net.meta = {"normalization": {"mode": "range"}}
    c = predict_tiled(net, img, tile_size=204)
    d = predict_tiled(net, img.astype(np.float32) / 65535, tile_size=204,
                      normalization={"mode": "none"})
    assert np.abs(c - d).max() < 1e-5


def test_fills_caller_out_and_memmap_source(small_net, tmp_path, rng):
    img = rng.random((120, 80), dtype=np.float32)
    src = np.memmap(tmp_path / "in.dat", dtype=np.float32, mode="w+", shape=img.shape)
    src[:] = img
    out = np.memmap(tmp_path / "out.dat", dtype=np.float32, mode="w+", shape=(2, 120, 80))
    res = predict_tiled(small_net, src, tile_size=220, out=out)
    assert res is out
    assert np.abs(np.asarray(out) - predict_tiled(small_net, img, tile_size=380)).max() < 1e-5


def test_same_padded_model_tiles_with_halo(rng):
    torch.manual_seed(0)
    net = UNet(base_channels=4, padding="same").eval()
    img = rng.random((150, 170), dtype=np.float32)
    ref = predict_tiled(net, img, tile_size=384, halo=96)  # one tile covering the image
    # the default halo (the receptive-field radius 92, rounded up to 96) makes stitching exact
    assert np.abs(predict_tiled(net, img, tile_size=224) - ref).max() < 1e-5
    # a narrower halo lets zero padding at tile edges reach the kept pixels
    assert np.abs(predict_tiled(net, img, tile_size=96, halo=16) - ref).max() > 1e-2
    with pytest.raises(ValueError, match="halo"):
        predict_tiled(UNet(base_channels=2), img, tile_size=204, halo=16)


def test_auto_tile_minimises_flops_under_budget():
    assert choose_tile_size((388, 388)) in (572, 588)  # one tile covering the image
    size = choose_tile_size((2048, 2048), memory_budget=2 * 1024**3)
    assert estimate_memory(size, 4, 64) <= 2 * 1024**3
    small = choose_tile_size((2048, 2048), memory_budget=300 * 1024**2)
    assert small < size and estimate_memory(small, 4, 64) <= 300 * 1024**2
    with pytest.raises(ValueError, match="too small"):
        choose_tile_size((2048, 2048), memory_budget=1024)


def test_auto_tile_is_used_and_exact(small_net, rng):
    img = rng.random((300, 200), dtype=np.float32)
    a = predict_tiled(small_net, img)
    assert np.abs(a - whole_image_reference(small_net, img)).max() < 1e-5


@pytest.mark.parametrize(
    "kwargs, image, match",
    [({"tile_size": 570}, np.zeros((50, 50), np.float32), "556 or 572"),
     ({"tile_size": 188}, np.zeros((50, 50), np.float32), "too small"),
     ({}, np.zeros((2, 50, 50), np.float32), "2 channel"),
     ({}, np.zeros((1, 1, 50, 50), np.float32), "shape"),
     ({"batch_size": 0}, np.zeros((50, 50), np.float32), "batch_size"),
     ({}, np.full((50, 50), np.nan, np.float32), "NaN"),
     ({"out": np.zeros((2, 5, 5), np.float32)}, np.zeros((50, 50), np.float32), "out must")],
)
def test_bad_input_raises_clear_errors(small_net, kwargs, image, match):
    with pytest.raises(ValueError, match=match):
        predict_tiled(small_net, image, **kwargs)


def test_model_without_config_rejected():
    with pytest.raises(TypeError, match="config"):
        predict_tiled(torch.nn.Conv2d(1, 1, 1), np.zeros((4, 4)))


def test_restores_training_mode(small_net):
    small_net.train()
    predict_tiled(small_net, np.zeros((10, 10), np.float32), tile_size=204)
    assert small_net.training
    small_net.eval()


def test_progress_callback(small_net):
    calls = []
    predict_tiled(small_net, np.zeros((100, 100), np.float32), tile_size=204, batch_size=4,
                  progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (49, 49) and calls[0] == (4, 49)


def test_tta_default_is_the_model_files_choice(small_net, rng):
    img = rng.random((150, 121), dtype=np.float32)
    on = predict_tiled(small_net, img, tile_size=508, tta=True)
    off = predict_tiled(small_net, img, tile_size=508, tta=False)
    old = dict(getattr(small_net, "meta", {}) or {})
    try:
        small_net.meta = {**old, "inference": {"tta": True}}
        assert np.array_equal(predict_tiled(small_net, img, tile_size=508), on)
        assert np.array_equal(predict_tiled(small_net, img, tile_size=508, tta=False), off)
        small_net.meta = {**old, "inference": {"tta": False}}
        assert np.array_equal(predict_tiled(small_net, img, tile_size=508), off)
    finally:
        small_net.meta = old
    assert np.abs(on - off).max() > 1e-4


def test_model_runs_channels_last_with_unchanged_values(rng):
    """The tiler puts the model in oneDNN's fast layout, in place, without changing a value."""
    torch.manual_seed(5)
    net = UNet(base_channels=4).eval()
    net.meta = {"normalization": {"mode": "none"}}
    img = rng.random((100, 100), dtype=np.float32)
    weights = [p for p in net.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert weights[0].is_contiguous()
    ref = whole_image_reference(net, img)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    out = predict_tiled(net, img, tile_size=204)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert np.abs(out - ref).max() < 1e-5
    assert np.array_equal(predict_tiled(net, img, tile_size=204), out)  # the second call alike
