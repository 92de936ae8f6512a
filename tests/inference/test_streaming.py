"""Streaming from and to disk: equal to in-memory prediction, resumable, axes, instances."""

import json

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

from unetkit import UNet, predict_tiled
from unetkit.inference.plan import plan_tiles
from unetkit.model import geometry
from unetkit.io.lazy import open_image
from unetkit.inference.blockwise_labels import label_blocks
from unetkit.inference.streaming import predict_to_file

zarr = pytest.importorskip("zarr")

TILE = 236  # writes 48 px per tile: several tiles on small images


class CountingUNet(UNet):
    """A UNet that counts the tiles it computes."""

    tiles = 0

    def forward(self, x):
        CountingUNet.tiles += x.shape[0]
        return super().forward(x)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(5)
    model = CountingUNet(base_channels=2).eval()
    model.meta = {"normalization": {"mode": "per_image"}}
    return model


class TwoClassCrop(torch.nn.Module):
    """Stand-in network: (B,1,S,S) -> (B,2,S-2m,S-2m) with channels (1 - x, x), no softmax
    needed for x in [0, 1] when it is applied to logits of +-20 (probabilities ~x)."""

    def __init__(self):
        super().__init__()
        import types

        self.config = types.SimpleNamespace(depth=4, padding="valid", in_channels=1,
                                            num_classes=2, base_channels=1)
        self.m = geometry.margin(4)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.meta = {"normalization": {"mode": "none"}}

    def forward(self, x):
        m = self.m
        x = x[..., m:-m, m:-m]
        return torch.cat([-40 * (x - 0.5), 40 * (x - 0.5)], 1)


def _zarr(path, data, chunks):
    arr = zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=chunks)
    arr[...] = data
    return path


def test_outputs_equal_in_memory_prediction(net, tmp_path, rng):
    img = (rng.random((150, 170)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", img, tile=(64, 64), ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25})
    ref = predict_tiled(net, img, tile_size=TILE)
    p = predict_to_file(net, tmp_path / "in.tif", tmp_path / "p.ome.zarr",
                        output="probabilities", tile_size=TILE)
    group = zarr.open_group(str(p), mode="r")
    assert np.abs(group["0"][...] - ref).max() < 1e-6
    ms = group.attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.25, 0.25]
    assert group.attrs["unetkit"]["complete"] and not (p / "unetkit-progress").exists()
    # labels to a tiled OME-BigTIFF: the in-memory argmax, pixel size carried over
    t = predict_to_file(net, tmp_path / "in.tif", tmp_path / "l.tif", tile_size=TILE)
    with tifffile.TiffFile(t) as tif:
        assert tif.pages.first.is_tiled and tif.is_bigtiff and tif.series[0].axes == "YX"
        assert 'PhysicalSizeX="0.25"' in tif.ome_metadata
        np.testing.assert_array_equal(tif.asarray(), ref.argmax(0))
    assert not (tmp_path / "l.tif.partial.zarr").exists()
    # the streamed output reads back through open_image with its axes and pixel size
    back = open_image(p)
    assert back.axes == "CYX" and back.scale["X"] == 0.25


def test_resume_computes_only_unfinished_tiles(net, tmp_path, rng):
    img = (rng.random((2, 90, 100)) * 255).astype(np.uint8)  # 2 planes x 6 tiles
    src = _zarr(tmp_path / "in.zarr", img, (1, 32, 32))
    total = 2 * len(plan_tiles((90, 100), TILE))

    def stop_after(k):
        def progress(done, total_, pixels):
            if done >= k:
                raise KeyboardInterrupt

        return progress

    out = tmp_path / "o.ome.zarr"
    CountingUNet.tiles = 0
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(net, src, out, axes="ZYX", tile_size=TILE, batch_size=2,
                        progress=stop_after(5))
    assert CountingUNet.tiles == 6  # batches of 2
    log = (out / "unetkit-progress" / "done.log").read_text().split()
    assert len(log) == 2 * 6  # "plane tile" per finished tile
    with pytest.raises(ValueError, match="interrupted run"):
        predict_to_file(net, src, out, axes="ZYX", tile_size=TILE)
    with pytest.raises(ValueError, match="cannot resume: output"):
        predict_to_file(net, src, out, axes="ZYX", tile_size=TILE, output="probabilities",
                        resume=True)
    CountingUNet.tiles = 0
    predict_to_file(net, src, out, axes="ZYX", resume=True, batch_size=3)  # recorded tile
    assert CountingUNet.tiles == total - 6
    res = zarr.open_group(str(out), mode="r")["0"][...]
    for z in range(2):
        np.testing.assert_array_equal(res[z], predict_tiled(net, img[z], tile_size=TILE).argmax(0))
    # a complete output: resume is a no-op, a plain rerun refuses, --overwrite recomputes
    CountingUNet.tiles = 0
    predict_to_file(net, src, out, axes="ZYX", resume=True)
    assert CountingUNet.tiles == 0
    with pytest.raises(ValueError, match="exists"):
        predict_to_file(net, src, out, axes="ZYX")
    predict_to_file(net, src, out, axes="ZYX", overwrite=True, tile_size=TILE)
    assert CountingUNet.tiles == total


def test_tiff_resume_after_interruption(net, tmp_path, rng):
    img = (rng.random((60, 70)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", img)
    out = tmp_path / "o.tif"

    def interrupt(done, total, pixels):
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_to_file(net, tmp_path / "in.tif", out, tile_size=TILE, progress=interrupt)
    assert not out.exists() and (tmp_path / "o.tif.partial.zarr").is_dir()
    with pytest.raises(ValueError, match="--resume"):
        predict_to_file(net, tmp_path / "in.tif", out, tile_size=TILE)
    predict_to_file(net, tmp_path / "in.tif", out, tile_size=TILE, resume=True)
    np.testing.assert_array_equal(tifffile.imread(out),
                                  predict_tiled(net, img, tile_size=TILE).argmax(0))
    assert not (tmp_path / "o.tif.partial.zarr").exists()


def test_zyx_tiff_stack_axes_from_metadata(net, tmp_path, rng):
    img = (rng.random((3, 40, 50)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", img, imagej=True, metadata={"axes": "ZYX"})
    assert open_image(tmp_path / "z.tif").axes == "ZYX"
    out = predict_to_file(net, tmp_path / "z.tif", tmp_path / "z.ome.zarr",
                          output="probabilities", tile_size=TILE)
    res = zarr.open_group(str(out), mode="r")
    assert [a["name"] for a in res.attrs["multiscales"][0]["axes"]] == ["c", "z", "y", "x"]
    assert res["0"].shape == (2, 3, 40, 50)
    assert np.abs(res["0"][:, 2] - predict_tiled(net, img[2], tile_size=TILE)).max() < 1e-6


def test_tcyx_stack_with_given_axes(tmp_path, rng):
    torch.manual_seed(1)
    net = UNet(in_channels=2, num_classes=3, base_channels=2).eval()
    net.meta = {"normalization": {"mode": "range"}}
    img = (rng.random((2, 2, 40, 30)) * 4000).astype(np.uint16)  # T, C, Y, X
    src = _zarr(tmp_path / "tc.zarr", img, (1, 1, 16, 16))
    with pytest.raises(ValueError, match="--axes"):
        predict_to_file(net, src, tmp_path / "x.ome.zarr")
    with pytest.raises(ValueError, match="1 channel"):
        predict_to_file(net, src, tmp_path / "x.ome.zarr", axes="ZTYX")
    out = predict_to_file(net, src, tmp_path / "tc.tif", axes="TCYX", tile_size=TILE)
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "TYX"  # same non-channel axes
        res = tif.asarray()
    for t in range(2):
        ref = predict_tiled(net, img[t], tile_size=TILE)
        np.testing.assert_array_equal(res[t], ref.argmax(0))


def _same_partition(a, b):
    """Labels a and b split the pixels into the same objects (up to renumbering)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[a > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


@pytest.mark.parametrize("block", [(16, 16), (23, 40), (64, 7), (200, 200)])
def test_label_blocks_equals_whole_image_components(block, rng):
    mask = ndi.binary_opening(rng.random((97, 121)) > 0.45)  # ragged objects across blocks
    mask[10:80, 60] = True  # a long object crossing several block rows
    whole, n = ndi.label(mask)
    out = np.zeros(mask.shape, np.uint32)
    assert label_blocks(mask, out, block) == n
    assert _same_partition(whole, out)
    assert sorted(np.unique(out)[1:]) == list(range(1, n + 1))
    # min_size counts the pixels of an object over all blocks it touches
    sizes = np.bincount(whole.ravel())
    out2 = np.zeros(mask.shape, np.uint32)
    label_blocks(mask, out2, block, min_size=5)
    assert _same_partition(np.where(sizes[whole] >= 5, whole, 0), out2)


def test_streamed_instances_merge_objects_across_tiles(tmp_path):
    yy, xx = np.mgrid[:120, :130]
    img = np.zeros((120, 130), np.float32)
    for cy, cx, r in [(16, 16, 9), (40, 70, 20), (100, 30, 12), (64, 120, 8), (31, 47, 5)]:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0  # circles straddling the 48 px tiles
    img[90:95, :] = 1.0  # a bar through every tile of a row
    src = _zarr(tmp_path / "blobs.zarr", img, (32, 32))
    out = predict_to_file(TwoClassCrop(), src, tmp_path / "i.ome.zarr", output="instances",
                          tile_size=TILE)
    res = zarr.open_group(str(out), mode="r")["0"][...]
    whole, n = ndi.label(img > 0.5)
    assert res.dtype == np.uint32 and res.max() == n == 4  # two circles touch, one meets the bar
    assert _same_partition(whole, res)
    with pytest.raises(ValueError, match="components"):
        predict_to_file(TwoClassCrop(), src, tmp_path / "w.ome.zarr", output="instances",
                        method="watershed")


def test_bad_outputs_and_inputs(net, tmp_path):
    with pytest.raises(ValueError, match=r"\.ome\.zarr"):
        predict_to_file(net, np.zeros((30, 30), np.uint8), tmp_path / "o.png")
    with pytest.raises(ValueError, match="no such"):
        predict_to_file(net, tmp_path / "missing.tif", tmp_path / "o.tif")
    with pytest.raises(ValueError, match="unknown output"):
        predict_to_file(net, np.zeros((30, 30), np.uint8), tmp_path / "o.tif", output="x")
    # an in-memory array is a source too (axes YX for 2D)
    out = predict_to_file(net, np.zeros((30, 30), np.uint8), tmp_path / "o.zarr")
    run = zarr.open_group(str(out), mode="r").attrs["unetkit"]
    assert json.loads(json.dumps(run))["output"] == "labels"


def test_open_ome_zarr_v05_and_plain_zarr_dimension_names(tmp_path):
    root = zarr.open_group(str(tmp_path / "v5.ome.zarr"), mode="w", zarr_format=3)
    arr = root.create_array("s0", shape=(3, 2, 20, 30), dtype="uint8", chunks=(1, 1, 20, 30))
    axes = [{"name": "t", "type": "time", "unit": "second"}, {"name": "c", "type": "channel"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "s0", "coordinateTransformations": [{"type": "scale",
                                                      "scale": [2.0, 1.0, 0.5, 0.5]}]}]}]}
    img = open_image(tmp_path / "v5.ome.zarr")
    assert img.axes == "TCYX" and img.shape == (3, 2, 20, 30) and img.channels == 2
    assert img.scale == {"T": 2.0, "Y": 0.5, "X": 0.5} and img.units["X"] == "micrometer"
    assert img.plane((1,)).shape == (2, 20, 30)
    arr = zarr.create_array(str(tmp_path / "named.zarr"), shape=(4, 20, 30), dtype="uint8",
                            chunks=(1, 20, 30), dimension_names=("z", "y", "x"))
    arr[2] = 7
    img = open_image(tmp_path / "named.zarr")
    assert img.axes == "ZYX" and (img.plane((2,))[:, 3:5, :] == 7).all()
