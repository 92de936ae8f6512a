"""The run's history: metrics.csv (one row per step, appended) and curves.png (loss, validation)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io.images import atomic_path

__all__ = ["History", "NoHistory", "COLUMNS"]

COLUMNS = ("step", "time", "loss", "lr", "val_pixel_error", "val_iou", "val_f1", "val_score")


class History:
    """metrics.csv (appended per step) and the in-memory history for curves.png."""

    def __init__(self, path: Path, keep_until: int | None) -> None:
        self.path = path
        self.rows: list[dict[str, str]] = []
        if keep_until is not None and path.is_file():
            with path.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        self._file = path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, COLUMNS)

    def add(self, row: dict[str, Any]) -> None:
        text = {k: ("" if row.get(k) is None else f"{row[k]:.6g}") for k in COLUMNS}
        text["step"] = str(int(row["step"]))
        self.rows.append(text)
        self._writer.writerow(text)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def plot(self, path: Path) -> None:
        steps = np.array([int(r["step"]) for r in self.rows])
        loss = np.array([float(r["loss"]) for r in self.rows])
        fig = Figure(figsize=(10, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax_loss, ax_val = fig.subplots(1, 2)
        if steps.size:
            k = max(1, steps.size // 50)
            ax_loss.plot(steps, loss, color="0.75" if k > 1 else "C0", lw=0.6, label="loss per step")
            if k > 1:
                smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
                ax_loss.plot(steps[k - 1:], smooth, color="C0", lw=1.5, label=f"mean of {k} steps")
            ax_loss.set_yscale("log")
            ax_lr = ax_loss.twinx()
            ax_lr.plot(steps, [float(r["lr"]) for r in self.rows], color="C3", lw=1, ls="--")
            ax_lr.set_ylabel("learning rate (dashed)", color="C3")
            ax_lr.set_ylim(bottom=0)
        ax_loss.set(xlabel="step", ylabel="weighted cross entropy", title="training loss")
        ax_loss.legend(loc="upper right")
        val = [r for r in self.rows if r.get("val_iou")]
        if val:
            vs = [int(r["step"]) for r in val]
            for key, style, label in (("val_pixel_error", "o-", "pixel error"),
                                      ("val_iou", "s-", "foreground IoU"),
                                      ("val_f1", "^-", "object F1@0.5"),
                                      ("val_score", "k--", "selection score")):
                if all(r.get(key) for r in val):
                    ax_val.plot(vs, [float(r[key]) for r in val], style, label=label)
            ax_val.legend(loc="best")
        else:
            ax_val.text(0.5, 0.5, "no validation data", ha="center", va="center",
                        transform=ax_val.transAxes)
        ax_val.set(xlabel="step", title="validation (whole images, overlap-tile)", ylim=(0, 1))
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")


class NoHistory:
    """The history of a data-parallel rank other than 0: rank 0 alone writes the run folder."""

    def add(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass

    def plot(self, path: Path) -> None:
        pass
