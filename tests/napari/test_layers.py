"""The napari plugin's computations, headless (no Qt): model opening, segmentation of in-memory
and lazy (dask, zarr) layers, training from layer arrays."""

import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from unetkit import UNet, predict_tiled, save_model
from unetkit.data.synthetic import make_cells
from unetkit.napari.layers import image_array, open_model, segment, train_layers


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    net = UNet(base_channels=4).eval()
    path = tmp_path_factory.mktemp("m") / "model.safetensors"
    save_model(path, net, {"normalization": {"mode": "per_image"},
                           "class_names": ["background", "cell"]})
    return path


def test_open_model_takes_a_file_or_a_run_folder(model_file, tmp_path):
    assert open_model(model_file).config.base_channels == 4
    assert open_model(model_file.parent).config.base_channels == 4
    with pytest.raises(ValueError, match=r"run folder holds model\.safetensors"):
        open_model(tmp_path)


def test_segment_gives_probability_labels_and_instances(model_file):
    model = open_model(model_file)
    image, _ = make_cells((200, 230), 3)
    seen = []
    layers = segment(model, image, name="cells", tile_size=252, min_size=5,
                     progress=lambda d, t: seen.append((d, t)))
    (prob, pk, pkind), (labels, lk, lkind), (inst, ik, ikind) = layers
    assert (pkind, lkind, ikind) == ("image", "labels", "labels")
    assert [pk["name"], lk["name"], ik["name"]] == ["cells probability", "cells labels",
                                                   "cells instances"]
    ref = predict_tiled(model, image, tile_size=252)
    np.testing.assert_array_equal(prob, 1 - ref[0])
    np.testing.assert_array_equal(labels, ref.argmax(0))
    assert inst.shape == image.shape and seen[-1][0] == seen[-1][1]


def test_lazy_layers_go_tile_by_tile_into_zarr_and_match_numpy(model_file, tmp_path):
    model = open_model(model_file)
    image, _ = make_cells((300, 260), 4)
    eager = segment(model, image, tile_size=252, min_size=3)
    for lazy_input in (da.from_array(image, chunks=100),
                       zarr.create_array(store=str(tmp_path / "in.zarr"), data=image,
                                         chunks=(128, 128))):
        lazy = segment(model, lazy_input, tile_size=252, min_size=3, scratch=tmp_path / "s")
        for (a, _, _), (b, _, _) in zip(eager, lazy):
            assert isinstance(b, da.Array)
            np.testing.assert_allclose(np.asarray(b), a, atol=1e-6)
        assert lazy[0][1]["metadata"]["unetkit"]["scratch"] == str(tmp_path / "s")


def test_image_array_shapes():
    assert image_array([np.zeros((4, 5)), np.zeros((2, 2))], 1).shape == (4, 5)
    assert image_array(np.zeros((6, 7, 3)), 3).shape == (3, 6, 7)
    with pytest.raises(ValueError, match="choose one plane"):
        image_array(np.zeros((3, 9, 9)), 1)


def test_train_layers_writes_a_run_folder_from_arrays(tmp_path):
    image, labels = make_cells((200, 200), 5)
    steps = []
    run = train_layers(image, labels, tmp_path / "run", minutes=None, iterations=2,
                       progress=lambda s, t, info: steps.append(info["loss"]))
    assert (run / "model.safetensors").is_file() and (run / "data" / "images").is_dir()
    assert len(steps) == 2 and all(np.isfinite(steps))
    assert open_model(run).meta["training"]["step"] == 2
    with pytest.raises(ValueError, match="differ in size"):
        train_layers(image, labels[:50], tmp_path / "bad", iterations=1)
