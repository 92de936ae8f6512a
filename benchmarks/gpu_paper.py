"""The paper preset on one GPU: 6 minutes of training on ISBI 2012, its errors, its speed.

One short run meant for a session that has a GPU (GPU time is scarce: run it once):

1. trains ``--preset paper`` (64 channels, 572 px tiles, SGD momentum 0.99) for ``--minutes``
   (6) on the training slices of the first fold of ``isbi_cv.py`` (5 contiguous folds, seed 0:
   slices 00-05 held out), through the CUDA path of ``training.cuda`` (mixed precision,
   channels_last, cuDNN autotuning, several data threads);
2. scores the held-out slices as ``isbi_cv.py`` does (8-fold flip/rotation averaging):
   pixel, Rand and warping error;
3. reports training steps per second and the share of the training time spent waiting for data;
4. times prediction of a 512^2 and a 4096^2 image (ISBI slices tiled) with the trained paper
   network, with and without TTA, after one warm-up run each (cuDNN autotuning), with
   ``torch.cuda.synchronize``.

It prints a Markdown table row for benchmarks/README.md (with the GPU's name) and writes
everything to ``--json``.  On a CPU with tiny settings it checks that the script runs::

    python benchmarks/gpu_paper.py                       # on the GPU machine: the figures
    python benchmarks/gpu_paper.py --device cpu --preset default --minutes 0.2 --sizes 256 \\
        --set model.base_channels=4 model.depth=2 train.tile_size=84    # a CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from isbi_cv import DEFAULT_DATA, METRICS, fold_split, link_subset

from unetkit import evaluate_arrays, load_model, predict_tiled
from unetkit.io.images import image_files, read_image
from unetkit.training import CHECKPOINT, MODEL, load_checkpoint, run_config, train


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_prediction(model, image: np.ndarray, device: str, tta: bool, batch: int) -> dict:
    """Seconds of a warm-up run (autotuning included) and of the next run."""
    times = []
    for _ in range(2):
        _sync(device)
        t0 = time.perf_counter()
        predict_tiled(model, image, batch_size=batch, tta=tta, device=device)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"first_s": round(times[0], 3), "seconds": round(times[1], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--preset", default="paper", choices=("default", "paper"))
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="*", default=[512, 4096])
    ap.add_argument("--batch", type=int, default=8, help="tiles per forward pass in prediction")
    ap.add_argument("--out", type=Path, default=None, help="keep the run folder here")
    ap.add_argument("--json", type=Path, default=Path("gpu_paper.json"))
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures a GPU (see --device cpu for a "
                         "smoke run)")
    if not (args.data / "images").is_dir():
        raise SystemExit(f"no ISBI data at {args.data} (expected images/ and labels/)")
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU (smoke run)"

    names = [f.stem for f in image_files(args.data / "images")]
    held_out = fold_split(names, 5)[0]  # isbi_cv.py's first fold, its seed 0
    train_names = [n for n in names if n not in held_out]
    work = args.out or Path(tempfile.mkdtemp(prefix="gpu_paper_"))
    imgs = link_subset(args.data / "images", train_names, work / "train_images")
    labs = link_subset(args.data / "labels", train_names, work / "train_labels")
    cfg = run_config(work / "run", preset_name=args.preset, overrides=args.set,
                     minutes=args.minutes, seed=0)
    last: dict = {}

    def progress(step: int, total: int, info: dict) -> None:
        last.update(info, step=step)

    t0 = time.perf_counter()
    run = train(cfg, imgs, labs, work / "run", device=args.device, progress=progress)
    wall = time.perf_counter() - t0
    ckpt = load_checkpoint(run / CHECKPOINT)
    steps, elapsed = int(ckpt["step"]), float(ckpt["elapsed"])
    training = {"steps": steps, "train_seconds": round(elapsed, 1),
                "steps_per_s": round(steps / elapsed, 3),
                "tiles_per_s": round(steps * cfg.train.batch_size / elapsed, 3),
                "data_wait_share": round(last.get("data_wait", 0.0) / max(elapsed, 1e-9), 4),
                "wall_seconds_with_validation": round(wall, 1)}
    if args.device.startswith("cuda"):
        training["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(f"trained {steps} steps in {elapsed:.0f} s: {training['steps_per_s']} steps/s, "
          f"data wait {training['data_wait_share']:.1%} of the time", flush=True)

    model = load_model(run / MODEL, device=args.device)
    per_slice = {}
    for n in held_out:
        image = read_image(args.data / "images" / f"{n}.png")
        truth = read_image(args.data / "labels" / f"{n}.png")
        prob = predict_tiled(model, image, tta=True, batch_size=args.batch, device=args.device)
        per_slice[n] = {k: float(v) for k, v in evaluate_arrays(prob[1], truth, METRICS).items()}
    errors = {m: float(np.mean([s[m] for s in per_slice.values()])) for m in METRICS}
    print("held-out fold 0 (TTA): " + ", ".join(f"{m} {v:.4g}" for m, v in errors.items()),
          flush=True)

    slice0 = read_image(args.data / "images" / f"{held_out[0]}.png")
    prediction = {}
    for size in args.sizes:
        reps = -(-size // slice0.shape[-1])
        image = np.tile(slice0, (reps, reps))[:size, :size]
        for tta in (False, True):
            key = f"{size}px{'_tta' if tta else ''}"
            prediction[key] = time_prediction(model, image, args.device, tta, args.batch)
            print(f"predict {size}^2 {'with' if tta else 'without'} TTA: "
                  f"{prediction[key]['seconds']} s (first run {prediction[key]['first_s']} s)",
                  flush=True)

    result = {"gpu": gpu, "torch": torch.__version__, "preset": args.preset,
              "overrides": args.set, "minutes": args.minutes, "held_out": held_out,
              "training": training, "errors": errors, "per_slice": per_slice,
              "prediction": prediction, "batch": args.batch, "run": str(run)}
    args.json.write_text(json.dumps(result, indent=2))
    p = prediction
    row = (f"| {gpu} | {args.minutes:g} | {steps} | {training['steps_per_s']} | "
           f"{errors['pixel_error']:.4f} | {errors['rand_error']:.4f} | "
           f"{errors['warping_error']:.6f} | "
           + " | ".join(f"{p[k]['seconds']}" for k in p) + " |")
    print("\nrow for benchmarks/README.md (GPU, minutes, steps, steps/s, pixel, Rand, warping, "
          + ", ".join(p) + " s):")
    print(row)
    print(f"# wrote {args.json}; run folder {run}")


if __name__ == "__main__":
    main()
