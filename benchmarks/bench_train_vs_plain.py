"""Training throughput: unetkit's training loop vs a plain PyTorch loop, same network and tile.

The plain loop is the floor: the same U-Net, tile, optimizer (the preset's: Adam for
``default``, SGD with momentum 0.99 for ``paper``) and weighted cross entropy on tensors made
once before the loop: no data loading, no augmentation, no weight
maps, no checkpoints.  unetkit's loop does all of that (augmentation and weights in a background
thread) on real data.  A ratio near 1 means the data pipeline costs (almost) nothing.

The plain loop keeps PyTorch's default (contiguous) layout, as a plain script would; unetkit's
loop runs the model and its input channels_last (``training.cuda``), so the ratio holds that
layout's gain as well as the data pipeline's cost (measured: 0.118 s/step against 0.131 before
channels_last, plain 0.088-0.096; benchmarks/README.md).

    python benchmarks/bench_train_vs_plain.py [--preset default|paper] [--steps 60] [--tile 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from unetkit import UNet, weighted_cross_entropy
from unetkit.model import geometry
from unetkit.data.synthetic import write_dataset
from unetkit.config import preset
from unetkit.training import run_config, train

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012"


def plain_loop(cfg, steps: int) -> float:
    """Seconds per step of a bare PyTorch training loop (after 3 warm-up steps)."""
    m, t = cfg.model, cfg.train
    torch.manual_seed(0)
    model = UNet(m.in_channels, m.num_classes, m.depth, m.base_channels, m.padding, m.dropout,
                 m.batch_norm).train()
    if t.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=t.lr, betas=(t.momentum, 0.999))
    else:
        opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum)
    out = geometry.output_size(t.tile_size, m.depth, m.padding)
    x = torch.randn(t.batch_size, m.in_channels, t.tile_size, t.tile_size)
    y = torch.randint(0, m.num_classes, (t.batch_size, out, out))
    w = torch.rand(t.batch_size, out, out) + 0.5
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = weighted_cross_entropy(model(x), y, w)
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def unetkit_loop(cfg, steps: int, images: Path, labels: Path, work: Path) -> tuple[float, float]:
    """Seconds per step of ``unetkit.train`` (steps 4..), and the share spent waiting for data."""
    stamps: list[tuple[float, float]] = []

    def progress(step, total, info):
        stamps.append((time.perf_counter(), info.get("data_wait", 0.0)))

    train(cfg, images, labels, work / "run", progress=progress)
    (t_a, w_a), (t_b, w_b) = stamps[2], stamps[-1]
    per_step = (t_b - t_a) / (len(stamps) - 3)
    return per_step, (w_b - w_a) / (t_b - t_a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", choices=("default", "paper"))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--tile", type=int, default=None,
                    help="tile edge when the preset leaves it to the data (default 256, the "
                         "default preset's choice on ISBI 2012)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if (ISBI / "images").is_dir():
            images, labels, data = ISBI / "images", ISBI / "labels", "ISBI 2012"
        else:
            write_dataset(work / "cells", 8, (512, 512), seed=0)
            images, labels, data = work / "cells" / "images", work / "cells" / "labels", "synthetic"
        overrides = ["train.val_interval=1000000000", "train.warmup_iterations=0"]
        if args.tile is not None or preset(args.preset).train.tile_size is None:
            overrides.append(f"train.tile_size={args.tile or 256}")
        cfg = run_config(work / "run", preset_name=args.preset, iterations=args.steps + 3,
                         overrides=overrides)
        plain = plain_loop(cfg, args.steps)
        ours, wait = unetkit_loop(cfg, args.steps, images, labels, work)
    print(f"# preset '{args.preset}': {cfg.model.base_channels} base channels, tile "
          f"{cfg.train.tile_size}, batch {cfg.train.batch_size}, {cfg.train.optimizer}; data {data}; "
          f"{torch.get_num_threads()} threads")
    print(f"{'loop':28} {'s/step':>8} {'it/s':>7} {'vs plain':>9}")
    print(f"{'plain PyTorch (no data)':28} {plain:8.3f} {1 / plain:7.2f} {1.0:9.2f}")
    print(f"{'unetkit.train (full data)':28} {ours:8.3f} {1 / ours:7.2f} {plain / ours:9.2f}")
    print(f"# unetkit waited for data {wait:.1%} of the time (augmentation and weights run in a "
          "background thread)")


if __name__ == "__main__":
    main()
