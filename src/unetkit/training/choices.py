"""Configuration values the training data decide (fields left at ``None`` in the config).

:func:`derive` fills every field a preset leaves to the data from the training set's
:class:`~unetkit.data.fingerprint.Fingerprint`, each with a one-line reason; ``unetkit train``
prints them and writes them with the fingerprint to ``fingerprint.json`` in the run folder.
Fields the user set (in a config file or with ``--set``) are kept as given.  ``in_channels``
always follows the images: a model with another channel count cannot read them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..config import Config, TrainConfig
from ..data.fingerprint import Fingerprint
from ..model import geometry

__all__ = ["derive"]

#: the least share of the foreground where objects touch for a contact class.  Measured
#: (benchmarks/accuracy.py, 2 min): the DSB nuclei touch on 1.9 % of their pixels and the demo's
#: on 3.0 %; the CTC MSC cells on 0.04 %, where the one run with a contact class (trained on
#: ~0 pixels; the post-processing code changed during that run) gave test IoU 0.227
MIN_CONTACT = 0.005
#: the least budget for a contact class under ``data.touching=auto``: after ~700-1300 steps (2
#: minutes on 2 cores) the contacts were learned weakly and touching nuclei merged or split
#: (DSB half -> half F1@0.5 0.44-0.77 against 0.86-0.92 with borders), after ~3600 (10
#: minutes) the contact class won on both DSB and the demo data (config.py, default preset)
CONTACT_STEPS = 2000
CONTACT_MINUTES = 5.0

#: the paper's elastic deformation: 10 px on a 3x3 grid over a 572 px tile
_PAPER_SIGMA, _PAPER_TILE = 10.0, 572


def _tile_for(min_out: float, depth: int, padding: str, low: int, high: int) -> int:
    """The smallest legal tile in [low, high] whose output is at least ``min_out`` px."""
    sizes = [s for s in geometry.legal_input_sizes(depth, high, padding) if s >= low]
    for s in sizes:
        if geometry.output_size(s, depth, padding) >= min_out:
            return s
    return sizes[-1]


def derive(cfg: Config, fp: Fingerprint) -> tuple[Config, dict[str, dict[str, Any]]]:
    """Fill the fields left at ``None`` (and ``in_channels``) from the fingerprint.

    Returns the resolved configuration and ``{field: {"value": v, "reason": text}}``.
    """
    choices: dict[str, dict[str, Any]] = {}

    def note(key: str, value: Any, reason: str) -> Any:
        choices[key] = {"value": value, "reason": reason}
        return value

    m, d, a, t = cfg.model, cfg.data, cfg.augment, cfg.train
    if m.in_channels != fp.channels:
        m = replace(m, in_channels=note("model.in_channels", fp.channels,
                                        f"the images have {fp.channels} channel(s)"))
    else:
        note("model.in_channels", m.in_channels, "the images' channel count")
    if d.normalization == "auto":
        spread = fp.normalization_spread
        if spread and spread["per_image"] < 0.8 * spread["percentile"]:
            mode, why = "per_image", (f"mean/std keeps gray levels steadier across the training "
                                      f"images (spread {spread['per_image']:.3f} vs "
                                      f"{spread['percentile']:.3f} for percentiles)")
        elif spread:
            mode, why = "percentile", (f"per-image percentiles (1, 99.8) keep gray levels at "
                                       f"least as steady across the training images (spread "
                                       f"{spread['percentile']:.3f} vs mean/std "
                                       f"{spread['per_image']:.3f}) and ignore sparse bright "
                                       f"objects")
        else:
            mode, why = "percentile", ("per-image percentiles (1, 99.8): robust to sparse bright "
                                       "objects and exposure changes (one usable image: nothing "
                                       "to compare)")
        d = replace(d, normalization=note("data.normalization", mode, why))
    if d.foreground_sampling is None:
        if fp.foreground_fraction < 0.25:
            share = 0.33
            why = (f"foreground is {fp.foreground_fraction:.1%} of the pixels: a third of the "
                   f"tiles are centred on a foreground pixel (nnU-Net's share)")
        else:
            share, why = 0.0, (f"foreground is {fp.foreground_fraction:.1%} of the pixels: "
                               f"uniform tiles see enough of it")
        d = replace(d, foreground_sampling=note("data.foreground_sampling", share, why))
    if t.tile_size is None:
        # the output should hold a few objects: from 256 px (same-padded, the default preset)
        # or 316 (132 out, valid convs) up to 508 for large objects; never much beyond the
        # images themselves
        want = max(3.0 * fp.object_diameter, 1.0)
        top = _tile_for(max(fp.height[2], fp.width[2]), m.depth, m.padding, 0, 1084)
        low = min(316, top) if m.padding == "valid" else min(256, top)
        tile = _tile_for(want, m.depth, m.padding, low, min(508, max(top, low)))
        t = replace(t, tile_size=note(
            "train.tile_size", tile,
            f"the cheapest legal tile whose {geometry.output_size(tile, m.depth, m.padding)} px "
            f"output holds about 3 median objects ({fp.object_diameter:.0f} px across), from "
            f"{low} up to {min(508, max(top, low))} (the images are up to "
            f"{max(fp.height[2], fp.width[2])} px)"))
    if a.elastic_sigma is None:
        sigma = round(_PAPER_SIGMA * t.tile_size / _PAPER_TILE, 2)
        a = replace(a, elastic_sigma=note(
            "augment.elastic_sigma", sigma,
            f"the paper's strain: 10 px on its 3x3 grid over 572 px, scaled to the {t.tile_size} "
            f"px tile (the grid spans the tile)"))
    if t.iterations is None:
        out_px = geometry.output_size(t.tile_size, m.depth, m.padding) ** 2 * t.batch_size
        epoch = fp.n_images * fp.height[1] * fp.width[1] / out_px
        steps = int(min(20000, max(1000, round(200 * epoch))))
        t = replace(t, iterations=note(
            "train.iterations", steps,
            f"200 passes over the training pixels ({epoch:.0f} steps each), within 1000-20000"))
    if d.touching == "auto":
        d = replace(d, touching=note("data.touching", *_touching(fp, m.num_classes, t)))
    if d.touching == "class" and fp.label_kind == "instances":
        if fp.contact_fraction >= MIN_CONTACT and m.num_classes == 2:
            m = replace(m, num_classes=note(
                "model.num_classes", 3,
                f"data.touching=class: where objects touch ({fp.contact_fraction:.1%} of the "
                f"foreground) is a class of its own, so background, object, contact"))
            # three classes would let data.label_kind=auto read small ids as classes later
            # (a resumed run): the kind is written down with them
            d = replace(d, label_kind="instances")
        elif m.num_classes == 2:
            note("model.num_classes", 2, f"data.touching=class, but contacts are "
                 f"{fp.contact_fraction:.2%} of the foreground (below {MIN_CONTACT:.1%}: too "
                 f"rare a class to learn, and separation borders there cost little): "
                 f"background and object")
    return replace(cfg, model=m, data=d, augment=a, train=t), choices


def _touching(fp: Fingerprint, num_classes: int, t: TrainConfig) -> tuple[str, str]:
    """``data.touching=auto``: "class" (a contact class) or "border" (the paper's separation
    borders), and why."""
    if fp.label_kind != "instances" or num_classes != 2:
        return "border", ("no instance labels of two classes: no contacts to learn"
                          if fp.label_kind != "instances" else
                          f"{num_classes} classes given: the contacts would be one more")
    if fp.contact_fraction < MIN_CONTACT:
        return "border", (f"objects touch on {fp.contact_fraction:.2%} of the foreground (below "
                          f"{MIN_CONTACT:.1%}): separation borders there cost little")
    if t.iterations is not None and t.iterations < CONTACT_STEPS:
        return "border", (f"objects touch on {fp.contact_fraction:.1%} of the foreground, but "
                          f"{t.iterations} steps are too few to learn a contact class (needs "
                          f"{CONTACT_STEPS}): separation borders")
    if t.minutes is not None and t.minutes < CONTACT_MINUTES:
        return "border", (f"objects touch on {fp.contact_fraction:.1%} of the foreground, but "
                          f"{t.minutes:g} minutes are too short to learn a contact class (needs "
                          f"{CONTACT_MINUTES:g}): separation borders")
    return "class", (f"objects touch on {fp.contact_fraction:.1%} of the foreground and the "
                     f"budget is long enough to learn where: a contact class, so the mask "
                     f"keeps the pixels between touching objects")
