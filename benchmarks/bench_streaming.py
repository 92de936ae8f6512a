"""Peak resident memory of streamed prediction (disk -> disk) for 2000^2, 8000^2 and 20000^2 images.

Each case runs in a fresh process: it writes a synthetic uint8 input to a Zarr array on disk
block by block (never whole in memory), then streams `predict_to_file` into an OME-Zarr label
output with the automatic tile size, and reports the process's peak RSS (`ru_maxrss`, which
includes torch, the model and everything else) and its RSS just before prediction.

    python benchmarks/bench_streaming.py                 # the three sizes (about 10 min, 2 cores)
    python benchmarks/bench_streaming.py --sizes 1000 --base 16   # one quick case

The default model is `config.preset("default")` (16 base channels).  On a 2-core CPU it runs at
~0.1-0.2 Mpx/s, so 20000^2 (400 Mpx) would take about an hour: that case uses 2 base channels
(same depth, same 92 px margin, same tiling and I/O paths; the activations per tile are what
shrink), and the table says so.  Memory is flat in the image size when the peak does not grow
from 2000^2 to 20000^2 at equal base channels and equal tile: all cases use one tile (``--tile``,
default 1196, the automatic choice for the default model on large images; ``--tile 0`` lets each
case choose, and small models then pick larger tiles for larger images, up to the 512 MiB
activation budget of streaming).

Measured on the shared 2-core CPU (2026-11, other jobs running, so rates are rough):

           image base ch  tiles  seconds  Mpx/s RSS before  peak RSS
     2000 x 2000       16      4      8.4   0.47     304 MiB   928 MiB
     8000 x 8000       16     64    115.9   0.55     302 MiB  1022 MiB
     2000 x 2000        2      4      2.2   1.82     303 MiB   430 MiB
     8000 x 8000        2     64     13.9   4.61     302 MiB   468 MiB
    20000 x 20000       2    400     22.9  17.49     304 MiB   460 MiB

With ``--tile 0`` (automatic tile per case) the 2-channel model chose 2188/2860/3052 px tiles and
peaked at 629/1076/1195 MiB: still bounded by the budget, not by the image.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np, torch, zarr
    from dataclasses import asdict
    from unetkit import UNet, preset
    from unetkit.inference.streaming import predict_to_file

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

    n, base, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    tile = int(sys.argv[4]) or None
    torch.set_num_threads(2)
    arr = zarr.create_array(folder + "/in.zarr", shape=(n, n), chunks=(1024, 1024), dtype="uint8")
    yy = np.arange(1024)[:, None]
    for y in range(0, n, 1024):  # synthetic blobs, one block row at a time
        for x in range(0, n, 1024):
            h, w = min(1024, n - y), min(1024, n - x)
            blk = (127 + 100 * np.sin((yy[:h] + y) / 23.0) * np.cos((np.arange(w) + x) / 31.0))
            arr[y:y + h, x:x + w] = blk.astype(np.uint8)
    cfg = asdict(preset("default").model)
    cfg["base_channels"] = base
    torch.manual_seed(0)
    model = UNet(**cfg)
    model.meta = {"normalization": {"mode": "per_image"}}
    model.eval()
    before = rss()
    tiles = {}
    t0 = time.perf_counter()
    predict_to_file(model, folder + "/in.zarr", folder + "/out.ome.zarr", output="labels",
                    tile_size=tile, progress=lambda d, t, p: tiles.update(total=t))
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"n": n, "base": base, "seconds": dt, "tiles": tiles.get("total"),
                      "rss_before": before, "peak": peak}))
    """
)


def run_case(n: int, base: int, tile: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_streaming_") as folder:
        res = subprocess.run([sys.executable, "-c", CHILD, str(n), str(base), folder, str(tile)],
                             capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"case {n}^2 base {base} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=None)
    p.add_argument("--base", type=int, default=None, help="base channels for every case")
    p.add_argument("--tile", type=int, default=1196,
                   help="input tile for every case (default 1196: the automatic choice for the "
                        "default model on large images); 0 = automatic per case")
    args = p.parse_args()
    if args.sizes:
        cases = [(n, args.base or 16) for n in args.sizes]
    else:
        cases = [(2000, 16), (8000, 16), (2000, 2), (8000, 2), (20000, 2)]
    print(f"# tile {args.tile or 'automatic'}; CPU threads 2")
    print(f"{'image':>12} {'base ch':>7} {'tiles':>6} {'seconds':>8} {'Mpx/s':>6} "
          f"{'RSS before':>10} {'peak RSS':>9}")
    t_start = time.perf_counter()
    for n, base in cases:
        r = run_case(n, base, args.tile)
        mpx = n * n / 1e6 / r["seconds"]
        print(f"{n:>5} x {n:<5} {base:>7} {r['tiles']:>6} {r['seconds']:>8.1f} {mpx:>6.2f} "
              f"{r['rss_before'] / 2**20:>7.0f} MiB {r['peak'] / 2**20:>5.0f} MiB", flush=True)
    print(f"# total {time.perf_counter() - t_start:.0f} s; peak RSS = ru_maxrss of the whole "
          f"process (torch + model + streaming); flat within noise across sizes = bounded")


if __name__ == "__main__":
    main()
