"""The verbs of ``unetkit VERB``: each turns parsed arguments into one library call and prints.

Library modules are imported inside the verbs so that ``unetkit --help`` and ``unetkit sizes``
start without loading torch (start-up time, not import cycles: tests/test_imports.py checks).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..io.paths import check_output_dir, check_output_file, writable_ancestor
from ..model import geometry
from .errors import CLIError, user_error
from .progress import ProgressBar, TileBar, train_progress

__all__ = ["CLIError", "cmd_predict", "cmd_demo", "cmd_evaluate", "cmd_train", "cmd_sizes",
           "cmd_info", "format_table"]


def _device(name: str | None) -> str:
    from ..model.device import check_device

    return check_device(name)


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
    from ..inference.files import check_predict_args, plan_batch, predict_file
    from ..inference.runtime import with_runtime
    from ..io.images import image_files
    from ..model.modelfile import load_model
    from ..training import model_path

    if args.memory_budget <= 0:
        raise CLIError(f"--memory-budget {args.memory_budget:g}: must be > 0 (MiB)")
    if args.skip_existing and args.overwrite:
        raise CLIError("give either --overwrite or --skip-existing, not both")
    device = _device(args.device)
    streamed = _streamed(args)
    if streamed:  # existing outputs: the sink's checks (complete, interrupted, --resume)
        writable_ancestor(Path(args.out).resolve().parent)
    else:
        check_output_dir(args.out)
    model = load_model(model_path(args.model), device=device)
    check_predict_args(model, args.tile, args.output, args.threshold, args.min_size, args.batch)
    in_channels = model.config.in_channels
    if args.runtime != "torch" and args.dask_scheduler:
        raise CLIError("--dask-scheduler runs the torch runtime on the workers; "
                       f"drop --runtime {args.runtime}")
    model = with_runtime(model, args.runtime, tile_size=args.tile, batch_size=args.batch)
    if streamed:
        return _predict_streamed(args, model, device)
    files = [f for path in args.input for f in image_files(path)]
    jobs, problems, skipped = plan_batch(files, args.out, in_channels,
                                         overwrite=args.overwrite,
                                         skip_existing=args.skip_existing)
    if len(files) == 1 and problems:
        raise CLIError(problems[0])
    for text in problems:  # every input checked before the first compute
        print(f"unetkit: error: {text}", file=sys.stderr)
    for f in skipped:
        _say(args, f"{f}: output exists, skipped (--skip-existing)")
    failed = [*problems]
    bar = ProgressBar(quiet=args.quiet)
    try:
        for f, _ in jobs:
            bar.desc = f.name
            try:
                target = predict_file(model, f, args.out, output=args.output, tile=args.tile,
                                      batch=args.batch, tta=args.tta, device=device,
                                      overwrite=args.overwrite, progress=bar,
                                      memory_budget=int(args.memory_budget * 2**20),
                                      instances={"threshold": args.threshold,
                                                 "method": args.method,
                                                 "min_size": args.min_size})
            except Exception as exc:  # a bad file in a batch: say so, go on with the others
                message = user_error(exc)
                if message is None or len(files) == 1:
                    raise
                bar.write(f"unetkit: error: {message}", err=True)
                failed.append(message)
                continue
            if not args.quiet:
                bar.write(f"{f} -> {target}")
    finally:
        bar.close()
    if failed:
        done = len(jobs) + len(problems) - len(failed)
        print(f"unetkit: error: {len(failed)} of {len(files)} input(s) failed, {done} "
              f"predicted, {len(skipped)} skipped (messages above)", file=sys.stderr)
        return 2
    return 0


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text)


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
    from ..inference.streaming import predict_to_file

    if len(args.input) != 1:
        raise CLIError(f"--out {args.out} takes one --input (a TIFF, Zarr or OME-Zarr image), "
                       f"got {len(args.input)}")
    source = args.input[0]
    kwargs = dict(output=args.output, axes=args.axes, tile_size=args.tile, batch_size=args.batch,
                  tta=args.tta, resume=args.resume, overwrite=args.overwrite,
                  threshold=args.threshold, min_size=args.min_size, method=args.method)
    bar = TileBar(quiet=args.quiet)
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
        if not args.quiet:
            bar.write(f"{source} -> {target}")
    except KeyboardInterrupt:
        bar.close()
        print(f"unetkit: {args.out} is partial; finish it with --resume", file=sys.stderr)
        raise
    finally:
        bar.close()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_model
    from ..io.images import read_image
    from ..model.modelfile import load_model
    from ..training import model_path

    source = model_path(args.model)
    model = load_model(source)
    options = {}
    if args.format == "bioimageio":
        metrics = None
        if args.metrics:
            data = json.loads(Path(args.metrics).read_text())
            metrics = {k: v for k, v in data.get("mean", data).items() if v is not None}
        options = dict(name=args.name, authors=args.author, training_data=args.training_data,
                       metrics=metrics, model_file=source,
                       sample=read_image(args.sample) if args.sample else None)
    elif any(v is not None for v in (args.name, args.author, args.training_data, args.metrics,
                                     args.sample)):
        raise CLIError("--name, --author, --training-data, --metrics and --sample apply to "
                       "--format bioimageio only")
    target = export_model(model, args.out, args.format, **options)
    print(f"{source} -> {target} ({args.format})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..metrics.files import evaluate_files
    from ..io.images import atomic_path
    from ..metrics.arrays import threshold_range

    thresholds = threshold_range(*args.thresholds) if args.thresholds else None
    if args.json:  # before the scoring, not after it
        check_output_file(args.json, overwrite=args.overwrite)
    bar = ProgressBar(unit="image", quiet=args.quiet)
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
        _say(args, f"wrote {args.json}")
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


def format_fingerprint(fp: dict) -> str:
    """One paragraph: what the training set looks like (``unetkit train`` prints it first)."""
    h, w = fp["height"], fp["width"]
    size = f"{h[1]}x{w[1]}" if h[0] == h[2] and w[0] == w[2] else (
        f"{h[0]}-{h[2]} x {w[0]}-{w[2]}")
    pct = fp["percentiles"]
    return (f"training set: {fp['n_images']} image(s) of {size} px, {fp['channels']} channel(s) "
            f"{fp['dtype']}, intensities p1 {pct['p1']:g} / p50 {pct['p50']:g} / p99.8 "
            f"{pct['p99.8']:g}; labels: {fp['label_kind']}, foreground "
            f"{fp['foreground_fraction']:.1%}, {fp['objects_per_image']:g} object(s) per image, "
            f"median object {fp['object_area']:g} px ({fp['object_diameter']:.0f} px across); "
            f"chosen from the data:")


def cmd_train(args: argparse.Namespace) -> int:
    from ..model.modelfile import read_model_meta
    from ..training import TrainingInterrupted, run_config, train
    from ..training.distributed import launched_rank

    device = _device(args.device)
    check_output_dir(args.out)  # before config.yaml or anything else is written
    cfg = run_config(args.out, config_file=args.config, preset_name=args.preset,
                     overrides=args.set, seed=args.seed, minutes=args.minutes,
                     iterations=args.iterations, resume=args.resume)
    main = launched_rank() == 0  # under torchrun rank 0 alone reports (and writes the run)
    bar = ProgressBar(unit="it", quiet=args.quiet)
    bar.desc = "train"
    progress = train_progress(bar) if main else None

    def announce(fingerprint: dict, choices: dict) -> None:
        if args.quiet:
            return
        bar.write(format_fingerprint(fingerprint))
        for key, choice in choices.items():
            bar.write(f"  {key} = {choice['value']}: {choice['reason']}")

    try:
        run = train(cfg, args.images, args.labels, args.out, val_images=args.val_images,
                    val_labels=args.val_labels, val_fraction=args.val_fraction,
                    resume=args.resume, device=device, progress=progress, announce=announce)
    except TrainingInterrupted as stop:
        bar.close()
        if main:
            print(f"unetkit: {stop}", file=sys.stderr)
        return 130 if stop.signal_name == "SIGINT" else 143
    finally:
        bar.close()
    if not main:
        return 0
    meta = read_model_meta(run / "model.safetensors")
    pp, val = meta.get("postprocess", {}), meta.get("training", {}).get("validation")
    if val:
        from ..inference.postprocess import has_contact

        contact = has_contact(meta)
        print(f"validation: {val['metric']} {val['val_score']:.3f} at threshold "
              f"{pp['threshold']:g}, min_size {pp['min_size']} px, fill_holes {pp['fill_holes']} px, "
              f"grow {pp.get('grow', 0)} px"
              + (f", seed {pp['seed']:g}" if contact else
                 f", cores above {pp['seed']:g}" if pp.get("seed", 0) > pp["threshold"] else "")
              + (", on the average of 8 flips/rotations"
                 if meta.get("inference", {}).get("tta") else "")
              + " (stored in the model file; predict applies them)")
    print(f"trained model: {run / 'model.safetensors'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo.run import DemoSettings, run_demo

    settings = DemoSettings(minutes=args.minutes, large_size=args.size, seed=args.seed,
                            tta=args.tta, device=_device(args.device),
                            iterations=args.iterations, train_images=args.train_images,
                            image_size=args.image_size)
    check_output_dir(args.out)
    train_bar = ProgressBar(unit="it", quiet=args.quiet)
    predict_bar = ProgressBar(unit="tile", quiet=args.quiet)
    train_bar.desc, predict_bar.desc = "train", "predict"
    try:
        result = run_demo(args.out, settings, train_progress=train_progress(train_bar),
                          predict_progress=predict_bar, stage=lambda text: print(f"* {text}"))
    finally:
        train_bar.close()
        predict_bar.close()
    m = result["metrics"]
    print(f"foreground IoU {m['iou']:.3f}, instance F1@0.5 {m['f1_50']:.3f}, "
          f"pixel error {m['pixel_error']:.4f}")
    print(f"report: {result['report'].resolve()}")
    return 0
