"""Progress bars (tqdm) behind the library's ``progress`` callbacks: the only place that draws."""

from __future__ import annotations

import time

__all__ = ["ProgressBar", "TileBar", "train_progress"]


class ProgressBar:
    """A tqdm bar behind a ``progress(done, total)`` callback, drawn from the first update on (so
    an error before any work prints one clean line)."""

    def __init__(self, unit: str = "tile") -> None:
        self.unit, self.bar, self._desc, self._fresh = unit, None, "", True

    @property
    def desc(self) -> str:
        return self._desc

    @desc.setter
    def desc(self, text: str) -> None:
        """A new description starts a new run of work (the next file): the bar starts over."""
        self._desc, self._fresh = text, True

    def __call__(self, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(desc=self.desc, unit=self.unit, dynamic_ncols=True, leave=False)
        if self._fresh:
            self.bar.reset(total=total)
            self.bar.set_description(self._desc)
            self._fresh = False
        elif self.bar.total != total:  # a revised estimate (time budgets): keep rate and ETA
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TileBar(ProgressBar):
    """Tiles done of total with ETA and megapixels per second: ``progress(done, total, px)``
    (``px``: output pixels written by this run; on a resume the bar starts at the tiles already
    done, and rate and ETA count this run's work only)."""

    def __call__(self, done: int, total: int, pixels: int = 0) -> None:
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
        shown = {"loss": f"{info['loss']:.4f}", "lr": f"{info['lr']:.2e}"}
        if "val_score" in info:
            shown["val"] = f"{info['val_score']:.3f}"
        elif "val_pixel_error" in info:
            shown["val_err"] = f"{info['val_pixel_error']:.4f}"
        bar.bar.set_postfix(shown, refresh=False)

    return progress
