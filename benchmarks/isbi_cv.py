"""ISBI 2012 reproduction: k-fold cross-validation on the 30 training slices, next to the paper.

Each fold trains a configuration (``--preset default`` on a CPU, ``--preset paper`` on a CUDA
GPU) for a time budget on the other slices, predicts its held-out slices with overlap-tile
inference averaged over the 8 flips/rotations (the paper averaged 7 rotated inputs), and scores
them with the challenge's metrics as its reference computes them (``unetkit.metrics.isbi``).
The headline scores all predicted slices as one stack, as the challenge scores its 30-slice
test stack: one threshold for the stack, the Rand error pooled, the warping error over all
pixels, V_rand / V_info averaged over the slices; per-slice scores go to ``--json``. The
figures printed are cross-validation figures on the public training slices, NOT the
challenge's hidden test set, so they are comparable to the paper's table only in kind.

    python benchmarks/isbi_cv.py [--data ../shared/data/isbi2012] [--folds 5] [--minutes 4]
        [--preset default|paper] [--set train.lr=...] [--device cpu|cuda] [--no-tta]
        [--out runs/isbi_cv] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from unetkit import evaluate_arrays, load_model, predict_tiled
from unetkit.io.images import image_files, read_image
from unetkit.training import MODEL, run_config, train

PAPER = {  # PAPER.md section 4 (hidden test set)
    "U-Net (paper)": {"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611},
    "IDSIA (paper)": {"warping_error": 0.000420, "rand_error": 0.0504, "pixel_error": 0.0613},
    "human (paper)": {"warping_error": 0.000005, "rand_error": 0.0021, "pixel_error": 0.0010},
}
METRICS = ("warping_error", "rand_error", "pixel_error", "v_rand", "v_info")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012"


def fold_split(names: list[str], k: int) -> list[list[str]]:
    """Contiguous folds of the slice names (neighbouring EM slices are alike: keep them together)."""
    size = math.ceil(len(names) / k)
    return [names[i : i + size] for i in range(0, len(names), size)]


def link_subset(src: Path, names: list[str], dst: Path) -> Path:
    """A folder of symbolic links to some of ``src``'s images (the data is never copied)."""
    dst.mkdir(parents=True, exist_ok=True)
    by_stem = {f.stem: f for f in image_files(src)}
    for n in names:
        os.symlink(by_stem[n].resolve(), dst / by_stem[n].name)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with images/ labels/")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=4.0, help="training budget per fold")
    ap.add_argument("--preset", default="default", choices=("default", "paper"))
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--only-folds", type=int, nargs="*", default=None, help="run these folds only")
    ap.add_argument("--out", type=Path, default=None, help="keep run folders here")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not (args.data / "images").is_dir():
        raise SystemExit(f"no ISBI data at {args.data} (expected images/ and labels/)")

    names = [f.stem for f in image_files(args.data / "images")]
    folds = fold_split(names, args.folds)
    work = args.out or Path(tempfile.mkdtemp(prefix="isbi_cv_"))
    per_slice: dict[str, dict[str, float]] = {}
    cells: dict[str, np.ndarray] = {}
    truths: dict[str, np.ndarray] = {}
    t_start = time.perf_counter()
    for i, held_out in enumerate(folds):
        if args.only_folds is not None and i not in args.only_folds:
            continue
        train_names = [n for n in names if n not in held_out]
        fold_dir = work / f"fold{i}"
        imgs = link_subset(args.data / "images", train_names, fold_dir / "train_images")
        labs = link_subset(args.data / "labels", train_names, fold_dir / "train_labels")
        cfg = run_config(fold_dir / "run", preset_name=args.preset, overrides=args.set,
                         minutes=args.minutes, seed=i)
        t0 = time.perf_counter()
        run = train(cfg, imgs, labs, fold_dir / "run", device=args.device)
        t_train = time.perf_counter() - t0
        model = load_model(run / MODEL, device=args.device)
        for n in held_out:
            image = read_image(args.data / "images" / f"{n}.png")
            truth = read_image(args.data / "labels" / f"{n}.png")
            prob = predict_tiled(model, image, tta=not args.no_tta, device=args.device)
            cell = prob[1]  # class 1 = cell interior (labels: 255 = cell, 0 = membrane)
            per_slice[n] = {k: float(v) for k, v in evaluate_arrays(cell, truth, METRICS).items()}
            cells[n], truths[n] = cell, truth
        fold_mean = evaluate_arrays(np.stack([cells[n] for n in held_out]),
                                    np.stack([truths[n] for n in held_out]), METRICS)
        print(f"fold {i}: held out {held_out[0]}-{held_out[-1]}, trained {t_train / 60:.1f} min: "
              + ", ".join(f"{m} {v:.4g}" for m, v in fold_mean.items()), flush=True)

    done = list(cells)
    mean = {m: float(v) for m, v in evaluate_arrays(np.stack([cells[n] for n in done]),
                                                    np.stack([truths[n] for n in done]),
                                                    METRICS).items()}
    print()
    print(f"ISBI 2012, {args.folds}-fold cross-validation on the {len(names)} public training slices "
          f"({len(per_slice)} slices scored), preset '{args.preset}', {args.minutes} min per fold "
          f"on {args.device}, {'8-fold flip/rotation averaging' if not args.no_tta else 'no TTA'}.")
    print("These are cross-validation figures, NOT the challenge's hidden test set; all scored "
          "slices as one stack.")
    print(f"{'':24} {'warping error':>14} {'Rand error':>11} {'pixel error':>12} {'V_rand':>8} {'V_info':>8}")
    print(f"{'unetkit (this run, CV)':24} {mean['warping_error']:14.6f} {mean['rand_error']:11.4f} "
          f"{mean['pixel_error']:12.4f} {mean['v_rand']:8.4f} {mean['v_info']:8.4f}")
    for name, row in PAPER.items():
        print(f"{name:24} {row['warping_error']:14.6f} {row['rand_error']:11.4f} "
              f"{row['pixel_error']:12.4f} {'':>8} {'':>8}")
    print(f"# total time {(time.perf_counter() - t_start) / 60:.1f} min; runs in {work}")
    if args.json:
        args.json.write_text(json.dumps({"per_slice": per_slice, "stack": mean,
                                         "settings": vars(args) | {"data": str(args.data),
                                                                   "out": str(work),
                                                                   "json": str(args.json)}},
                                        indent=2))


if __name__ == "__main__":
    main()
