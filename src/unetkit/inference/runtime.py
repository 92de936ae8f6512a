"""CPU runtimes for prediction: eager torch, or the exported ONNX graph in onnxruntime.

:func:`with_runtime` returns a drop-in replacement for the model (same ``config`` and ``meta``,
same ``forward`` contract ``(B, C, S, S) -> (B, K, S', S')`` logits), so every driver
(``predict_tiled``, files, streaming, dask) runs unchanged on either runtime and the overlap-tile
output stays the same to float rounding (< 1e-4, ``tests/test_runtime.py``).

``"auto"`` picks what *measured* fastest on this machine for this network width, depth and tile
size: the first call times a forward pass of each runtime on a random tile (best of three after two
warm-up passes) and caches the verdict in ``<cache>/runtimes.json`` (``$UNETKIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/unetkit``, else ``~/.cache/unetkit``), keyed by network width/depth/padding,
tile size, thread count, CPU and library versions.  Measuring once and caching, instead of
measuring at every start, because one 572 px tile of the paper network takes ~5 s per pass on 2
cores: ten passes (~50 s) would cost more than many whole prediction jobs, while the ranking
depends only on the key.  Why measure at all: onnxruntime beat eager torch on a 16-channel U-Net
here, and the margin differs with width and machine (``benchmarks/bench_predict.py``).

Two guards keep a noisy measurement from switching the runtime (measured: a cache written while
other jobs shared the 2 cores chose onnxruntime for the paper network, which runs it at 0.95x
torch's speed on a quiet machine):

* the two runtimes are timed in alternation (torch, onnxruntime, torch, ...), best of
  :data:`REPEATS` each, so a change of load hits both;
* onnxruntime is chosen only when it is at least :data:`MARGIN` faster than torch (the
  reference: no export at start, and its output is the model's own);
* a verdict measured while the machine was busy (1-minute load average above the core count)
  is used for that call but not cached: the next call measures again.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from ..model import geometry
from ..model.onnxgraph import INPUT_NAME, onnx_bytes
from .engine import model_geometry
from .plan import choose_tile_size

__all__ = ["RUNTIMES", "OnnxRuntimeModel", "with_runtime", "measure_runtimes", "cache_dir",
           "onnxruntime_available"]

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime", "auto")
_MEASURED = ("torch", "onnxruntime")
_CACHE_FILE = "runtimes.json"


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _need_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ValueError("runtime 'onnxruntime' needs onnxruntime and onnx: "
                         "pip install 'unetkit[onnx]'") from None
    return onnxruntime


class OnnxRuntimeModel(nn.Module):
    """A U-Net's ONNX graph run by onnxruntime on the CPU, behind the model's interface.

    ``forward``: (B, C, S, S) float32 tensor -> (B, K, S', S') float32 logits, like the network.
    ``threads``: onnxruntime's intra-op threads (default: torch's, so the two compare fairly).
    """

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        super().__init__()
        ort = _need_onnxruntime()
        self.config = model.config
        self.meta = dict(getattr(model, "meta", {}))
        # not a submodule: no parameters to move or train, but the same state_dict, so that the
        # streaming driver's model digest (resume check) is the source model's
        object.__setattr__(self, "_source", model)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes(model), opts,
                                            providers=["CPUExecutionProvider"])

    @property
    def margin(self) -> int:
        return geometry.margin(self.config.depth, self.config.padding)

    def state_dict(self, *args, **kwargs):
        return self._source.state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # onnxruntime reads C-contiguous NCHW: the tiler hands channels_last tensors
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {INPUT_NAME: array})[0])


def cache_dir() -> Path:
    """Where measured runtime choices are kept (module docstring)."""
    if os.environ.get("UNETKIT_CACHE_DIR"):
        return Path(os.environ["UNETKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unetkit"


def _cache_key(model: nn.Module, tile_size: int, batch_size: int) -> str:
    import onnxruntime

    cfg = model.config
    cpu = platform.processor() or platform.machine()
    widths = ".".join(map(str, model_geometry(model)[4]))
    return (f"v2|c{cfg.in_channels}-k{cfg.num_classes}-d{cfg.depth}-w{widths}-"
            f"{cfg.padding}-bn{int(cfg.batch_norm)}|tile{tile_size}x{batch_size}|"
            f"threads{torch.get_num_threads()}|{cpu}|torch{torch.__version__}|"
            f"ort{onnxruntime.__version__}")


#: onnxruntime must be this much faster than torch (seconds ratio at most 1 - MARGIN) to be used
MARGIN = 0.1
#: timed passes per runtime, in alternation, after two warm-up passes each
REPEATS = 3


def _time_alternating(nets: dict[str, tuple[nn.Module, torch.Tensor]],
                      repeats: int = REPEATS) -> dict[str, float]:
    """Best seconds per forward pass of each net, timed in alternation."""
    best = {name: float("inf") for name in nets}
    with torch.inference_mode():
        for net, x in nets.values():
            for _ in range(2):  # warm-up: oneDNN builds its primitives over the first calls
                net(x)
        for _ in range(repeats):
            for name, (net, x) in nets.items():
                t0 = time.perf_counter()
                net(x)
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _busy() -> bool:
    """Whether other work shares the cores now (1-minute load average above the core count)."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except OSError:  # not on this platform
        return False


def _verdict(seconds: dict[str, float]) -> str:
    """torch, unless onnxruntime is at least MARGIN faster."""
    return "onnxruntime" if seconds["onnxruntime"] <= (1 - MARGIN) * seconds["torch"] else "torch"


def measure_runtimes(model: nn.Module, tile_size: int, batch_size: int = 1,
                     ort_model: nn.Module | None = None) -> dict[str, float]:
    """Seconds per forward pass of ``batch_size`` tiles of ``tile_size`` px, per runtime."""
    cfg = model.config
    geometry.check_input_size(tile_size, cfg.depth, cfg.padding)
    # random, not zero: a zero tile runs faster than an image through some kernels
    x = torch.randn(batch_size, cfg.in_channels, tile_size, tile_size,
                    generator=torch.Generator().manual_seed(0))
    eager = model.eval()
    ort_model = ort_model or OnnxRuntimeModel(model)
    return _time_alternating({"torch": (eager, x.contiguous(memory_format=torch.channels_last)),
                              "onnxruntime": (ort_model, x)})


def _read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _choose(model: nn.Module, tile_size: int, batch_size: int,
            cache: Path | None) -> tuple[str, nn.Module | None]:
    """The measured-fastest runtime name (and the onnxruntime model, when one was built)."""
    if not onnxruntime_available():
        log.info("runtime auto: onnxruntime is not installed, using torch")
        return "torch", None
    path = (cache if cache is not None else cache_dir()) / _CACHE_FILE
    key = _cache_key(model, tile_size, batch_size)
    entries = _read_cache(path)
    if key in entries:
        log.info("runtime auto: %s (cached measurement %s)", entries[key]["choice"], path)
        return entries[key]["choice"], None
    ort_model = OnnxRuntimeModel(model)
    busy = _busy()
    seconds = measure_runtimes(model, tile_size, batch_size, ort_model)
    choice = _verdict(seconds)
    measured = ", ".join(f"{k} {v:.3f} s" for k, v in seconds.items())
    if busy:  # a verdict from a shared machine is used once, never cached
        log.info("runtime auto: %s (measured %s while the machine was busy; not cached)",
                 choice, measured)
        return choice, (ort_model if choice == "onnxruntime" else None)
    entries[key] = {"choice": choice, "seconds": {k: round(v, 4) for k, v in seconds.items()},
                    "margin": MARGIN}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError as exc:  # a read-only home: measure again next time
        log.warning("could not cache the runtime measurement in %s: %s", path, exc)
    log.info("runtime auto: %s (measured %s; onnxruntime needs a %.0f%% lead)", choice, measured,
             100 * MARGIN)
    return choice, (ort_model if choice == "onnxruntime" else None)


def with_runtime(model: nn.Module, runtime: str = "torch", *, tile_size: int | None = None,
                 batch_size: int = 1, cache: str | os.PathLike | None = None) -> nn.Module:
    """``model`` itself (``"torch"``), or an :class:`OnnxRuntimeModel` of it (``"onnxruntime"``),
    or whichever measured faster (``"auto"``, at ``tile_size``; default: the tile that
    ``choose_tile_size`` picks for a 2048 x 2048 image, 572 px for the paper network).

    Runtimes other than torch run on the CPU: a model on a GPU stays with torch under ``"auto"``,
    and ``"onnxruntime"`` for it raises ValueError.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return model
    on_gpu = any(p.device.type != "cpu" for p in model.parameters())
    if runtime == "onnxruntime":
        if on_gpu:
            raise ValueError("runtime 'onnxruntime' runs on the CPU; the model is on "
                             f"{next(model.parameters()).device} (use --runtime torch)")
        return OnnxRuntimeModel(model)
    if on_gpu:
        return model
    if tile_size is None:
        depth, padding, in_ch, n_cls, widths = model_geometry(model)
        tile_size = choose_tile_size((2048, 2048), depth, widths, padding, batch_size,
                                     in_channels=in_ch, num_classes=n_cls)
    choice, built = _choose(model, tile_size, batch_size,
                            Path(cache) if cache is not None else None)
    if choice == "torch":
        return model
    return built if built is not None else OnnxRuntimeModel(model)

