"""Model files: the weights as safetensors, the configuration as readable JSON in its header.

One file, ``*.safetensors``.  Its header (plain JSON at the start of the file; ``unetkit info
FILE`` prints it) holds, under the key ``"unetkit"``::

    {"format": "unetkit-model", "version": 1,
     "architecture": {"in_channels": 1, "num_classes": 2, "depth": 4, ...},
     "normalization": {"mode": "per_image", ...},
     "class_names": ["background", "cell"], ...anything else given in ``meta``}

Loading parses JSON and tensors only: nothing is unpickled, so a model file from a stranger cannot
run code.  Writes go to a temporary file that is renamed into place.

A BioImage Model Zoo package that unetkit wrote (``unetkit export --format bioimageio``) opens
too: the zip carries this very file (``config.unetkit.model_file`` in its ``bioimageio.yaml``,
``unetkit_model.safetensors``), which is read from the zip; its other weights are not used.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..io.images import atomic_path
from ..config import UNetConfig
from .unet import UNet
from ..data.normalize import Normalization

__all__ = ["save_model", "load_model", "read_model_meta", "ModelFileError", "FORMAT", "VERSION",
           "PACKAGE_MODEL", "PACKAGE_RDF"]

FORMAT = "unetkit-model"
VERSION = 1
_KEY = "unetkit"
PACKAGE_RDF = "bioimageio.yaml"  # a bioimage.io package's description, at the root of its zip
PACKAGE_MODEL = "unetkit_model.safetensors"  # the unetkit model file inside such a package


class ModelFileError(ValueError):
    """A file that is not a readable unetkit model; the message names the file."""


def save_model(path: str | os.PathLike, model: UNet, meta: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (weights + architecture) and ``meta`` (merged over ``model.meta``).

    ``meta`` may hold ``normalization`` (a :class:`Normalization` or its dict), ``class_names``
    and any JSON-serialisable training information.
    """
    merged: dict[str, Any] = {**getattr(model, "meta", {}), **(meta or {})}
    norm = merged.get("normalization")
    if isinstance(norm, Normalization):
        merged["normalization"] = norm.to_dict()
    elif norm is not None:
        merged["normalization"] = Normalization.from_dict(norm).to_dict()  # validate
    header = {"format": FORMAT, "version": VERSION, **merged,
              "architecture": model.config.to_dict()}
    try:
        text = json.dumps(header)
    except TypeError as exc:
        raise ValueError(f"model metadata must be JSON-serialisable: {exc}") from None
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_KEY: text})
    return Path(path)


#: The model file inside a training run folder (``--model run/`` means ``run/model.safetensors``).
RUN_MODEL = "model.safetensors"


def model_path(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path/model.safetensors`` when ``path`` is a training run folder."""
    p = Path(path)
    if p.is_dir():
        if not (p / RUN_MODEL).is_file():
            raise ModelFileError(f"{p}: folder holds no {RUN_MODEL} (give a model file or a "
                                 f"training run folder)")
        return p / RUN_MODEL
    return p


@contextmanager
def _model_source(path: str | os.PathLike) -> Iterator[Path]:
    """The safetensors file to read: ``path`` itself, a run folder's ``model.safetensors``, or
    the unetkit model file inside a bioimage.io zip (extracted to a temporary folder for the
    duration)."""
    p = model_path(path)
    if not (p.is_file() and zipfile.is_zipfile(p)):
        yield p
        return
    try:
        with zipfile.ZipFile(p) as z:
            rdf = yaml.safe_load(z.read(PACKAGE_RDF))
            member = ((rdf.get("config") or {}).get("unetkit") or {}).get("model_file")
            if not member:
                raise ModelFileError(f"{p}: a bioimage.io package not written by unetkit (its "
                                     f"{PACKAGE_RDF} has no config.unetkit.model_file)")
            data = z.read(member)
    except (KeyError, zipfile.BadZipFile, yaml.YAMLError, AttributeError) as exc:
        raise ModelFileError(f"{p}: not a readable bioimage.io package ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="unetkit-") as tmp:
        target = Path(tmp) / PACKAGE_MODEL
        target.write_bytes(data)
        yield target


def read_model_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON configuration of a model file (or unetkit bioimage.io zip), without its weights."""
    with _model_source(path) as source:
        return _read_meta(source, Path(path))


def _read_meta(source: Path, p: Path) -> dict[str, Any]:
    """Read ``source``; errors name ``p``, the path the caller gave."""
    if not source.is_file():
        raise ModelFileError(f"{p}: no such model file")
    try:
        with safe_open(str(source), framework="pt") as f:
            raw = (f.metadata() or {}).get(_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{p}: not a readable unetkit model file (truncated, corrupt or foreign: {exc})"
        ) from None
    if raw is None:
        raise ModelFileError(f"{p}: not a unetkit model file (safetensors without a unetkit header)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{p}: corrupt unetkit header ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{p}: not a unetkit model file (format {meta.get('format')!r})")
    if meta.get("version", 0) > VERSION:
        raise ModelFileError(
            f"{p}: model file version {meta.get('version')} is newer than this unetkit reads "
            f"({VERSION}); upgrade unetkit"
        )
    return meta


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> UNet:
    """Load a model file (or a unetkit bioimage.io zip): a :class:`UNet` in eval mode with
    ``model.meta`` attached."""
    p = Path(path)
    with _model_source(p) as source:
        return _load(source, p, device)


def _load(source: Path, p: Path, device: str | torch.device) -> UNet:
    meta = _read_meta(source, p)
    try:
        config = UNetConfig(**meta["architecture"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{p}: bad architecture in model file ({exc})") from None
    model = UNet(**config.to_dict())
    try:
        with safe_open(str(source), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{p}: corrupt or truncated weights ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelFileError(f"{p}: weights do not match the architecture ({first})") from None
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "architecture")}
    if "normalization" in meta:
        meta["normalization"] = Normalization.from_dict(meta["normalization"]).to_dict()
    model.meta = meta
    return model.to(device).eval()
