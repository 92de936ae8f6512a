"""Make docs/napari-segment.png: the Segment widget in a real napari window, after segmenting the
synthetic nuclei sample with a briefly trained model.  Run under a virtual display:

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_napari_screenshot.py [--minutes 2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from unetkit.data.synthetic import make_cells
from unetkit.napari.layers import train_layers
from unetkit.napari.widgets import PredictWidget, sample_nuclei


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="training budget")
    ap.add_argument("--out", default=str(Path(__file__).with_name("napari-segment.png")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images, labels = zip(*(make_cells((384, 384), seed) for seed in range(8)))
        run = train_layers(list(images), list(labels), Path(tmp) / "run", minutes=args.minutes)
        viewer = napari.Viewer(show=True)
        viewer.window.resize(1500, 900)
        for data, kwargs, kind in sample_nuclei():
            if kind == "image":
                getattr(viewer, f"add_{kind}")(data, **kwargs)
        widget = PredictWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Segment (U-Net)")
        widget.model_path.value = run
        widget.min_size.value = 30
        worker = widget.run()
        while not widget.status.value.startswith(("done", "error")):
            QApplication.processEvents()
            time.sleep(0.02)
        print(widget.status.value, "runtime:", worker is not None)
        viewer.layers["nuclei probability"].visible = False
        for _ in range(20):
            QApplication.processEvents()
        viewer.screenshot(args.out, canvas_only=False)
        print(f"wrote {args.out}")
        viewer.close()


if __name__ == "__main__":
    main()
