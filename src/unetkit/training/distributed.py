"""Data-parallel training with PyTorch DDP, launched by ``torchrun`` (one process per device).

``torchrun --nproc_per_node=N -m unetkit train ...`` starts N processes; torchrun sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``, and :func:`setup` joins the
process group from them (NCCL on CUDA, gloo on CPU).  A process group the caller already set up
is used as it is (and left open).  Without torchrun's variables everything here is a no-op for a
single process, so the training loop runs one code path.

What holds (``training.loop`` relies on it):

* **One global batch.** ``train.batch_size`` is the batch of *one process*; a step trains on the
  global batch ``G = world_size x batch_size``.  Rank ``r`` draws tiles ``j = r*B ... r*B + B-1``
  of the step (``TileSampler.batch(step, first=r*B)``, each from ``(seed, step, j)``), so the
  tiles of a step are those of a one-process run with batch ``G``, however they are split.
* **The loss of the global batch.** Each rank sums its pixels' loss; the number of non-ignored
  pixels is summed over ranks (:meth:`Parallel.global_mean`), and the rank's loss is scaled so
  that DDP's gradient averaging yields the gradient of the global mean (the ``"pixels"``
  normalisation over the global batch).  N processes x batch B therefore equal one process with
  batch N*B to float rounding (tests/training/test_distributed.py).
* **The learning rate belongs to the global batch** and is not scaled with N: ``train.lr`` and
  its schedule mean the same on 1 and on N processes with the same global batch.  More processes
  at the same per-process batch make a larger global batch at the same lr (a steadier gradient,
  not a longer step); to follow the linear scaling rule (Goyal et al. 2017) set
  ``--set train.lr=...`` yourself.  ``train.iterations`` counts global steps.
* **Agreement.** After every step the ranks agree on the elapsed time (the mean of their clocks),
  so learning rate, time budget and validation schedule are the same on all ranks and a budget
  ends all of them at the same step; a SIGINT/SIGTERM on any rank stops all at the same step.
* **Rank 0 writes**: the run folder, metrics.csv, curves, checkpoints, validation.  The
  checkpoint holds ``world_size`` and the global batch; a resume needs the same global batch
  (any ``world_size x batch_size`` with that product) and then continues exactly.
* Dropout: rank 0 draws its masks from ``(seed, step)`` as a single process does, rank ``r`` from
  ``(seed, step, r)``; with dropout the N-process run is therefore a different (equally
  reproducible) draw than the one-process run.  Batch norm (the padded variant) normalises over
  each rank's tiles, as in one process with batch ``B``.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Parallel", "setup", "launched_rank", "check_global_batch", "ENV"]

log = logging.getLogger(__name__)

#: the variables torchrun sets for each process
ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
#: a collective waits this long: rank 0 validates while the others wait at the next step
TIMEOUT = datetime.timedelta(minutes=60)


def launched_rank() -> int:
    """This process's rank from torchrun's environment (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class Parallel:
    """This process's place in the run: ``rank`` of ``world``, its device, whether it set up the
    process group (and so closes it)."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files, validates and reports."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to train: DDP around ``model`` with several processes, else ``model``."""
        if not self.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)

    def dropout_seed(self, seed: int) -> int:
        """Rank 0 keeps the one-process seed; the others derive theirs from it and their rank."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    def _reduce(self, values: list[float]) -> list[float]:
        if not self.active:
            return values
        dev = self.device if self.device.type == "cuda" else torch.device("cpu")
        t = torch.tensor(values, dtype=torch.float64, device=dev)
        dist.all_reduce(t)
        return t.tolist()

    def global_mean(self, loss_sum: torch.Tensor, count: torch.Tensor
                    ) -> tuple[torch.Tensor, float]:
        """``(loss to backpropagate, global mean value)`` from this rank's loss sum and count of
        non-ignored pixels.  DDP averages gradients over ranks, hence the factor ``world``."""
        total_sum, total_count = self._reduce([float(loss_sum.detach()), float(count)])
        denom = max(total_count, 1.0)  # all pixels ignored: loss 0, as weighted_cross_entropy
        return loss_sum * (self.world / denom), total_sum / denom

    def agree_elapsed(self, elapsed: float) -> float:
        """The mean of the ranks' clocks: one time for budget, schedule and validation."""
        return self._reduce([elapsed])[0] / self.world if self.active else elapsed

    def agree_stop(self, signal_name: str | None) -> str | None:
        """A signal on any rank stops all: the name seen here, else ``"SIGTERM"``/None."""
        if not self.active:
            return signal_name
        if self._reduce([1.0 if signal_name else 0.0])[0] > 0:
            return signal_name or "SIGTERM"
        return None

    def divergence(self, model: nn.Module) -> float:
        """The largest difference of any parameter from rank 0's (0.0 when in sync, as DDP
        keeps them: every rank applies the same averaged gradient)."""
        if not self.active:
            return 0.0
        flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, src=0)
        diff = torch.tensor([float((flat - ref).abs().max())], dtype=torch.float64,
                            device=flat.device)
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff)

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (e.g. the checkpoint: only rank 0 reads the file)."""
        if not self.active:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0, device=self._object_device())
        return box[0]

    def barrier(self) -> None:
        if self.active:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def close(self, wait: bool = True) -> None:
        """Leave the process group if this process set it up.  ``wait``: first a barrier, so
        that no rank tears its group down while another still works (rank 0 choosing the
        post-processing after the last step): without it gloo aborted the early rank
        (SIGABRT, and torchrun then killed the others) in 4 of 40 runs of
        tests/training/ddp_worker.py's teardown.  Not after an error, where the other ranks may
        never arrive."""
        if self.owns_group and dist.is_initialized():
            if wait and self.active:
                self.barrier()
            dist.destroy_process_group()
            self.owns_group = False

    def _object_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None


def setup(device: str | torch.device) -> Parallel:
    """Join the process group described by torchrun's environment (or an existing one).

    ``device`` ``"cuda"`` becomes ``cuda:LOCAL_RANK`` under torchrun (one GPU per process);
    an explicit index is kept.  Returns a single-process :class:`Parallel` without torchrun.
    """
    dev = torch.device(device)
    if dist.is_available() and dist.is_initialized():
        owns = False
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        missing = [k for k in ENV if k not in os.environ]
        if missing:
            raise ValueError(f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but {missing} are not "
                             "set: launch with torchrun")
        owns = True
    else:
        return Parallel(device=dev)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if owns:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT,
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    par = Parallel(dist.get_rank(), dist.get_world_size(), dev, owns)
    if par.active:
        log.info("rank %d of %d on %s (%s)", par.rank, par.world, dev, dist.get_backend())
    return par


def check_global_batch(ckpt: dict[str, Any], par: Parallel, batch_size: int) -> None:
    """A resume must keep the global batch ``world x batch_size`` (tiles of a step depend on it);
    how it is split over processes may change."""
    saved = ckpt.get("parallel") or {  # a checkpoint from before DDP: one process
        "world_size": 1, "global_batch": int(ckpt["config"]["train"]["batch_size"])}
    glob = par.world * batch_size
    if saved["global_batch"] != glob:
        raise ValueError(
            f"cannot resume: the global batch would be {par.world} process(es) x batch "
            f"{batch_size} = {glob}, the run used {saved['global_batch']} ({saved['world_size']} "
            f"process(es)); choose processes x train.batch_size = {saved['global_batch']}")
