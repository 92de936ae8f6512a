"""Pictures and a one-page HTML report of a segmentation: overlays, curves, metrics (no torch).

Overlays draw the image in gray, the ground-truth outlines in green and the predicted outlines in
magenta (where both agree the outline is white), so that splits, mergers and misses show at a glance.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.segmentation import find_boundaries

from ..io.images import atomic_path

__all__ = ["to_gray8", "overlay", "save_png", "write_html_report", "pick_crops"]

TRUTH_RGB = (40, 220, 60)
PRED_RGB = (235, 40, 235)
BOTH_RGB = (255, 255, 255)


def to_gray8(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """(H, W) any dtype -> uint8 with a percentile stretch (what a viewer's auto-contrast does)."""
    img = np.asarray(image, dtype=np.float32)
    sample = img[:: max(1, img.shape[0] // 512), :: max(1, img.shape[1] // 512)]
    lo, hi = np.percentile(sample, [low, high])
    scaled = (img - lo) / max(float(hi - lo), 1e-12)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def overlay(image: np.ndarray, truth: np.ndarray | None = None,
            pred: np.ndarray | None = None) -> np.ndarray:
    """(H, W) image + label images -> (H, W, 3) uint8 with outlines of the objects."""
    gray = to_gray8(image)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    t = find_boundaries(truth, mode="inner") if truth is not None else None
    p = find_boundaries(pred, mode="inner") if pred is not None else None
    if t is not None:
        rgb[t] = TRUTH_RGB
    if p is not None:
        rgb[p] = PRED_RGB
    if t is not None and p is not None:
        rgb[t & p] = BOTH_RGB
    return rgb


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an (H, W) or (H, W, 3) uint8 array as PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="PNG")
    return Path(path)


def pick_crops(truth: np.ndarray, size: int, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners of ``n`` crops of ``size`` px with many objects (dense regions show the
    touching cells that matter most), spread over the image."""
    h, w = truth.shape
    size_y, size_x = min(size, h), min(size, w)
    candidates = [(int(rng.integers(0, h - size_y + 1)), int(rng.integers(0, w - size_x + 1)))
                  for _ in range(8 * n)]

    def objects(c):
        y, x = c
        return len(np.unique(truth[y : y + size_y : 2, x : x + size_x : 2]))

    chosen: list[tuple[int, int]] = []
    for c in sorted(candidates, key=objects, reverse=True):
        if all(abs(c[0] - d[0]) >= size_y or abs(c[1] - d[1]) >= size_x for d in chosen):
            chosen.append(c)
        if len(chosen) == n:
            break
    return chosen


def _table(metrics: dict[str, float]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
                   for k, v in metrics.items())
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def write_html_report(path: str | os.PathLike, *, title: str, summary: Sequence[str],
                      metrics: dict[str, float], figures: Sequence[tuple[str, str]],
                      details: dict | None = None) -> Path:
    """One self-contained page: summary lines, a metrics table, figures (relative paths)."""
    figs = "".join(
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(cap)}">'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for src, cap in figures
    )
    items = "".join(f"<li>{html.escape(line)}</li>" for line in summary)
    extra = (f"<h2>Details</h2><pre>{html.escape(json.dumps(details, indent=2))}</pre>"
             if details else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; }}
td:last-child {{ text-align: right; font-variant-numeric: tabular-nums; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ color: #555; font-size: 0.9em; }}
.legend span {{ padding: 0 0.5em; font-weight: bold; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<ul>{items}</ul>
<p class="legend">Outlines: <span style="color:rgb{TRUTH_RGB}">ground truth</span>
<span style="color:rgb{PRED_RGB}">prediction</span> <span style="background:#333;color:#fff">both</span></p>
<h2>Metrics</h2>{_table(metrics)}
<h2>Figures</h2>{figs}{extra}
</body></html>
"""
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)
