"""Training data: pairing, checks before training (errors name the file), cached targets,
normalisation as predict_tiled does it, seeded tiles, the prefetch thread."""

from dataclasses import replace

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit.config import preset
from unetkit.data.dataset import (
    Prefetcher,
    TileSampler,
    load_pairs,
    prepare,
    split_validation,
    training_normalization,
)
from unetkit.data.normalize import Normalization
from unetkit.data.synthetic import make_dataset


@pytest.fixture
def folders(tmp_path):
    """images/ and labels/ with three 64x64 PNG pairs (binary 0/255 masks)."""
    data = make_dataset(3, (64, 64), seed=3, n_cells=4)
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    for i, (img, inst) in enumerate(data):
        Image.fromarray(img).save(tmp_path / "images" / f"s{i}.png")
        Image.fromarray(np.where(inst > 0, 255, 0).astype(np.uint8)).save(
            tmp_path / "labels" / f"s{i}.png")
    return tmp_path / "images", tmp_path / "labels"


def test_folders_pair_by_name(folders):
    pairs = load_pairs(*folders, channels=1)
    assert [p.name for p in pairs] == ["s0", "s1", "s2"]
    assert pairs[0].image.shape == (1, 64, 64) and pairs[0].labels.shape == (64, 64)
    assert pairs[1].label_source.endswith("s1.png")


def test_stacks_pair_slice_by_slice(tmp_path):
    data = make_dataset(3, (48, 48), seed=1, n_cells=3)
    tifffile.imwrite(tmp_path / "vol.tif", np.stack([d[0] for d in data]), photometric="minisblack")
    tifffile.imwrite(tmp_path / "lab.tif", np.stack([d[1] for d in data]), photometric="minisblack")
    pairs = load_pairs(tmp_path / "vol.tif", tmp_path / "lab.tif")
    assert len(pairs) == 3
    assert np.array_equal(pairs[2].labels, data[2][1]) and "slice 2" in pairs[2].label_source
    tifffile.imwrite(tmp_path / "lab2.tif", np.stack([d[1] for d in data[:2]]),
                     photometric="minisblack")
    with pytest.raises(ValueError, match=r"lab2.tif: 2 label slice\(s\) for 3 image"):
        load_pairs(tmp_path / "vol.tif", tmp_path / "lab2.tif")


def test_unpaired_names_are_listed(folders):
    images, labels = folders
    (labels / "s1.png").rename(labels / "other.png")
    with pytest.raises(ValueError, match=r"no label .* for image\(s\) s1; no image .* other"):
        load_pairs(images, labels)


def test_shape_mismatch_names_the_file(folders):
    images, labels = folders
    Image.fromarray(np.zeros((60, 64), np.uint8)).save(labels / "s2.png")
    with pytest.raises(ValueError, match=r"s2.png: label shape 60x64 does not match image"):
        load_pairs(images, labels)


def test_corrupt_and_empty_files(folders, tmp_path):
    images, labels = folders
    (labels / "s0.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"s0.png: cannot read"):
        load_pairs(images, labels)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: folder holds no images"):
        load_pairs(tmp_path / "empty", labels)


def test_channels_and_colour_labels(folders, tmp_path):
    images, labels = folders
    with pytest.raises(ValueError, match=r"s0.png: image has 1 channel\(s\), the model expects 3"):
        load_pairs(images, labels, channels=3)
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(labels / "s1.png")
    with pytest.raises(ValueError, match=r"s1.png: labels must be a single-channel image"):
        load_pairs(images, labels)


def test_unknown_label_values_name_file_and_value(folders):
    images, labels = folders
    lab = np.asarray(Image.open(labels / "s1.png")).copy()
    lab[:3, :3] = 7
    Image.fromarray(lab).save(labels / "s1.png")
    pairs = load_pairs(images, labels)
    cfg = preset("default")
    norm = Normalization()
    binary = replace(cfg, data=replace(cfg.data, label_kind="binary"))
    with pytest.raises(ValueError, match=r"s1.png: binary labels must be 0/1 or 0/255, found value 7"):
        prepare(pairs, binary, norm)
    with pytest.raises(ValueError, match=r"s1.png: values \[7\] in a dataset of 0/255 masks .*"
                       r"--set data.label_kind="):
        prepare(pairs, cfg, norm)  # auto: one stray value among 0/255 masks is refused


def test_prepare_targets_and_normalisation(folders):
    pairs = load_pairs(*folders)
    cfg = preset("default")
    items = prepare(pairs, cfg, Normalization("per_image"))
    it = items[0]
    assert it.kind == "binary" and it.ignore is None
    assert it.image.dtype == np.float32 and abs(it.image.mean()) < 1e-4
    # exactly predict_tiled's arithmetic on the raw pixels
    scale, offset = Normalization("per_image").affine(pairs[0].image, 1)
    assert np.array_equal(it.image, pairs[0].image.astype(np.float32) * scale[:, None, None]
                          + offset[:, None, None])
    assert set(np.unique(it.target)) <= {0, 1} and it.weights.max() > 2  # border term


def test_dataset_normalisation_pools_all_pixels(folders):
    pairs = load_pairs(*folders)
    norm = training_normalization("dataset", pairs)
    pixels = np.concatenate([p.image.ravel().astype(np.float64) for p in pairs])
    assert norm.mode == "dataset"
    assert np.allclose(norm.mean, [pixels.mean()]) and np.allclose(norm.std, [pixels.std()])
    assert training_normalization("range", pairs) == Normalization("range")


def test_split_validation(folders):
    pairs = load_pairs(*folders)
    train, val = split_validation(pairs, 0.34, seed=5)
    assert len(train) == 2 and len(val) == 1
    assert split_validation(pairs, 0.34, seed=5)[1][0].name == val[0].name
    with pytest.raises(ValueError, match="fraction"):
        split_validation(pairs, 1.0, 0)
    with pytest.raises(ValueError, match="at least 2 images"):
        split_validation(pairs[:1], 0.5, 0)


def test_sampler_is_a_function_of_seed_and_step(folders):
    cfg = preset("paper")
    items = prepare(load_pairs(*folders), cfg, Normalization())
    a = TileSampler(items, cfg.augment, 84, 44, 2, seed=1)
    b = TileSampler(items, cfg.augment, 84, 44, 2, seed=1)
    x, y = a.batch(5), b.batch(5)
    assert x.image.shape == (2, 1, 84, 84) and x.target.shape == (2, 44, 44)
    assert x.weights.dtype == np.float32 and x.ignore is None
    for field in ("image", "target", "weights"):
        assert np.array_equal(getattr(x, field), getattr(y, field))
    assert not np.array_equal(a.batch(6).image, x.image)
    assert not np.array_equal(TileSampler(items, cfg.augment, 84, 44, 2, 2).batch(5).image, x.image)


def test_prefetcher_order_timing_and_errors():
    with Prefetcher(lambda s: s * s, start=3, depth=2) as data:
        assert [data.get(s) for s in (3, 4, 5)] == [9, 16, 25]
        assert data.prep_seconds >= 0 and data.wait_seconds >= 0

    def bad(step):
        if step == 2:
            raise ValueError("broken sample 2")
        return step

    with Prefetcher(bad, start=1) as data:
        assert data.get(1) == 1
        with pytest.raises(ValueError, match="broken sample 2"):
            data.get(2)
