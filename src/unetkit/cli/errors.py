"""Which failures are the user's to fix, and their one-line message (parsing and presenting)."""

from __future__ import annotations

import errno
import os
import re

__all__ = ["CLIError", "user_error"]

# Torch's words for an allocation that failed (CPU allocator, CUDA, MPS).
_OOM_WORDS = ("can't allocate memory", "out of memory", "not enough memory")


# np.float32(nan), np.int64(3), np.str_('a'): numpy scalar reprs that reached a message
_NUMPY_REPR = re.compile(r"np\.(?:float|int|uint|bool|str|complex)\w*\((.*?)\)")


class CLIError(Exception):
    """An error to report in one line."""


def user_error(exc: BaseException) -> str | None:
    """The one-line message for a failure the user can fix, or None for an internal error.

    User failures: bad values and files (ValueError and its kin), the file system (an OSError
    with an errno: permission, no space, not a folder...), memory, a missing optional extra
    (an ImportError whose message says what to ``pip install``).
    """
    if isinstance(exc, (CLIError, ValueError)):
        text = str(exc)
    elif isinstance(exc, MemoryError):
        text = f"out of memory: {exc or 'allocation failed'} (use a smaller --tile or --batch)"
    elif isinstance(exc, ImportError) and "pip install" in str(exc):
        text = str(exc)
    elif isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _OOM_WORDS):
        first = str(exc).strip().splitlines()[0]
        text = f"out of memory: {first} (use a smaller --tile or --batch)"
    elif isinstance(exc, OSError) and exc.errno is not None:
        why = (exc.strerror or os.strerror(exc.errno)).lower()
        what = exc.filename if exc.filename is not None else errno.errorcode.get(exc.errno)
        text = f"{what}: {why}" if what else why
    else:
        return None
    return " ".join(_NUMPY_REPR.sub(r"\1", text).split())  # one line, no numpy reprs
