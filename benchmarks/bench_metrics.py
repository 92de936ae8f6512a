"""Benchmark: the ISBI 2012 metrics on all 30 training slices at the challenge's thresholds,
and the growth of the warping error's time with image size.

The prediction is a plausible fake probability map (deterministic, seed 0): the truth's cell
mask blurred (sigma 2 px), squeezed to [0.1, 0.9], plus blurred Gaussian noise, clipped to
[0, 1]. Prints the time of each metric alone (the reference's sweeps: 11 thresholds 0..1, the
warping error 10 thresholds 0..0.9), of all five together (thinning shared), and the time of
`skimage.metrics.adapted_rand_error` on the same thresholded components as a reference ratio
for the Rand error.

Then a grid-split case at 256^2, 512^2 and 1024^2: cells of 31 x 31 px between one-pixel
membranes, the prediction cuts every cell in four (many split residues). The warping error
is linear in the pixel count when the time per pixel stays flat from size to size.

Usage: python benchmarks/bench_metrics.py [--data /work/shared/data/isbi2012]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.metrics import adapted_rand_error

from unetkit.metrics.isbi import DEFAULT_THRESHOLDS, ISBI_METRICS, WARPING_THRESHOLDS, isbi_metrics
from unetkit.metrics.rand_info import label_components
from unetkit.metrics.topology import splits_and_mergers


def load_truth(root: Path) -> np.ndarray:
    """(30, 512, 512) uint8 labels, 255 = cell, 0 = membrane."""
    paths = sorted((root / "labels").glob("*.png"))
    if not paths:
        raise SystemExit(f"no label PNGs under {root / 'labels'}")
    return np.stack([np.asarray(Image.open(p)) for p in paths])


def fake_probabilities(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """(Z, H, W) labels -> (Z, H, W) float64 fake cell-interior probabilities."""
    rng = np.random.default_rng(seed)
    out = np.empty(truth.shape)
    for z, t in enumerate(truth):
        smooth = ndi.gaussian_filter((t > 0).astype(float), 2.0) * 0.8 + 0.1
        noise = ndi.gaussian_filter(rng.normal(0.0, 0.6, t.shape), 1.5)
        out[z] = np.clip(smooth + noise, 0.0, 1.0)
    return out


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def skimage_rand_reference(prob, truth, thresholds) -> float:
    """Best 1 - adapted Rand error of skimage over thresholds (mean over slices)."""
    segs = [label_components(t > 0) for t in truth]
    scores = [np.mean([1 - adapted_rand_error(s, label_components(p > th))[0]
                       for s, p in zip(segs, prob, strict=True)]) for th in thresholds]
    return 1 - max(scores)


def grid_split(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size) truth cells of 31 x 31 px and a prediction that cuts each in four."""
    truth = np.ones((size, size), bool)
    truth[::32, :] = truth[:, ::32] = False
    pred = truth.copy()
    pred[16::32, :] = pred[:, 16::32] = False
    return truth, pred


def warping_growth(sizes=(256, 512, 1024)) -> None:
    print("warping error, grid-split case (one threshold):")
    per_pixel = []
    for size in sizes:
        truth, pred = grid_split(size)
        counts, seconds = timed(lambda t=truth, p=pred: splits_and_mergers(t, p))
        per_pixel.append(seconds / size**2)
        print(f"  {size:5d}^2  {seconds:7.3f} s  {counts['splits']:6d} split px  "
              f"{per_pixel[-1] * 1e9:7.1f} ns per pixel")
    ratios = ", ".join(f"{b / a:.2f}" for a, b in itertools.pairwise(per_pixel))
    print(f"  time per pixel, each size over the previous: {ratios} (1.0 = linear)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012"
    parser.add_argument("--data", type=Path, default=default)
    args = parser.parse_args()
    truth = load_truth(args.data)
    prob = fake_probabilities(truth)
    print(f"{truth.shape[0]} slices of {truth.shape[1]}x{truth.shape[2]}; thresholds "
          f"{len(DEFAULT_THRESHOLDS)} ({DEFAULT_THRESHOLDS[0]}..{DEFAULT_THRESHOLDS[-1]}), "
          f"warping {len(WARPING_THRESHOLDS)} ({WARPING_THRESHOLDS[0]}..{WARPING_THRESHOLDS[-1]})")
    alone = {}
    for name in ISBI_METRICS:
        result, seconds = timed(lambda n=name: isbi_metrics(prob, truth, metrics=(n,)))
        alone[name] = seconds
        n_th = len(WARPING_THRESHOLDS if name == "warping_error" else DEFAULT_THRESHOLDS)
        print(f"  {name:14s} {result[name]:.6f} at t={result[name + '_threshold']:.1f}"
              f"   {seconds:6.2f} s  ({seconds / (truth.shape[0] * n_th) * 1e3:.1f} ms"
              " per slice and threshold)")
    everything, total = timed(lambda: isbi_metrics(prob, truth))
    print(f"all five together: {total:.2f} s (sum of separate runs {sum(alone.values()):.2f} s)")
    ref, ref_s = timed(lambda: skimage_rand_reference(prob, truth, DEFAULT_THRESHOLDS))
    print(f"reference skimage adapted_rand_error (mean over slices, pairs of distinct pixels, "
          f"label 0 one segment): {ref:.6f} in {ref_s:.2f} s; ours/skimage time ratio "
          f"{alone['rand_error'] / ref_s:.2f}")
    assert abs(everything["rand_error"] - isbi_metrics(
        prob, truth, metrics=("rand_error",))["rand_error"]) < 1e-12
    warping_growth()


if __name__ == "__main__":
    main()
