"""Process state during training: stop cleanly on signals, deterministic algorithms, step seeds."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["stop_on_signals", "reproducible", "step_seed"]

log = logging.getLogger(__name__)


@contextmanager
def stop_on_signals() -> Iterator[dict[str, str | None]]:
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
def reproducible(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms (CPU training only: on CUDA they would forbid the autotuned cuDNN
    kernels, see ``training.cuda``) and a private torch RNG for the duration of training."""
    was, warn = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        torch.use_deterministic_algorithms(device.type != "cuda", warn_only=True)
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn)


def step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step, 0x5EED]).generate_state(1)[0])
