"""One rank of the data-parallel tests (tests/training/test_distributed.py), run by torchrun:

    torchrun --standalone --nproc_per_node=2 ddp_worker.py IMAGES LABELS ROOT OVERRIDES...

In a process group it sets up itself through ``setup`` (``train`` then uses it and leaves it
open; ``Parallel.close`` ends it) it

1. trains ``ROOT/full`` through the CLI (``unetkit train --set ...``) without interruption;
   ``train`` checks at its end that the ranks' parameters are identical and raises otherwise;
2. checks that check on purpose: a model perturbed on rank 1 must be reported
   (``ROOT/divergence_rankR.txt``);
3. trains ``ROOT/cut``, where rank 1 sends itself SIGTERM at step 2: every rank must stop at the
   same step with one checkpoint written (``ROOT/cut/stopped_rankR.txt``: signal and step);
   rank 0 copies the stopped run to ``ROOT/cut_one_process``;
4. resumes ``ROOT/cut`` through the CLI (``--resume``);
5. trains ``ROOT/budget`` for 3 seconds, rank 1 slowed down: each rank writes the step it ended
   at to ``ROOT/budget_rankR.txt`` (they must agree).

Each CLI call's exit status goes to ``ROOT/status_rankR.txt``.
"""

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch

from unetkit.cli.main import main as cli
from unetkit.config import apply_overrides, preset
from unetkit.model.unet import UNet
from unetkit.training import TrainingInterrupted, train
from unetkit.training.distributed import setup


def main() -> None:
    images, labels, root, *overrides = sys.argv[1:]
    root = Path(root)
    sets = [a for s in overrides for a in ("--set", s)]
    args = ["train", "--images", images, "--labels", labels, *sets]
    torch.set_num_threads(1)  # two ranks share the CI machine's cores
    par = setup("cpu")  # this process owns the group: the train calls below leave it open
    rank = par.rank
    status = [cli([*args, "--out", str(root / "full")])]

    torch.manual_seed(0)
    model = UNet(base_channels=2, depth=1)
    same = par.divergence(model)
    if rank == 1:
        with torch.no_grad():
            next(model.parameters())[0].add_(0.25)
    (root / f"divergence_rank{rank}.txt").write_text(f"{same} {par.divergence(model)}")

    def stop_at_two(step: int, total: int, info: dict) -> None:
        if rank == 1 and step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    cfg = apply_overrides(preset("default"), overrides)
    try:
        train(cfg, images, labels, root / "cut", progress=stop_at_two)
        stopped = "not stopped"
    except TrainingInterrupted as stop:
        stopped = f"{stop.signal_name} {stop.step}"
    (root / f"stopped_rank{rank}.txt").write_text(stopped)
    if rank == 0:
        shutil.copytree(root / "cut", root / "cut_one_process")
    par.barrier()
    status.append(cli([*args, "--out", str(root / "cut"), "--resume"]))
    (root / f"status_rank{rank}.txt").write_text(" ".join(map(str, status)))

    last = {}

    def slow_rank1(step: int, total: int, info: dict) -> None:
        last["step"] = step
        if rank == 1:  # the ranks' clocks differ: only the agreed time keeps them together
            time.sleep(0.02)

    budget = apply_overrides(cfg, ["train.minutes=0.05", "train.iterations=1000000"])
    train(budget, images, labels, root / "budget", progress=slow_rank1)
    (root / f"budget_rank{rank}.txt").write_text(str(last["step"]))
    par.close()  # waits for rank 0, which may still be choosing the post-processing


if __name__ == "__main__":
    main()
