"""Label kinds decided once for a dataset, from all its labels and the configuration."""

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from unetkit.config import preset
from unetkit.data.dataset import Pair, load_pairs, prepare
from unetkit.data.label_kinds import decide_kind
from unetkit.data.normalize import Normalization
from unetkit.data.targets import build_targets

MSC = Path(__file__).resolve().parents[3] / "shared" / "data" / "ctc-msc"


def pairs_of(labels):
    return [Pair(f"s{i}", np.zeros((1, *lab.shape), np.uint8), lab, f"img{i}.png", f"lab{i}.png")
            for i, lab in enumerate(labels)]


def config(num_classes=2):
    cfg = preset("default")
    return replace(cfg, model=replace(cfg.model, num_classes=num_classes))


def class_mask_one_blob_per_class():
    lab = np.zeros((24, 24), np.uint8)
    lab[2:10, 2:10] = 1
    lab[14:22, 12:22] = 2
    return lab


def instance_image(n):
    """n objects in a grid, ids 1..n, one 4-connected blob each."""
    lab = np.zeros((40, 40), np.uint16)
    for k in range(n):
        y, x = divmod(k, 4)
        lab[2 + 10 * y:8 + 10 * y, 2 + 10 * x:8 + 10 * x] = k + 1
    return lab


def test_class_mask_with_one_blob_per_class_and_three_classes(caplog):
    items = pairs_of([class_mask_one_blob_per_class()] * 2)
    with caplog.at_level(logging.INFO, logger="unetkit.data.dataset"):
        out = prepare(items, config(num_classes=3), Normalization())
    assert {it.kind for it in out} == {"classes"}
    assert set(np.unique(out[0].target).tolist()) == {0, 1, 2}  # no class lost
    assert "label kind: classes" in caplog.text and "model.num_classes=3" in caplog.text


@pytest.mark.parametrize("n", [2, 9, 16])
def test_instance_images_with_up_to_16_objects(caplog, n):
    items = pairs_of([instance_image(n), instance_image(max(n - 1, 2))])
    with caplog.at_level(logging.INFO, logger="unetkit.data.dataset"):
        out = prepare(items, config(), Normalization())
    assert {it.kind for it in out} == {"instances"}
    assert int(out[0].target.max()) == 1  # object / background, not n classes
    t = build_targets(items[0].labels, kind="instances")
    assert len(np.unique(t.objects[t.objects > 0])) == n  # every object kept
    assert "label kind: instances" in caplog.text


def test_ambiguous_evidence_refuses_naming_the_file():
    split = class_mask_one_blob_per_class()
    split[12, :] = 1  # class 1 now also a second, separate blob
    both = split.copy()
    both[23, :] = 2   # and class 2
    images = [("one.png", class_mask_one_blob_per_class()), ("two.png", split),
              ("three.png", both)]
    # 3 of 6 (image, value) pairs split: neither one blob per id nor a class mask
    with pytest.raises(ValueError) as err:
        decide_kind(images, num_classes=2)
    message = str(err.value)
    assert message.startswith("three.png: value 1 forms several separate blobs")
    assert "--set data.label_kind=" in message and "\n" not in message


def test_class_mask_beyond_the_model_refuses():
    lab = np.zeros((20, 20), np.uint8)
    for v in (1, 2, 3):  # each class in two stripes
        lab[v * 4, :] = v
        lab[v * 4 + 2, :] = v
    with pytest.raises(ValueError, match=r"lab0.png: .*class mask.*model.num_classes=2 cannot "
                       r"hold value 3.*--set data.label_kind="):
        prepare(pairs_of([lab]), config(), Normalization())
    out = prepare(pairs_of([lab]), config(num_classes=4), Normalization())
    assert out[0].kind == "classes"


def test_msc_frames_load_as_instances():
    if not (MSC / "labels").is_dir():
        pytest.skip("ctc-msc data not available")
    pairs = load_pairs(MSC / "images", MSC / "labels")
    decision = decide_kind(((p.label_source, p.labels) for p in pairs),
                           num_classes=2, ignore_value=None)
    assert decision.kind == "instances"
    frame = pairs[0].labels
    t = build_targets(frame, kind=decision.kind)
    assert int(t.target.max()) == 1
    assert len(np.unique(t.objects[t.objects > 0])) == len(np.unique(frame[frame > 0]))


def test_an_empty_label_image_is_evidence_for_nothing():
    empty = np.zeros((40, 40), np.uint16)
    assert decide_kind([("a", instance_image(5)), ("b", empty)]).kind == "instances"
    mask = np.where(instance_image(5) > 0, 255, 0).astype(np.uint8)
    assert decide_kind([("a", mask), ("b", empty.astype(np.uint8))]).kind == "binary"
