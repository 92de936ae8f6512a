"""Training speed: iterations/s of the paper network and of the default one, and where a step's
time goes: data preparation (augmentation of the tile, its target and weights, in the background
thread) versus forward/backward, and how long the loop actually waited for data.

Targets and weight maps are built once per image before training (timed separately); each step
then needs one augmented tile.  ``prep share`` = background preparation time / step time
(the work that overlaps with compute); ``wait share`` = time the loop blocked on the data queue /
step time (what the overlap failed to hide).  ``alone`` = seconds per step of the same
forward/backward/update on a fixed tile without any data pipeline; ``overhead`` = how much slower
the real step is (the background thread shares the 2 cores, plus loss/CSV bookkeeping).  The
first step (allocation warm-up) is excluded.

Data: ISBI 2012 slices (../shared/data/isbi2012) when present, else synthetic 512x512 cells.
Usage: ``python benchmarks/bench_train.py [--paper-steps 5] [--default-steps 150]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from unetkit.model import geometry
from unetkit.data.dataset import load_pairs, prepare, training_normalization
from unetkit.training.loss import weighted_cross_entropy
from unetkit.model.unet import UNet
from unetkit.data.synthetic import write_dataset
from unetkit.config import load_config
from unetkit.training import CONFIG, run_config, train

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012"


def _data(work: Path) -> tuple[Path, Path, str]:
    if ISBI.is_dir():
        return ISBI / "images", ISBI / "labels", "ISBI 2012 (30 slices 512x512)"
    write_dataset(work / "cells", 8, (512, 512), seed=0)
    return work / "cells" / "images", work / "cells" / "labels", "synthetic cells (8 x 512x512)"


def _measure(name: str, preset: str, steps: int, images: Path, labels: Path, work: Path) -> dict:
    cfg = run_config(work / name, preset_name=preset, iterations=steps,
                     overrides=["train.val_interval=1000000", "train.warmup_iterations=0"])
    rec: dict[int, dict] = {}
    run = train(cfg, images, labels, work / name,
                progress=lambda s, total, info: rec.update({s: info}))
    cfg = load_config(Path(run) / CONFIG)  # as trained: the tile the data chose
    first, last = rec[1], rec[steps]
    n = steps - 1
    step_s = (last["elapsed"] - first["elapsed"]) / n
    prep_s = (last["data_prep"] - first["data_prep"]) / n
    wait_s = (last["data_wait"] - first["data_wait"]) / n
    t, m = cfg.train, cfg.model
    return {"name": name, "cfg": cfg,
            "tile": f"{t.tile_size}->{geometry.output_size(t.tile_size, m.depth, m.padding)}",
            "channels": "-".join(map(str, m.widths)), "it_s": 1 / step_s, "step_s": step_s,
            "prep_s": prep_s, "wait_s": wait_s, "steps": n,
            "gflop": 3 * geometry.conv_flops(t.tile_size, m.depth, m.widths,
                                             padding=m.padding) / 1e9}


def _compute_only(cfg, steps: int) -> float:
    """Seconds per step of forward/backward/update on one fixed tile, no data pipeline."""
    m, t = cfg.model, cfg.train
    model = UNet(**m.to_dict())
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=t.momentum)
    out = geometry.output_size(t.tile_size, m.depth, m.padding)
    x = torch.randn(1, 1, t.tile_size, t.tile_size)
    target = torch.randint(0, 2, (1, out, out))
    weights = torch.rand(1, out, out)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss = weighted_cross_entropy(model(x), target, weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / steps  # the first step allocates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paper-steps", type=int, default=5)
    ap.add_argument("--default-steps", type=int, default=150)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    images, labels, what = _data(work)
    cfg = run_config(work, preset_name="default")
    pairs = load_pairs(images, labels)
    t0 = time.perf_counter()
    prepare(pairs, cfg, training_normalization("per_image", pairs))
    targets_s = (time.perf_counter() - t0) / len(pairs)
    load = os.getloadavg()
    rows = [_measure("paper", "paper", args.paper_steps, images, labels, work),
            _measure("default", "default", args.default_steps, images, labels, work)]
    for r, steps in zip(rows, (max(2, args.paper_steps - 2), args.default_steps // 2)):
        r["alone_s"] = _compute_only(r["cfg"], steps)
    load_after = os.getloadavg()
    print(f"# {what}; {os.cpu_count()} CPUs; load average {load[0]:.2f} before, "
          f"{load_after[0]:.2f} after; targets + weights once per image: {targets_s * 1e3:.0f} ms")
    print("# prep = augmentation in the background thread; wait = loop blocked on the queue; "
          "fwd/bwd = step - wait; ~GFLOP/s = 3 x forward conv FLOPs / step; "
          "alone = fwd/bwd/update without data pipeline")
    head = (f"{'network':8} {'channels':>17} {'tile':>9} {'steps':>5} {'it/s':>7} {'s/step':>7} "
            f"{'prep ms':>8} {'prep %':>7} {'wait ms':>8} {'wait %':>7} {'fwd/bwd %':>9} "
            f"{'GFLOP/s':>8} {'alone s':>8} {'overhead %':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['name']:8} {r['channels']:>17} {r['tile']:>9} {r['steps']:5d} {r['it_s']:7.2f} "
              f"{r['step_s']:7.3f} {r['prep_s'] * 1e3:8.1f} {100 * r['prep_s'] / r['step_s']:7.1f} "
              f"{r['wait_s'] * 1e3:8.2f} {100 * r['wait_s'] / r['step_s']:7.1f} "
              f"{100 * (1 - r['wait_s'] / r['step_s']):9.1f} {r['gflop'] / r['step_s']:8.1f} "
              f"{r['alone_s']:8.3f} {100 * (r['step_s'] / r['alone_s'] - 1):10.1f}")


if __name__ == "__main__":
    main()
