"""predict_dask: any chunking equals predict_tiled; runs on a 2-process LocalCluster with the
model shipped once."""

import numpy as np
import pytest
import torch

from unetkit import UNet, predict_tiled

da = pytest.importorskip("dask.array")

from unetkit.inference.dask_arrays import _ModelBlob, merge_small_chunks, model_loads, predict_dask  # noqa: E402

TILE = 236


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(7)
    model = UNet(base_channels=2).eval()
    model.meta = {"normalization": {"mode": "per_image"}}
    return model


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(11)
    return (rng.random((2, 130, 150)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def reference(net, stack):
    return np.stack([predict_tiled(net, plane, tile_size=TILE) for plane in stack])


def test_merge_small_chunks():
    assert merge_small_chunks((50, 50, 50), 107) == (150,)
    assert merge_small_chunks((200, 30, 200, 20), 107) == (200, 250)  # a small chunk absorbs the next one
    assert merge_small_chunks((10,), 107) == (10,)  # a single chunk may stay small


# chunks: multiples of the tile stride (48), not multiples, smaller than the overlap, ragged
@pytest.mark.parametrize("chunks", [(1, 48, 96), (2, 61, 77), (1, 40, 150), (1, (100, 30), (17, 133))])
def test_any_chunking_equals_predict_tiled(net, stack, reference, chunks):
    out = predict_dask(net, da.from_array(stack, chunks=chunks), tile_size=TILE)
    assert out.shape == (2, 2, 130, 150) and out.dtype == np.float32
    res = out.compute(scheduler="sync")
    assert np.abs(res - reference).max() < 1e-6


def test_labels_auto_tile_and_multichannel(stack, rng):
    torch.manual_seed(0)
    net = UNet(in_channels=2, num_classes=3, base_channels=2).eval()
    net.meta = {"normalization": {"mode": "range"}}
    img = (rng.random((2, 70, 90)) * 255).astype(np.uint8)
    out = predict_dask(net, da.from_array(img, chunks=(2, 35, 45)), output="labels")
    assert out.shape == (70, 90) and out.dtype == np.uint8
    ref = predict_tiled(net, img).argmax(0)
    np.testing.assert_array_equal(out.compute(scheduler="threads"), ref)
    with pytest.raises(ValueError, match="expected"):
        predict_dask(net, da.zeros((3, 40, 40), chunks=20))


def test_local_cluster_two_processes_model_shipped_once(net, stack, reference):
    distributed = pytest.importorskip("distributed")
    arr = da.from_array(stack, chunks=(1, 65, 75))  # 8 blocks
    out = predict_dask(net, arr, tile_size=TILE)
    graph = dict(out.__dask_graph__())
    blobs = [k for k, v in graph.items() if isinstance(v, _ModelBlob)
             or isinstance(getattr(v, "value", None), _ModelBlob)]
    assert len(blobs) == 1  # the model is one key of the graph, whatever the number of blocks
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = client.compute(out).result()
        loads = client.run(model_loads)  # unpickled models per worker process
    assert np.abs(res - reference).max() < 1e-6
    assert len(loads) == 2 and all(n <= 1 for n in loads.values()) and sum(loads.values()) >= 1
