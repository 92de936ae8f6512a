"""The napari widgets in a real Viewer (Qt; run under ``xvfb-run``, as .ci/run does)."""

import os

import numpy as np
import pytest
import torch

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    pytest.skip("a real napari Viewer needs a display: run the tests under xvfb-run",
                allow_module_level=True)

from unetkit import UNet, load_model, predict_tiled, save_model
from unetkit.data.synthetic import make_cells
from unetkit.napari.widgets import PredictWidget, TrainWidget, sample_nuclei

WAIT_MS = 120_000


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.safetensors"
    save_model(path, UNet(base_channels=4).eval(), {"normalization": {"mode": "per_image"}})
    return path


def test_plugin_manifest_docks_both_widgets(make_napari_viewer):
    viewer = make_napari_viewer()
    for name, kind in (("Segment (U-Net)", PredictWidget), ("Train (U-Net)", TrainWidget)):
        _, widget = viewer.window.add_plugin_dock_widget("unetkit", name)
        assert isinstance(widget, kind)


def test_predict_widget_adds_three_layers_from_a_worker(make_napari_viewer, qtbot, model_file):
    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    image, _ = make_cells((240, 260), 1)
    layer = viewer.add_image(image, name="nuclei")
    assert [c for c in widget.image.choices] == [layer]
    widget.model_path.value = model_file
    widget.tile.value = 252
    worker = widget.run()
    assert worker is not None and not widget.run_button.enabled
    qtbot.waitUntil(lambda: widget.status.value.startswith("done"), timeout=WAIT_MS)
    names = [lyr.name for lyr in viewer.layers]
    assert names == ["nuclei", "nuclei probability", "nuclei labels", "nuclei instances"]
    ref = predict_tiled(load_model(model_file), image, tile_size=252)
    # a worker thread may run torch with another OpenMP team: float rounding, not tiling
    np.testing.assert_allclose(viewer.layers["nuclei probability"].data, 1 - ref[0], atol=1e-5)
    assert widget.progress.value == widget.progress.max > 0
    assert widget.run_button.enabled


def test_predict_widget_reports_a_bad_model_path(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    viewer.add_image(np.zeros((64, 64), np.uint8))
    widget.model_path.value = tmp_path
    assert widget.run() is None and widget.status.value.startswith("error:")


def test_train_widget_shows_live_loss_and_saves_a_run_folder(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    for data, kwargs, kind in sample_nuclei():
        getattr(viewer, f"add_{kind}")(data[:200, :200], **kwargs)
    widget.image.value = viewer.layers["nuclei"]
    widget.labels_layer.value = viewer.layers["nuclei labels"]
    widget.out.value = tmp_path / "run"
    widget.iterations = 3
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.status.value.startswith("model saved"), timeout=WAIT_MS)
    assert len(widget.losses) == 3 and widget.loss.value.startswith("step 3/")
    assert (tmp_path / "run" / "model.safetensors").is_file()
