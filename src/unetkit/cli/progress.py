"""Progress behind the library's ``progress`` callbacks: the only place that draws.

On a terminal: a tqdm bar.  Elsewhere (a file, a pipe: SLURM, nohup, notebooks' captured
output): one plain line every :attr:`ProgressBar.interval` seconds, ``desc: done/total unit,
rate, ETA``, and a last line when the work is done; no carriage returns, so a log reads well.
``quiet``: nothing.
"""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar", "TileBar", "train_progress"]


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _LogLines:
    """The non-terminal stand-in for a tqdm bar: the same few attributes, plain lines."""

    def __init__(self, desc: str, unit: str, interval: float) -> None:
        self.desc, self.unit, self.interval = desc, unit, interval
        self.n = self.initial = self.last_print_n = 0
        self.total: int | None = None
        self.postfix = ""
        self._t0 = self._last = time.monotonic()

    def reset(self, total: int | None = None) -> None:
        self.n = self.initial = 0
        self.total = total
        self._t0 = self._last = time.monotonic()

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix(self, values: dict, refresh: bool = False) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def update(self, k: int) -> None:
        self.n += k
        now = time.monotonic()
        finished = self.total is not None and self.n >= self.total
        if now - self._last >= self.interval or finished:
            self._last = now
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self._t0
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        total = f"/{self.total}" if self.total else ""
        parts = [f"{self.desc}: {self.n}{total} {self.unit}", f"{rate:.3g} {self.unit}/s"]
        if self.total and rate > 0:
            left = (self.total - self.n) / rate
            parts.append(f"ETA {_clock(left)}" if left > 0 else f"took {_clock(elapsed)}")
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(parts), file=sys.stderr, flush=True)

    def write(self, text: str, file=None) -> None:
        print(text, file=file or sys.stdout, flush=True)

    def close(self) -> None:
        pass


class ProgressBar:
    """A bar (terminal) or log lines (elsewhere) behind a ``progress(done, total)`` callback,
    started at the first update (so an error before any work prints one clean line)."""

    #: Seconds between two log lines when stderr is not a terminal.
    interval = 5.0

    def __init__(self, unit: str = "tile", quiet: bool = False) -> None:
        self.unit, self.quiet, self.bar, self._desc, self._fresh = unit, quiet, None, "", True

    @property
    def desc(self) -> str:
        return self._desc

    @desc.setter
    def desc(self, text: str) -> None:
        """A new description starts a new run of work (the next file): the bar starts over."""
        self._desc, self._fresh = text, True

    def _start(self):
        if not sys.stderr.isatty():
            return _LogLines(self.desc, self.unit, self.interval)
        from tqdm.auto import tqdm

        return tqdm(desc=self.desc, unit=self.unit, dynamic_ncols=True, leave=False)

    def __call__(self, done: int, total: int, *_: object) -> None:
        if self.quiet:
            return
        if self.bar is None:
            self.bar = self._start()
        if self._fresh:
            self.bar.reset(total=total)
            self.bar.set_description(self._desc)
            self._fresh = False
        elif self.bar.total != total:  # a revised estimate (time budgets): keep rate and ETA
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def write(self, text: str, err: bool = False) -> None:
        """A line of its own (above the bar on a terminal); ``err``: to stderr."""
        file = sys.stderr if err else sys.stdout
        if self.bar is not None:
            self.bar.write(text, file=file)
        else:
            print(text, file=file)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TileBar(ProgressBar):
    """Tiles done of total with ETA and megapixels per second: ``progress(done, total, px)``
    (``px``: output pixels written by this run; on a resume the bar starts at the tiles already
    done, and rate and ETA count this run's work only)."""

    def __call__(self, done: int, total: int, pixels: int = 0) -> None:
        if self.quiet:
            return
        first = self.bar is None
        super().__call__(done, total)
        if first:
            self.bar.initial = self.bar.n = self.bar.last_print_n = done
            self._t0 = time.perf_counter()
        elif pixels:
            rate = pixels / 1e6 / max(time.perf_counter() - self._t0, 1e-9)
            self.bar.set_postfix_str(f"{rate:.2f} Mpx/s")


def train_progress(bar: ProgressBar):
    """``train``'s progress callback: the bar shows loss, learning rate and validation error."""

    def progress(step: int, total: int, info: dict) -> None:
        bar(step, total)
        if bar.bar is None:
            return
        shown = {"loss": f"{info['loss']:.4f}", "lr": f"{info['lr']:.2e}"}
        if "val_score" in info:
            shown["val"] = f"{info['val_score']:.3f}"
        elif "val_pixel_error" in info:
            shown["val_err"] = f"{info['val_pixel_error']:.4f}"
        bar.bar.set_postfix(shown, refresh=False)

    return progress
