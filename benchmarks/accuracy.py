"""unetkit's defaults against a plain MONAI U-Net on real data, with the same CPU seconds, in one run.

For each dataset: write its train / test folders (from ../shared/data, into a temporary folder),
run ``unetkit train --minutes M --seed S`` (``--seed``, 0 by default; the default preset and
everything it derives from the data), then ``unetkit predict --output labels`` and
``--output instances``.  The MONAI peer then trains for exactly as many wall-clock seconds as
the whole ``unetkit train`` command took (target computation, validation and writing
included), with the recipe of issue 10:

    BasicUNet(spatial_dims=2, features=(16, 16, 32, 64, 128, 16)), DiceCELoss(to_onehot_y=True,
    softmax=True), Adam lr 1e-3, batches of four random 256^2 crops with random rot90 and flips,
    per-image percentile normalisation (1, 99.8) over all channels, target = label > 0,
    sliding_window_inference(256^2, overlap 0.25, gaussian), argmax.

Scores (an independent scorer written here, numpy/scipy only): foreground IoU, Dice and pixel
error (fraction of wrong pixels) of label > 0; for objects, F1 at IoU 0.5 of the 4-connected
components of the predicted foreground (both tools) and of ``--output instances`` (unetkit),
pooled over the test images.  The machine's speed (a 4096^2 float32 matmul) is printed first.

    python benchmarks/accuracy.py --minutes 3            # every dataset found
    python benchmarks/accuracy.py --minutes 2 --sets dsb msc-1to2

Needs the ``bench`` extra (MONAI).  Datasets whose folder is absent are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = ("isbi", "msc-1to2", "msc-2to1", "dsb", "dsb-he", "demo")
OBJECTS = {"isbi": False, "msc-1to2": True, "msc-2to1": True, "dsb": True, "dsb-he": True,
           "demo": True}
#: stain vectors (optical density per R, G, B; Ruifrok & Johnston's haematoxylin and eosin) of
#: the H&E-like rendering of the DSB nuclei, and those of its test half: a bluer haematoxylin
#: at three quarters of the strength and a stronger, pinker eosin, as stains differ between labs
STAINS_TRAIN = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), 1.0, 1.0)
STAINS_TEST = ((0.55, 0.76, 0.36), (0.16, 0.95, 0.26), 0.75, 1.3)


# ---- datasets ---------------------------------------------------------------------------------


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        return np.asarray(Image.open(path))
    return tifffile.imread(path)


def _write(folder: Path, name: str, image: np.ndarray, labels: np.ndarray) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "images" / f"{name}.tif", image)
    tifffile.imwrite(folder / "labels" / f"{name}.tif", labels)


def stained(image: np.ndarray, stains: tuple, seed: int) -> np.ndarray:
    """A fluorescence nuclei image ``(H, W)`` -> an H&E-like brightfield RGB ``(H, W, 3)`` uint8.

    The nuclear signal (percentiles 1 / 99.8 -> 0 / 1) is the haematoxylin concentration; eosin
    fills everything at a smoothly varying level (the cytoplasm and stroma); Beer-Lambert
    turns the optical density of both stains into transmitted light, then a little camera
    noise and 8 bits. ``stains`` = (haematoxylin vector, eosin vector, haematoxylin strength,
    eosin strength)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(image, (1.0, 99.8))
    nuclei = np.clip((image.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
    texture = ndimage.gaussian_filter(rng.random(image.shape), 4.0, mode="reflect")
    texture = (texture - texture.min()) / np.ptp(texture)
    eosin = 0.1 + 0.25 * texture
    h_vec, e_vec, h_strength, e_strength = stains
    unit = [np.asarray(v) / np.linalg.norm(v) for v in (h_vec, e_vec)]
    density = (1.2 * h_strength * nuclei[..., None] * unit[0]
               + e_strength * eosin[..., None] * unit[1])
    light = 250.0 * 10.0 ** (-density) + rng.normal(0.0, 2.0, density.shape)
    return np.clip(np.round(light), 0, 255).astype(np.uint8)


def make_set(name: str, root: Path) -> tuple[Path, Path] | None:
    """Write ``root/train`` and ``root/test`` (images/, labels/); None if the data is absent."""
    train, test = root / "train", root / "test"
    if name == "isbi":
        src = SHARED / "isbi2012"
        if not (src / "images").is_dir():
            return None
        for i in range(30):
            _write(train if i < 25 else test, f"{i:02d}", _read(src / "images" / f"{i:02d}.png"),
                   _read(src / "labels" / f"{i:02d}.png"))
    elif name.startswith("msc"):
        src = SHARED / "ctc-msc"
        if not (src / "images").is_dir():
            return None
        first, second = ("01", "02") if name == "msc-1to2" else ("02", "01")
        for f in sorted((src / "images").glob("*.tif")):
            seq = f.name[:2]
            dest = train if seq == first else test if seq == second else None
            if dest is not None:
                _write(dest, f.stem, _read(f), _read(src / "labels" / f.name))
    elif name in ("dsb", "dsb-he"):
        src = SHARED / "dsb2018-one"
        if not (src / "images" / "dsb.tif").is_file():
            return None
        image, labels = _read(src / "images" / "dsb.tif"), _read(src / "labels" / "dsb.tif")
        half = image.shape[1] // 2
        left, right = image[:, :half], image[:, half:]
        if name == "dsb-he":  # H&E-like RGB, the test half stained differently
            left, right = stained(left, STAINS_TRAIN, 0), stained(right, STAINS_TEST, 1)
        _write(train, "left", left, labels[:, :half])
        _write(test, "right", right, labels[:, half:])
    elif name == "demo":
        from unetkit.data import synthetic

        synthetic.write_dataset(train, 12, (384, 384), seed=0, kind="nuclei")
        synthetic.write_dataset(test, 4, (512, 512), seed=1000, kind="nuclei")
    else:
        raise ValueError(f"unknown dataset {name!r}; choose from {SETS}")
    return train, test


def load_folder(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for f in sorted((folder / "images").glob("*.tif")):
        out.append((f.stem, tifffile.imread(f), tifffile.imread(folder / "labels" / f.name)))
    return out


# ---- scoring ----------------------------------------------------------------------------------


def _instances(labels: np.ndarray) -> np.ndarray:
    """Truth objects: instance ids as given; a 0/1 or 0/255 mask -> its 4-connected components."""
    if len(np.unique(labels)) <= 2:
        return ndimage.label(labels > 0)[0]
    return labels


def match_counts(pred: np.ndarray, truth: np.ndarray, thr: float = 0.5) -> tuple[int, int, int]:
    """(TP, FP, FN) of objects matched at IoU > thr (a match above 0.5 is unique)."""
    n_p, n_t = int(pred.max()), int(truth.max())
    if n_p == 0 or n_t == 0:
        return 0, n_p, n_t
    pairs = np.stack([truth.ravel(), pred.ravel()], 1)
    both = pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0)]
    key, inter = np.unique(both[:, 0].astype(np.int64) * (n_p + 1) + both[:, 1], return_counts=True)
    t_id, p_id = key // (n_p + 1), key % (n_p + 1)
    t_area = np.bincount(truth.ravel(), minlength=n_t + 1)
    p_area = np.bincount(pred.ravel(), minlength=n_p + 1)
    iou = inter / (t_area[t_id] + p_area[p_id] - inter)
    good = iou > thr
    tp = int(good.sum())
    return tp, int((p_area[1:] > 0).sum()) - tp, int((t_area[1:] > 0).sum()) - tp


def score(fg_preds: list[np.ndarray], truths: list[np.ndarray],
          inst_preds: list[np.ndarray] | None, objects: bool) -> dict[str, float]:
    inter = union = wrong = total = fg_sum = 0
    counts = np.zeros(3, np.int64)
    inst_counts = np.zeros(3, np.int64)
    for k, (fg, truth) in enumerate(zip(fg_preds, truths)):
        t = truth > 0
        inter += int((fg & t).sum())
        union += int((fg | t).sum())
        fg_sum += int(fg.sum()) + int(t.sum())
        wrong += int((fg != t).sum())
        total += t.size
        if objects:
            tobj = _instances(truth)
            counts += match_counts(ndimage.label(fg)[0], tobj)
            if inst_preds is not None:
                inst_counts += match_counts(inst_preds[k].astype(np.int64), tobj)
    out = {"iou": inter / max(union, 1), "dice": fg_sum and 2 * inter / fg_sum,
           "pixel_error": wrong / total}
    if objects:
        tp, fp, fn = counts
        out["f1_components"] = 2 * tp / max(2 * tp + fp + fn, 1)
        out["objects_pred"], out["objects_true"] = int(tp + fp), int(tp + fn)
        if inst_preds is not None:
            tp, fp, fn = inst_counts
            out["f1_instances"] = 2 * tp / max(2 * tp + fp + fn, 1)
    return out


# ---- unetkit ----------------------------------------------------------------------------------


def _unetkit(*args: str) -> float:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "unetkit", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def run_unetkit(train: Path, test: Path, work: Path, budget: list[str], extra: list[str],
                kinds: tuple[str, ...] = ("labels", "instances"), seed: int = 0):
    run = work / "unetkit_run"
    seconds = _unetkit("train", "--images", str(train / "images"), "--labels",
                       str(train / "labels"), "--out", str(run), *budget, "--seed", str(seed),
                       *extra)
    model = run / "model.safetensors"
    t0 = time.perf_counter()
    for kind in kinds:
        _unetkit("predict", "--model", str(model), "--input", str(test / "images"), "--out",
                 str(work / f"unetkit_{kind}"), "--output", kind)
    predict_s = time.perf_counter() - t0
    fg, inst = [], []
    for f in sorted((test / "images").glob("*.tif")):
        fg.append(tifffile.imread(work / "unetkit_labels" / f.name) > 0)
        if "instances" in kinds:
            inst.append(tifffile.imread(work / "unetkit_instances" / f.name))
    info = {}
    fingerprint = run / "fingerprint.json"
    if fingerprint.is_file():
        info = json.loads(fingerprint.read_text())
    return fg, inst or None, seconds, predict_s, info


# ---- the MONAI peer (issue 10's recipe, exactly) ------------------------------------------------


def percentile_norm(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) -> (C, H, W) float32, percentiles (1, 99.8) over all channels."""
    x = image.astype(np.float32)
    x = x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)
    lo, hi = np.percentile(x, (1, 99.8))
    return ((x - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def run_monai(train_items, test_items, seconds: float, seed: int = 0):
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    data = [(percentile_norm(img), (lab > 0).astype(np.int64)) for _, img, lab in train_items]
    channels = data[0][0].shape[0]
    net = BasicUNet(spatial_dims=2, in_channels=channels, out_channels=2,
                    features=(16, 16, 32, 64, 128, 16))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    size = 256

    def crop(x: np.ndarray, y: np.ndarray):
        h, w = y.shape
        ph, pw = max(0, size - h), max(0, size - w)
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect")
            y = np.pad(y, ((0, ph), (0, pw)), mode="reflect")
            h, w = y.shape
        i, j = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        x, y = x[:, i:i + size, j:j + size], y[i:i + size, j:j + size]
        k = int(rng.integers(4))
        x, y = np.rot90(x, k, (1, 2)), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, :, ::-1], y[:, ::-1]
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[::-1]
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    net.train()
    steps = 0
    while time.perf_counter() - t_start < seconds:
        batch = [crop(*data[int(rng.integers(len(data)))]) for _ in range(4)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        y = torch.from_numpy(np.stack([b[1] for b in batch]))[:, None]
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        steps += 1
    train_s = time.perf_counter() - t_start
    net.eval()
    fg = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for _, img, _ in test_items:
            x = torch.from_numpy(percentile_norm(img))[None]
            logits = sliding_window_inference(x, (size, size), 4, net, overlap=0.25,
                                              mode="gaussian")
            fg.append(logits[0].argmax(0).numpy() > 0)
    return fg, train_s, time.perf_counter() - t0, steps


# ---- main -------------------------------------------------------------------------------------


def machine_gflops() -> float:
    a = torch.randn(4096, 4096)
    a @ a
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        a @ a
        best = max(best, 2 * 4096**3 / (time.perf_counter() - t0) / 1e9)
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="unetkit's training budget")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--work", type=Path, help="keep the data and runs here (default: temporary)")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="extra unetkit train override (section.key=value), for experiments")
    ap.add_argument("--no-peer", action="store_true", help="unetkit only (for experiments)")
    ap.add_argument("--seed", type=int, default=0, help="both tools' seed (default 0)")
    ap.add_argument("--labels-only", action="store_true", help="unetkit: predict labels only, "
                    "not instances too (experiments: half the prediction time)")
    ap.add_argument("--iterations", type=int, help="unetkit: a step budget instead of --minutes "
                    "(experiments on a shared machine; implies --no-peer)")
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {os.cpu_count()} cores, 4096^2 float32 matmul {machine_gflops():.0f} GFLOP/s; "
          f"torch {torch.__version__}; unetkit budget {args.minutes:g} min per dataset", flush=True)
    extra = [a for o in args.overrides for a in ("--set", o)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = args.work or Path(tmp)
        for name in args.sets:
            work = base / name
            shutil.rmtree(work, ignore_errors=True)
            made = make_set(name, work / "data")
            if made is None:
                print(f"{name}: data absent, skipped", flush=True)
                continue
            train, test = made
            truths = [lab for _, _, lab in load_folder(test)]
            budget = (["--iterations", str(args.iterations)] if args.iterations
                      else ["--minutes", str(args.minutes)])
            kinds = ("labels",) if args.labels_only else ("labels", "instances")
            fg, inst, u_train, u_pred, info = run_unetkit(train, test, work, budget, extra, kinds,
                                                          args.seed)
            u = score(fg, truths, inst, OBJECTS[name])
            if args.no_peer or args.iterations:
                print(f"{name}: unetkit {json.dumps(_short(u))} ({u_train:.0f} s)", flush=True)
                results[name] = {"unetkit": {**u, "train_s": u_train, "predict_s": u_pred}}
                continue
            m_fg, m_train, m_pred, m_steps = run_monai(load_folder(train), load_folder(test),
                                                       u_train, args.seed)
            m = score(m_fg, truths, None, OBJECTS[name])
            results[name] = {"unetkit": {**u, "train_s": u_train, "predict_s": u_pred,
                                         "choices": info.get("choices")},
                             "monai": {**m, "train_s": m_train, "predict_s": m_pred,
                                       "steps": m_steps}}
            if args.json:  # written after every dataset: a crash later keeps what was measured
                args.json.write_text(json.dumps(results, indent=1))
            print(f"{name}: unetkit {json.dumps(_short(u))} ({u_train:.0f} s) | "
                  f"monai {json.dumps(_short(m))} ({m_train:.0f} s, {m_steps} steps)", flush=True)
    print()
    if not (args.no_peer or args.iterations):
        print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _short(d: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


def table(results: dict) -> str:
    head = ("| dataset | tool | IoU | Dice | pixel error | F1@0.5 components | F1@0.5 instances "
            "| train s | predict s |")
    lines = [head, "|" + "---|" * 9]
    for name, r in results.items():
        for tool in ("unetkit", "monai"):
            s = r[tool]

            def f(key: str, s: dict = s) -> str:
                return f"{s[key]:.3f}" if key in s else "-"

            lines.append(f"| {name} | {tool} | {f('iou')} | {f('dice')} | {f('pixel_error')} | "
                         f"{f('f1_components')} | {f('f1_instances')} | {s['train_s']:.0f} | "
                         f"{s['predict_s']:.0f} |")
        du = r["unetkit"]["iou"] - r["monai"]["iou"]
        df = ""  # unetkit's components against the peer's (the same reading of both outputs)
        if "f1_components" in r["monai"] and "f1_components" in r["unetkit"]:
            df = f"{r['unetkit']['f1_components'] - r['monai']['f1_components']:+.3f}"
        lines.append(f"| {name} | unetkit - monai | {du:+.3f} |  |  | {df} |  |  |  |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
