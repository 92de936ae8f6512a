"""Every failure a user can cause: exit 2, one stderr line, no traceback, nothing left behind
(issue 12's table, row by row); internal errors keep their traceback."""

import os
import sys

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unetkit import UNet, save_model
from unetkit.cli.errors import user_error
from unetkit.cli.main import main
from unetkit.cli.progress import ProgressBar


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    m = UNet(base_channels=2)
    m.meta = {"normalization": {"mode": "range"}, "class_names": ["bg", "cell"]}
    return save_model(tmp_path / "m.safetensors", m)


@pytest.fixture
def image(tmp_path, rng):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(d / "a.png")
    return d / "a.png"


def run(*args):
    return main([str(a) for a in args])


def one_error(capsys, *words):
    """The run's stderr is one ``unetkit: error:`` line holding ``words``; returns it."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("unetkit: error: "), err
    assert "Traceback" not in err and "np." not in err
    for w in words:
        assert w in err, err
    return err


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- file system ------------------------------------------------------------------------------
def test_predict_out_is_a_file_or_under_a_file(tmp_path, model_file, image, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    before = listing(tmp_path)
    for out in (blocker, blocker / "sub"):
        assert run("predict", "--model", model_file, "--input", image, "--out", out) == 2
        one_error(capsys, str(out), "is a file")
    assert listing(tmp_path) == before


def test_train_out_is_a_file(tmp_path, image, capsys):
    blocker = tmp_path / "run"
    blocker.write_text("x")
    before = listing(tmp_path)
    assert run("train", "--images", image, "--labels", image, "--out", blocker) == 2
    one_error(capsys, "run", "is a file")
    assert listing(tmp_path) == before


def test_permission_denied_before_compute(tmp_path, model_file, image, capsys, monkeypatch):
    # root passes every permission check, so the refusal is exercised by denying access (as the
    # kernel would for a user); the real chmod below runs only when not root
    real = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else
                        real(p, mode))
    assert run("predict", "--model", model_file, "--input", image, "--out", locked / "o") == 2
    one_error(capsys, "permission denied")
    assert run("evaluate", "--pred", image, "--truth", image, "--json", locked / "r.json") == 2
    one_error(capsys, "permission denied")
    assert capsys.readouterr().out == ""  # no table first
    assert listing(locked) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions; the refusal "
                    "itself is tested by test_permission_denied_before_compute")
def test_permission_denied_real_chmod(tmp_path, model_file, image, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert run("predict", "--model", model_file, "--input", image, "--out", locked) == 2
        one_error(capsys, "permission denied")
    finally:
        locked.chmod(0o755)


def test_os_errors_at_write_time_are_one_line():
    exc = PermissionError(13, "Permission denied", "/data/out/a.tif")
    assert user_error(exc) == "/data/out/a.tif: permission denied"
    assert user_error(OSError(28, "No space left on device")) == "ENOSPC: no space left on device"


def test_evaluate_json_refuses_existing_file(tmp_path, image, capsys):
    target = tmp_path / "scores.json"
    target.write_text("{}")
    assert run("evaluate", "--pred", image, "--truth", image, "--json", target) == 2
    one_error(capsys, "scores.json", "--overwrite")
    assert target.read_text() == "{}"
    assert run("evaluate", "--pred", image, "--truth", image, "--json", target,
               "--overwrite") == 0
    assert "per_image" in target.read_text()


# --- devices, extras, memory ------------------------------------------------------------------
@pytest.mark.parametrize("device, words", [("gpu", "unknown device"), ("mps", "MPS"),
                                           ("cuda:7", "cuda")])
def test_bad_device_leaves_nothing(tmp_path, model_file, image, capsys, device, words):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("eight GPUs present")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("MPS present")
    assert run("predict", "--model", model_file, "--input", image, "--out", tmp_path / "o",
               "--device", device) == 2
    one_error(capsys, words)
    assert run("train", "--images", image, "--labels", image, "--out", tmp_path / "run",
               "--device", device) == 2
    one_error(capsys, words)
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()


def test_missing_extra_is_one_line(tmp_path, model_file, image, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)  # `import zarr` now fails: no [dask] extra
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((64, 64), np.uint8))
    assert run("predict", "--model", model_file, "--input", tmp_path / "big.tif", "--out",
               tmp_path / "o.tif") == 2
    one_error(capsys, "pip install 'unetkit[dask]'")
    assert not (tmp_path / "o.tif").exists()


def test_memory_errors_are_one_line_internal_errors_keep_traceback(tmp_path, image, monkeypatch):
    msg = user_error(MemoryError("Unable to allocate 37.3 GiB for an array"))
    assert msg.startswith("out of memory: Unable to allocate 37.3 GiB") and "--tile" in msg
    assert user_error(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: "
                                   "you tried to allocate 40 GB")).startswith("out of memory")
    assert user_error(KeyError("x")) is None and user_error(RuntimeError("bug")) is None
    assert user_error(ValueError("score np.float32(nan) at np.int64(3)")) == "score nan at 3"

    def bug(args):
        raise KeyError("internal")

    monkeypatch.setattr("unetkit.cli.verbs.cmd_sizes", bug)
    from unetkit.cli import parser

    monkeypatch.setattr(parser, "cmd_sizes", bug)
    with pytest.raises(KeyError):
        run("sizes")


# --- tiles ------------------------------------------------------------------------------------
def test_huge_tile_capped_small_budget_refused(tmp_path, model_file, image, capsys):
    out = tmp_path / "o"
    assert run("predict", "--model", model_file, "--input", image, "--out", out, "--tile",
               "99996") == 0  # legal: capped to what a 64 x 64 image needs
    assert tifffile.imread(out / "a.tif").shape == (64, 64)
    capsys.readouterr()
    assert run("predict", "--model", model_file, "--input", image, "--out", tmp_path / "p",
               "--tile", "1084", "--memory-budget", "1") == 2
    one_error(capsys, "memory budget", "--memory-budget")
    assert not (tmp_path / "p" / "a.tif").exists()


def test_tile_zero_suggests_a_size_that_is_accepted(tmp_path, model_file, image, capsys):
    assert run("predict", "--model", model_file, "--input", image, "--out", tmp_path / "o",
               "--tile", "0") == 2
    err = one_error(capsys, "too small")
    suggested = err.split("at least ")[1].split()[0]
    assert run("predict", "--model", model_file, "--input", image, "--out", tmp_path / "o",
               "--tile", suggested) == 0


@pytest.mark.parametrize("extra, words", [(["--threshold", "1.5"], "threshold 1.5"),
                                          (["--threshold", "-0.1"], "[0, 1)"),
                                          (["--min-size", "-1"], "min_size -1"),
                                          (["--batch", "0"], "batch 0")])
def test_postprocess_ranges_checked_before_compute(tmp_path, model_file, image, capsys, extra,
                                                   words, monkeypatch):
    def no_compute(*a, **k):
        raise AssertionError("computed before the check")

    monkeypatch.setattr("unetkit.inference.files.predict_tiled", no_compute)
    assert run("predict", "--model", model_file, "--input", image, "--out", tmp_path / "o",
               *extra) == 2
    one_error(capsys, words)


# --- model folders, batches -------------------------------------------------------------------
def test_model_run_folder(tmp_path, model_file, image, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.safetensors").write_bytes(model_file.read_bytes())
    assert run("predict", "--model", run_dir, "--input", image, "--out", tmp_path / "o") == 0
    assert run("info", run_dir) == 0
    capsys.readouterr()
    assert run("predict", "--model", tmp_path / "in", "--input", image, "--out",
               tmp_path / "p") == 2
    one_error(capsys, "model.safetensors")


def test_batch_goes_on_past_bad_files(tmp_path, model_file, rng, capsys):
    d = tmp_path / "batch"
    d.mkdir()
    for name in ("a", "c"):
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(d / f"{name}.png")
    (d / "b.png").write_bytes(b"not an image")  # caught up front
    good = np.zeros((40, 40), np.uint8)
    tifffile.imwrite(d / "d.tif", good)
    data = (d / "d.tif").read_bytes()
    (d / "d.tif").write_bytes(data[:-800])  # header fine, pixels cut: caught when read
    out = tmp_path / "o"
    assert run("predict", "--model", model_file, "--input", d, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("b.png: cannot read" in ln for ln in err)
    assert any("d.tif" in ln for ln in err)
    assert "2 of 4 input(s) failed, 2 predicted" in err[-1]
    assert not any("Traceback" in ln for ln in err)
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "c.tif"]
    # a rerun without --overwrite: the outputs present are refused, or kept with --skip-existing
    (d / "b.png").unlink()
    (d / "d.tif").unlink()
    assert run("predict", "--model", model_file, "--input", d, "--out", out) == 2
    assert "--skip-existing" in capsys.readouterr().err
    mtime = (out / "a.tif").stat().st_mtime_ns
    assert run("predict", "--model", model_file, "--input", d, "--out", out,
               "--skip-existing") == 0
    assert "skipped" in capsys.readouterr().out and (out / "a.tif").stat().st_mtime_ns == mtime


def test_stem_collision_named(tmp_path, model_file, rng, capsys):
    d = tmp_path / "same"
    d.mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(d / "a.png")
    tifffile.imwrite(d / "a.tif", rng.integers(0, 255, (40, 40), dtype=np.uint8))
    assert run("predict", "--model", model_file, "--input", d, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "same stem" in err and "output exists" not in err
    assert not (tmp_path / "o" / "a.tif").exists()


# --- command line -----------------------------------------------------------------------------
def test_verbose_and_quiet_anywhere(tmp_path, model_file, image, capsys):
    assert run("sizes", "--max", "220", "-v") == 0
    assert run("-v", "sizes", "--max", "220") == 0
    capsys.readouterr()
    assert run("predict", "--model", model_file, "--input", image, "--out", tmp_path / "o",
               "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    with pytest.raises(SystemExit) as stop:
        run("sizes", "-v", "-q")
    assert stop.value.code == 2


def test_help_shows_defaults(capsys):
    for verb, shown in [("predict", ["--batch BATCH", "(default: 1)", "(default: labels)",
                                     "(default: components)", "default: the model file's"]),
                        ("evaluate", ["(default: 1)", "default: the ISBI reference's"]),
                        ("demo", ["(default: 4096)", "(default: 24)", "(default: 0)"]),
                        ("sizes", ["(default: 4)", "(default: valid)", "(default: 1084)"]),
                        ("train", ["--val-fraction", "default: chosen", "--seed"])]:
        with pytest.raises(SystemExit):
            run(verb, "--help")
        text = " ".join(capsys.readouterr().out.split())
        for s in shown:
            assert s in text, (verb, s)


def test_non_tty_progress_is_plain_lines(tmp_path, model_file, rng, capsys, monkeypatch):
    monkeypatch.setattr(ProgressBar, "interval", 0.0)  # a line per update instead of every 5 s
    Image.fromarray(rng.integers(0, 255, (200, 200), dtype=np.uint8)).save(tmp_path / "b.png")
    assert run("predict", "--model", model_file, "--input", tmp_path / "b.png", "--out",
               tmp_path / "o", "--tile", "252") == 0  # 16 tiles
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("\n")
    lines = err.strip().splitlines()
    assert len(lines) >= 2 and all(ln.startswith("b.png: ") for ln in lines)
    assert "tile/s" in lines[0] and "ETA" in lines[0] and "took" in lines[-1]


def test_warnings_on_their_own_lines(tmp_path, capsys):
    bar = ProgressBar()
    bar.desc = "x"
    bar.interval = 0.0
    bar(1, 3)
    import logging

    logging.getLogger("unetkit.test").warning("careful")
    bar(3, 3)
    err = capsys.readouterr().err
    assert "\r" not in err


# --- outputs ----------------------------------------------------------------------------------
def test_outputs_respect_the_umask(tmp_path, model_file, image):
    old = os.umask(0o022)
    try:
        out = tmp_path / "o"
        assert run("predict", "--model", model_file, "--input", image, "--out", out) == 0
        assert (out / "a.tif").stat().st_mode & 0o777 == 0o644
        m = save_model(tmp_path / "m2.safetensors", UNet(base_channels=2))
        assert m.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert run("predict", "--model", model_file, "--input", image, "--out", out,
                   "--overwrite") == 0
        assert (out / "a.tif").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]  # still atomic


def test_hyperstack_keeps_axes_pixel_size_imagej_metadata(tmp_path, model_file, rng):
    stack = rng.integers(0, 255, (3, 40, 48), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um"})
    out = tmp_path / "o"
    assert run("predict", "--model", model_file, "--input", tmp_path / "z.tif", "--out",
               out) == 0
    with tifffile.TiffFile(out / "z.tif") as tif:
        assert tif.series[0].axes == "ZYX" and tif.series[0].shape == (3, 40, 48)
        ij = tif.imagej_metadata
        assert ij["spacing"] == 1.5 and ij["unit"] == "um"
        assert ij["min"] == 0 and ij["max"] >= 1  # a 0/1 mask shows in Fiji, not black
        x = tif.pages.first.tags["XResolution"].value
        assert abs(x[0] / x[1] - 4.0) < 1e-6
    assert run("predict", "--model", model_file, "--input", tmp_path / "z.tif", "--out", out,
               "--output", "probabilities", "--overwrite") == 0
    with tifffile.TiffFile(out / "z.tif") as tif:
        assert tif.series[0].axes == "ZCYX" and tif.imagej_metadata["spacing"] == 1.5
