"""The network: the paper's sizes, parameter count, gradients, initialisation, variants."""

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from unetkit import UNet
from unetkit.model import geometry
from unetkit.model.unet import init_std


def test_paper_parameter_count():
    assert sum(p.numel() for p in UNet().parameters()) == 31_030_658


def test_paper_forward_572_to_388():
    torch.manual_seed(0)
    model = UNet().eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 572, 572))
    assert y.shape == (1, 2, 388, 388)
    assert torch.isfinite(y).all()


def test_23_conv_layers_no_batchnorm():
    model = UNet()
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    plain = [m for m in convs if not isinstance(m, nn.ConvTranspose2d)]
    # "In total the network has 23 convolutional layers": 18 3x3, 4 up-convolutions, one 1x1.
    assert len(convs) == 23 and len(plain) == 19
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.padding == (0, 0) for m in plain)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = UNet(base_channels=8).train()
    y = model(torch.randn(2, 1, 204, 204))
    assert torch.isfinite(y).all()
    (y**2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_init_std_matches_sqrt_2_over_n():
    torch.manual_seed(0)
    model = UNet()
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        w = m.weight.detach().double()
        n = w.numel()
        expected = init_std(m)
        assert abs(w.std().item() / expected - 1) < 6 / math.sqrt(2 * n), name
        assert abs(w.mean().item()) < 6 * expected / math.sqrt(n), name
        assert (m.bias == 0).all(), name
    first = model.down[0][0]
    assert init_std(first) == pytest.approx(math.sqrt(2 / 9))
    assert init_std(model.down[1][0]) == pytest.approx(math.sqrt(2 / 576))  # the paper's example


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("width", [2, 5])
def test_depths_and_widths(depth, width):
    model = UNet(in_channels=2, num_classes=3, depth=depth, base_channels=width).eval()
    s = geometry.min_tile_size(depth)
    with torch.no_grad():
        y = model(torch.randn(1, 2, s, s))
    assert y.shape == (1, 3, geometry.output_size(s, depth), geometry.output_size(s, depth))
    assert model.margin == geometry.margin(depth)


@pytest.mark.parametrize("depth", [1, 3, 4])
@pytest.mark.parametrize("bn", [False, True])
def test_same_padding_keeps_size(depth, bn):
    model = UNet(depth=depth, base_channels=4, padding="same", batch_norm=bn).eval()
    for s in (2**depth * 3, 2**depth * 5):
        with torch.no_grad():
            assert model(torch.randn(1, 1, s, s)).shape == (1, 2, s, s)


def test_conv_flops_match_torch_counter():
    model = UNet(in_channels=1, num_classes=2, depth=3, base_channels=4).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 1, 140, 140))
    assert geometry.conv_flops(140, 3, 4) == counter.get_total_flops()


def test_channels_per_level():
    # model.channels: any width per level (here MONAI BasicUNet's profile), not only doubling
    model = UNet(depth=3, channels=(4, 4, 8, 12), padding="same", batch_norm=True).eval()
    assert model.config.widths == (4, 4, 8, 12)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert [c.out_channels for c in convs] == [4, 4, 4, 4, 8, 8, 12, 12, 8, 8, 4, 4, 4, 4]
    assert model.up[0][0].in_channels == 16 and model.head.in_channels == 4
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        assert model(torch.randn(1, 1, 48, 48)).shape == (1, 2, 48, 48)
    assert geometry.conv_flops(48, 3, (4, 4, 8, 12), padding="same") == counter.get_total_flops()
    # doubling written out is the same network as base_channels
    assert geometry.level_channels(3, 4) == [4, 8, 16, 32]
    assert UNet(depth=3, channels=[4, 8, 16, 32]).config.widths == UNet(
        depth=3, base_channels=4).config.widths
    # flat_levels: the profile follows base_channels and depth
    assert UNet(depth=3, base_channels=4, flat_levels=1).config.widths == (4, 4, 8, 16)
    assert UNet(depth=2, base_channels=4, flat_levels=2).config.widths == (4, 4, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"padding": "full"}, "padding"), ({"depth": 0}, "depth"), ({"num_classes": 1}, "num_classes"),
     ({"dropout": 1.0}, "dropout"), ({"batch_norm": True}, "same-padded"),
     ({"depth": 2, "channels": (4, 8)}, r"3 positive integers \(one per level at depth 2\)"),
     ({"depth": 1, "channels": (4, 0)}, "channels must be 2 positive integers"),
     ({"depth": 2, "flat_levels": 3}, r"flat_levels must be an integer from 0 to depth \(2\)")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet(**kwargs)
