"""Bicubic interpolation as a parameter-free model.

It goes through the same inference and scoring rules as the trained models so
that the baseline is a table row produced exactly like every other row.
"""

from __future__ import annotations

import torch
from torch import nn

from . import check_scale, register
from .common import upsample_bicubic


@register("bicubic")
class Bicubic(nn.Module):
    trainable = False

    def __init__(self, scale: int):
        super().__init__()
        self.scale = check_scale(scale, arch="bicubic")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Clamped because cubic overshoot leaves [0, 1] next to strong edges.
        return upsample_bicubic(x, self.scale).clamp(0.0, 1.0)
