"""Config: presets, YAML round trip, unknown keys, value checks, overrides."""

import dataclasses
import re

import pytest
import yaml

from unetkit.model.geometry import is_legal
from unetkit.config import (
    AugmentConfig,
    Config,
    UNetConfig,
    apply_overrides,
    dump,
    from_dict,
    load_config,
    preset,
    save_config,
)


def test_paper_preset_is_the_paper():
    cfg = preset("paper")
    assert cfg == Config()
    assert (cfg.model.base_channels, cfg.model.depth, cfg.model.padding) == (64, 4, "valid")
    assert cfg.model.batch_norm is False and cfg.model.dropout == 0.5
    assert (cfg.train.tile_size, cfg.train.batch_size) == (572, 1)
    assert (cfg.train.optimizer, cfg.train.momentum) == ("sgd", 0.99)
    assert (cfg.weights.w0, cfg.weights.sigma) == (10.0, 5.0)
    assert (cfg.augment.elastic_grid, cfg.augment.elastic_sigma) == (3, 10.0)


def test_default_preset_is_small_and_leaves_choices_to_the_data():
    paper, cfg = preset("paper"), preset("default")
    assert cfg.model.base_channels < paper.model.base_channels
    assert cfg.model.depth == paper.model.depth and paper.model.padding == "valid"
    assert (cfg.model.padding, cfg.model.batch_norm) == ("same", True)  # measured: config.py
    assert cfg.model.widths == (16, 32, 64, 128, 256)  # flat_levels=1 measured: config.py
    assert paper.model.widths == (64, 128, 256, 512, 1024)
    assert is_legal(paper.train.tile_size, paper.model.depth, paper.model.padding)
    # left to the data (training.choices) in the default preset, fixed in the paper preset
    assert cfg.train.tile_size is None and cfg.augment.elastic_sigma is None
    assert cfg.train.iterations is None and cfg.data.foreground_sampling is None
    assert cfg.data.normalization == "auto"
    assert (cfg.postprocess.threshold, cfg.postprocess.min_size) == (None, None)
    assert (paper.postprocess.threshold, paper.postprocess.min_size) == (0.5, 0)
    assert paper.data.foreground_sampling == 0 and paper.weights.max_class_weight is None
    assert cfg.train.minutes is not None
    assert cfg.weights.w0 == paper.weights.w0 and cfg.weights.class_weights == "balanced"
    with pytest.raises(ValueError, match="'fast'"):
        preset("fast")


@pytest.mark.parametrize("name", ["paper", "default"])
def test_yaml_round_trip(tmp_path, name):
    overrides = ["weights.class_weights=[1, 10.5]", "data.ignore_value=255"]
    cfg = apply_overrides(preset(name), overrides)
    path = tmp_path / "cfg.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert from_dict(yaml.safe_load(dump(cfg))) == cfg
    assert cfg.weights.class_weights == (1.0, 10.5)


def test_partial_file_starts_from_its_preset(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("preset: paper\ntrain:\n  lr: 1e-4\n  iterations: 50\n")
    cfg = load_config(path)
    assert cfg.train.lr == 1e-4 and cfg.train.iterations == 50
    assert cfg.model == UNetConfig()
    path.write_text("augment: {rotation: 0}\n")
    cfg = load_config(path)
    assert cfg.model == preset("default").model and cfg.augment.rotation == 0.0
    path.write_text("")
    assert load_config(path) == preset("default")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": {"lrr": 0.1}}, "unknown key 'train.lrr'"),
        ({"trian": {"lr": 0.1}}, "unknown key 'trian'"),
        ({"weights": {"sigma": -1}}, "sigma must be > 0, got -1"),
        ({"model": {"padding": "same-ish"}}, "same-ish"),
        ({"model": {"depth": 4.5}}, "model.depth must be an integer, got 4.5"),
        ({"model": {"batch_norm": "yes"}}, "model.batch_norm"),
        ({"model": {"padding": "valid"}}, "model.batch_norm is offered for the same-padded variant only"),
        ({"model": {"dropout": 1.0}}, "model.dropout must be in [0, 1), got 1.0"),
        ({"train": {"lr": "fast"}}, "'fast'"),
        ({"augment": {"contrast": 1.5}}, "contrast"),
        ({"weights": {"class_weights": "inverse"}}, "inverse"),
        ({"train": 3}, "train must be a mapping"),
        ({"preset": "huge"}, "huge"),
    ],
)
def test_bad_values_are_named(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        from_dict(data)


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train: {lrr: 1}\n")
    with pytest.raises(ValueError, match=r"broken\.yaml.*train\.lrr"):
        load_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(path)


def test_overrides_use_yaml_typing():
    cfg = apply_overrides(
        Config(),
        ["train.lr=0.01", "train.minutes=null", "augment.flip=false", "model.base_channels=8",
         "train.optimizer=adam", "train.lr=5e-4"],
    )
    assert cfg.train.lr == 5e-4 and cfg.train.minutes is None
    assert cfg.augment.flip is False and cfg.model.base_channels == 8
    assert cfg.train.optimizer == "adam"
    cfg2 = apply_overrides(cfg, ["model.channels=[8, 8, 16, 32, 64]"])
    assert cfg2.model.channels == (8, 8, 16, 32, 64) and cfg2.model.widths[-1] == 64
    assert from_dict(yaml.safe_load(dump(cfg2))).model.channels == (8, 8, 16, 32, 64)
    with pytest.raises(ValueError, match="channels must be 5 positive integers"):
        apply_overrides(cfg, ["model.channels=[8, 16]"])
    assert isinstance(apply_overrides(cfg, ["weights.w0=3"]).weights.w0, float)
    with pytest.raises(ValueError, match=r"unknown key 'train\.lrr'"):
        apply_overrides(cfg, ["train.lrr=1"])
    with pytest.raises(ValueError, match=r"section\.key=value"):
        apply_overrides(cfg, ["lr=1"])
    with pytest.raises(ValueError, match="must be > 0"):
        apply_overrides(cfg, ["weights.sigma=0"])


def test_configs_are_frozen_and_checked_directly():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0
    with pytest.raises(ValueError, match="momentum"):
        dataclasses.replace(cfg.train, momentum=1.0)
    off = AugmentConfig.off()
    assert off.elastic_sigma == 0 and not off.flip and off.rotation == 0


def test_model_section_is_the_network_config():
    from unetkit import UNet

    cfg = apply_overrides(preset("default"), ["model.batch_norm=true", "model.padding=same"])
    assert isinstance(cfg.model, UNetConfig) and cfg.model.batch_norm and cfg.model.padding == "same"
    assert UNet(**cfg.model.to_dict()).config == cfg.model
    with pytest.raises(ValueError, match=r"model\.batch_norm is offered"):
        apply_overrides(preset("paper"), ["model.batch_norm=true"])
    with pytest.raises(ValueError, match=r"model\.batch_norm is offered"):
        apply_overrides(preset("default"), ["model.padding=valid"])
    valid = apply_overrides(preset("default"), ["model.batch_norm=false", "model.padding=valid"])
    assert valid.model.padding == "valid" and not valid.model.batch_norm


def test_label_kind_has_one_vocabulary():
    assert from_dict({"data": {"label_kind": "instance"}}).data.label_kind == "instances"
    assert from_dict({"data": {"label_kind": "instances"}}).data.label_kind == "instances"
