"""The whole training configuration: frozen dataclasses, YAML in/out, overrides, presets.

Field defaults are the paper's values (PAPER.md); where the paper is silent the comment says
what we chose and why. Two presets: ``paper`` (= ``Config()``, exactly the paper) and
``default`` (a small model that trains usefully on a 2-core CPU in minutes).

A YAML file lists the preset it starts from (``preset: paper|default``, default ``default``)
and the keys it changes, by section::

    preset: default
    train: {lr: 0.0005, iterations: 500}
    augment: {rotation: 0}

Unknown keys are rejected with their dotted name; every value is type-checked and
range-checked. ``--set train.lr=0.01`` style overrides go through :func:`apply_overrides`.
This module imports nothing from the package (and no torch), so anyone may import it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

PRESETS = ("paper", "default")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a U-Net (the ``model:`` section); the defaults are the paper's (Sec. 2, Fig. 1).

    Used as it is by :class:`unetkit.UNet` and by the training :class:`Config`, so an invalid
    combination fails when the config is built, before any data is read.
    """

    in_channels: int = 1  # gray-value microscopy (EM, phase contrast, DIC): single channel
    num_classes: int = 2  # cell / border (the paper's two-class softmax)
    depth: int = 4  # four 2x2 max-pools (5 levels, 23 conv layers): 572 -> 388
    base_channels: int = 64  # channels double per level: 64 ... 1024
    padding: Literal["valid", "same"] = "valid"  # "valid" = the paper; "same" = the padded variant
    dropout: float = 0.5  # "drop-out layers at the end of the contracting path"; rate not given
    batch_norm: bool = False  # not in the paper (2015 predates its use in U-Nets); same-padded only
    # levels below the top that keep base_channels before the doubling starts: 0 = the paper
    # (64, 128, ... 1024); 1 = MONAI BasicUNet's profile (16, 16, 32, 64, 128 with base 16)
    flat_levels: int = 0
    # channels per level, top to bottom (depth + 1 numbers, e.g. [16, 16, 32, 64, 128]), in
    # place of base_channels and flat_levels; null: those two decide
    channels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "base_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (softmax over classes), got {self.num_classes}")
        if not isinstance(self.depth, int) or not 1 <= self.depth <= 8:
            raise ValueError(f"depth must be an integer from 1 to 8, got {self.depth!r}")
        if self.padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {self.padding!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.batch_norm and self.padding == "valid":
            raise ValueError("batch_norm is offered for the same-padded variant only (padding='same')")
        if not isinstance(self.flat_levels, int) or not 0 <= self.flat_levels <= self.depth:
            raise ValueError(f"flat_levels must be an integer from 0 to depth ({self.depth}), "
                             f"got {self.flat_levels!r}")
        if self.channels is not None:
            channels = tuple(self.channels)
            if len(channels) != self.depth + 1 or not all(
                    isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels):
                raise ValueError(f"channels must be {self.depth + 1} positive integers (one per "
                                 f"level at depth {self.depth}), got {list(channels)!r}")
            object.__setattr__(self, "channels", channels)

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels per level, top to bottom: ``channels``, or ``base_channels`` kept for
        ``flat_levels`` levels below the top, then doubling."""
        if self.channels is not None:
            return self.channels
        return tuple(self.base_channels * 2 ** max(0, lvl - self.flat_levels)
                     for lvl in range(self.depth + 1))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DataConfig:
    # how labels are read (unetkit.data.targets): binary 0/1|0/255, instance ids, or class indices
    # ("instance", the older spelling, is read as "instances")
    label_kind: Literal["auto", "binary", "instances", "instance", "classes"] = "auto"
    ignore_value: int | None = None  # label value left out of the loss (e.g. 255); none by default
    # image intensities -> float (unetkit.data.normalize): "per_image" standardises each whole image
    # (mean 0, std 1, per channel); "range" maps the dtype's range to [0, 1]; "dataset" uses the
    # training set's mean/std; "none" casts only. Paper: not stated; per_image is the
    # Normalization default and is robust to differing exposure between images.
    # "percentile" maps each image's own 1st / 99.8th percentiles (all channels jointly) to 0 / 1
    # (robust to sparse bright objects and to exposure changes); "auto" measures, on the training
    # set, which of percentile and per_image keeps gray levels steadier across images
    # (training.choices)
    normalization: Literal["range", "per_image", "percentile", "dataset", "none", "auto"] = (
        "per_image")
    # share of training tiles centred on a random foreground pixel; the rest are uniform
    # (paper: uniform, 0). null: chosen from the foreground fraction (training.choices)
    foreground_sampling: float | None = 0.0
    # where two instance-labelled objects touch: "border" = those pixels are background (the
    # paper's separation borders, Fig. 3c); "class" = they are a third class, "contact"
    # (model.num_classes becomes 3 when the training objects touch, training.choices), so the
    # foreground is interior + contact (the whole of label > 0) and the objects are the
    # interiors grown over it (inference.postprocess).  Only instance labels have contacts.
    # "auto": "class" where the training objects touch enough and the budget is long enough to
    # learn the contacts, else "border" (training.choices)
    touching: Literal["border", "class", "auto"] = "border"

    def __post_init__(self) -> None:
        if self.label_kind == "instance":  # one vocabulary inside: data/targets.py's KINDS
            object.__setattr__(self, "label_kind", "instances")
        _require(
            self.ignore_value is None or self.ignore_value >= 0,
            f"data.ignore_value must be >= 0 or null, got {self.ignore_value}",
        )
        _require(self.touching in ("border", "class", "auto"),
                 f"data.touching must be 'border', 'class' or 'auto', got {self.touching!r}")
        _require(self.foreground_sampling is None or 0 <= self.foreground_sampling <= 1,
                 f"data.foreground_sampling must be in [0, 1] or null, got "
                 f"{self.foreground_sampling}")


@dataclass(frozen=True)
class WeightsConfig:
    w0: float = 10.0  # paper Eq. 2
    sigma: float = 5.0  # paper: "sigma ~ 5 pixels"
    # w_c: "balanced" = N / (K * N_c) (paper: "balance the class frequencies"), "none" = 1,
    # or one fixed weight per class
    class_weights: str | tuple[float, ...] = "balanced"
    # "balanced" weights are capped at this many times the most frequent class's weight
    # (a class of 3 px in a 512^2 image would otherwise weigh ~44,000); null: no cap (the paper)
    max_class_weight: float | None = None
    # weight of a soft Dice term on the foreground classes added to Eq. 1 (training.loss);
    # paper: none (0). Off in the default preset too: measured at 500 steps (one seed; test
    # foreground IoU / object F1@0.5), DSB half -> half 0.825 / 0.815 with dice=1 against
    # 0.833 / 0.835 without; MSC sequence 01 -> 02 0.700 / 0.680 against 0.690 / 0.690.
    # With the same-padded default (2 min, one seed, seventh session): MSC 01 -> 02 +0.046 IoU,
    # MSC 02 -> 01 -0.065, DSB +0.055, the rest within 0.02: within the seeds' spread
    dice: float = 0.0

    def __post_init__(self) -> None:
        _require(self.w0 >= 0, f"weights.w0 must be >= 0, got {self.w0}")
        _require(self.sigma > 0, f"weights.sigma must be > 0, got {self.sigma}")
        if isinstance(self.class_weights, str):
            _require(
                self.class_weights in ("balanced", "none"),
                f"weights.class_weights must be 'balanced', 'none' or a list of numbers, "
                f"got {self.class_weights!r}",
            )
        else:
            for value in self.class_weights:
                _require(value >= 0, f"weights.class_weights must be >= 0, got {value}")
        _require(self.dice >= 0, f"weights.dice must be >= 0, got {self.dice}")
        _require(self.max_class_weight is None or self.max_class_weight >= 1,
                 f"weights.max_class_weight must be >= 1 or null, got {self.max_class_weight}")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation magnitudes (unetkit.data.augment). A 0 / False switches that part off."""

    elastic_grid: int = 3  # paper: random displacements on a coarse 3x3 grid over the tile
    # paper: Gaussian displacements, 10 px standard deviation (on its 572 px tile); null: the
    # paper's strain on the training tile, 10 * tile_size / 572 (training.choices)
    elastic_sigma: float | None = 10.0
    # rotation angle uniform in [-rotation, rotation] degrees; 180 = any angle (paper: rotation
    # invariance; microscopy has no preferred orientation)
    rotation: float = 180.0
    # extra shift uniform in [-shift, shift] px per axis; the random tile position already
    # shifts by whole pixels (paper: "shift"), so no extra sub-pixel shift by default
    shift: float = 0.0
    flip: bool = True  # mirror the tile (microscopy has no handedness)
    rot90: bool = True  # exact multiples of 90 degrees (lossless, useful with rotation=0)
    # zoom log-uniform in [1/(1+s), 1+s] (> 1: objects appear smaller); paper: none, 0. Off in
    # the default preset too: nnU-Net's range (0.4: 0.71-1.4x) measured (accuracy.py, 2 min,
    # quiet, one seed; test IoU / F1@0.5 with zoom against without) ISBI 0.869 / - against
    # 0.882, MSC 01 -> 02 0.675 / 0.677 against 0.688 / 0.515, MSC 02 -> 01 (test cells half
    # the size) 0.441 / 0.495 against 0.433 / 0.512, DSB 0.834 / 0.883 against 0.830 / 0.924,
    # demo 0.855 / 0.914 against 0.867 / 0.907: no consistent gain in 2 minutes
    scale: float = 0.0
    # gray values (paper: "gray value variations", magnitudes not given; ours are mild):
    brightness: float = 0.1  # add U(-b, b) x the tile's intensity range
    contrast: float = 0.2  # scale about the tile mean by U(1 - c, 1 + c)
    gamma: float = 0.2  # gamma log-uniform in [1/(1+g), 1+g] on the tile's min-max range
    noise: float = 0.0  # Gaussian noise, std = noise x the tile's intensity range; off
    # uneven brightness (not in the paper; 0: off): a smooth gain field over the tile, gains
    # log-uniform in [1/(1+i), 1+i] at the nodes of a 3x3 grid, interpolated bicubically and
    # applied about the tile's dark level (the 1st percentile of the tile smoothed over 5x5 px,
    # per channel), so one part of a tile (one cell, one lamellipodium, one vessel) can be
    # dimmer than the rest
    illumination: float = 0.0
    # colour shifts (not in the paper; 0: off; images of one channel unchanged): each channel
    # of a multi-channel tile gets its own gamma, contrast and brightness, drawn around the
    # shared values above: gamma x log-uniform [1/(1+c), 1+c], contrast x U(1 - c, 1 + c),
    # brightness + U(-c/4, c/4) x the tile's intensity range; as stains and cameras differ
    # between labs (nnU-Net jitters its channels independently, too)
    colour: float = 0.0

    def __post_init__(self) -> None:
        _require(
            self.elastic_grid >= 2, f"augment.elastic_grid must be >= 2, got {self.elastic_grid}"
        )
        for name in ("elastic_sigma", "rotation", "shift", "brightness", "gamma", "noise",
                     "scale", "illumination", "colour"):
            value = getattr(self, name)
            if value is None and name == "elastic_sigma":
                continue
            _require(
                value >= 0 and math.isfinite(value), f"augment.{name} must be >= 0, got {value}"
            )
        _require(self.rotation <= 180, f"augment.rotation must be <= 180, got {self.rotation}")
        _require(0 <= self.contrast < 1, f"augment.contrast must be in [0, 1), got {self.contrast}")
        _require(self.colour < 1, f"augment.colour must be in [0, 1), got {self.colour}")

    @classmethod
    def off(cls) -> AugmentConfig:
        """Every augmentation switched off (the warp is then an exact mirrored crop)."""
        return cls(
            elastic_sigma=0.0, rotation=0.0, shift=0.0, flip=False, rot90=False,
            brightness=0.0, contrast=0.0, gamma=0.0, noise=0.0, scale=0.0, illumination=0.0,
            colour=0.0,
        )


@dataclass(frozen=True)
class TrainConfig:
    # input tile edge; at depth 4 with valid convs legal sizes are 16*b + 124 (paper: 572 -> 388)
    # null: chosen from the objects and images (training.choices)
    tile_size: int | None = 572
    batch_size: int = 1  # paper: one large tile per step
    optimizer: Literal["sgd", "adam"] = "sgd"  # paper: SGD (Caffe)
    # paper: not given. With momentum 0.99 the steady-state step is lr / (1 - momentum) = 100 lr
    # (per-pixel mean loss, unetkit.training.loss). Measured on ISBI 2012 (default preset, 16 channels,
    # 316 tiles, 100 warm-up steps, 1 seed): lr 1e-2 -> NaN by step 125; 3e-3 stalls at ~1.14;
    # 1e-3 falls to 0.82 by step 300 then climbs back to ~1.13; 3e-4 reaches 0.67 at step 700.
    # 3e-4 (effective step 0.03) is ~30x below divergence.
    lr: float = 3e-4
    momentum: float = 0.99  # paper; for adam it is beta1
    weight_decay: float = 0.0  # paper: not mentioned
    # lr over iterations: "constant" (paper: none given), "cosine" (to 0 at the last iteration),
    # "poly" (lr * (1 - t/T)^0.9); after a linear warm-up over warmup_iterations
    schedule: Literal["constant", "cosine", "poly"] = "constant"
    warmup_iterations: int = 0
    iterations: int | None = 20000  # paper: not given (10 hours on a Titan); null: from the data
    minutes: float | None = None  # wall-clock budget; stops at whichever limit comes first
    val_interval: int = 500  # validate (overlap-tile inference) every n iterations
    # validate and save an exponential moving average of the weights and batch-norm statistics
    # with this decay (0: the weights as trained, the paper); the first steps average over fewer
    # (decay min(ema, (1 + step) / (10 + step))).  Off in both presets: 0.99 measured on the
    # default (accuracy.py, 2 min, quiet, seed 0; test IoU / F1@0.5 against off): ISBI 0.899
    # against 0.906, MSC 01 -> 02 0.696 / 0.624 against 0.713 / 0.727, MSC 02 -> 01 0.490 /
    # 0.564 against 0.485 / 0.660, DSB 0.844 / 0.893 against 0.857 / 0.897, demo 0.942 / 0.985
    # against 0.938 / 0.988: the average lags the model the cosine schedule settles at
    ema: float = 0.0
    seed: int = 0  # one numpy Generator / torch seed for tiles, augmentation and init

    def __post_init__(self) -> None:
        _require(self.tile_size is None or self.tile_size >= 1,
                 f"train.tile_size must be >= 1, got {self.tile_size}")
        _require(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        _require(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        _require(0 <= self.momentum < 1, f"train.momentum must be in [0, 1), got {self.momentum}")
        _require(
            self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}"
        )
        _require(
            self.warmup_iterations >= 0,
            f"train.warmup_iterations must be >= 0, got {self.warmup_iterations}",
        )
        _require(self.iterations is None or self.iterations >= 1,
                 f"train.iterations must be >= 1, got {self.iterations}")
        _require(
            self.minutes is None or self.minutes > 0,
            f"train.minutes must be > 0 or null, got {self.minutes}",
        )
        _require(
            self.val_interval >= 1, f"train.val_interval must be >= 1, got {self.val_interval}"
        )
        _require(0 <= self.ema < 1, f"train.ema must be in [0, 1), got {self.ema}")


@dataclass(frozen=True)
class PostprocessConfig:
    """Foreground probability -> labels and instances (inference.postprocess); null = chosen on
    validation data after training and stored in the model file. Paper: argmax (0.5, nothing
    removed, nothing filled)."""

    threshold: float | None = 0.5  # foreground is p > threshold
    min_size: int | None = 0  # drop 4-connected objects with fewer pixels
    fill_holes: int | None = 0  # fill enclosed background pieces with fewer pixels (0: none)
    # grow each object by this many px into the background, 1 px kept between objects (0: none)
    grow: int | None = 0
    # models with a contact class (data.touching: class): objects grow from interior pixels
    # above this probability; 0: wherever the object class is at least as likely as the contact.
    # Two-class models: above the threshold, objects grow from the cores p > seed over the mask
    # (touching objects one pixel apart; inference.postprocess.split_cores); at or below it
    # (0, the paper): the mask's components are the objects
    seed: float | None = 0.0
    # two-class cores (above) of fewer pixels seed no object of their own: a textured object's
    # small peaks above the seed do not split it (0: every core, the paper has none)
    core_size: int | None = 0
    # average the 8 flips / 90-degree rotations at prediction (stored in the model file as
    # meta["inference"]["tta"]; predict --no-tta turns it off); the post-processing above is
    # chosen on the probabilities predict will give.  The paper averaged 7 rotations for its
    # ISBI submission; its preset keeps plain prediction, 8x cheaper
    tta: bool = False

    def __post_init__(self) -> None:
        _require(self.threshold is None or 0 <= self.threshold < 1,
                 f"postprocess.threshold must be in [0, 1) or null, got {self.threshold}")
        _require(self.min_size is None or self.min_size >= 0,
                 f"postprocess.min_size must be >= 0 or null, got {self.min_size}")
        _require(self.fill_holes is None or self.fill_holes >= 0,
                 f"postprocess.fill_holes must be >= 0 or null, got {self.fill_holes}")
        _require(self.grow is None or self.grow >= 0,
                 f"postprocess.grow must be >= 0 or null, got {self.grow}")
        _require(self.seed is None or 0 <= self.seed < 1,
                 f"postprocess.seed must be in [0, 1) or null, got {self.seed}")
        _require(self.core_size is None or self.core_size >= 0,
                 f"postprocess.core_size must be >= 0 or null, got {self.core_size}")


@dataclass(frozen=True)
class Config:
    """All sections; ``Config()`` is the ``paper`` preset."""

    model: UNetConfig = field(default_factory=UNetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)


def preset(name: str) -> Config:
    """``"paper"``: exactly the paper. ``"default"``: trains in minutes on a 2-core CPU."""
    if name == "paper":
        return Config()
    if name == "default":
        paper = Config()
        return replace(
            paper,
            # 16 instead of 64 base channels: ~16x fewer FLOPs (0.06-0.1 s instead of 3.5 s per
            # training step on 2 CPU cores, benchmarks/bench_train.py); depth 4 kept.  8 channels
            # measured (accuracy.py,
            # 2 min, quiet, one run; test IoU / F1@0.5 against 16's last run): ~2x the steps
            # (ISBI 1518) but ISBI 0.870 against 0.875, MSC 01 -> 02 0.646 / 0.440 against
            # 0.695 / 0.586, MSC 02 -> 01 0.434 / 0.440 against 0.434 / 0.488, DSB 0.825 / 0.891
            # against 0.768 / 0.891, demo 0.854 / 0.870 against 0.866 / 0.940: not better.
            # Zero-padded ("same") 3x3 convolutions with batch norm instead of the paper's valid
            # ones: a tile's output is the whole tile (a 256 tile supervises 65,536 px, a valid
            # 316 tile 17,424), so a CPU minute trains on ~3x more pixels (ISBI: 634 steps against
            # 724-863).  Measured
            # (accuracy.py, 2 min, quiet, one run; test IoU / F1@0.5 against valid convs' last
            # run): ISBI 0.902 against 0.875, MSC 01 -> 02 0.701 / 0.678 against 0.695 / 0.586,
            # MSC 02 -> 01 0.509 / 0.633 against 0.434 / 0.488, DSB 0.846 / 0.845 against
            # 0.768 / 0.891, demo 0.913 / 0.935 against 0.866 / 0.940; with the MONAI peer in
            # the same run (benchmarks/README.md) ISBI 0.891, MSC 0.751 and 0.479, DSB 0.834,
            # demo 0.898.  Tiled prediction then overlaps tiles by a 96 px halo that is thrown
            # away (inference.plan; it matches a whole-image run to float rounding), and under
            # data-parallel training the batch statistics are each process's own (no
            # SyncBatchNorm); the paper preset keeps valid convolutions and exact overlap-tile.
            # Batch norm is what gains (same padding without it, 2 min, quiet, one run: ISBI
            # 0.864, MSC 01 -> 02 0.502 / 0.132, MSC 02 -> 01 0.436 / 0.529, DSB 0.768 / 0.883,
            # demo 0.831 / 0.896), but with one tile per step its training statistics are each
            # tile's own, and the running statistics used at inference follow the last ~10
            # tiles: a validation can swing (MSC 02 -> 01: IoU 0.777 at step 200, 0.085 at step
            # 206 with the learning rate near 0); keeping the best validated model guards
            # against it (benchmarks/README.md, fourth session).
            # Measured and not better: statistics recomputed over 64 training tiles after
            # training, each tile's own statistics at inference, statistics fixed at half the
            # run (demo 0.861 / 0.913), 4 tiles per step (ISBI 0.825, MSC 01 -> 02 0.596 /
            # 0.632).  No dropout (ISBI 0.888, MSC 01 -> 02 0.689 / 0.608) was not better
            # either, so the paper's 0.5 stays.  Group norm (8 groups) in place of batch norm,
            # measured with experiment code: ISBI 0.894, MSC 01 -> 02 0.751 / 0.558, MSC 02 -> 01
            # 0.471 / 0.569, DSB 0.826 / 0.872, demo 0.915 / 0.937, with steady validations; not
            # an option yet (the model file and exports would have to carry it).  Batch-norm
            # momentum 0.01 instead of torch's 0.1 (seventh session, two seeds, paired runs):
            # validations rise steadily, but test IoU summed over the five sets +0.038 at one
            # seed and -0.060 at the other (benchmarks/README.md): not better, 0.1 stays.
            # MONAI BasicUNet's channels 16-16-32-64-128 (model.flat_levels=1) in place of 16
            # doubling to 256: forward/backward on a 256 tile 0.084 s against 0.126 s, ~1.6x the
            # steps in the same minutes (ISBI 1273 against 753).  Measured (accuracy.py, 2 min,
            # quiet, sixth session, 346-389 GFLOP/s; test IoU / F1@0.5), two runs against one
            # run of 16 doubling: ISBI 0.901 and 0.903 against 0.888, MSC 01 -> 02 0.723 / 0.711
            # and 0.623 / 0.639 against 0.649 / 0.645, MSC 02 -> 01 0.477 / 0.605 and 0.443 /
            # 0.632 against 0.491 / 0.640, DSB 0.869 / 0.915 and 0.816 / 0.872 against 0.818 /
            # 0.840, demo 0.935 / 0.976 and 0.934 / 0.975 against 0.934 / 0.970.  The two runs
            # of one configuration differ by up to 0.10 (validation scores swing with batch
            # norm's running statistics at one tile per step), and the second loses MSC in both
            # directions: not shown to generalise, so 16 doubling stays
            model=replace(paper.model, base_channels=16, padding="same", batch_norm=True),
            # the data decide (training.choices; printed and written to fingerprint.json):
            # normalisation, foreground sampling, tile size, elastic strength, step budget
            # touching objects: a contact class (where they touch is a class of its own, so
            # the mask is all of label > 0) when they touch on at least 0.5 % of the foreground
            # and the budget is at least 5 minutes and 2000 steps; else the paper's separation
            # borders (training.choices, data.touching=auto).  The borders leave a band between
            # touching nuclei that costs foreground IoU; the contact class fills it but needs
            # steps to learn the contacts.  Measured (accuracy.py, quiet, one run each; test
            # IoU / F1@0.5, the borders' runs in brackets): at 2 minutes demo data 0.934 / 0.861
            # (0.866 / 0.940), DSB half -> half 0.777 / 0.686 and 0.737 / 0.769 (0.768-0.839 /
            # 0.862-0.924 over three runs); same-padded network, 2 min: demo 0.952 / 0.919, DSB
            # 0.730 / 0.440 (134 objects for 57).  The README demo, 4 min: 0.965 / 0.949 (0.915
            # / 0.944).  At the default's 10 minutes (eighteenth session, seed 0, 186 GFLOP/s):
            # DSB 0.869 / 0.901 (0.830 / 0.893; the peer 0.862 / 0.836), demo 0.965 / 0.993
            # (0.942 / 0.996); seed 1: DSB 0.833 / 0.730 (0.782 / 0.806; its ~15 validation
            # nuclei kept an early model, step 715, whose contacts were not learned), demo
            # 0.968 / 0.990 (0.932 / 0.985).  IoU +0.023 to +0.051 in every pair, F1 mixed
            data=replace(paper.data, normalization="auto", foreground_sampling=None,
                         touching="auto"),
            # capped balance: with balanced weights a rare class would dominate the loss.
            # "none" measured (accuracy.py, 2 min, quiet, one seed; test IoU): ISBI 0.870
            # against 0.882 capped; MSC 01 -> 02 (6 % foreground) collapsed to background
            # (validation IoU 0.02, test IoU 0.093 against 0.688), so the run was stopped there.
            # Again with the same-padded network and foreground-centred tiles (fifteenth
            # session, 2 min, quiet, two seeds; test IoU / F1@0.5 against the capped default's
            # runs at the same seeds): DSB 0.854 / 0.862 and 0.814 / 0.846 against 0.834 /
            # 0.870 and 0.832 / 0.833, MSC 01 -> 02 0.635 / 0.712 and 0.599 / 0.737 against
            # 0.717 / 0.703 and 0.673 / 0.717, ISBI 0.908 and 0.909 against 0.906 and 0.901:
            # MSC loses 0.07-0.08 at both seeds.  Uncapped balanced is not measured.
            # The border term keeps the paper's w0 = 10: w0 = 5 measured with the same-padded
            # network (2 min, quiet, one run): ISBI 0.885, MSC 01 -> 02 0.711 / 0.667, MSC
            # 02 -> 01 0.507 / 0.633, DSB 0.834 / 0.786, demo 0.921 / 0.924: within one run's
            # noise of w0 = 10, and DSB F1 lower
            weights=replace(paper.weights, max_class_weight=10.0),
            augment=replace(
                paper.augment,
                elastic_sigma=None,
                # gray values strong enough for a test frame at half (or twice) the brightness
                # and lower signal-to-noise than the training frames.  The paper preset's milder
                # values (contrast 0.2, gamma 0.2, no noise) measured (accuracy.py, 2 min, quiet,
                # one run; test IoU / F1@0.5 against these values' run): ISBI 0.887 against
                # 0.902, MSC 01 -> 02 0.677 / 0.639 against 0.701 / 0.678, MSC 02 -> 01 0.473 /
                # 0.595 against 0.509 / 0.633 (the two sequences differ in brightness), DSB
                # 0.833 / 0.870 against 0.846 / 0.845, demo 0.907 / 0.945 against 0.913 / 0.935
                contrast=0.5, gamma=0.4, brightness=0.1, noise=0.03,
                # uneven brightness (augment.illumination) is off: 1.0 (gains 0.5-2x over the
                # tile) measured (accuracy.py, 10 min, quiet, 139-159 GFLOP/s; test IoU / F1@0.5
                # against 0): MSC 01 -> 02 0.775 / 0.529 at seed 0 (0.584 / 0.713, the
                # seventeenth session's run) and 0.785 / 0.621 at seed 1 (0.455 / 0.455,
                # paired): the dim cell of sequence 02 is found; but MSC 02 -> 01 (trained on
                # the brighter sequence) 0.415 / 0.528 at seed 0 (0.505 / 0.622) and 0.387 /
                # 0.466 at seed 1 (0.509 / 0.654, paired), DSB 0.848 / 0.898 (0.869 / 0.901),
                # ISBI 0.904 (0.912), demo 0.962 / 0.993 (0.965 / 0.993): one direction gains,
                # four sets lose.  At 0.5, MSC 02 -> 01 0.459 / 0.657 at seed 0 (twentieth
                # session): a smaller loss, still a loss.
                # Per-channel colour shifts (augment.colour) are off: 0.2 measured on dsb-he
                # (the DSB nuclei as H&E-like RGB, the test half stained differently; 10 min,
                # quiet; test IoU / F1@0.5 against 0): 0.813 / 0.893 against 0.847 / 0.779 at
                # seed 0, 0.834 / 0.850 against 0.837 / 0.923 at seed 1: no gain
            ),
            # threshold, smallest object (for countable objects fixed at a quarter of the
            # training objects' 5th-percentile area: training.selection), hole filling and
            # growth chosen on validation data,
            # and for two-class objects the cores they are split at (postprocess.seed above the
            # threshold; selection.CORES).  On the same models (accuracy.py, 2 min, fifth
            # session; test IoU / F1@0.5 with cores against without): demo 0.937 / 0.947
            # against 0.896 / 0.908, DSB 0.763 / 0.667 against 0.771 / 0.585, MSC 02 -> 01
            # 0.440 / 0.616 against 0.461 / 0.616; ISBI and MSC 01 -> 02 chose none
            # Cores smaller than a tenth of the training objects' median area (at most a
            # quarter of their 5th-percentile area) seed nothing.  Measured offline on four
            # saved 2-minute models each of DSB and the demo data (test F1@0.5 of the cores at
            # 0.9 on the mask at 0.5, all cores against cores of a tenth of the test objects'
            # median area, no cap): DSB 0.410 / 0.480, 0.721 / 0.855, 0.442 / 0.543, 0.622 /
            # 0.620; demo 0.847 / 0.884, 0.911 / 0.945, 0.952 / 0.968, 0.948 / 0.969 (DSB's
            # textured nuclei hold several small peaks).  End to end, one run: DSB 0.854 /
            # 0.783, demo 0.947 / 0.959 (benchmarks/README.md, eighth session)
            # Averaging the 8 flips / rotations at prediction, with the post-processing chosen
            # on averaged validation probabilities: measured offline on the same 2-minute models
            # (accuracy.py, eleventh session; test IoU / F1@0.5, averaged against plain): ISBI
            # 0.900 / 0.771 against 0.900 / 0.748, MSC 01 -> 02 0.745 / 0.636 against 0.712 /
            # 0.689, MSC 02 -> 01 0.491 / 0.622 against 0.489 / 0.627, DSB 0.805 / 0.732
            # against 0.760 / 0.646, demo 0.945 / 0.993 against 0.942 / 0.986: IoU never
            # lower (+0.083 over the five sets), F1 mixed.  Prediction costs 8x the forward
            # passes (DSB test half 2.6 s against 0.6 s); predict --no-tta gives them back
            postprocess=PostprocessConfig(threshold=None, min_size=None, fill_holes=None,
                                          grow=None, seed=None, core_size=None, tta=True),
            train=replace(
                paper.train,
                # null: from the objects (training.choices): 256 to 508 px for the default's
                # same-padded network (256 on ISBI, MSC 01 -> 02, DSB and the demo; 416 for
                # MSC 02's larger cells).  For valid convs (measured before the switch to
                # same padding): 316 = 16*12 + 124 -> 132 output is the smallest tried
                # (~3.4x cheaper than 572 per step); smaller legal tiles waste most work on
                # context (252 -> 68 output, 188 -> 4). Larger tiles supervise more pixels per
                # second but take fewer steps: 508 forced on every set (accuracy.py, 2 min,
                # quiet) gave ISBI IoU 0.822 against 0.858, demo IoU / F1 0.856 / 0.722 against
                # 0.871 / 0.905, DSB 0.828 / 0.828 against 0.839 / 0.862
                tile_size=None,
                # Adam instead of the paper's SGD 0.99: it learns ~2x faster per step in short
                # runs. ISBI 2012 (train 00-24, ISBI pixel error on 25-29 after 800 steps, one
                # seed): SGD 0.99 lr 3e-4 0.095, 5e-4 0.084, 1e-3 NaN at step 474; Adam (beta1 0.9)
                # lr 3e-4 0.076, 1e-3 0.064, 3e-3 0.059. 1e-3: the usual Adam value, 3x below
                # the largest lr measured stable. The paper preset keeps SGD 0.99.
                optimizer="adam",
                lr=1e-3,
                momentum=0.9,  # Adam's beta1 (0.99 is the paper's SGD momentum)
                # short runs: warm up over 100 steps, then decay to 0 at the end of the budget
                schedule="cosine",
                warmup_iterations=100,
                iterations=None,  # 200 passes over the training pixels, within 1000-20000
                minutes=10.0,  # 10-17 it/s on 2 cores (bench_train.py)
                val_interval=200,
            ),
        )
    raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")


# ---- dict / YAML -------------------------------------------------------------------------


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check one YAML value against a field's type hint; int -> float, list -> tuple."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        _require(value in typing.get_args(hint),
                 f"{key} must be one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"{key}: invalid value {value!r} ({'; '.join(errors)})")
    if hint is type(None):
        _require(value is None, f"{key} must be null, got {value!r}")
        return None
    if origin is tuple:
        _require(isinstance(value, (list, tuple)), f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(v, item, key) for v in value)
    if hint is bool:
        _require(isinstance(value, bool), f"{key} must be true/false, got {value!r}")
        return value
    if hint is int:
        _require(isinstance(value, int) and not isinstance(value, bool),
                 f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{key} must be a number, got {value!r}") from None
        _require(isinstance(value, (int, float)) and not isinstance(value, bool),
                 f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        _require(isinstance(value, str), f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported type {hint!r} for {key}")  # internal: a new field type


def _section(cls: type, base: Any, values: Any, prefix: str) -> Any:
    if values is None:
        return base
    _require(isinstance(values, dict), f"{prefix} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    changes = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}"
        if key not in names:
            raise ValueError(f"unknown key {dotted!r}")
        changes[key] = _coerce(value, hints[key], dotted)
    try:
        return replace(base, **changes)
    except ValueError as err:  # name the section: UNetConfig's messages name the field only
        message = str(err)
        raise ValueError(message if message.startswith(f"{prefix}.") else f"{prefix}.{message}") from None


def from_dict(data: dict[str, Any] | None, base: Config | None = None) -> Config:
    """Nested dict (YAML layout) -> :class:`Config`, starting from ``base`` or the dict's preset.

    Raises ``ValueError`` naming unknown keys (``unknown key 'train.lrr'``) and bad values.
    """
    data = dict(data or {})
    name = data.pop("preset", "default")
    if base is None:
        base = preset(name)
    changes = {}
    sections = {f.name: f for f in fields(Config)}
    hints = typing.get_type_hints(Config)
    for key, values in data.items():
        if key not in sections:
            raise ValueError(f"unknown key {key!r}")
        changes[key] = _section(hints[key], getattr(base, key), values, key)
    return replace(base, **changes)


def to_dict(cfg: Config) -> dict[str, Any]:
    """:class:`Config` -> plain nested dict (tuples become lists) for YAML."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    out = {}
    for section in fields(cfg):
        values = dataclasses.asdict(getattr(cfg, section.name))
        out[section.name] = {key: plain(value) for key, value in values.items()}
    return out


def dump(cfg: Config) -> str:
    """:class:`Config` -> YAML text with every key (loads back to an equal config)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(dump(cfg))


def load_config(path: str | Path) -> Config:
    """Read a YAML config (see the module docstring); errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"top level must be a mapping, got {type(data).__name__}")
        return from_dict(data)
    except (ValueError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: {err}") from err


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``section.key=value`` strings; values are parsed as YAML (``null``, ``[1, 2]``...).

    All overrides are applied at once (a later one of the same key wins), so that a pair that is
    only valid together (``model.padding=same model.batch_norm=true``) works in either order.
    """
    data: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        section, dot, name = key.partition(".")
        _require(bool(sep and dot and section and name),
                 f"override must look like section.key=value, got {item!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"override {item!r}: {err}") from None
        data.setdefault(section, {})[name] = value
    return from_dict(data, base=cfg) if data else cfg
