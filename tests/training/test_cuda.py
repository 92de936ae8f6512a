"""The step path (training.cuda): a channels_last fp32 step on the CPU; mixed precision, pinned
batches and cuDNN autotuning on CUDA (those tests skip without a GPU)."""

import numpy as np
import pytest
import torch

from unetkit.config import apply_overrides, preset
from unetkit.data.dataset import Batch
from unetkit.data.synthetic import write_dataset
from unetkit.inference.engine import _to_device
from unetkit.model.unet import UNet
from unetkit.training import CHECKPOINT, load_checkpoint, train
from unetkit.training.cuda import StepPath, amp_dtype, cuda_settings
from unetkit.training.process import reproducible

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _batch(ignore: bool = False, channels: int = 1) -> Batch:
    rng = np.random.default_rng(0)
    return Batch(rng.random((2, channels, 44, 44), dtype=np.float32),
                 rng.integers(0, 2, (2, 4, 4)).astype(np.int64),
                 np.ones((2, 4, 4), np.float32), np.zeros((2, 4, 4), bool) if ignore else None)


def test_cpu_path_is_the_fp32_channels_last_step():
    path = StepPath(torch.device("cpu"))
    assert path.dtype is None and path.scaler is None and amp_dtype(torch.device("cpu")) is None
    model = UNet(in_channels=2, base_channels=2, depth=2)
    assert path.prepare(model) is model
    w = next(p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    staged = path.stage(_batch(ignore=True, channels=2))
    assert not staged[0].is_pinned() and staged[3].dtype == torch.bool
    x, target, weights, ignore = path.to_device(staged)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert path.to_device(path.stage(_batch()))[3] is None
    assert (target.dtype, weights.dtype, ignore.dtype) == (torch.int64, torch.float32, torch.bool)
    with path.autocast():
        logits = model(x)
    assert logits.dtype == torch.float32
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    path.step(logits.float().mean(), opt)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert path.state_dict() == {}
    path.load_state_dict({"scaler": {}})  # no scaler: nothing to load
    with cuda_settings(torch.device("cpu")):
        pass


def test_cpu_training_keeps_deterministic_algorithms():
    was = torch.are_deterministic_algorithms_enabled()
    with reproducible(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == was


@cuda
def test_cuda_path_mixed_precision_channels_last_pinned():
    dev = torch.device("cuda")
    path = StepPath(dev)
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    want = torch.bfloat16 if native else torch.float16
    assert path.dtype == want and (path.scaler is not None) == (want == torch.float16)
    model = path.prepare(UNet(base_channels=4, depth=2).to(dev))
    w = next(p for p in model.parameters() if p.ndim == 4)
    assert w.is_contiguous(memory_format=torch.channels_last)
    staged = path.stage(_batch(ignore=True))
    assert all(t.is_pinned() for t in staged)
    x, target, weights, ignore = path.to_device(staged)
    assert x.device.type == "cuda" and x.is_contiguous(memory_format=torch.channels_last)
    assert all(t.device.type == "cuda" for t in (target, weights, ignore))
    with path.autocast():
        logits = model(x)
    assert logits.dtype == want
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path.step(logits.float().mean(), opt)
    assert torch.isfinite(next(model.parameters())).all()
    if path.scaler is not None:
        state = path.state_dict()
        assert "scaler" in state
        path.load_state_dict(state)


@cuda
def test_cuda_settings_autotune_and_restore():
    old = torch.backends.cudnn.benchmark
    with cuda_settings(torch.device("cuda")):
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.benchmark == old
    with reproducible(torch.device("cuda")):
        assert not torch.are_deterministic_algorithms_enabled()


@cuda
def test_prediction_batches_move_pinned_to_the_gpu():
    x = _to_device(torch.zeros(2, 1, 8, 8), torch.device("cuda"))
    assert x.device.type == "cuda"
    assert _to_device(torch.zeros(1), torch.device("cpu")).device.type == "cpu"


@cuda
def test_training_on_cuda_finishes(tmp_path):
    write_dataset(tmp_path / "cells", 4, (96, 96), seed=2, n_cells=7)
    cfg = apply_overrides(preset("default"), [
        "model.base_channels=4", "model.depth=2", "train.tile_size=84", "train.minutes=null",
        "train.iterations=6", "train.val_interval=3"])
    run = train(cfg, tmp_path / "cells" / "images", tmp_path / "cells" / "labels",
                tmp_path / "run", device="cuda")
    ckpt = load_checkpoint(run / CHECKPOINT)
    assert ckpt["step"] == 6 and ckpt["parallel"]["world_size"] == 1
    fp16 = not torch.cuda.is_bf16_supported(including_emulation=False)
    assert ("scaler" in ckpt["device_state"]) == fp16
    train(apply_overrides(cfg, ["train.iterations=8"]), tmp_path / "cells" / "images",
          tmp_path / "cells" / "labels", run, device="cuda", resume=True)
    assert load_checkpoint(run / CHECKPOINT)["step"] == 8
