"""The run folder's files and the checkpoint: the state of a run, saved and restored exactly.

The checkpoint holds tensors and plain containers only (``torch.load(weights_only=True)``) and is
written atomically, beside ``model.safetensors`` (best by validation) and ``model_last.safetensors``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..config import Config, to_dict
from ..data.dataset import Prepared
from ..data.normalize import Normalization
from ..io.images import atomic_path
from ..model.modelfile import save_model
from ..model.unet import UNet
from .selection import Validator
from .validation import validate

__all__ = ["RunState", "load_checkpoint", "model_path", "CONFIG", "MODEL", "LAST_MODEL",
           "CHECKPOINT", "METRICS", "CURVES", "FINGERPRINT"]

CONFIG, MODEL, LAST_MODEL = "config.yaml", "model.safetensors", "model_last.safetensors"
CHECKPOINT, METRICS, CURVES = "checkpoint.pt", "metrics.csv", "curves.png"
FINGERPRINT = "fingerprint.json"
CHECKPOINT_VERSION = 1


def model_path(path: str | Path) -> Path:
    """A model file as given, or the ``model.safetensors`` of a run folder."""
    p = Path(path)
    if p.is_dir():
        if not (p / MODEL).is_file():
            raise ValueError(f"{p}: a run folder holds {MODEL}; none found")
        return p / MODEL
    return p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain containers only: ``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no checkpoint to resume from")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ValueError(f"{p}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{p}: not a unetkit checkpoint (version {CHECKPOINT_VERSION})")
    return ckpt


class RunState:
    """State of one training run (model, optimiser, counters) and its run-folder writes."""

    def __init__(self, cfg: Config, out: Path, device: torch.device, norm: Normalization,
                 class_names: list[str], n_train: int) -> None:
        self.cfg, self.out, self.device = cfg, out, device
        torch.manual_seed(cfg.train.seed)
        self.model = UNet(**cfg.model.to_dict()).to(device)
        self.model.meta = {"normalization": norm.to_dict(), "class_names": class_names}
        t = cfg.train
        params = self.model.parameters()
        if t.optimizer == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        else:
            self.opt = torch.optim.Adam(params, lr=t.lr, betas=(t.momentum, 0.999),
                                        weight_decay=t.weight_decay)
        self.step, self.elapsed = 0, 0.0
        self.best_score, self.best_step = math.inf, 0
        self.n_train = n_train
        self.last_val: dict[str, float] = {}
        self.validator: Validator | None = None  # two classes: score and post-processing
        # train.ema: the averaged copy that is validated and saved (it shares the meta dict)
        self.ema: UNet | None = None
        if t.ema > 0:
            self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.ema.meta = self.model.meta
        # data-parallel training (training.distributed) and the CUDA step's scaler state
        self.world_size = 1
        self.device_state: Callable[[], dict[str, Any]] = dict

    @property
    def selected(self) -> UNet:
        """The model that is validated and saved: the average with train.ema, else the model."""
        return self.model if self.ema is None else self.ema

    @torch.no_grad()
    def update_ema(self) -> None:
        """Move the average towards the model after step ``self.step`` (train.ema)."""
        if self.ema is None:
            return
        keep = min(self.cfg.train.ema, (1.0 + self.step) / (10.0 + self.step))
        for avg, now in zip(self.ema.parameters(), self.model.parameters()):
            avg.lerp_(now, 1.0 - keep)
        for avg, now in zip(self.ema.buffers(), self.model.buffers()):
            if avg.is_floating_point():
                avg.lerp_(now, 1.0 - keep)
            else:  # batch norm's step counter
                avg.copy_(now)

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.step, self.elapsed = int(ckpt["step"]), float(ckpt["elapsed"])
        self.best_score, self.best_step = float(ckpt["best_score"]), int(ckpt["best_step"])
        self.last_val = dict(ckpt.get("last_val", {}))
        torch.set_rng_state(ckpt["rng"]["torch"])

    def info(self) -> dict[str, Any]:
        return {"step": self.step, "elapsed_s": round(self.elapsed, 3),
                "best_step": self.best_step,
                "best_val_loss": None if math.isinf(self.best_score) else self.best_score,
                "train_images": self.n_train, "seed": self.cfg.train.seed,
                "config": to_dict(self.cfg), "unetkit_version": __version__}

    def save(self, with_val: bool) -> None:
        """model_last, model (best or last), checkpoint: each written atomically."""
        meta = {"training": self.info()}
        save_model(self.out / LAST_MODEL, self.selected, meta)
        if not with_val or not (self.out / MODEL).exists():
            save_model(self.out / MODEL, self.selected, meta)
        ckpt = {
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            **({} if self.ema is None else {"ema": self.ema.state_dict()}),
            "optimizer": self.opt.state_dict(),
            "scheduler": {"schedule": self.cfg.train.schedule, "lr": self.opt.param_groups[0]["lr"]},
            "step": self.step, "elapsed": self.elapsed,
            "best_score": self.best_score, "best_step": self.best_step,
            "last_val": self.last_val,
            "rng": {"torch": torch.get_rng_state()},
            "config": to_dict(self.cfg),
            "parallel": {"world_size": self.world_size,
                         "global_batch": self.world_size * self.cfg.train.batch_size},
            "device_state": self.device_state(),
        }
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save(ckpt, tmp)

    def validate(self, items: list[Prepared]) -> dict[str, float]:
        """Score on the validation data; a better score saves model.safetensors.  Two classes:
        the Validator's score (higher is better; ``best_score`` keeps 1 - score) and the
        post-processing it was taken at; more classes: the pixel error."""
        meta: dict[str, Any] = {}
        if self.validator is not None:
            scores, pp = self.validator.score(self.selected)
            loss = 1.0 - scores["val_score"]
            meta["postprocess"] = pp.to_dict()
        else:
            scores = validate(self.selected, items, str(self.device))
            loss = scores["val_pixel_error"]
        self.last_val = scores
        if loss < self.best_score:
            self.best_score, self.best_step = loss, self.step
            self.model.meta.update(meta)
            save_model(self.out / MODEL, self.selected, {"training": self.info()})
        return scores
