"""``unetkit demo``: the whole job on built-in synthetic microscopy, from nothing to a report.

1. Generate a training set (touching, clustered nuclei with uneven illumination, blur and noise;
   exact instance labels), a validation set and one large test image (4096 x 4096 by default).
2. Train the ``default`` configuration for a few minutes (the paper's loss, weight maps and
   elastic deformation; a smaller network so that a 2-core CPU suffices).
3. Segment the large image with overlap-tile prediction, turn it into instances, score it.
4. Write ``report.html`` with overlays, the training curves and ``metrics.json`` (the format of
   ``unetkit evaluate``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from . import report
from ..data import synthetic
from ..config import preset
from ..inference.postprocess import (foreground_maps, has_contact, model_postprocess,
                                     postprocess_instances)
from ..io.images import atomic_path, write_tiff
from ..metrics.arrays import evaluate_arrays
from ..model.modelfile import load_model
from ..inference.tiled import predict_tiled
from ..training import CURVES, MODEL, train

__all__ = ["DemoSettings", "run_demo", "DEMO_METRICS"]

log = logging.getLogger(__name__)

#: What the demo scores on its large image (the ISBI sweeps' warping error and V_rand/V_info
#: are left to ``unetkit evaluate``: on 16 Mpx they take minutes).
DEMO_METRICS = ("pixel_error", "rand_error", "iou", "dice", "ap50", "f1_50", "seg")
_PIXEL_METRICS = DEMO_METRICS[:4]  # scored on the foreground probability map
_OBJECT_METRICS = DEMO_METRICS[4:]  # scored on the instance image the demo writes


@dataclass(frozen=True)
class DemoSettings:
    """What the demo generates and how long it trains; the defaults are the README's figures."""

    minutes: float = 4.0  # training budget: "a few minutes on a 2-core CPU"
    train_images: int = 24  # few annotated images, as the paper's users have
    val_images: int = 3
    image_size: int = 384
    large_size: int = 4096  # the test image, segmented with overlap-tile prediction
    kind: str = "nuclei"  # synthetic.make_cells preset
    seed: int = 0
    tta: bool | None = None  # None: the model file's choice (on for the default preset)
    # instances: connected components of the foreground, the network's separation borders
    # splitting touching nuclei, cleaned as the model file says (threshold, holes and smallest
    # object chosen on the validation images after training; inference.postprocess).  Measured
    # on the demo's 4096^2 image after 4 min of training (before post-processing was chosen):
    # F1@0.5 0.961 -> 0.965 with a fixed min_size 30; a seeded watershed over-splits such a model
    # (0.863).  For a network trained too briefly to have learned the borders, "watershed"
    # recovers merged nuclei instead.  A model with a contact class (data.touching=class) splits
    # touching nuclei itself (inference.postprocess.split_touching) and does not use this.
    instance_method: str = "components"
    min_size: int | None = None  # None: the model file's
    device: str = "cpu"
    iterations: int | None = None  # a step budget instead of minutes (tests)


def _generate(data: Path, s: DemoSettings) -> tuple[np.ndarray, np.ndarray]:
    synthetic.write_dataset(data / "train", s.train_images, (s.image_size, s.image_size), s.seed,
                            kind=s.kind)
    synthetic.write_dataset(data / "val", s.val_images, (s.image_size, s.image_size),
                            s.seed + 1000, kind=s.kind)
    image, truth = synthetic.make_cells((s.large_size, s.large_size), s.seed + 2000, kind=s.kind)
    write_tiff(data / "large_image.tif", image, axes="YX")
    write_tiff(data / "large_truth.tif", truth, axes="YX")
    return image, truth


def run_demo(out_dir: str | os.PathLike, settings: DemoSettings = DemoSettings(), *,
             train_progress: Callable[[int, int, dict[str, Any]], None] | None = None,
             predict_progress: Callable[[int, int], None] | None = None,
             stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the demo in ``out_dir``; return ``{"report": path, "metrics": {...}, ...}``."""
    s = settings
    out = Path(out_dir)
    say = stage or (lambda text: log.info(text))
    data, run_dir = out / "data", out / "run"
    if run_dir.exists():  # a demo starts afresh; its data and run folders are its own
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    say(f"generating synthetic data ({s.train_images} training images of {s.image_size}^2, "
        f"a {s.large_size}^2 test image)")
    image, truth = _generate(data, s)
    t_data = time.perf_counter() - t0

    cfg = preset("default")
    budget = ({"iterations": s.iterations, "minutes": None} if s.iterations
              else {"minutes": s.minutes, "iterations": 10**9})
    cfg = replace(cfg, train=replace(cfg.train, seed=s.seed, **budget))
    say(f"training the default configuration ({s.minutes} min)" if not s.iterations
        else f"training the default configuration ({s.iterations} steps)")
    t1 = time.perf_counter()
    train(cfg, data / "train" / "images", data / "train" / "labels", run_dir,
          val_images=data / "val" / "images", val_labels=data / "val" / "labels",
          device=s.device, progress=train_progress)
    t_train = time.perf_counter() - t1

    say(f"segmenting the {s.large_size}^2 image tile by tile")
    model = load_model(run_dir / MODEL, device=s.device)
    t2 = time.perf_counter()
    prob = predict_tiled(model, image, tta=s.tta, device=s.device, progress=predict_progress)
    t_predict = time.perf_counter() - t2
    fg, interior = foreground_maps(prob, has_contact(model))
    pp = model_postprocess(model, min_size=s.min_size)
    instances = postprocess_instances(fg, pp, interior, method=s.instance_method)
    write_tiff(out / "prediction_instances.tif", instances, axes="YX")

    say("scoring")
    scores = evaluate_arrays(fg, truth, _PIXEL_METRICS)
    scores.update(evaluate_arrays(instances, truth, _OBJECT_METRICS))
    scores = {k: float(v) for k, v in scores.items()}
    result = {"per_image": {"large_image": scores}, "mean": dict(scores)}
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))

    figures = _figures(out, image, truth, instances, run_dir, s)
    summary = [
        f"unetkit {__version__}: the default configuration trained for {t_train / 60:.1f} min on "
        f"{s.train_images} synthetic images of {s.image_size}^2 ({s.kind}).",
        f"Test image: {s.large_size} x {s.large_size}, {int(truth.max())} objects, "
        f"{synthetic.touching_fraction(truth):.0%} of them touching another.",
        f"Overlap-tile prediction took {t_predict:.0f} s "
        f"({s.large_size**2 / t_predict / 1e6:.2f} megapixels/s).",
        f"Foreground IoU {scores['iou']:.3f}, instance F1 at IoU 0.5 {scores['f1_50']:.3f}, "
        f"SEG {scores['seg']:.3f} ({int(instances.max())} objects found).",
        "Pixel metrics are scored on the foreground probability, instance metrics (ap50, f1_50, "
        "seg) on the written instance image.",
    ]
    details = {"settings": s.__dict__, "seconds": {"data": round(t_data, 1),
               "train": round(t_train, 1), "predict": round(t_predict, 1)}}
    page = report.write_html_report(out / "report.html", title="unetkit demo", summary=summary,
                                    metrics=scores, figures=figures, details=details)
    return {"report": page, "metrics": scores, "seconds": details["seconds"], "run": run_dir}


def _figures(out: Path, image, truth, instances, run_dir: Path, s: DemoSettings) -> list:
    figures = []
    step = max(1, s.large_size // 1024)
    small = report.overlay(image[::step, ::step], truth[::step, ::step],
                           instances[::step, ::step])
    report.save_png(out / "overlay_whole.png", small)
    figures.append(("overlay_whole.png", f"The whole {s.large_size}^2 test image (every {step}th "
                                         "pixel): ground truth green, prediction magenta"))
    rng = np.random.default_rng(s.seed)
    for i, (y, x) in enumerate(report.pick_crops(truth, 384, 3, rng)):
        crop = (slice(y, y + 384), slice(x, x + 384))
        panels = [np.repeat(report.to_gray8(image[crop])[..., None], 3, -1),
                  report.overlay(image[crop], truth=truth[crop]),
                  report.overlay(image[crop], pred=instances[crop]),
                  report.overlay(image[crop], truth[crop], instances[crop])]
        gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
        strip = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
        name = f"overlay_crop{i + 1}.png"
        report.save_png(out / name, strip)
        figures.append((name, f"Full-resolution crop at row {y}, column {x}: image | truth | "
                              "prediction | both"))
    if (run_dir / CURVES).exists():
        shutil.copyfile(run_dir / CURVES, out / "training_curves.png")
        figures.append(("training_curves.png", "Training loss and validation scores"))
    return figures
