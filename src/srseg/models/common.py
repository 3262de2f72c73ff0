"""Building blocks shared by several architectures."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def factor_2_3(scale: int) -> list[int] | None:
    """Split a scale into x2 and x3 pixel-shuffle stages (8 -> [2, 2, 2], 6 -> [2, 3]); None if impossible."""
    stages = []
    while scale % 2 == 0:
        stages.append(2)
        scale //= 2
    while scale % 3 == 0:
        stages.append(3)
        scale //= 3
    return stages if scale == 1 else None


PIXEL_SHUFFLE_HINT = "pixel-shuffle upsampling supports products of 2 and 3 (1, 2, 3, 4, 6, 8, 9, ...)"


def upsample_bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling with pixel-area alignment (align_corners=False), as pairs are built."""
    if scale == 1:
        return x
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(h * scale, w * scale), mode="bicubic", align_corners=False)


class ResBlock(nn.Module):
    """EDSR residual block: conv-ReLU-conv, no batch norm, scaled residual."""

    def __init__(self, channels: int, res_scale: float = 1.0, kernel: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class PixelShuffleUpsampler(nn.Sequential):
    """Sub-pixel convolution (Shi et al. 2016): one conv + PixelShuffle per x2 / x3 stage."""

    def __init__(self, channels: int, scale: int, bias: bool = True):
        stages = factor_2_3(scale)
        if stages is None:  # callers check the scale first and raise InputError
            raise ValueError(f"scale {scale} is not a product of 2 and 3")
        layers: list[nn.Module] = []
        for s in stages:
            layers += [nn.Conv2d(channels, channels * s * s, 3, padding=1, bias=bias), nn.PixelShuffle(s)]
        super().__init__(*layers)


class ResidualShuffleSR(nn.Module):
    """EDSR/RCAN layout: head conv, deep body with a long skip, pixel-shuffle upsampler, tail conv.

    Subclasses build `head`, `body`, `upsample` and `tail`; inputs are centred on 0.5 so
    the network learns a residual around mid-grey.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x - 0.5)
        f = f + self.body(f)  # long skip
        return self.tail(self.upsample(f)) + 0.5


def symmetric_pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Pad the bottom / right by mirroring with the edge pixel repeated (EDT's test code: x, flip(x), ...).

    Works for any pad, also one larger than the image (the mirror is repeated)."""
    h, w = x.shape[-2:]
    while x.shape[-2] < h + ph:
        x = torch.cat([x, x.flip(-2)], dim=-2)
    while x.shape[-1] < w + pw:
        x = torch.cat([x, x.flip(-1)], dim=-1)
    return x[..., : h + ph, : w + pw]
