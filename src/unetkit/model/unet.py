"""The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015), Fig. 1, and a same-padded variant.

``UNet()`` with its defaults *is* the paper's network: 3x3 valid convolutions + ReLU, 2x2 max-pool,
channels doubling from 64 to 1024, 2x2 transposed-convolution up-sampling that halves the channels,
centre crop + concatenation, 1x1 head; dropout at the end of the contracting path; Gaussian
initialisation with std sqrt(2/N).  572 x 572 in, 388 x 388 out, 31,030,658 parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import UNetConfig
from . import geometry

__all__ = ["UNet", "center_crop", "init_std"]


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the centre ``size`` of ``x``: (B, C, H, W) -> (B, C, h, w), h <= H, w <= W."""
    h, w = size
    dy = (x.shape[-2] - h) // 2
    dx = (x.shape[-1] - w) // 2
    return x[..., dy : dy + h, dx : dx + w]


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by ReLU (and batch norm in the padded variant).

    Valid: (B, Cin, H, W) -> (B, Cout, H - 4, W - 4).  Same: (B, Cin, H, W) -> (B, Cout, H, W).
    """

    def __init__(self, cin: int, cout: int, padding: str, batch_norm: bool) -> None:
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for c_in in (cin, cout):
            layers.append(nn.Conv2d(c_in, cout, 3, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """The paper's U-Net.  ``forward``: (B, in_channels, S, S) -> (B, num_classes, S', S') logits.

    Valid padding: ``S`` must be legal (``16 b + 124`` at depth 4) and ``S' = S - 2 * margin``
    (572 -> 388).  Same padding: ``S`` a multiple of ``2**depth`` and ``S' = S``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        depth: int = 4,
        base_channels: int = 64,
        padding: str = "valid",
        dropout: float = 0.5,
        batch_norm: bool = False,
        flat_levels: int = 0,
        channels: tuple[int, ...] | list[int] | None = None,
    ) -> None:
        super().__init__()
        self.config = UNetConfig(
            in_channels, num_classes, depth, base_channels, padding, dropout, batch_norm,
            flat_levels, None if channels is None else tuple(channels),
        )
        ch = list(self.config.widths)
        self.down = nn.ModuleList(
            DoubleConv(in_channels if lvl == 0 else ch[lvl - 1], ch[lvl], padding, batch_norm)
            for lvl in range(depth)
        )
        self.pool = nn.MaxPool2d(2, 2)
        self.bottom = DoubleConv(ch[depth - 1], ch[depth], padding, batch_norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.upconv = nn.ModuleList(
            nn.ConvTranspose2d(ch[lvl + 1], ch[lvl], 2, stride=2) for lvl in reversed(range(depth))
        )
        self.up = nn.ModuleList(
            DoubleConv(2 * ch[lvl], ch[lvl], padding, batch_norm) for lvl in reversed(range(depth))
        )
        self.head = nn.Conv2d(ch[0], num_classes, 1)
        self.meta: dict = {}  # normalisation, class names, training info (see modelfile.py)
        self.reset_parameters()

    # --- geometry, from model/geometry.py (never re-derived here) ---
    @property
    def margin(self) -> int:
        """Context pixels lost per side (92 for the paper network, 0 for same padding)."""
        return geometry.margin(self.config.depth, self.config.padding)

    def output_size(self, size: int) -> int:
        return geometry.output_size(size, self.config.depth, self.config.padding)

    def reset_parameters(self) -> None:
        """Gaussian init with std sqrt(2/N), N = incoming connections of one unit (Sec. 3)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, 0.0, init_std(module))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Contracting path: (B, C, S, S) -> per level: double conv (S - 4), keep for the skip, pool.
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        # Bottom of the U, dropout "at the end of the contracting path": 1024 channels.
        x = self.dropout(self.bottom(x))
        # Expanding path: up-conv (2x, half the channels), crop the skip to match, concat, convs.
        for upconv, block, skip in zip(self.upconv, self.up, reversed(skips), strict=False):
            x = upconv(x)  # (B, 2c, s, s) -> (B, c, 2s, 2s)
            x = block(torch.cat([center_crop(skip, x.shape[-2:]), x], dim=1))  # -> (2s - 4)
        return self.head(x)  # 1x1 conv: (B, 64, S', S') -> (B, num_classes, S', S')


def init_std(module: nn.Module) -> float:
    """The paper's init std sqrt(2/N) for a conv layer, N = inputs of one output unit.

    A kxk convolution sees k*k*Cin inputs per unit (3x3 with 64 channels: N = 576).  A 2x2
    stride-2 transposed convolution feeds each output unit from one position of each input
    channel, so N = Cin.
    """
    if isinstance(module, nn.ConvTranspose2d):
        fan_in = module.in_channels
    elif isinstance(module, nn.Conv2d):
        fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
    else:
        raise TypeError(f"not a convolution: {type(module).__name__}")
    return math.sqrt(2.0 / fan_in)
