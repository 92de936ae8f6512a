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

Then, per CPU runtime (eager torch, onnxruntime, and OpenVINO when ``openvino`` is installed),
``predict_tiled`` on a ``--runtime-size`` image (default 1024) with the paper network (64
channels) and the ``default`` preset's (16 channels), at the tile the tiler picks: seconds (best
of 3 runs, the runtimes in alternation), the ratio torch time / runtime time (> 1: the runtime
is faster), the largest difference from the torch output, and what ``--runtime auto`` chose
from its own measurement (fresh cache).

Also prints the peak resident memory of the process.  Run:

    python benchmarks/bench_predict.py [--size 2048] [--tiles 572 764 1084] [--threads N]
        [--runtime-size 1024] [--skip-tiles]
"""

from __future__ import annotations

import argparse
import math
import resource
import tempfile
import time

import numpy as np
import torch

from unetkit import UNet, choose_tile_size, predict_tiled
from unetkit.inference.runtime import OnnxRuntimeModel, onnxruntime_available, with_runtime
from unetkit.model import geometry
from unetkit.model.onnxgraph import INPUT_NAME, onnx_bytes


class OpenVinoModel(torch.nn.Module):
    """The ONNX graph compiled by OpenVINO for one static tile size (benchmark only)."""

    def __init__(self, model: torch.nn.Module, tile: int) -> None:
        import openvino as ov

        super().__init__()
        self.config, self.meta = model.config, model.meta
        core = ov.Core()
        # f32 explicitly: OpenVINO may otherwise pick a lower inference precision on the CPU
        core.set_property("CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                  "INFERENCE_PRECISION_HINT": "f32"})
        with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
            f.write(onnx_bytes(model))
            f.flush()
            graph = ov.convert_model(f.name)
        graph.reshape({INPUT_NAME: [-1, model.config.in_channels, tile, tile]})
        self.compiled = core.compile_model(graph, "CPU")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.compiled(x.contiguous().numpy())
        return torch.from_numpy(np.asarray(out[0]))


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


REPEATS = 3  # timed runs per runtime in the runtime table


def runtime_table(size: int, batch: int) -> None:
    """Eager torch vs onnxruntime (vs OpenVINO) on the paper and default networks."""
    image = np.random.default_rng(1).integers(0, 255, (size, size), dtype=np.uint8)
    print(f"\n# runtimes: predict_tiled on a {size}^2 image, batch {batch}; ratio = torch time / "
          "runtime time (> 1: faster than eager torch)")
    print(f"{'network':>8} {'tile':>5} {'runtime':>12} {'time s':>7} {'ratio':>6} "
          f"{'max diff':>9}  auto picks")
    for name, width in (("paper", 64), ("default", 16)):
        torch.manual_seed(0)
        model = UNet(base_channels=width).eval()
        model.meta = {"normalization": {"mode": "per_image"}}
        tile = choose_tile_size((size, size), base_channels=width, batch_size=batch)
        nets = {"torch": model}
        if onnxruntime_available():
            nets["onnxruntime"] = OnnxRuntimeModel(model)
        if openvino_available():
            nets["openvino"] = OpenVinoModel(model, tile)
        with tempfile.TemporaryDirectory() as cache:
            picked = with_runtime(model, "auto", tile_size=tile, batch_size=batch, cache=cache)
        picked_name = "torch" if picked is model else "onnxruntime"
        # best of REPEATS runs, the runtimes in alternation (one-shot times of the same command
        # moved by up to 1.6x from run to run here: a single run cannot rank two runtimes)
        outs, best = {}, {rt: float("inf") for rt in nets}
        for net in nets.values():
            predict_tiled(net, image, tile_size=tile, batch_size=batch)  # warm-up
        for _ in range(REPEATS):
            for rt, net in nets.items():
                t0 = time.perf_counter()
                outs[rt] = predict_tiled(net, image, tile_size=tile, batch_size=batch)
                best[rt] = min(best[rt], time.perf_counter() - t0)
        for rt in nets:
            t = best[rt]
            diff = float(np.abs(outs[rt] - outs["torch"]).max())
            note = "<- auto" if rt == picked_name else ""
            print(f"{name:>8} {tile:5d} {rt:>12} {t:7.1f} {best['torch'] / t:6.2f} {diff:9.1e}  "
                  f"{note}")


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
    ap.add_argument("--runtime-size", type=int, default=1024, help="image edge of the runtime table")
    ap.add_argument("--skip-tiles", action="store_true", help="only the runtime table")
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

    if args.skip_tiles:
        runtime_table(args.runtime_size, args.batch)
        return
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
    runtime_table(args.runtime_size, args.batch)
    print(f"# peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
