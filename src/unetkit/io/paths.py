"""Checks on the places outputs go, made before any compute (no torch).

Each raises :class:`OutputPathError` (a ValueError) naming the path and the reason, so that a
mistyped ``--out`` costs a second, not a finished computation thrown away.  Root passes every
permission check (``os.access``), as it passes the kernel's.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["OutputPathError", "check_output_dir", "check_output_file", "writable_ancestor"]


class OutputPathError(ValueError):
    """An output location that cannot be written; the message starts with the path."""


def writable_ancestor(path: str | os.PathLike) -> Path:
    """The nearest existing folder at or above ``path``, checked writable; raise otherwise."""
    p = Path(os.path.abspath(path))
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"{path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: permission denied (cannot write in {probe})")
    return probe


def check_output_dir(path: str | os.PathLike) -> None:
    """``path`` is, or can be created as, a folder we may write in."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{path}: exists and is a file, not a folder")
    writable_ancestor(p)


def check_output_file(path: str | os.PathLike, overwrite: bool = False) -> None:
    """``path`` may be written as a file: absent (or ``overwrite``), not a folder, writable."""
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(f"{path}: is a folder, expected a file name")
    if p.exists() and not overwrite:
        raise OutputPathError(f"{path}: exists (use --overwrite to replace it)")
    writable_ancestor(p.parent if str(p.parent) else ".")
