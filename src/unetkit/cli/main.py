"""Command line: ``unetkit VERB ...``.  Parsing, progress bars and error reporting only.

Every expected failure (bad file, illegal tile, wrong channel count...) ends in one line
``unetkit: error: <file>: <problem>`` on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..model import geometry

log = logging.getLogger("unetkit")


class CLIError(Exception):
    """An error to report in one line."""


class _ProgressBar:
    """A tqdm bar behind a ``progress(done, total)`` callback, drawn from the first update on (so
    an error before any work prints one clean line)."""

    def __init__(self, unit: str = "tile") -> None:
        self.unit, self.bar, self._desc, self._fresh = unit, None, "", True

    @property
    def desc(self) -> str:
        return self._desc

    @desc.setter
    def desc(self, text: str) -> None:
        """A new description starts a new run of work (the next file): the bar starts over."""
        self._desc, self._fresh = text, True

    def __call__(self, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(desc=self.desc, unit=self.unit, dynamic_ncols=True, leave=False)
        if self._fresh:
            self.bar.reset(total=total)
            self.bar.set_description(self._desc)
            self._fresh = False
        elif self.bar.total != total:  # a revised estimate (time budgets): keep rate and ETA
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _TileBar(_ProgressBar):
    """Tiles done of total with ETA and megapixels per second: ``progress(done, total, px)``
    (``px``: output pixels written by this run; on a resume the bar starts at the tiles already
    done, and rate and ETA count this run's work only)."""

    def __call__(self, done: int, total: int, pixels: int = 0) -> None:
        import time

        first = self.bar is None
        super().__call__(done, total)
        if first:
            self.bar.initial = self.bar.n = self.bar.last_print_n = done
            self._t0 = time.perf_counter()
        elif pixels:
            rate = pixels / 1e6 / max(time.perf_counter() - self._t0, 1e-9)
            self.bar.set_postfix_str(f"{rate:.2f} Mpx/s")


def _device(name: str | None) -> str | None:
    import torch

    if name and name.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"device {name!r} requested but CUDA is not available on this machine")
    return name


# --- verbs -------------------------------------------------------------------------------------

def cmd_sizes(args: argparse.Namespace) -> int:
    depth, padding = args.depth, args.padding
    m = geometry.margin(depth, padding)
    print(f"# {padding}-padded U-Net, depth {depth}: margin {m} px per side")
    print(f"{'input':>6} {'output':>6} {'writes':>6}")
    for s in geometry.legal_input_sizes(depth, args.max, padding):
        stride = geometry.tile_stride(s, depth, padding)
        note = "" if stride >= 2**depth else "  (too small to tile with)"
        print(f"{s:6d} {geometry.output_size(s, depth, padding):6d} {stride:6d}{note}")
    print("# 'writes': output pixels each tile contributes (a multiple of 2**depth, see docs)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ..model.modelfile import read_model_meta

    print(json.dumps(read_model_meta(args.model), indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ..io.images import image_files
    from ..model.modelfile import load_model
    from ..inference.files import check_predict_args, predict_file

    device = _device(args.device)
    model = load_model(args.model, device=device or "cpu")
    check_predict_args(model, args.tile, args.output)
    if _streamed(args):
        return _predict_streamed(args, model, device)
    files = [f for path in args.input for f in image_files(path)]
    bar = _ProgressBar()
    try:
        for f in files:
            bar.desc = f.name
            target = predict_file(model, f, args.out, output=args.output, tile=args.tile,
                                  batch=args.batch, tta=args.tta, device=device,
                                  overwrite=args.overwrite, progress=bar,
                                  instances={"threshold": args.threshold, "method": args.method,
                                             "min_size": args.min_size})
            bar.write(f"{f} -> {target}")
    finally:
        bar.close()
    return 0


def _streamed(args: argparse.Namespace) -> bool:
    """``--out`` names one output file (.ome.zarr, .zarr, .tif, .tiff): stream to it."""
    from ..io.sinks import output_format

    try:
        output_format(args.out)
    except ValueError:
        if args.resume or args.axes or args.dask_scheduler:
            raise CLIError("--resume, --axes and --dask-scheduler need --out FILE ending in "
                           ".ome.zarr, .zarr, .tif or .tiff") from None
        return False
    return True


def _predict_streamed(args: argparse.Namespace, model, device: str | None) -> int:
    """One input streamed tile by tile into one output file (docs/large-images.md)."""
    from pathlib import Path

    from ..inference.streaming import predict_to_file

    if len(args.input) != 1:
        raise CLIError(f"--out {args.out} takes one --input (a TIFF, Zarr or OME-Zarr image), "
                       f"got {len(args.input)}")
    source = args.input[0]
    kwargs = dict(output=args.output, axes=args.axes, tile_size=args.tile, batch_size=args.batch,
                  tta=args.tta, resume=args.resume, overwrite=args.overwrite,
                  threshold=args.threshold, min_size=args.min_size, method=args.method)
    bar = _TileBar()
    bar.desc = Path(source).name
    try:
        if args.dask_scheduler:
            try:
                from distributed import Client

                from ..inference.dask_arrays import predict_to_file_dask
            except ImportError:
                raise CLIError("--dask-scheduler needs dask: pip install 'unetkit[dask]'") from None
            bar.unit = "block"
            with Client(args.dask_scheduler) as client:
                target = predict_to_file_dask(model, source, args.out, client, progress=bar,
                                              **kwargs)
        else:
            target = predict_to_file(model, source, args.out, device=device, progress=bar,
                                     **kwargs)
        bar.write(f"{source} -> {target}")
    except KeyboardInterrupt:
        bar.close()
        print(f"unetkit: {args.out} is partial; finish it with --resume", file=sys.stderr)
        raise
    finally:
        bar.close()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..metrics.files import evaluate_files
    from ..io.images import atomic_path
    from ..metrics.arrays import threshold_range

    thresholds = threshold_range(*args.thresholds)
    bar = _ProgressBar(unit="image")
    bar.desc = "evaluate"
    try:
        result = evaluate_files(args.pred, args.truth, args.metrics, thresholds,
                                kind=args.kind, channel=args.channel, progress=bar)
    finally:
        bar.close()
    print(format_table(result))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(_nan_to_null(result), indent=2, allow_nan=False))
        print(f"wrote {args.json}")
    return 0


def _nan_to_null(obj):
    """Standard JSON has no NaN: undefined scores are written as null."""
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    return None if isinstance(obj, float) and obj != obj else obj


def format_table(result: dict) -> str:
    """Per-image rows and a mean row, one column per metric."""
    keys = list(result["mean"])
    width = max([4, *(len(n) for n in result["per_image"])])
    lines = [f"{'image':<{width}} " + " ".join(f"{k:>13}" for k in keys)]
    rows = [*result["per_image"].items(), ("mean", result["mean"])]
    for name, scores in rows:
        lines.append(f"{name:<{width}} " + " ".join(f"{scores.get(k, float('nan')):13.6g}"
                                                   for k in keys))
    lines.insert(-1, "-" * len(lines[0]))
    return "\n".join(lines)


def _train_progress(bar: _ProgressBar):
    """``train``'s progress callback: the bar shows loss, learning rate and validation error."""

    def progress(step: int, total: int, info: dict) -> None:
        bar(step, total)
        shown = {"loss": f"{info['loss']:.4f}", "lr": f"{info['lr']:.2e}"}
        if "val_pixel_error" in info:
            shown["val_err"] = f"{info['val_pixel_error']:.4f}"
        bar.bar.set_postfix(shown, refresh=False)

    return progress


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.loop import TrainingInterrupted, run_config, train

    device = _device(args.device) or "cpu"
    cfg = run_config(args.out, config_file=args.config, preset_name=args.preset,
                     overrides=args.set, seed=args.seed, minutes=args.minutes,
                     iterations=args.iterations, resume=args.resume)
    bar = _ProgressBar(unit="it")
    bar.desc = "train"
    progress = _train_progress(bar)
    try:
        run = train(cfg, args.images, args.labels, args.out, val_images=args.val_images,
                    val_labels=args.val_labels, val_fraction=args.val_fraction,
                    resume=args.resume, device=device, progress=progress)
    except TrainingInterrupted as stop:
        bar.close()
        print(f"unetkit: {stop}", file=sys.stderr)
        return 130 if stop.signal_name == "SIGINT" else 143
    finally:
        bar.close()
    print(f"trained model: {run / 'model.safetensors'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo.run import DemoSettings, run_demo

    settings = DemoSettings(minutes=args.minutes, large_size=args.size, seed=args.seed,
                            tta=args.tta, device=_device(args.device) or "cpu",
                            iterations=args.iterations, train_images=args.train_images,
                            image_size=args.image_size)
    train_bar, predict_bar = _ProgressBar(unit="it"), _ProgressBar(unit="tile")
    train_bar.desc, predict_bar.desc = "train", "predict"
    try:
        result = run_demo(args.out, settings, train_progress=_train_progress(train_bar),
                          predict_progress=predict_bar, stage=lambda text: print(f"* {text}"))
    finally:
        train_bar.close()
        predict_bar.close()
    m = result["metrics"]
    print(f"foreground IoU {m['iou']:.3f}, instance F1@0.5 {m['f1_50']:.3f}, "
          f"pixel error {m['pixel_error']:.4f}")
    print(f"report: {result['report'].resolve()}")
    return 0


# --- parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unetkit",
        description="The original U-Net: exact overlap-tile prediction, the paper's training, "
        "the field's metrics.",
    )
    p.add_argument("--version", action="version", version=f"unetkit {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("predict", help="segment images with a trained model")
    s.add_argument("--model", required=True, help="model file (.safetensors)")
    s.add_argument("--input", required=True, nargs="+", help="image files, stacks or folders")
    s.add_argument("--out", required=True,
                   help="output folder (TIFF per input, same base name), or one output FILE "
                        "ending in .ome.zarr/.zarr/.tif/.tiff: streamed tile by tile from one "
                        "large input (TIFF, Zarr, OME-Zarr), resumable")
    s.add_argument("--tile", type=int, default=None,
                   help="input tile edge (legal size, see `unetkit sizes`); default: automatic")
    s.add_argument("--batch", type=int, default=1, help="tiles per forward pass")
    s.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    s.add_argument("--output", default="labels",
                   help="labels (class indices), probabilities (float32) or instances (objects)")
    s.add_argument("--threshold", type=float, default=0.5,
                   help="instances: foreground probability threshold")
    s.add_argument("--method", choices=("components", "watershed"), default="components",
                   help="instances: connected components, or a seeded watershed for touching objects")
    s.add_argument("--min-size", type=int, default=0, help="instances: drop smaller objects (px)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.add_argument("--resume", action="store_true",
                   help="--out FILE: finish an interrupted run, computing only unfinished tiles")
    s.add_argument("--axes", default=None,
                   help="--out FILE: the input's axes when its metadata lacks them (ZYX, TCYX...)")
    s.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                   help="--out FILE: run on this dask.distributed cluster (tcp://host:8786); "
                        "input and output on a file system the workers share")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("demo", help="train and segment built-in synthetic data, write a report")
    s.add_argument("--out", default="unetkit-demo", help="output folder (default: unetkit-demo)")
    s.add_argument("--minutes", type=float, default=4.0, help="training budget (default 4)")
    s.add_argument("--iterations", type=int, default=None, help="a step budget instead")
    s.add_argument("--size", type=int, default=4096, help="edge of the large test image")
    s.add_argument("--train-images", type=int, default=24, help="synthetic training images")
    s.add_argument("--image-size", type=int, default=384, help="edge of the training images")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--tta", action="store_true", help="average 8 flips/rotations at prediction")
    s.add_argument("--device", default=None, help="cpu, cuda ... (default: cpu)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("evaluate", help="score predictions against ground truth")
    s.add_argument("--pred", required=True, help="prediction file, stack or folder")
    s.add_argument("--truth", required=True, help="ground-truth file, stack or folder")
    s.add_argument("--metrics", nargs="+", default=None,
                   help="metric names (default: pixel_error rand_error warping_error v_rand "
                   "v_info iou dice ap50 f1_50 seg, those that apply)")
    s.add_argument("--json", default=None, help="write {per_image, mean} to this JSON file")
    s.add_argument("--thresholds", nargs=3, type=float, default=(0.0, 1.0, 0.1),
                   metavar=("START", "STOP", "STEP"), help="probability threshold sweep")
    s.add_argument("--kind", choices=("probability", "binary", "instances", "classes"),
                   default=None, help="prediction kind (default: detected from the values)")
    s.add_argument("--channel", type=int, default=1,
                   help="foreground channel of a multi-channel probability map")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("train", help="train a U-Net as in the paper (run folder: model, "
                       "checkpoint, metrics.csv, curves.png)")
    s.add_argument("--images", required=True, help="training images: folder, file or stack")
    s.add_argument("--labels", required=True, help="labels: folder (same file names) or stack")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--val-images", default=None, help="validation images (with --val-labels)")
    s.add_argument("--val-labels", default=None, help="validation labels")
    s.add_argument("--val-fraction", type=float, default=None,
                   help="hold out this fraction of the training images for validation")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--config", default=None, help="YAML configuration file")
    g.add_argument("--preset", choices=("paper", "default"), default=None,
                   help="paper: exactly the paper; default: trains in minutes on a CPU")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a configuration value (repeatable), e.g. train.lr=1e-3")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--minutes", type=float, default=None, help="time budget (only)")
    g.add_argument("--iterations", type=int, default=None, help="step budget (only)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    s.add_argument("--seed", type=int, default=None, help="seed (train.seed)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("sizes", help="list legal input/output tile sizes")
    s.add_argument("--depth", type=int, default=4)
    s.add_argument("--padding", choices=("valid", "same"), default="valid")
    s.add_argument("--max", type=int, default=1084, help="largest input size to list")
    s.set_defaults(func=cmd_sizes)

    s = sub.add_parser("info", help="print a model file's configuration")
    s.add_argument("model")
    s.set_defaults(func=cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as exc:
        print(f"unetkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unetkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `unetkit sizes | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
