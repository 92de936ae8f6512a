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
(``data.dataset.TileSampler``) and dropout is re-seeded from ``(seed, s)`` before every step, so a run
resumed from the checkpoint of step ``k`` replays steps ``k+1, ...`` exactly; on CPU with a seed
two runs, or an interrupted and a continuous one, give bitwise the same model (deterministic
algorithms are switched on during training).  A time budget (``train.minutes``) makes the number
of steps, and with a schedule the learning rates, depend on the machine's speed.

Several processes (``torchrun --nproc_per_node=N -m unetkit train ...``): data-parallel training,
one global batch of ``N x train.batch_size`` tiles per step at ``train.lr``; rank 0 writes the run
folder (``training.distributed``).  The model and its input are channels_last (oneDNN's and
cuDNN's fast layout); on CUDA also mixed precision and pinned batches from several data threads
(``training.cuda``, ``data.workers``).

Learning-rate schedule: a linear warm-up over ``warmup_iterations`` steps, then ``constant``,
``cosine`` (to 0) or ``poly`` (power 0.9) over the run's progress, the larger of the
step fraction ``step / iterations`` and the time fraction ``elapsed / minutes``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..config import Config, dump, from_dict, preset
from ..data.dataset import Prefetcher, Prepared, TileSampler
from ..data.workers import ParallelPrefetcher
from ..inference.postprocess import has_contact
from ..io.images import atomic_path
from ..model import geometry
from ..model.modelfile import load_model, save_model
from .checkpoint import (CHECKPOINT, CONFIG, CURVES, FINGERPRINT, METRICS, MODEL, RunState,
                         load_checkpoint)
from .cuda import StepPath, cuda_settings
from .distributed import Parallel, check_global_batch, setup
from .history import History, NoHistory
from .loss import soft_dice_loss, weighted_cross_entropy
from .process import reproducible, step_seed, stop_on_signals
from .run_settings import check_resumable, learning_rate
from .selection import Validator, fixed_postprocess
from .validation import class_names, load_data

__all__ = ["train", "TrainingInterrupted"]

log = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """Training stopped by SIGINT / SIGTERM after saving a checkpoint (resume with resume=True)."""

    def __init__(self, signal_name: str, step: int, run_dir: Path) -> None:
        super().__init__(f"interrupted by {signal_name} after step {step}; checkpoint saved in "
                         f"{run_dir} (continue with --resume)")
        self.signal_name, self.step, self.run_dir = signal_name, step, run_dir


def train(config: Config | str, images, labels, out_dir, *, val_images=None, val_labels=None,
          val_fraction: float | None = None, resume: bool = False, device: str = "cpu",
          progress: Callable[[int, int, dict[str, Any]], None] | None = None,
          announce: Callable[[dict[str, Any], dict[str, Any]], None] | None = None) -> Path:
    """Train a U-Net as in the paper; returns the run folder (see the module docstring).

    Args:
        config: the full configuration (``unetkit.config``), or a preset name (``"default"``,
            ``"paper"``); ``train.iterations`` and ``train.minutes`` bound the run (whichever
            ends first).
        images, labels: training PATHs (folders paired by file name, or two stacks).
        out_dir: the run folder; it must not hold a checkpoint unless ``resume``.
        val_images, val_labels: validation PATHs, or ``val_fraction`` of the training images.
        resume: continue from ``out_dir/checkpoint.pt``; the configuration must equal the saved
            one except for the budget.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; under torchrun ``"cuda"`` means
            ``cuda:LOCAL_RANK`` (``training.distributed``).
        progress: called after every step as ``progress(step, total, info)``; ``total`` is the
            planned number of steps (an estimate under a time budget), ``info`` holds ``loss``,
            ``lr``, ``elapsed``, ``data_wait`` / ``data_prep`` (seconds so far in this session)
            and the latest validation scores.
        announce: called once before training as ``announce(fingerprint, choices)`` (the
            training set's fingerprint and each value chosen from it, with its reason).

    Raises:
        ValueError: bad data (naming the file), bad configuration, nothing to resume,
            a diverging loss.
        TrainingInterrupted: after SIGINT/SIGTERM, once the checkpoint is written.
    """
    if isinstance(config, str):
        config = preset(config)
    elif not isinstance(config, Config):
        raise TypeError(f"config must be a Config or a preset name, got {type(config).__name__}")
    par = setup(device)
    finished = False
    try:
        out = _train(par, config, images, labels, out_dir, val_images, val_labels, val_fraction,
                     resume, progress, announce)
        finished = True
        return out
    finally:
        par.close(wait=finished)


def _train(par: Parallel, config: Config, images, labels, out_dir, val_images, val_labels,
           val_fraction, resume, progress, announce) -> Path:
    out, dev = Path(out_dir), par.device
    if config.train.tile_size is not None:  # fail before reading data where we can
        geometry.check_input_size(config.train.tile_size, config.model.depth, config.model.padding)
    ckpt = None
    if resume:  # rank 0 reads the file: other nodes need not see the run folder
        ckpt = par.share(load_checkpoint(out / CHECKPOINT) if par.main else None)
    elif (out / CHECKPOINT).exists():
        raise ValueError(f"{out} already holds a training run; resume it or choose a new folder")
    data = load_data(config, images, labels, val_images, val_labels, val_fraction)
    cfg = data.cfg
    m, t = cfg.model, cfg.train
    geometry.check_input_size(t.tile_size, m.depth, m.padding)
    out_size = geometry.output_size(t.tile_size, m.depth, m.padding)
    if t.warmup_iterations >= t.iterations:
        log.warning("train.warmup_iterations (%d) >= train.iterations (%d): the learning rate "
                    "never reaches train.lr", t.warmup_iterations, t.iterations)
    for key, choice in data.choices.items() if par.main else ():
        log.info("chosen from the data: %s = %s (%s)", key, choice["value"], choice["reason"])
    if announce is not None and par.main:
        announce(data.fingerprint.to_dict(), data.choices)
    if ckpt is not None:
        check_global_batch(ckpt, par, t.batch_size)  # then the split may differ:
        saved = from_dict(ckpt["config"])
        check_resumable(replace(saved, train=replace(saved.train, batch_size=t.batch_size)), cfg)
    if par.main:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / CONFIG) as tmp:
            tmp.write_text(dump(cfg))
        with atomic_path(out / FINGERPRINT) as tmp:
            tmp.write_text(json.dumps({"fingerprint": data.fingerprint.to_dict(),
                                       "choices": data.choices}, indent=1))
    sampler = TileSampler(data.train, cfg.augment, t.tile_size, out_size, t.batch_size, t.seed,
                          foreground=cfg.data.foreground_sampling or 0.0)
    with reproducible(dev):
        run = RunState(cfg, out, dev, data.norm, class_names(cfg, data.train), len(data.train))
        fast = StepPath(dev)
        fast.prepare(run.model)
        run.world_size, run.device_state = par.world, fast.state_dict
        if data.val and (m.num_classes == 2 or has_contact(run.model)) and par.main:
            run.validator = Validator(cfg, data.val, data.val_pairs, data.fingerprint, str(dev))
        run.model.meta["postprocess"] = fixed_postprocess(cfg).to_dict()
        run.model.meta["inference"] = {"tta": cfg.postprocess.tta}  # engine.model_tta
        if ckpt is not None:
            run.restore(ckpt)
            fast.load_state_dict(ckpt.get("device_state", {}))
            log.info("resuming %s at step %d", out, run.step)
        history = (History(out / METRICS, keep_until=run.step if resume else None) if par.main
                   else NoHistory())
        try:
            with cuda_settings(dev):
                _loop(run, sampler, data.val if par.main else [], history, progress, par, fast)
        finally:
            history.close()
        if run.validator is not None:
            _choose_postprocess(run)
    return out


def _choose_postprocess(run: RunState) -> None:
    """The finer post-processing search on the selected model, written into its model file."""
    assert run.validator is not None  # internal
    best = load_model(run.out / MODEL, device=run.device)
    scores, pp = run.validator.final(best)
    best.meta["postprocess"] = pp.to_dict()
    best.meta.setdefault("training", {})["validation"] = {
        "metric": run.validator.metric, **{k: round(v, 4) for k, v in scores.items()}}
    save_model(run.out / MODEL, best)
    log.info("post-processing chosen on validation data: threshold %.2f, min_size %d px, "
             "fill_holes %d px, grow %d px%s (%s %.3f)", pp.threshold, pp.min_size,
             pp.fill_holes, pp.grow,
             f", seed {pp.seed:.2f}" if has_contact(best) else
             f", cores above {pp.seed:.2f} of {pp.core_size}+ px" if pp.seed > pp.threshold
             else "",
             run.validator.metric, scores["val_score"])


def _data(sampler: TileSampler, start: int, par: Parallel, fast: StepPath
          ) -> Prefetcher | ParallelPrefetcher:
    """This rank's share of each step's tiles, prepared ahead: one thread on the CPU (it leaves
    the cores to the step), several on CUDA so that the GPU does not wait."""
    first = par.rank * sampler.batch_size

    def make(step: int) -> tuple:
        return fast.stage(sampler.batch(step, first))

    if par.device.type == "cpu":
        return Prefetcher(make, start, threads=1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return ParallelPrefetcher(make, start, workers=max(2, min(8, (os.cpu_count() or 2) // local)))


def _loop(run: RunState, sampler: TileSampler, val_items: list[Prepared],
          history: History | NoHistory, progress: Callable | None, par: Parallel,
          fast: StepPath) -> None:
    t, model = run.cfg.train, run.model
    net = par.wrap(model)
    budget = None if t.minutes is None else 60.0 * t.minutes
    model.train()
    saved_at = run.step
    with stop_on_signals() as flag, _data(sampler, run.step + 1, par, fast) as data:
        start, elapsed0 = time.perf_counter(), run.elapsed
        # the training seconds since the last validation ended, and what it cost with its save
        # (both from the elapsed time all ranks agree on, so all ranks schedule the same steps)
        val_end, val_cost, val_started = run.elapsed, 0.0, None
        while run.step < t.iterations and (budget is None or run.elapsed < budget):
            step = run.step + 1
            frac = max((step - 1) / t.iterations, 0.0 if budget is None else run.elapsed / budget)
            lr = learning_rate(run.cfg, step, frac)
            batch = data.get(step)
            for group in run.opt.param_groups:
                group["lr"] = lr
            torch.manual_seed(par.dropout_seed(step_seed(t.seed, step)))  # dropout of this step
            x, target, weights, ignore = fast.to_device(batch)
            with fast.autocast():
                logits = net(x)
            loss, value = _loss(logits.float(), target, weights, ignore, par,
                                run.cfg.weights.dice)
            fast.step(loss, run.opt)
            value = loss.item() if value is None else value
            if not math.isfinite(value):
                raise ValueError(f"the loss became {value} at step {step}: training diverged; "
                                 f"lower train.lr (now {t.lr:g})")
            run.step = step
            run.update_ema()
            run.elapsed = par.agree_elapsed(elapsed0 + time.perf_counter() - start)
            row: dict[str, Any] = {"step": step, "time": run.elapsed, "loss": value, "lr": lr}
            done = step >= t.iterations or (budget is not None and run.elapsed >= budget)
            if val_started is not None:  # the step after a validation: what it cost
                val_cost, val_end, val_started = run.elapsed - val_started, run.elapsed, None
            since = run.elapsed - val_end
            # under a time budget: at most ~12 validations (on a slow CPU, every val_interval
            # steps could spend a large share of the minutes on validation), and one at least
            # every tenth of the budget, as long as validating takes under a fifth of the time.
            # On a slow CPU the minutes may not reach val_interval steps, and the best model
            # could then only be the last one (measured, 2 min at 86 GFLOP/s: MSC 02 -> 01 made
            # 156 steps and was validated once, at the end; without the fifth, its 10-15 s
            # validations left 23 steps)
            spaced = budget is None or since >= budget / 12
            scheduled = ((step % t.val_interval == 0 and spaced) or done
                         or (budget is not None and since >= max(budget / 10, 4 * val_cost)))
            if scheduled and val_items:
                row.update(run.validate(val_items))
                model.train()
            if scheduled:
                val_started = run.elapsed  # on every rank: rank 0's validation holds them all
                if par.main:
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
            stop = par.agree_stop(flag["signal"])  # a signal on any rank stops all ranks
            if stop:  # save at once, without validating, and stop
                if saved_at != step and par.main:
                    run.save(with_val=bool(val_items))
                    history.plot(run.out / CURVES)
                par.barrier()  # no rank exits (and so has torchrun end the others) before
                raise TrainingInterrupted(stop, step, run.out)
    gap = par.divergence(model)
    if gap > 0:  # internal: DDP keeps the ranks' parameters bitwise equal
        raise RuntimeError(f"the ranks' parameters differ by up to {gap:g} after training")
    if par.main and not (run.out / CHECKPOINT).exists():  # internal: the last step saves
        run.save(with_val=bool(val_items))
        history.plot(run.out / CURVES)
    if par.main:
        log.info("finished at step %d after %.0f s; best validation loss %s at step %d",
                 run.step, run.elapsed, run.best_score, run.best_step)


def _loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
          ignore: torch.Tensor | None, par: Parallel, dice: float = 0.0
          ) -> tuple[torch.Tensor, float | None]:
    """The loss to backpropagate and, with several processes, the global batch's mean value:
    the ``"pixels"`` mean over all ranks' non-ignored pixels (``Parallel.global_mean``), plus
    ``dice`` x the soft Dice term (per rank's tiles; DDP averages its gradient over ranks)."""
    if not par.active:
        loss = weighted_cross_entropy(logits, target, weights, ignore)
        if dice:
            loss = loss + dice * soft_dice_loss(logits, target, ignore)
        return loss, None
    total = weighted_cross_entropy(logits, target, weights, ignore, reduction="sum")
    count = target.numel() if ignore is None else (~ignore).sum()
    loss, value = par.global_mean(total, count)
    if dice:
        term = soft_dice_loss(logits, target, ignore)
        loss, value = loss + dice * term, value + dice * float(term.detach())
    return loss, value


def _planned(run: RunState, budget: float | None) -> int:
    """Steps the run will have made at its end (an estimate under a time budget)."""
    t = run.cfg.train
    if budget is None or run.elapsed <= 0:
        return t.iterations
    return max(run.step, min(t.iterations, round(run.step * budget / run.elapsed)))
