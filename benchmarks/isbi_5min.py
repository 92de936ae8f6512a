"""Issue 3 evidence: train the ``default`` configuration for 5 minutes on ISBI 2012 slices 00-24
(this machine's CPU), predict slices 25-29 with ``predict_tiled`` and compare the pixel error with
the all-cell baseline.

Two pixel errors are printed, for the model and for the baseline (everything "cell"):

* ISBI pixel error = 1 - max over thresholds 0.0, 0.1, ..., 1.0 of the F-score of cell pixels
  (``unetkit.metrics.arrays.pixel_error``, counts pooled over the 5 slices);
* plain pixel error = fraction of misclassified pixels at p(cell) > 0.5, and at the threshold
  the ISBI error picked (the all-cell baseline's plain error is the membrane fraction, ~0.2).
  The balanced class weights and the border term of Eq. 2 shift the model's probabilities towards
  membrane, so 0.5 is not its best threshold.

Usage: ``python benchmarks/isbi_5min.py [--minutes 5] [--set train.lr=1e-3 ...] [--out DIR]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from unetkit import load_model, predict_tiled
from unetkit.io.images import read_image
from unetkit.metrics.arrays import evaluate_arrays
from unetkit.training import run_config, train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012"


def _link_slices(folder: Path, indices: range) -> tuple[Path, Path]:
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in indices:
            (folder / sub / f"{i:02d}.png").symlink_to(DATA / sub / f"{i:02d}.png")
    return folder / "images", folder / "labels"


def _scores(prob: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """prob: (Z, H, W) p(cell); truth: (Z, H, W) 0 membrane / 255 cell."""
    isbi = evaluate_arrays(prob, truth, metrics=("pixel_error", "pixel_error_threshold", "iou"))
    t = isbi["pixel_error_threshold"]
    return {"isbi": isbi["pixel_error"], "t": t, "iou": isbi["iou"],
            "plain": float(np.mean((prob > 0.5) != (truth > 0))),
            "plain_t": float(np.mean((prob > t) != (truth > 0)))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--iterations", type=int, default=None,
                    help="a step budget instead of --minutes (to compare settings under load)")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", action="append", default=[], help="config override")
    ap.add_argument("--val", type=int, default=0, help="validate on the last N training slices")
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="isbi5_"))
    out = Path(args.out) if args.out else work / "run"
    n_train = 25 - args.val
    images, labels = _link_slices(work / "train", range(n_train))
    val = {}
    if args.val:
        vi, vl = _link_slices(work / "val", range(n_train, 25))
        val = {"val_images": vi, "val_labels": vl}
    budget = {"iterations": args.iterations} if args.iterations else {"minutes": args.minutes}
    cfg = run_config(out, preset_name=args.preset, overrides=args.set, **budget)
    load_before = os.getloadavg()
    steps = {}

    def progress(step: int, total: int, info: dict) -> None:
        steps.update(step=step, **info)

    t0 = time.perf_counter()
    train(cfg, images, labels, out, progress=progress, **val)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()

    model = load_model(out / "model.safetensors")
    test = range(25, 30)
    truth = np.stack([read_image(DATA / "labels" / f"{i:02d}.png") for i in test])
    t1 = time.perf_counter()
    prob = np.stack([predict_tiled(model, read_image(DATA / "images" / f"{i:02d}.png"))[1]
                     for i in test])
    predict_s = (time.perf_counter() - t1) / len(test)
    model_scores = _scores(prob, truth)
    base_scores = _scores(np.ones_like(prob), truth)

    t = cfg.train
    print(f"# ISBI 2012: train slices 00-{n_train - 1:02d}"
          + (f", validate {n_train:02d}-24" if args.val else "") + ", test slices 25-29")
    print(f"# config: preset {args.preset} {' '.join(args.set)}; {cfg.model.base_channels} "
          f"channels, depth {cfg.model.depth}, tile {t.tile_size}, {t.optimizer} lr {t.lr:g} "
          f"momentum {t.momentum}, {t.schedule} schedule, warm-up {t.warmup_iterations}")
    print(f"# training: {steps['step']} steps in {steps['elapsed']:.0f} s "
          f"({steps['step'] / steps['elapsed']:.2f} it/s; {wall:.0f} s wall incl. targets), "
          f"final loss {steps['loss']:.3f}; data wait {steps['data_wait']:.1f} s, "
          f"data prep {steps['data_prep']:.1f} s (in the background thread)")
    print(f"# load average before {load_before[0]:.2f} {load_before[1]:.2f}, after "
          f"{load_after[0]:.2f} {load_after[1]:.2f} (1/5 min; 2 cores); "
          f"predict {predict_s:.2f} s per 512x512 slice")
    print(f"{'':22} {'ISBI pixel error':>16} {'(threshold)':>11} {'plain error @0.5':>16} "
          f"{'plain @threshold':>16} {'IoU @0.5':>8}")
    for name, s in (("model (slices 25-29)", model_scores), ("all-cell baseline", base_scores)):
        print(f"{name:22} {s['isbi']:16.4f} {s['t']:11.1f} {s['plain']:16.4f} "
              f"{s['plain_t']:16.4f} {s['iou']:8.4f}")
    print(f"# run folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
