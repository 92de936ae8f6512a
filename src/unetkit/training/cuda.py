"""The fast path of a training step: channels_last everywhere, mixed precision on CUDA.

On the CPU and on CUDA: a ``channels_last`` model and input, the fast convolution layout of both
oneDNN and cuDNN (on a 2-core CPU a bare step of the default network on a 256 px tile 1.21-1.24x
faster, unetkit's whole loop 1.11x; ``benchmarks/README.md``).

On CUDA (and only there):

* automatic mixed precision: bf16 where the GPU supports it (Ampere and later; no scaler
  needed, fp32's exponent range), else fp16 with a ``GradScaler`` (its state is checkpointed).
  Never on the CPU: bf16 autocast is ~30x slower on CPUs without AMX/AVX-512-BF16.  The loss is
  computed in fp32 from the logits.
* ``cudnn.benchmark`` (tile sizes are fixed during training, so the autotuning pays once) and
  TF32 matmuls.
* batches are pinned in the data threads (``stage``) and copied with ``non_blocking=True``.

CUDA runs are reproducible in their tiles, seeds and schedule, not bitwise: autotuned cuDNN
algorithms and atomics in backward kernels reorder float sums (deterministic algorithms are on
for CPU training only, ``training.process.reproducible``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from ..data.dataset import Batch
from ..inference.engine import to_channels_last

__all__ = ["StepPath", "cuda_settings", "amp_dtype"]


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype on ``device``: bf16 or fp16 on CUDA, None (fp32) elsewhere."""
    if device.type != "cuda":
        return None
    # emulated bf16 (pre-Ampere GPUs) is slow: fp16 with a scaler there
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if native else torch.float16


@contextmanager
def cuda_settings(device: torch.device) -> Iterator[None]:
    """cuDNN autotuning and TF32 for the duration of training on CUDA (restored after)."""
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
           torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = old


class StepPath:
    """Device placement, precision and the optimiser step of training on ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.dtype = amp_dtype(device)
        self.scaler = (torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None)

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model in the device's fast layout (in place; returns it)."""
        return to_channels_last(model)

    def stage(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """Host tensors of a batch (pinned on CUDA); runs in the data threads."""
        arrays = (batch.image, batch.target, batch.weights, batch.ignore)
        tensors = tuple(None if a is None else torch.from_numpy(a) for a in arrays)
        if self.cuda:
            tensors = tuple(None if t is None else t.pin_memory() for t in tensors)
        return tensors

    def to_device(self, staged: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """``(image, target, weights, ignore)`` on the device; the image channels_last."""
        moved = tuple(None if t is None else t.to(self.device, non_blocking=self.cuda)
                      for t in staged)
        image = moved[0].contiguous(memory_format=torch.channels_last)
        return (image, *moved[1:])

    def autocast(self) -> Any:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    def step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """Backward and optimiser step (through the fp16 scaler where there is one)."""
        opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            opt.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
