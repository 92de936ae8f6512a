"""``predict --out DIR`` on an input too large for the memory budget streams it tile by tile
(to a TIFF in that folder): peak memory stays flat as the image grows."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile
import torch

from unetkit import UNet, save_model

CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from unetkit.cli.main import main

    def peak():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    torch.set_num_threads(1)
    model, image, out = sys.argv[1:4]
    main(["predict", "--model", model, "--input", sys.argv[4], "--out", out, "--tile", "508",
          "--memory-budget", "40", "-q"])  # warm-up on a small image (held: under the budget)
    before = peak()
    code = main(["predict", "--model", model, "--input", image, "--out", out, "--tile", "508",
                 "--memory-budget", "40", "-q"])
    print(json.dumps({"code": code, "growth": peak() - before}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_out_dir_streams_large_bigtiff_with_flat_memory(tmp_path):
    torch.manual_seed(0)
    net = UNet(base_channels=2)
    net.meta = {"normalization": {"mode": "range"}}
    model = save_model(tmp_path / "m.safetensors", net)
    tifffile.imwrite(tmp_path / "warm.tif", np.zeros((64, 64), np.uint8))
    growth = {}
    for width in (4096, 16384):  # 13 and 52 tiles wide; held in memory: 63 MB and 250 MB
        img = (np.arange(768 * width, dtype=np.uint32).reshape(768, width) % 251).astype(np.uint8)
        path = tmp_path / f"wide{width}.tif"
        tifffile.imwrite(path, img, bigtiff=True, tile=(256, 256))
        del img
        res = subprocess.run([sys.executable, "-c", CHILD, str(model), str(path),
                              str(tmp_path / f"out{width}"), str(tmp_path / "warm.tif")],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        r = json.loads(res.stdout.strip().splitlines()[-1])
        assert r["code"] == 0
        growth[width] = r["growth"]
        out = tifffile.imread(tmp_path / f"out{width}" / f"wide{width}.tif")
        assert out.shape == (768, width) and out.dtype == np.uint8
    print(f"peak RSS growth: {growth[4096] / 2**20:.0f} MiB at 768x4096, "
          f"{growth[16384] / 2**20:.0f} MiB at 768x16384")
    # 4x the pixels (187 MB more to hold if not streamed): (almost) no more memory
    assert growth[16384] - growth[4096] < 24 * 2**20
    assert growth[16384] < 120 * 2**20
