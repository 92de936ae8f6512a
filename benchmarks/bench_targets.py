"""Time the weight map (paper Eq. 2) on a 512x512 image with ~100 touching cells.

Prints the per-object bounding-box method against the naive one (one full-image EDT per
object), both measured in this run: absolute times drift on shared machines, ratios less so.
Run: python benchmarks/bench_targets.py
"""

import math
import time

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from unetkit.data.targets import build_targets, nearest_two_distances, weight_map


def cells(n=100, size=512, radius=22, seed=0):
    rng = np.random.default_rng(seed)
    markers = np.zeros((size, size), np.int32)
    markers.flat[rng.choice(size * size, n, replace=False)] = np.arange(1, n + 1)
    dist = ndimage.distance_transform_edt(markers == 0)
    return watershed(dist, markers, mask=dist < radius)  # touching blobs


def best_of(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    labels = cells()
    n = len(np.unique(labels)) - 1
    t_wm = best_of(lambda: weight_map(labels))
    t_build = best_of(lambda: build_targets(labels, kind="instance"))
    t_naive = best_of(lambda: nearest_two_distances(labels, cutoff=math.inf), repeat=2)
    print(f"{n} objects, 512x512")
    print(f"weight_map           {t_wm * 1e3:8.1f} ms")
    print(f"build_targets        {t_build * 1e3:8.1f} ms")
    print(f"full-image EDTs      {t_naive * 1e3:8.1f} ms  ({t_naive / t_wm:.1f}x weight_map)")


if __name__ == "__main__":
    main()
