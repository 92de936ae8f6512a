"""The demo end to end at a tiny scale: every report file, the evaluate JSON format, the CLI."""

import json

from PIL import Image

from unetkit.cli.main import main
from unetkit.demo.run import DEMO_METRICS, DemoSettings, run_demo


def test_demo_writes_a_complete_report(tmp_path):
    settings = DemoSettings(iterations=3, train_images=2, val_images=1, image_size=160,
                            large_size=400)
    result = run_demo(tmp_path / "demo", settings)
    out = tmp_path / "demo"
    assert result["report"] == out / "report.html"
    page = (out / "report.html").read_text()
    for name in ("overlay_whole.png", "overlay_crop1.png", "training_curves.png"):
        assert name in page
        with Image.open(out / name) as img:
            assert img.size[0] > 100
            assert img.mode in ("RGB", "RGBA")
    data = json.loads((out / "metrics.json").read_text())
    assert set(data) == {"per_image", "mean"}
    assert set(data["mean"]) == set(DEMO_METRICS)
    assert (out / "run" / "model.safetensors").is_file()
    assert (out / "prediction_instances.tif").is_file()


def test_demo_cli(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--iterations", "2", "--size", "300",
                 "--train-images", "2", "--image-size", "160"]) == 0
    out = capsys.readouterr().out
    assert "report:" in out and "foreground IoU" in out
    assert (tmp_path / "d" / "report.html").is_file()
