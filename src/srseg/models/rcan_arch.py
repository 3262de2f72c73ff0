"""RCAN (Zhang et al. 2018, ECCV): residual-in-residual with channel attention.

    x --conv--> F0 --[G residual groups]--> conv --(+ F0, long skip)--> pixel shuffle --> conv

A residual group is B residual channel-attention blocks (RCAB: conv-ReLU-conv, then
channel attention = global average pool -> 1x1 conv C/r -> ReLU -> 1x1 conv C ->
sigmoid gate), a conv, and a short skip around the group.
Paper: 10 groups, 20 blocks, 64 features, reduction 16 (~15.6 M parameters). The
defaults here are smaller (5 groups x 10 blocks) so a CPU run stays feasible; config/zoo.yaml
sets the paper sizes. Single channel in/out, intensities centred around 0.5 (as EDSR);
`in_channels` > 1 takes a 2.5D z-context stack.
"""

from __future__ import annotations

import torch
from torch import nn

from ..io import InputError
from . import check_scale, register
from .common import PIXEL_SHUFFLE_HINT, PixelShuffleUpsampler, ResidualShuffleSR, factor_2_3


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate over channels (global statistics rescale each feature map)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class RCAB(nn.Module):
    def __init__(self, channels: int, reduction: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            ChannelAttention(channels, reduction),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class ResidualGroup(nn.Module):
    def __init__(self, channels: int, n_blocks: int, reduction: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            *[RCAB(channels, reduction, res_scale) for _ in range(n_blocks)],
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # short skip


@register("rcan")
class RCAN(ResidualShuffleSR):
    def __init__(
        self,
        scale: int,
        n_feats: int = 64,
        n_groups: int = 5,
        n_blocks: int = 10,
        reduction: int = 16,
        res_scale: float = 1.0,
        in_channels: int = 1,
    ):
        super().__init__()
        self.scale = check_scale(scale, lambda s: factor_2_3(s) is not None, "rcan", PIXEL_SHUFFLE_HINT)
        if reduction < 1 or n_feats < 1:
            raise InputError(f"rcan `net:` n_feats={n_feats} and reduction={reduction} must be positive integers")
        self.head = nn.Conv2d(in_channels, n_feats, 3, padding=1)
        self.body = nn.Sequential(
            *[ResidualGroup(n_feats, n_blocks, reduction, res_scale) for _ in range(n_groups)],
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.upsample = PixelShuffleUpsampler(n_feats, self.scale)
        self.tail = nn.Conv2d(n_feats, 1, 3, padding=1)
