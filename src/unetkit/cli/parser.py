"""The argument parser of ``unetkit``: every verb, flag and default in one place."""

from __future__ import annotations

import argparse

from .._version import __version__
from .verbs import (cmd_demo, cmd_evaluate, cmd_export, cmd_info, cmd_predict, cmd_sizes,
                    cmd_train)

__all__ = ["build_parser"]


class _Formatter(argparse.HelpFormatter):
    """Shows every option's default (unless None/False or already stated in its help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False
                or default == argparse.SUPPRESS
                or not action.option_strings):
            return text
        if isinstance(default, (list, tuple)):
            default = " ".join(str(d) for d in default) or "none"
        return f"{text} (default: {default})".replace("%", "%%")


def _common() -> argparse.ArgumentParser:
    """-v/--verbose and -q/--quiet, accepted before or after the verb."""
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="log progress details")
    c.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress and no warnings, errors only")
    return c


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    p = argparse.ArgumentParser(
        prog="unetkit", parents=[common], formatter_class=_Formatter,
        description="The original U-Net: exact overlap-tile prediction, the paper's training, "
        "the field's metrics.",
    )
    p.add_argument("--version", action="version", version=f"unetkit {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], formatter_class=_Formatter, help=help)

    s = verb("predict", help="segment images with a trained model")
    s.add_argument("--model", required=True,
                   help="model file (.safetensors), bioimage.io zip written by unetkit, or run "
                        "folder (its model.safetensors)")
    s.add_argument("--input", required=True, nargs="+", help="image files, stacks or folders")
    s.add_argument("--out", required=True,
                   help="output folder (TIFF per input, same base name), or one output FILE "
                        "ending in .ome.zarr/.zarr/.tif/.tiff: streamed tile by tile from one "
                        "large input (TIFF, Zarr, OME-Zarr), resumable")
    s.add_argument("--tile", type=int, default=None,
                   help="input tile edge (legal size, see `unetkit sizes`); default: automatic")
    s.add_argument("--batch", type=int, default=1, help="tiles per forward pass")
    s.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average the 8 flips/rotations, or not (default: the model file's choice, "
                        "on for the default preset's models)")
    s.add_argument("--output", default="labels",
                   help="labels (class indices), probabilities (float32) or instances (objects)")
    s.add_argument("--threshold", type=float, default=None,
                   help="foreground probability threshold of labels and instances (two-class "
                        "models); default: the model file's, chosen on validation data")
    s.add_argument("--method", choices=("components", "watershed"), default="components",
                   help="instances: connected components, or a seeded watershed for touching objects")
    s.add_argument("--min-size", type=int, default=None,
                   help="drop smaller objects (px) from labels and instances; default: the model "
                        "file's, chosen on validation data")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cpu)")
    s.add_argument("--runtime", choices=("torch", "onnxruntime", "auto"), default="torch",
                   help="torch (eager), onnxruntime (CPU; pip install 'unetkit[onnx]') or auto: "
                        "whichever measured faster for this network and tile on this machine "
                        "(measured once, then cached); the output is the same to < 1e-4")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.add_argument("--skip-existing", action="store_true",
                   help="leave outputs already present as they are and predict the others")
    s.add_argument("--memory-budget", type=float, default=2048, metavar="MIB",
                   help="memory for the tiles in flight; --out DIR: larger inputs are streamed "
                        "tile by tile instead of held")
    s.add_argument("--resume", action="store_true",
                   help="--out FILE: finish an interrupted run, computing only unfinished tiles")
    s.add_argument("--axes", default=None,
                   help="--out FILE: the input's axes when its metadata lacks them (ZYX, TCYX...)")
    s.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                   help="--out FILE: run on this dask.distributed cluster (tcp://host:8786); "
                        "input and output on a file system the workers share")
    s.set_defaults(func=cmd_predict)

    s = verb("demo", help="train and segment built-in synthetic data, write a report")
    s.add_argument("--out", default="unetkit-demo", help="output folder")
    s.add_argument("--minutes", type=float, default=4.0, help="training budget (minutes)")
    s.add_argument("--iterations", type=int, default=None, help="a step budget instead")
    s.add_argument("--size", type=int, default=4096, help="edge of the large test image")
    s.add_argument("--train-images", type=int, default=24, help="synthetic training images")
    s.add_argument("--image-size", type=int, default=384, help="edge of the training images")
    s.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and training")
    s.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average 8 flips/rotations at prediction (default: on, as the model file says)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cpu)")
    s.set_defaults(func=cmd_demo)

    s = verb("evaluate", help="score predictions against ground truth")
    s.add_argument("--pred", required=True, help="prediction file, stack or folder")
    s.add_argument("--truth", required=True, help="ground-truth file, stack or folder")
    s.add_argument("--metrics", nargs="+", default=None,
                   help="metric names (default: pixel_error rand_error warping_error v_rand "
                   "v_info iou dice ap50 f1_50 seg, those that apply)")
    s.add_argument("--json", default=None, help="write {per_image, mean} to this JSON file")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    s.add_argument("--thresholds", nargs=3, type=float, default=None,
                   metavar=("START", "STOP", "STEP"),
                   help="probability threshold sweep for every metric (default: the ISBI "
                   "reference's, 0..1 by 0.1 and 0..0.9 for the warping error)")
    s.add_argument("--kind", choices=("probability", "binary", "instances", "classes"),
                   default=None, help="prediction kind (default: detected from the values)")
    s.add_argument("--channel", type=int, default=1,
                   help="foreground channel of a multi-channel probability map")
    s.set_defaults(func=cmd_evaluate)

    s = verb("train", help="train a U-Net as in the paper (run folder: model, "
                       "checkpoint, metrics.csv, curves.png)")
    s.add_argument("--images", required=True, help="training images: folder, file or stack")
    s.add_argument("--labels", required=True, help="labels: folder (same file names) or stack")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--val-images", default=None, help="validation images (with --val-labels)")
    s.add_argument("--val-labels", default=None, help="validation labels")
    s.add_argument("--val-fraction", type=float, default=None,
                   help="hold out this fraction of the training images for validation "
                        "(default: chosen from the number of images)")
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
    s.add_argument("--seed", type=int, default=None, help="seed (train.seed; default: the configuration's)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cpu)")
    s.set_defaults(func=cmd_train)

    s = verb("sizes", help="list legal input/output tile sizes")
    s.add_argument("--depth", type=int, default=4, help="number of 2x2 poolings")
    s.add_argument("--padding", choices=("valid", "same"), default="valid",
                   help="convolution padding")
    s.add_argument("--max", type=int, default=1084, help="largest input size to list")
    s.set_defaults(func=cmd_sizes)

    s = verb("export", help="write a model for other tools: a BioImage Model Zoo "
             "package (Fiji/deepImageJ, ilastik, QuPath, napari), ONNX or TorchScript")
    s.add_argument("model", help="model file (.safetensors) or run folder")
    s.add_argument("--format", required=True, choices=("bioimageio", "onnx", "torchscript"))
    s.add_argument("--out", required=True, help="output file (.zip, .onnx, .pt)")
    s.add_argument("--name", default=None, help="bioimageio: model name (letters, digits, _-())")
    s.add_argument("--author", action="append", default=None, help="bioimageio: author (repeat)")
    s.add_argument("--training-data", default=None,
                   help="bioimageio: one line on the training data (default: from the model)")
    s.add_argument("--metrics", default=None, metavar="JSON",
                   help="bioimageio: validation scores for the README (unetkit evaluate --json)")
    s.add_argument("--sample", default=None, metavar="IMAGE",
                   help="bioimageio: test input image, square and of a legal size (default: "
                        "synthetic nuclei)")
    s.set_defaults(func=cmd_export)

    s = verb("info", help="print a model file's configuration")
    s.add_argument("model")
    s.set_defaults(func=cmd_info)
    return p
