"""Image reading and writing: formats, bit depths, channels, stacks, errors naming the file."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit.io.images import ImageReadError, image_files, iter_images, read_image, read_stack, write_tiff


@pytest.fixture
def gray(rng):
    return rng.integers(0, 255, (20, 30), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".gif", ".tif", ".jpg"])
def test_gray_formats(tmp_path, gray, suffix):
    p = tmp_path / f"a{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(p, gray)
    else:
        Image.fromarray(gray).save(p)
    arr = read_stack(p)
    assert arr.shape == (1, 1, 20, 30) and arr.dtype == np.uint8
    if suffix != ".jpg":
        assert np.array_equal(arr[0, 0], gray)


def test_16bit_and_float(tmp_path, rng):
    a16 = rng.integers(0, 65535, (20, 30), dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), a16)
    f = rng.random((20, 30), dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tif", f)
    assert np.array_equal(read_image(tmp_path / "f.tif"), f)


def test_rgb_and_rgba(tmp_path, rng):
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert np.array_equal(read_image(tmp_path / "c.png"), np.moveaxis(rgb, -1, 0))
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 7, np.uint8)], -1)
    Image.fromarray(rgba).save(tmp_path / "d.png")
    assert read_image(tmp_path / "d.png").shape == (3, 20, 30)
    tifffile.imwrite(tmp_path / "c.tif", rgb)  # tifffile marks (H, W, 3) as RGB samples
    assert np.array_equal(read_image(tmp_path / "c.tif"), np.moveaxis(rgb, -1, 0))


def test_compressed_tiff_and_stacks(tmp_path, rng):
    stack = rng.integers(0, 4000, (5, 20, 30), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", stack, compression="lzw", photometric="minisblack")
    assert np.array_equal(read_stack(tmp_path / "s.tif")[:, 0], stack)
    hyper = rng.integers(0, 255, (4, 2, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "h.tif", hyper, imagej=True, metadata={"axes": "ZCYX"})
    assert np.array_equal(read_stack(tmp_path / "h.tif"), hyper)
    names = [n for n, _ in iter_images(tmp_path / "s.tif")]
    assert names == ["s_0", "s_1", "s_2", "s_3", "s_4"]
    with pytest.raises(ImageReadError, match="5 slices"):
        read_image(tmp_path / "s.tif")


def test_folder_listing_and_errors(tmp_path, gray):
    Image.fromarray(gray).save(tmp_path / "b.png")
    Image.fromarray(gray).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in image_files(tmp_path)] == ["a.png", "b.png"]
    with pytest.raises(ImageReadError, match="no such"):
        image_files(tmp_path / "missing.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageReadError, match="holds no images"):
        image_files(empty)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        read_stack(tmp_path / "bad.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"trunc\.png"):
        read_stack(tmp_path / "trunc.png")
    (tmp_path / "x.xyz").write_bytes(b"")
    with pytest.raises(ImageReadError, match="unsupported"):
        image_files(tmp_path / "x.xyz")


def test_write_tiff_atomic(tmp_path, gray, monkeypatch):
    target = tmp_path / "out" / "o.tif"
    write_tiff(target, gray, axes="YX")
    assert np.array_equal(tifffile.imread(target), gray)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(RuntimeError):
        write_tiff(target, gray * 0)
    assert np.array_equal(tifffile.imread(target), gray)  # the old file is intact
    assert [p.name for p in target.parent.iterdir()] == ["o.tif"]  # no temporary left
