"""Shared fixtures: small deterministic models and images."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

from unetkit.model import geometry

ISBI = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012"


class CropByMargin(nn.Module):
    """A stand-in 'network' that returns its input cropped by the valid margin: (B,C,S,S) ->
    (B,C,S-2m,S-2m).  Through the tiler it must reproduce the image bit-exactly."""

    def __init__(self, depth: int = 4, channels: int = 1) -> None:
        super().__init__()
        self.config = types.SimpleNamespace(depth=depth, padding="valid", in_channels=channels,
                                            num_classes=channels, base_channels=1)
        self.m = geometry.margin(depth)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.m
        return x[..., m:-m, m:-m]


@pytest.fixture
def crop_model() -> CropByMargin:
    return CropByMargin()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
