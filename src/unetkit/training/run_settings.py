"""The configuration of a run: from the CLI's choices, the learning-rate schedule, resume checks."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from ..config import Config, apply_overrides, load_config, preset, to_dict
from .checkpoint import CONFIG

__all__ = ["run_config", "learning_rate", "check_resumable", "UNLIMITED_ITERATIONS"]

#: ``train.iterations`` when only a time budget is given (``--minutes``).
UNLIMITED_ITERATIONS = 10**9
_BUDGET_KEYS = ("iterations", "minutes")  # the only keys a resumed run may change


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


def check_resumable(saved: Config, cfg: Config) -> None:
    """Raise ValueError unless ``cfg`` equals the ``saved`` run's config except for the budget."""
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
