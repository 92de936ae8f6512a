"""The training loop (paper Sec. 3): weighted cross entropy, SGD with momentum 0.99, one large tile
per step, elastic augmentation; validation through overlap-tile inference; exact resume.

A run folder holds::

    config.yaml            the resolved configuration
    model.safetensors      the best model by validation (the last one without validation data);
                           loadable by ``unetkit predict`` (normalisation, class names, training info)
    model_last.safetensors the model of the latest checkpoint
    checkpoint.pt          model, optimizer, step, elapsed time, best score, RNG state; tensors and
                           plain containers only (``torch.load(weights_only=True)``), written
                           atomically
    metrics.csv            one row per step: step, time, loss, lr (+ validation columns)
    curves.png             loss and validation curves

Reproducibility: the batch of step ``s`` comes from ``np.random.default_rng([seed, s, j])``
(``dataset.TileSampler``) and dropout is re-seeded from ``(seed, s)`` before every step, so a run
resumed from the checkpoint of step ``k`` replays steps ``k+1, ...`` exactly; on CPU with a seed
two runs, or an interrupted and a continuous one, give bitwise the same model (deterministic
algorithms are switched on during training).  A time budget (``train.minutes``) makes the number
of steps, and with a schedule the learning rates, depend on the machine's speed.

Learning-rate schedule: a linear warm-up over ``warmup_iterations`` steps, then ``constant``,
``cosine`` (to 0) or ``poly`` (power 0.9) over the run's progress, the larger of the
step fraction ``step / iterations`` and the time fraction ``elapsed / minutes``.
"""

from __future__ import annotations

import csv
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import __version__
from ..model import geometry
from ..metrics import arrays as metrics
from ..config import Config, apply_overrides, dump, load_config, preset, to_dict
from ..data.dataset import Prefetcher, Prepared, TileSampler, load_pairs, prepare, split_validation
from ..data.dataset import training_normalization
from ..io.images import atomic_path
from .loss import weighted_cross_entropy
from ..model.unet import UNet
from ..model.modelfile import save_model
from ..data.normalize import Normalization
from ..inference.tiled import predict_tiled

__all__ = ["train", "TrainingInterrupted", "learning_rate", "run_config", "load_checkpoint",
           "UNLIMITED_ITERATIONS", "CHECKPOINT", "MODEL", "LAST_MODEL", "METRICS", "CURVES",
           "CONFIG"]

log = logging.getLogger(__name__)

CONFIG, MODEL, LAST_MODEL = "config.yaml", "model.safetensors", "model_last.safetensors"
CHECKPOINT, METRICS, CURVES = "checkpoint.pt", "metrics.csv", "curves.png"
#: ``train.iterations`` when only a time budget is given (``--minutes``).
UNLIMITED_ITERATIONS = 10**9
_CHECKPOINT_VERSION = 1
_BUDGET_KEYS = ("iterations", "minutes")  # the only keys a resumed run may change
_COLUMNS = ("step", "time", "loss", "lr", "val_pixel_error", "val_iou")


class TrainingInterrupted(Exception):
    """Training stopped by SIGINT / SIGTERM after saving a checkpoint (resume with resume=True)."""

    def __init__(self, signal_name: str, step: int, run_dir: Path) -> None:
        super().__init__(f"interrupted by {signal_name} after step {step}; checkpoint saved in "
                         f"{run_dir} (continue with --resume)")
        self.signal_name, self.step, self.run_dir = signal_name, step, run_dir


# ---- configuration --------------------------------------------------------------------------


def run_config(out_dir: str | Path, *, config_file: str | Path | None = None,
               preset_name: str | None = None, overrides: list[str] | tuple[str, ...] = (),
               seed: int | None = None, minutes: float | None = None,
               iterations: int | None = None, resume: bool = False) -> Config:
    """The configuration of a run from the CLI's choices (file, preset, overrides, budget).

    Base: ``config_file``, else ``preset_name``, else (when resuming) the run folder's
    ``config.yaml``, else the ``default`` preset.  ``minutes`` alone is a pure time budget
    (iterations :data:`UNLIMITED_ITERATIONS`); ``iterations`` alone a pure step budget.
    """
    if config_file is not None and preset_name is not None:
        raise ValueError("give either a config file or a preset, not both")
    if minutes is not None and iterations is not None:
        raise ValueError("give either minutes or iterations as the budget, not both")
    saved = Path(out_dir) / CONFIG
    if config_file is not None:
        cfg = load_config(config_file)
    elif preset_name is not None:
        cfg = preset(preset_name)
    elif resume and saved.is_file():
        cfg = load_config(saved)
    else:
        cfg = preset("default")
    cfg = apply_overrides(cfg, list(overrides))
    if seed is not None:
        cfg = replace(cfg, train=replace(cfg.train, seed=int(seed)))
    if minutes is not None:
        cfg = replace(cfg, train=replace(cfg.train, minutes=float(minutes),
                                         iterations=UNLIMITED_ITERATIONS))
    if iterations is not None:
        cfg = replace(cfg, train=replace(cfg.train, iterations=int(iterations), minutes=None))
    return cfg


def learning_rate(cfg: Config, step: int, progress: float) -> float:
    """Learning rate of step ``step`` (1-based) at run progress ``progress`` in [0, 1]."""
    t = cfg.train
    warm = min(1.0, step / t.warmup_iterations) if t.warmup_iterations else 1.0
    p = min(max(progress, 0.0), 1.0)
    if t.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * p))
    elif t.schedule == "poly":
        factor = (1.0 - p) ** 0.9
    else:
        factor = 1.0
    return t.lr * warm * factor


def _check_resumable(saved: Config, cfg: Config) -> None:
    old, new = to_dict(saved), to_dict(cfg)
    for section, values in new.items():
        for key, value in values.items():
            if section == "train" and key in _BUDGET_KEYS:
                continue
            if old[section][key] != value:
                raise ValueError(
                    f"cannot resume: {section}.{key} is {value!r} but the run used "
                    f"{old[section][key]!r} (only train.iterations and train.minutes may change)"
                )


# ---- data -----------------------------------------------------------------------------------


def _load_data(cfg: Config, images, labels, val_images, val_labels, val_fraction):
    if (val_images is None) != (val_labels is None):
        raise ValueError("give both validation images and validation labels, or neither")
    if val_images is not None and val_fraction is not None:
        raise ValueError("give either validation images or a validation fraction, not both")
    channels = cfg.model.in_channels
    pairs = load_pairs(images, labels, channels=channels)
    val_pairs = []
    if val_images is not None:
        val_pairs = load_pairs(val_images, val_labels, channels=channels)
    elif val_fraction is not None:
        pairs, val_pairs = split_validation(pairs, val_fraction, cfg.train.seed)
    norm = training_normalization(cfg.data.normalization, pairs)
    t0 = time.perf_counter()
    train_items, val_items = prepare(pairs, cfg, norm), prepare(val_pairs, cfg, norm)
    log.info("targets and weights of %d training and %d validation images in %.1f s",
             len(train_items), len(val_items), time.perf_counter() - t0)
    return train_items, val_items, norm


def _class_names(cfg: Config, items: list[Prepared]) -> list[str]:
    if cfg.model.num_classes == 2 and all(it.kind != "classes" for it in items):
        return ["background", "object"]
    return ["background"] + [f"class_{k}" for k in range(1, cfg.model.num_classes)]


# ---- validation -----------------------------------------------------------------------------


def _validate(model: UNet, items: list[Prepared], device: str) -> dict[str, float]:
    """Mean pixel error and foreground IoU over whole validation images (predict_tiled).

    Two classes: ISBI pixel error (1 - max F-score over thresholds) and IoU of class 1 at 0.5
    (``unetkit.metrics``).  More classes: 1 - accuracy and mean IoU of the argmax.  Ignored
    pixels are set to the truth before scoring (the metrics take no mask), so they count as
    correct.  The stored images are already normalised, hence ``normalization="none"``, which
    gives exactly the values predict_tiled computes from the raw image with the model's meta.
    """
    errors, ious = [], []
    for it in items:
        prob = predict_tiled(model, it.image, device=device,
                             normalization=Normalization(mode="none"))
        if prob.shape[0] == 2:
            truth = (it.target > 0).astype(np.uint8)
            fg = prob[1] if it.ignore is None else np.where(it.ignore, truth, prob[1])
            scores = metrics.evaluate_arrays(fg.astype(np.float32), truth,
                                             metrics=("pixel_error", "iou"))
            errors.append(scores["pixel_error"])
            ious.append(scores["iou"])
        else:
            pred = prob.argmax(0)
            if it.ignore is not None:
                pred = np.where(it.ignore, it.target, pred)
            errors.append(float(np.mean(pred != it.target)))
            scores = metrics.evaluate_arrays(pred, it.target, metrics=("mean_iou",),
                                             kind="classes")
            ious.append(scores["mean_iou"])
    return {"val_pixel_error": float(np.nanmean(errors)), "val_iou": float(np.nanmean(ious))}


# ---- run folder -----------------------------------------------------------------------------


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain containers only: ``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no checkpoint to resume from")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ValueError(f"{p}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != _CHECKPOINT_VERSION:
        raise ValueError(f"{p}: not a unetkit checkpoint (version {_CHECKPOINT_VERSION})")
    return ckpt


class _Log:
    """metrics.csv (appended per step) and the in-memory history for curves.png."""

    def __init__(self, path: Path, keep_until: int | None) -> None:
        self.path = path
        self.rows: list[dict[str, str]] = []
        if keep_until is not None and path.is_file():
            with path.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, _COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        self._file = path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, _COLUMNS)

    def add(self, row: dict[str, Any]) -> None:
        text = {k: ("" if row.get(k) is None else f"{row[k]:.6g}") for k in _COLUMNS}
        text["step"] = str(int(row["step"]))
        self.rows.append(text)
        self._writer.writerow(text)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def plot(self, path: Path) -> None:
        steps = np.array([int(r["step"]) for r in self.rows])
        loss = np.array([float(r["loss"]) for r in self.rows])
        fig = Figure(figsize=(10, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax_loss, ax_val = fig.subplots(1, 2)
        if steps.size:
            k = max(1, steps.size // 50)
            ax_loss.plot(steps, loss, color="0.75" if k > 1 else "C0", lw=0.6, label="loss per step")
            if k > 1:
                smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
                ax_loss.plot(steps[k - 1:], smooth, color="C0", lw=1.5, label=f"mean of {k} steps")
            ax_loss.set_yscale("log")
            ax_lr = ax_loss.twinx()
            ax_lr.plot(steps, [float(r["lr"]) for r in self.rows], color="C3", lw=1, ls="--")
            ax_lr.set_ylabel("learning rate (dashed)", color="C3")
            ax_lr.set_ylim(bottom=0)
        ax_loss.set(xlabel="step", ylabel="weighted cross entropy", title="training loss")
        ax_loss.legend(loc="upper right")
        val = [r for r in self.rows if r["val_pixel_error"]]
        if val:
            vs = [int(r["step"]) for r in val]
            ax_val.plot(vs, [float(r["val_pixel_error"]) for r in val], "o-", label="pixel error")
            ax_val.plot(vs, [float(r["val_iou"]) for r in val], "s-", label="foreground IoU")
            ax_val.legend(loc="best")
        else:
            ax_val.text(0.5, 0.5, "no validation data", ha="center", va="center",
                        transform=ax_val.transAxes)
        ax_val.set(xlabel="step", title="validation (whole images, overlap-tile)", ylim=(0, 1))
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")


# ---- process state: signals, determinism, RNG -----------------------------------------------


@contextmanager
def _stop_on_signals() -> Iterator[dict[str, str | None]]:
    """SIGINT/SIGTERM set ``flag["signal"]`` instead of stopping; handlers restored after.
    Outside the main thread signals cannot be caught and the flag stays None."""
    flag: dict[str, str | None] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        flag["signal"] = signal.Signals(signum).name
        log.warning("%s received: stopping after this step", flag["signal"])

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextmanager
def _reproducible(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms and a private torch RNG for the duration of training."""
    was, warn = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn)


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step, 0x5EED]).generate_state(1)[0])


# ---- the loop -------------------------------------------------------------------------------


class _Run:
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

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.step, self.elapsed = int(ckpt["step"]), float(ckpt["elapsed"])
        self.best_score, self.best_step = float(ckpt["best_score"]), int(ckpt["best_step"])
        self.last_val = dict(ckpt.get("last_val", {}))
        torch.set_rng_state(ckpt["rng"]["torch"])

    def info(self) -> dict[str, Any]:
        return {"step": self.step, "elapsed_s": round(self.elapsed, 3),
                "best_step": self.best_step,
                "best_val_pixel_error": None if math.isinf(self.best_score) else self.best_score,
                "train_images": self.n_train, "seed": self.cfg.train.seed,
                "config": to_dict(self.cfg), "unetkit_version": __version__}

    def save(self, with_val: bool) -> None:
        """model_last, model (best or last), checkpoint: each written atomically."""
        meta = {"training": self.info()}
        save_model(self.out / LAST_MODEL, self.model, meta)
        if not with_val or not (self.out / MODEL).exists():
            save_model(self.out / MODEL, self.model, meta)
        ckpt = {
            "version": _CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": {"schedule": self.cfg.train.schedule, "lr": self.opt.param_groups[0]["lr"]},
            "step": self.step, "elapsed": self.elapsed,
            "best_score": self.best_score, "best_step": self.best_step,
            "last_val": self.last_val,
            "rng": {"torch": torch.get_rng_state()},
            "config": to_dict(self.cfg),
        }
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save(ckpt, tmp)

    def validate(self, items: list[Prepared]) -> dict[str, float]:
        scores = _validate(self.model, items, str(self.device))
        self.last_val = scores
        if scores["val_pixel_error"] < self.best_score:
            self.best_score, self.best_step = scores["val_pixel_error"], self.step
            save_model(self.out / MODEL, self.model, {"training": self.info()})
        return scores


def train(config: Config, images, labels, out_dir, *, val_images=None, val_labels=None,
          val_fraction: float | None = None, resume: bool = False, device: str = "cpu",
          progress: Callable[[int, int, dict[str, Any]], None] | None = None) -> Path:
    """Train a U-Net as in the paper; returns the run folder (see the module docstring).

    Args:
        config: the full configuration (``unetkit.config``); ``train.iterations`` and
            ``train.minutes`` bound the run (whichever ends first).
        images, labels: training PATHs (folders paired by file name, or two stacks).
        out_dir: the run folder; it must not hold a checkpoint unless ``resume``.
        val_images, val_labels: validation PATHs, or ``val_fraction`` of the training images.
        resume: continue from ``out_dir/checkpoint.pt``; the configuration must equal the saved
            one except for the budget.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        progress: called after every step as ``progress(step, total, info)``; ``total`` is the
            planned number of steps (an estimate under a time budget), ``info`` holds ``loss``,
            ``lr``, ``elapsed``, ``data_wait`` / ``data_prep`` (seconds so far in this session)
            and the latest validation scores.

    Raises:
        ValueError: bad data (naming the file), bad configuration, nothing to resume,
            a diverging loss.
        TrainingInterrupted: after SIGINT/SIGTERM, once the checkpoint is written.
    """
    cfg, out, dev = config, Path(out_dir), torch.device(device)
    m, t = cfg.model, cfg.train
    geometry.check_input_size(t.tile_size, m.depth, m.padding)
    out_size = geometry.output_size(t.tile_size, m.depth, m.padding)
    if t.warmup_iterations >= t.iterations:
        log.warning("train.warmup_iterations (%d) >= train.iterations (%d): the learning rate "
                    "never reaches train.lr", t.warmup_iterations, t.iterations)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(out / CHECKPOINT)
        _check_resumable(load_config(out / CONFIG), cfg)
    elif (out / CHECKPOINT).exists():
        raise ValueError(f"{out} already holds a training run; resume it or choose a new folder")
    train_items, val_items, norm = _load_data(cfg, images, labels, val_images, val_labels,
                                              val_fraction)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / CONFIG) as tmp:
        tmp.write_text(dump(cfg))
    sampler = TileSampler(train_items, cfg.augment, t.tile_size, out_size, t.batch_size, t.seed)
    with _reproducible(dev):
        run = _Run(cfg, out, dev, norm, _class_names(cfg, train_items), len(train_items))
        if ckpt is not None:
            run.restore(ckpt)
            log.info("resuming %s at step %d", out, run.step)
        history = _Log(out / METRICS, keep_until=run.step if resume else None)
        try:
            _loop(run, sampler, val_items, history, progress)
        finally:
            history.close()
    return out


def _loop(run: _Run, sampler: TileSampler, val_items: list[Prepared], history: _Log,
          progress: Callable | None) -> None:
    t, dev, model = run.cfg.train, run.device, run.model
    budget = None if t.minutes is None else 60.0 * t.minutes
    model.train()
    saved_at = run.step
    threads = 1 if dev.type == "cpu" else None  # CPU training: leave the cores to the step
    with _stop_on_signals() as flag, \
            Prefetcher(sampler.batch, run.step + 1, threads=threads) as data:
        start, elapsed0 = time.perf_counter(), run.elapsed
        while run.step < t.iterations and (budget is None or run.elapsed < budget):
            step = run.step + 1
            frac = max((step - 1) / t.iterations, 0.0 if budget is None else run.elapsed / budget)
            lr = learning_rate(run.cfg, step, frac)
            batch = data.get(step)
            for group in run.opt.param_groups:
                group["lr"] = lr
            torch.manual_seed(_step_seed(t.seed, step))  # dropout of this step
            x = torch.from_numpy(batch.image).to(dev)
            logits = model(x)
            loss = weighted_cross_entropy(
                logits, torch.from_numpy(batch.target).to(dev),
                torch.from_numpy(batch.weights).to(dev),
                None if batch.ignore is None else torch.from_numpy(batch.ignore).to(dev))
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
            value = loss.item()
            if not math.isfinite(value):
                raise ValueError(f"the loss became {value} at step {step}: training diverged; "
                                 f"lower train.lr (now {t.lr:g})")
            run.step, run.elapsed = step, elapsed0 + time.perf_counter() - start
            row: dict[str, Any] = {"step": step, "time": run.elapsed, "loss": value, "lr": lr}
            done = step >= t.iterations or (budget is not None and run.elapsed >= budget)
            scheduled = step % t.val_interval == 0 or done
            if scheduled and val_items:
                row.update(run.validate(val_items))
                model.train()
            if scheduled:
                run.save(with_val=bool(val_items))
                saved_at = step
            history.add(row)
            if step == saved_at:
                history.plot(run.out / CURVES)
            if progress is not None:
                progress(step, _planned(run, budget), {
                    "loss": value, "lr": lr, "elapsed": run.elapsed,
                    "data_wait": data.wait_seconds, "data_prep": data.prep_seconds,
                    **run.last_val})
            if flag["signal"]:  # save at once, without validating, and stop
                if saved_at != step:
                    run.save(with_val=bool(val_items))
                    history.plot(run.out / CURVES)
                raise TrainingInterrupted(flag["signal"], step, run.out)
    if not (run.out / CHECKPOINT).exists():  # internal: the last step always saves
        run.save(with_val=bool(val_items))
        history.plot(run.out / CURVES)
    log.info("finished at step %d after %.0f s; best validation pixel error %s at step %d",
             run.step, run.elapsed, run.best_score, run.best_step)


def _planned(run: _Run, budget: float | None) -> int:
    """Steps the run will have made at its end (an estimate under a time budget)."""
    t = run.cfg.train
    if budget is None or run.elapsed <= 0:
        return t.iterations
    return max(run.step, min(t.iterations, round(run.step * budget / run.elapsed)))
