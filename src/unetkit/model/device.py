"""The device a user names (``cpu``, ``cuda``, ``cuda:1``, ``mps``), checked before any work."""

from __future__ import annotations

import torch

__all__ = ["DeviceError", "check_device"]

KNOWN = "cpu, cuda, cuda:N or mps"


class DeviceError(ValueError):
    """A device that does not exist or is not available on this machine."""


def check_device(name: str | None) -> str:
    """``name`` (None: ``cpu``) if torch can run on it here; :class:`DeviceError` otherwise."""
    if name is None:
        return "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"device {name!r}: unknown device (use {KNOWN})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {name!r}: this machine has {count} CUDA device(s) "
                              f"(cuda:0 to cuda:{count - 1})")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"device {name!r}: MPS (Apple GPU) is not available on this machine")
    elif dev.type != "cpu":
        raise DeviceError(f"device {name!r}: unetkit runs on {KNOWN}")
    return name
