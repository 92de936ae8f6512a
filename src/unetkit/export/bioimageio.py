"""BioImage Model Zoo export: a model spec 0.5 package (one zip) that bioimage.io tools run.

What the zip holds (``bioimageio.yaml`` describes it; ``bioimageio.core.test_model`` checks it):

- weights as TorchScript (``weights_torchscript.pt``, deepImageJ/Fiji, ilastik, QuPath) and ONNX
  (``weights.onnx``, dynamic batch/height/width), plus ``pytorch_state_dict`` whose architecture
  is ``unetkit.UNet`` (a library architecture: that format needs ``pip install unetkit``; the
  other two need nothing of unetkit);
- ``unetkit_model.safetensors``: the unetkit model file itself, so ``unetkit.load_model`` opens
  the package (same predictions);
- ``test_input.npy`` / ``test_output.npy`` made by unetkit (a synthetic nuclei image, or the
  caller's sample): ``(1, C, S, S)`` raw pixels and ``(1, K, S - 2m, S - 2m)`` probabilities;
- ``cover.png`` (test input | foreground probability) and ``README.md`` (training data, the
  metrics on validation data, a Validation section).

The geometry is stated exactly.  Input height/width: ``ParameterizedSize(min, step)``,
``min = geometry.min_legal_size`` and ``step = 2**depth`` (188 + 16 n for the paper network);
output height/width: ``SizeReference`` to the input with ``offset = -2 * margin`` (-184), 0 for
same padding.  The model's normalisation becomes the matching preprocessing (``per_image`` ->
``zero_mean_unit_variance`` over y, x; ``percentile`` -> ``scale_range`` over channel, y, x;
``range`` and ``dataset``, fixed affine maps ->
``scale_linear`` per channel), and softmax over the channel axis the postprocessing: the weights
output logits, exactly what the network computes.

Only the standard library, PyYAML, numpy, Pillow and torch's exporters are used here: the package
is built offline without ``bioimageio.spec``; the tests validate it with ``bioimageio.core``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
import yaml
from PIL import Image
from torch import nn

from .._version import __version__
from ..data import synthetic
from ..data.normalize import Normalization
from ..model import geometry
from ..model.modelfile import PACKAGE_MODEL, PACKAGE_RDF, save_model
from ..model.onnxgraph import OPSET, onnx_bytes
from .torchscript import trace_model

__all__ = ["export_bioimageio", "FORMAT_VERSION", "UNETKIT_MODEL", "RDF_NAME", "sample_input"]

log = logging.getLogger(__name__)

FORMAT_VERSION = "0.5.4"  # model spec; bioimageio.core 0.11 (spec 0.5.12) reads it
RDF_NAME, UNETKIT_MODEL = PACKAGE_RDF, PACKAGE_MODEL  # model/modelfile.py opens such zips
PAPER_CITATION = {
    "text": "Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image "
            "Segmentation. MICCAI 2015",
    "doi": "10.1007/978-3-319-24574-4_28",
}
_INPUT_ID, _OUTPUT_ID = "raw", "probabilities"
_SAMPLE_STEPS = 8  # test input edge: min legal size + 8 steps (316 px for the paper network)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def sample_input(model: nn.Module, seed: int = 0) -> np.ndarray:
    """A synthetic nuclei image ``(C, S, S)`` uint8 at a legal size of ``model`` (each channel the
    same image): the default test input."""
    cfg = model.config
    size = geometry.min_legal_size(cfg.depth, cfg.padding) + _SAMPLE_STEPS * 2**cfg.depth
    image, _ = synthetic.make_cells((size, size), seed, kind="nuclei")
    return np.repeat(image[None], cfg.in_channels, axis=0)


def _check_sample(model: nn.Module, sample: np.ndarray) -> np.ndarray:
    cfg = model.config
    sample = np.asarray(sample)
    if sample.ndim == 2:
        sample = sample[None]
    if sample.ndim != 3 or sample.shape[0] != cfg.in_channels or sample.shape[1] != sample.shape[2]:
        raise ValueError(f"test input must be (H, W) or (C, S, S) with C = {cfg.in_channels}, "
                         f"got shape {sample.shape}")
    geometry.check_input_size(sample.shape[1], cfg.depth, cfg.padding)
    return sample


def _preprocessing(norm: Normalization, dtype: np.dtype, channels: int) -> list[dict[str, Any]]:
    """The bioimage.io preprocessing that equals unetkit's normalisation of ``dtype`` pixels:
    ``per_image`` statistics are the image's own (``zero_mean_unit_variance`` over y, x), so are
    ``percentile``'s (``scale_range``); every other mode is a fixed per-channel affine map, taken
    from ``Normalization.affine`` itself."""
    if norm.mode == "per_image":
        return [{"id": "zero_mean_unit_variance",
                 "kwargs": {"axes": ["y", "x"], "eps": float(norm.eps)}}]
    if norm.mode == "percentile":  # jointly over channels, as unetkit computes them
        return [{"id": "scale_range",
                 "kwargs": {"axes": ["channel", "y", "x"], "eps": float(norm.eps),
                            "min_percentile": float(norm.low_percentile),
                            "max_percentile": float(norm.high_percentile)}}]
    if norm.mode == "none":
        return []
    scale, offset = norm.affine(np.zeros((channels, 1, 1), dtype), channels)
    return [{"id": "scale_linear", "kwargs": {"axis": "channel",
                                              "gain": [float(v) for v in scale],
                                              "offset": [float(v) for v in offset]}}]


def _reference_output(model: nn.Module, sample: np.ndarray, norm: Normalization) -> np.ndarray:
    """(C, S, S) raw -> (1, K, S', S') softmax probabilities: the network on the whole input,
    normalised over the whole input (no tiling: the package's contract is one forward pass)."""
    scale, offset = norm.affine(sample, sample.shape[0])
    x = sample.astype(np.float32) * scale[:, None, None] + offset[:, None, None]
    net = model.to("cpu").eval()
    with torch.inference_mode():
        y = torch.softmax(net(torch.from_numpy(x[None].astype(np.float32))), dim=1)
    return y.numpy().astype(np.float32)


def _cover(sample: np.ndarray, prob: np.ndarray, margin: int) -> bytes:
    """A 2:1 PNG: the input (cropped to the output's field of view) | foreground probability."""
    img = sample[0, margin : sample.shape[1] - margin, margin : sample.shape[2] - margin]
    img = img.astype(np.float64)
    lo, hi = np.percentile(img, (1, 99.8))
    gray = np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1)
    fg = 1.0 - prob[0, 0]
    # probability in magenta over black: readable for colour-blind viewers
    colour = np.stack([fg, 0.2 * fg, fg], axis=-1)
    left = np.repeat(gray[..., None], 3, axis=-1)
    side = 256
    panels = [Image.fromarray((p * 255).astype(np.uint8)).resize((side, side), Image.NEAREST)
              for p in (left, colour)]
    cover = Image.new("RGB", (2 * side, side))
    cover.paste(panels[0], (0, 0))
    cover.paste(panels[1], (side, 0))
    buf = io.BytesIO()
    cover.save(buf, format="PNG")
    return buf.getvalue()


def _axes(cfg, names: list[str], out: bool) -> list[dict[str, Any]]:
    m = geometry.margin(cfg.depth, cfg.padding)
    axes: list[dict[str, Any]] = [{"type": "batch"},
                                  {"type": "channel", "channel_names": names}]
    for axis in ("y", "x"):
        if out:
            size: dict[str, Any] = {"tensor_id": _INPUT_ID, "axis_id": axis, "offset": -2 * m}
        else:
            size = {"min": geometry.min_legal_size(cfg.depth, cfg.padding), "step": 2**cfg.depth}
        axes.append({"type": "space", "id": axis, "size": size})
    return axes


def _metrics_lines(model: nn.Module, metrics: dict[str, float] | None) -> list[str]:
    training = getattr(model, "meta", {}).get("training", {})
    lines = []
    if training.get("best_val_pixel_error") is not None:
        lines.append(f"- validation pixel error during training (best, step "
                     f"{training.get('best_step')}): {training['best_val_pixel_error']:.4f}")
    for name, value in (metrics or {}).items():
        lines.append(f"- {name}: {value:.4f}" if isinstance(value, (int, float)) and value == value
                     else f"- {name}: {value}")
    return lines or ["- none recorded with this model"]


def _readme(model: nn.Module, name: str, training_data: str | None,
            metrics: dict[str, float] | None, shapes: tuple[tuple, tuple]) -> str:
    cfg, meta = model.config, getattr(model, "meta", {})
    training = meta.get("training", {})
    m = geometry.margin(cfg.depth, cfg.padding)
    first = geometry.min_legal_size(cfg.depth, cfg.padding)
    norm = Normalization.from_dict(meta.get("normalization"))
    data = training_data or (
        f"{training['train_images']} training image(s), {training.get('step')} steps "
        f"(seed {training.get('seed')})" if training.get("train_images") is not None
        else "not recorded with this model")
    tcfg = training.get("config", {}).get("train", {})
    recipe = ", ".join(f"{k} {tcfg[k]}" for k in ("optimizer", "lr", "tile_size", "iterations")
                       if k in tcfg)
    return "\n".join([
        f"# {name}",
        "",
        "A U-Net (Ronneberger, Fischer, Brox, MICCAI 2015) trained and exported with "
        f"[unetkit](https://github.com/) {__version__}.",
        "",
        "## Network",
        f"- {cfg.padding} convolutions, depth {cfg.depth}, "
        f"{'-'.join(map(str, cfg.widths))} channels per level, "
        f"{cfg.in_channels} input channel(s), {cfg.num_classes} classes "
        f"({', '.join(meta.get('class_names') or [])})",
        f"- input height and width: {first} + {2**cfg.depth} n px; output: input - {2 * m} px "
        f"(the valid convolutions use {m} px of context per side)",
        f"- preprocessing: unetkit normalisation `{norm.mode}`; postprocessing: softmax over "
        "classes",
        "- large images: use overlap-tile prediction (the consumer tiles with an overlap of "
        f"{m} px per side), e.g. `unetkit predict` or the unetkit napari plugin",
        "",
        "## Training data",
        f"- {data}",
        *([f"- recipe: {recipe}"] if recipe else []),
        "",
        "## Metrics on validation data",
        *_metrics_lines(model, metrics),
        "",
        "## Validation",
        f"- `test_input.npy` {shapes[0]} and `test_output.npy` {shapes[1]} were made by unetkit: "
        "the network on the whole test input after the preprocessing above, then softmax.",
        "- The package passes `bioimageio.core`'s `test_model` (all weight formats reproduce the "
        "test output); unetkit's test suite checks this for every release.",
        "- ONNX (onnxruntime) and TorchScript reproduce eager PyTorch within 1e-4 on several "
        "legal sizes and batch sizes.",
        "- Check the model on your own annotated images before relying on it: "
        "`unetkit predict` then `unetkit evaluate`.",
        "",
        "## Weights",
        "- `torchscript` and `onnx`: no Python dependency on unetkit.",
        "- `pytorch_state_dict`: architecture `unetkit.UNet` (`pip install unetkit`).",
        f"- `{UNETKIT_MODEL}`: the unetkit model file (`unetkit.load_model` also opens this zip).",
        "",
    ])


def export_bioimageio(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: list[str] | None = None,
    license: str = "MIT",
    sample: np.ndarray | None = None,
    training_data: str | None = None,
    metrics: dict[str, float] | None = None,
    model_file: str | os.PathLike | None = None,
) -> Path:
    """Write ``model`` (a :class:`unetkit.UNet` with ``meta``) as a bioimage.io zip; return it.

    Args:
        sample: test input, (H, W) or (C, S, S) raw pixels at a legal square size; default
            :func:`sample_input`.
        training_data: one line on what the model was trained on (default: from its meta).
        metrics: scores on validation data for the README (e.g. ``unetkit evaluate``'s mean).
        model_file: the unetkit model file to attach (default: written from ``model``).
    """
    cfg = model.config
    model = model.to("cpu").eval()
    meta = getattr(model, "meta", {})
    norm = Normalization.from_dict(meta.get("normalization"))
    sample = _check_sample(model, sample if sample is not None else sample_input(model))
    expected = _reference_output(model, sample, norm)
    # the spec allows letters, digits, spaces, "_-()" in names
    name = name or f"unetkit U-Net {cfg.padding} depth {cfg.depth} base {cfg.widths[0]}"
    class_names = list(meta.get("class_names") or [f"class{i}" for i in range(cfg.num_classes)])
    if len(class_names) != cfg.num_classes:
        class_names = [f"class{i}" for i in range(cfg.num_classes)]
    in_names = [f"channel{i}" for i in range(cfg.in_channels)]

    files: dict[str, bytes] = {
        "weights_torchscript.pt": _torchscript_bytes(model),
        "weights.onnx": onnx_bytes(model),
        "weights_state_dict.pt": _state_dict_bytes(model),
        # float32: the raw values of the sample, whatever its dtype (bioimageio.core 0.11 fed
        # a uint8 test tensor to the weights without its ensure_dtype preprocessing)
        "test_input.npy": _npy(sample[None].astype(np.float32)),
        "sample_input.tif": _tif(sample),
        "test_output.npy": _npy(expected),
        "sample_output.tif": _tif(expected[0]),
        "cover.png": _cover(sample, expected, geometry.margin(cfg.depth, cfg.padding)),
        UNETKIT_MODEL: (Path(model_file).read_bytes() if model_file is not None
                        else _unetkit_file(model)),
    }
    files["README.md"] = _readme(model, name, training_data, metrics,
                                 (tuple(sample[None].shape), tuple(expected.shape))).encode()

    def ref(fname: str) -> dict[str, str]:
        return {"source": fname, "sha256": _sha256(files[fname])}

    torch_version = torch.__version__.split("+")[0]
    rdf: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "type": "model",
        "name": name,
        "description": description or (
            f"U-Net segmentation ({cfg.num_classes} classes: {', '.join(class_names)}), "
            "exported by unetkit"),
        "authors": [{"name": a} for a in (authors or ["unetkit"])],
        "cite": [PAPER_CITATION],
        "license": license,
        "tags": ["unet", "segmentation", "2d", "unetkit", "pytorch", "onnx", "torchscript"],
        "documentation": "README.md",
        "covers": ["cover.png"],
        "attachments": [ref(UNETKIT_MODEL)],
        "inputs": [{
            "id": _INPUT_ID,
            "description": f"raw image (trained on {sample.dtype} pixels), as float32",
            "axes": _axes(cfg, in_names, out=False),
            "test_tensor": ref("test_input.npy"),
            "sample_tensor": ref("sample_input.tif"),
            "data": {"type": "float32"},
            "preprocessing": _preprocessing(norm, sample.dtype, cfg.in_channels),
        }],
        "outputs": [{
            "id": _OUTPUT_ID,
            "description": "softmax probabilities per class",
            "axes": _axes(cfg, class_names, out=True),
            "test_tensor": ref("test_output.npy"),
            "sample_tensor": ref("sample_output.tif"),
            "data": {"type": "float32", "range": [0.0, 1.0]},
            "postprocessing": [{"id": "softmax", "kwargs": {"axis": "channel"}}],
        }],
        "weights": {
            # converted from the state dict (the original weights), both by torch's exporters
            "torchscript": {**ref("weights_torchscript.pt"), "pytorch_version": torch_version,
                            "parent": "pytorch_state_dict"},
            "onnx": {**ref("weights.onnx"), "opset_version": OPSET,
                     "parent": "pytorch_state_dict"},
            "pytorch_state_dict": {
                **ref("weights_state_dict.pt"), "pytorch_version": torch_version,
                "architecture": {"import_from": "unetkit", "callable": "UNet",
                                 "kwargs": cfg.to_dict()},
            },
        },
        "config": {"unetkit": {"version": __version__, "model_file": UNETKIT_MODEL,
                               "normalization": norm.to_dict(),
                               "architecture": cfg.to_dict()}},
    }
    files[RDF_NAME] = yaml.safe_dump(rdf, sort_keys=False).encode()

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(RDF_NAME, files.pop(RDF_NAME))
        for fname, data in files.items():
            z.writestr(fname, data)
    tmp.replace(path)
    log.info("wrote %s (%s)", path, json.dumps({k: len(v) for k, v in files.items()}))
    return path


def _tif(array: np.ndarray) -> bytes:
    """A (C, H, W) sample for people to look at (the spec's ``sample_tensor``)."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, photometric="minisblack", metadata={"axes": "CYX"})
    return buf.getvalue()


def _torchscript_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(trace_model(model), buf)
    return buf.getvalue()


def _state_dict_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def _unetkit_file(model: nn.Module) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return save_model(Path(tmp) / UNETKIT_MODEL, model).read_bytes()
