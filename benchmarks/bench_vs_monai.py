"""Prediction throughput and memory: unetkit's overlap-tile vs MONAI's sliding_window_inference.

Both run the SAME same-padded U-Net (unetkit.UNet(padding="same"), ``--channels`` base width) on
the same SIZE x SIZE image, each in its own process (so peak resident memory is each one's own):

- unetkit ``predict_tiled`` with its default halo (96 px: exact stitching), with the automatic
  tile (the cheapest under the default 2 GiB activation budget) and with 512 px tiles;
- MONAI ``sliding_window_inference`` with its default overlap 0.25, constant blending and
  Gaussian blending, roi ``--roi`` (default 512).

Printed: megapixels/s, ratio to MONAI (constant), peak resident memory, and the largest
difference of each result from whole-image inference inside a central crop (away from the
image border, where the two mirror/zero-pad the missing context differently), measured on a
smaller image (``--check-size``) in the same run.

    pip install -e '.[bench]'   # MONAI, never a core dependency
    python benchmarks/bench_vs_monai.py [--size 4096] [--channels 16] [--roi 512]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from unetkit import UNet, predict_tiled


def make_model(channels: int) -> UNet:
    torch.manual_seed(0)
    model = UNet(base_channels=channels, padding="same").eval()
    model.meta = {"normalization": {"mode": "none"}}
    return model


def image_of(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size), dtype=np.float32)


def run_unetkit(model: UNet, image: np.ndarray, tile: int | None) -> np.ndarray:
    return predict_tiled(model, image, tile_size=tile)


def run_monai(model: UNet, image: np.ndarray, roi: int, mode: str) -> np.ndarray:
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(image)[None, None]
    with torch.inference_mode():
        y = sliding_window_inference(x, (roi, roi), 1, lambda t: torch.softmax(model(t), 1),
                                     overlap=0.25, mode=mode)
    return y[0].numpy()


def worker(args: argparse.Namespace) -> None:
    """One method in this process: time it, report peak RSS."""
    model = make_model(args.channels)
    image = image_of(args.size)
    fn = {"unetkit": lambda: run_unetkit(model, image, None),
          "unetkit-tile512": lambda: run_unetkit(model, image, 512),
          "monai-constant": lambda: run_monai(model, image, args.roi, "constant"),
          "monai-gaussian": lambda: run_monai(model, image, args.roi, "gaussian")}[args.worker]
    t = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_rss": rss}))


def accuracy(args: argparse.Namespace) -> dict[str, float]:
    """Largest |difference| from whole-image inference in the central crop of a smaller image."""
    model = make_model(args.channels)
    n = args.check_size
    image = image_of(n, seed=1)
    with torch.inference_mode():
        whole = torch.softmax(model(torch.from_numpy(image)[None, None]), 1)[0].numpy()
    c = slice(n // 4, 3 * n // 4)
    out = {"unetkit": run_unetkit(model, image, None),
           "unetkit-tile512": run_unetkit(model, image, 512)}
    for mode in ("constant", "gaussian"):
        out[f"monai-{mode}"] = run_monai(model, image, min(args.roi, n // 2), mode)
    return {k: float(np.abs(v[:, c, c] - whole[:, c, c]).max()) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--roi", type=int, default=512)
    ap.add_argument("--check-size", type=int, default=1024)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    try:
        import monai
    except ImportError:
        raise SystemExit("MONAI is not installed: pip install -e '.[bench]'") from None
    rows = {}
    for method in ("unetkit", "unetkit-tile512", "monai-constant", "monai-gaussian"):
        res = subprocess.run([sys.executable, __file__, "--worker", method, "--size", str(args.size),
                              "--channels", str(args.channels), "--roi", str(args.roi)],
                             capture_output=True, text=True, check=True)
        rows[method] = json.loads(res.stdout.strip().splitlines()[-1])
    errors = accuracy(args)
    ref = rows["monai-constant"]["seconds"]
    print(f"# same-padded U-Net, {args.channels} base channels; image {args.size}^2; torch "
          f"{torch.__version__}, MONAI {monai.__version__}, {torch.get_num_threads()} threads")
    print(f"{'method':16} {'time s':>8} {'MPix/s':>8} {'speed vs MONAI':>15} {'peak RSS MiB':>13} "
          f"{'max|diff| vs whole':>19}")
    for method, r in rows.items():
        print(f"{method:16} {r['seconds']:8.1f} {args.size**2 / r['seconds'] / 1e6:8.3f} "
              f"{ref / r['seconds']:15.2f} {r['peak_rss'] / 2**20:13.0f} {errors[method]:19.2e}")
    print(f"# difference from whole-image inference: central {args.check_size // 2}^2 of a "
          f"{args.check_size}^2 image (MONAI roi {min(args.roi, args.check_size // 2)}, "
          "overlap 0.25)")


if __name__ == "__main__":
    main()
