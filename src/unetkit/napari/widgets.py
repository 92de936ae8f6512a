"""The napari widgets: Segment (predict) and Train.  Qt side only; the work is in ``layers.py``.

Both run their work in a napari worker thread, so the viewer stays responsive; progress travels
back to the Qt main thread through a signal (widgets are only touched there).
"""

# (no `from __future__ import annotations`: napari injects the viewer by the evaluated annotation)

import logging
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import (ComboBox, Container, FileEdit, FloatSpinBox, Label, ProgressBar,
                              PushButton, SpinBox)
from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal

from ..data import synthetic
from ..inference.runtime import RUNTIMES
from .layers import open_model, segment, train_layers

__all__ = ["PredictWidget", "TrainWidget", "sample_nuclei"]

log = logging.getLogger(__name__)


class _Relay(QObject):
    """Carries progress from the worker thread to the main thread (queued connection)."""

    tiles = Signal(int, int)
    steps = Signal(int, int, float)


def _layers_of(viewer: napari.Viewer, kind: type) -> list[tuple[str, Any]]:
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, kind)]


class PredictWidget(Container):
    """Pick a model (file or run folder) and an image layer; add probability, label and
    instance layers, computed tile by tile in a worker thread."""

    def __init__(self, viewer: napari.Viewer) -> None:
        self._viewer = viewer
        self.model_path = FileEdit(label="model", mode="r", filter="*.safetensors *.zip",
                                   tooltip="model.safetensors, a bioimage.io zip by unetkit, or "
                                           "a run folder (type its path)")
        self.image = ComboBox(label="image", choices=self._images)
        self.runtime = ComboBox(label="runtime", choices=list(RUNTIMES), value="torch")
        self.tile = SpinBox(label="tile (0: auto)", value=0, min=0, max=4096, step=16)
        # 0: the model file's choice (made on validation data when it was trained)
        self.threshold = FloatSpinBox(label="threshold (0: model's)", value=0.0, min=0.0,
                                      max=0.99, step=0.05)
        self.min_size = SpinBox(label="min object px (-1: model's)", value=-1, min=-1,
                                max=100000)
        self.progress = ProgressBar(label="tiles", value=0, min=0, max=1)
        self.run_button = PushButton(text="Segment")
        self.status = Label(value="")
        super().__init__(widgets=[self.model_path, self.image, self.runtime, self.tile,
                                  self.threshold, self.min_size, self.run_button, self.progress,
                                  self.status])
        self._relay = _Relay()
        self._relay.tiles.connect(self._on_tiles)
        self.run_button.changed.connect(self.run)
        viewer.layers.events.inserted.connect(self.image.reset_choices)
        viewer.layers.events.removed.connect(self.image.reset_choices)
        self.worker = None

    def _images(self, _widget=None) -> list[tuple[str, Any]]:
        return _layers_of(self._viewer, napari.layers.Image)

    def _on_tiles(self, done: int, total: int) -> None:
        self.progress.max = total
        self.progress.value = done

    def _add(self, layer_data: list) -> None:
        for data, kwargs, kind in layer_data:
            if kwargs["name"] in self._viewer.layers:
                self._viewer.layers.remove(kwargs["name"])
            getattr(self._viewer, f"add_{kind}")(data, **kwargs)
        self.status.value = f"done: {len(layer_data)} layers added"
        self.run_button.enabled = True

    def _failed(self, exc: Exception) -> None:
        self.status.value = f"error: {exc}"
        self.run_button.enabled = True

    def run(self) -> Any:
        """Start segmenting the selected image; returns the worker (tests wait on it)."""
        layer = self.image.value
        if layer is None:
            self.status.value = "no image layer"
            return None
        try:
            model = open_model(self.model_path.value)
        except (ValueError, FileNotFoundError) as exc:
            self.status.value = f"error: {exc}"
            return None
        self.run_button.enabled = False
        self.status.value = f"segmenting {layer.name} ..."
        self.worker = create_worker(
            segment, model, layer.data, name=layer.name, tile_size=self.tile.value or None,
            runtime=self.runtime.value, threshold=self.threshold.value or None,
            min_size=None if self.min_size.value < 0 else self.min_size.value,
            progress=self._relay.tiles.emit)
        self.worker.returned.connect(self._add)
        self.worker.errored.connect(self._failed)
        self.worker.start()
        return self.worker


class TrainWidget(Container):
    """Train on an image + labels layer pair (or folders) for a time budget; live loss; the
    model is saved in a run folder (``model.safetensors``, metrics.csv, curves.png)."""

    def __init__(self, viewer: napari.Viewer) -> None:
        self._viewer = viewer
        self.image = ComboBox(label="image layer", choices=self._images, nullable=True)
        self.labels_layer = ComboBox(label="labels layer", choices=self._labels, nullable=True)
        self.image_dir = FileEdit(label="or image folder", mode="d", value="")
        self.label_dir = FileEdit(label="label folder", mode="d", value="")
        self.preset = ComboBox(label="preset", choices=["default", "paper"], value="default")
        self.minutes = FloatSpinBox(label="minutes", value=5.0, min=0.1, max=10000, step=1.0)
        self.out = FileEdit(label="run folder", mode="d", value="unetkit-run")
        self.run_button = PushButton(text="Train")
        self.progress = ProgressBar(label="steps", value=0, min=0, max=1)
        self.loss = Label(value="loss: -")
        self.status = Label(value="")
        super().__init__(widgets=[self.image, self.labels_layer, self.image_dir, self.label_dir,
                                  self.preset, self.minutes, self.out, self.run_button,
                                  self.progress, self.loss, self.status])
        self.losses: list[float] = []
        self.iterations: int | None = None  # a step budget instead of minutes (tests)
        self._relay = _Relay()
        self._relay.steps.connect(self._on_step)
        self.run_button.changed.connect(self.run)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.image.reset_choices)
            event.connect(self.labels_layer.reset_choices)
        self.worker = None

    def _images(self, _widget=None) -> list[tuple[str, Any]]:
        return _layers_of(self._viewer, napari.layers.Image)

    def _labels(self, _widget=None) -> list[tuple[str, Any]]:
        return _layers_of(self._viewer, napari.layers.Labels)

    def _on_step(self, step: int, total: int, loss: float) -> None:
        self.losses.append(loss)
        self.progress.max = max(total, 1)
        self.progress.value = min(step, total)
        recent = self.losses[-20:]
        self.loss.value = (f"step {step}/{total}  loss {loss:.4f}  "
                           f"(mean of last {len(recent)}: {sum(recent) / len(recent):.4f})")

    def _progress(self, step: int, total: int, info: dict) -> None:  # worker thread
        self._relay.steps.emit(step, total, float(info["loss"]))

    def _done(self, run: Path) -> None:
        self.status.value = f"model saved: {Path(run) / 'model.safetensors'}"
        self.run_button.enabled = True

    def _failed(self, exc: Exception) -> None:
        self.status.value = f"error: {exc}"
        self.run_button.enabled = True

    def _sources(self) -> tuple[Any, Any]:
        if self.image.value is not None and self.labels_layer.value is not None:
            return self.image.value.data, self.labels_layer.value.data
        folders = (str(self.image_dir.value), str(self.label_dir.value))
        if all(f not in ("", ".") for f in folders):
            return folders
        raise ValueError("choose an image and a labels layer, or an image and a label folder")

    def run(self) -> Any:
        """Start training; returns the worker (tests wait on it)."""
        try:
            images, labels = self._sources()
        except ValueError as exc:
            self.status.value = f"error: {exc}"
            return None
        self.losses.clear()
        self.run_button.enabled = False
        self.status.value = "training ..."
        minutes = None if self.iterations else self.minutes.value
        self.worker = create_worker(
            train_layers, images, labels, Path(self.out.value), minutes=minutes,
            iterations=self.iterations, preset_name=self.preset.value, progress=self._progress)
        self.worker.returned.connect(self._done)
        self.worker.errored.connect(self._failed)
        self.worker.start()
        return self.worker


def sample_nuclei() -> list[tuple]:
    """napari sample data: a synthetic nuclei image and its instance labels (512 x 512)."""
    image, labels = synthetic.make_cells((512, 512), 0, kind="nuclei")
    return [(image, {"name": "nuclei"}, "image"),
            (labels, {"name": "nuclei labels", "opacity": 0.5}, "labels")]
