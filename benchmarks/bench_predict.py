"""Overlap-tile prediction speed of the paper network, against this machine's measured peak.

For several tile sizes, ``predict_tiled`` segments a SIZE x SIZE image (default 2048) with the
paper network (31 M parameters, valid convolutions).  Printed per tile size:

- megapixels/s of segmented image;
- achieved GFLOP/s: nominal convolution FLOPs of all tiles run (``geometry.conv_flops``, checked
  against torch's FlopCounterMode in the tests) over wall time;
- that as a fraction of the machine's practical peak, measured in the same run as the best of a
  large 3x3 convolution and a large matmul in torch;
- the ratio to a plain eager PyTorch forward of the same network on the same number of tiles
  (so the tiler's own overhead: reading, mirroring, normalising, writing);
- which tile ``tile_size=None`` picks, and how its time compares with the best measured.

Also prints the peak resident memory of the process.  Run:

    python benchmarks/bench_predict.py [--size 2048] [--tiles 572 764 1084] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np
import torch

from unetkit import UNet, choose_tile_size, predict_tiled
from unetkit.model import geometry


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitive creation
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def machine_peak() -> tuple[float, str]:
    """Best GFLOP/s of a large matmul and a large 3x3 convolution (float32)."""
    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch.inference_mode():
        t_mm = best_of(lambda: a @ b, 3)
    mm = 2 * n**3 / t_mm / 1e9
    x = torch.randn(1, 256, 128, 128).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(256, 256, 3, bias=False).eval()
    with torch.inference_mode():
        t_conv = best_of(lambda: conv(x), 3)
    cv = 2 * 126 * 126 * 9 * 256 * 256 / t_conv / 1e9
    return (mm, "matmul 4096^2") if mm >= cv else (cv, "conv3x3 256->256 @128^2"), mm, cv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="image edge")
    ap.add_argument("--tiles", type=int, nargs="+", default=[572, 764, 1084])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UNet().eval()
    model.meta = {"normalization": {"mode": "range"}}
    image = np.random.default_rng(0).integers(0, 255, (args.size, args.size), dtype=np.uint8)

    (peak, peak_name), mm, cv = machine_peak()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads; image {args.size}^2")
    print(f"# machine peak: matmul {mm:.0f} GFLOP/s, conv3x3 {cv:.0f} GFLOP/s -> peak = {peak_name}")

    auto = choose_tile_size((args.size, args.size), batch_size=args.batch)
    tiles = sorted(set(args.tiles) | {auto})
    rows = []
    for tile in tiles:
        stride = geometry.tile_stride(tile)
        n_tiles = math.ceil(args.size / stride) ** 2
        flops = n_tiles * geometry.conv_flops(tile)
        t0 = time.perf_counter()
        predict_tiled(model, image, tile_size=tile, batch_size=args.batch)
        t_tiled = time.perf_counter() - t0
        # plain eager forward on the same number of tiles, no tiler (random data, same layout)
        x = torch.randn(args.batch, 1, tile, tile).contiguous(memory_format=torch.channels_last)
        runs = math.ceil(n_tiles / args.batch)
        with torch.inference_mode():
            model(x)
            t0 = time.perf_counter()
            for _ in range(min(runs, 4)):
                model(x)
            t_eager = (time.perf_counter() - t0) / min(runs, 4) * runs
        gflops = flops / t_tiled / 1e9
        rows.append((tile, n_tiles, t_tiled, args.size**2 / t_tiled / 1e6, gflops, gflops / peak,
                     t_eager / t_tiled))
    best = min(r[2] for r in rows)
    print(f"{'tile':>5} {'tiles':>5} {'time s':>8} {'MPix/s':>7} {'GFLOP/s':>8} {'of peak':>8} "
          f"{'eager/tiled':>11}  note")
    for tile, n, t, mps, gf, frac, ratio in rows:
        note = "auto" if tile == auto else ""
        note += " best" if t == best else ""
        print(f"{tile:5d} {n:5d} {t:8.1f} {mps:7.3f} {gf:8.0f} {frac:8.0%} {ratio:11.2f}  {note}")
    auto_time = next(r[2] for r in rows if r[0] == auto)
    print(f"# automatic choice: tile {auto}, {auto_time / best:.2f}x the best time measured")
    print(f"# peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
