"""SRCNN (Dong et al. 2016, TPAMI): three convolutions on the bicubic-upsampled input.

Defaults are the paper's 9-5-5 network with 64 and 32 filters. Padding keeps the
image size (the paper trained on valid convolutions only; same-size output lets
every architecture share the training and tiling code). `residual: true` adds the
bicubic input to the output (VDSR-style), which trains faster; the default is
the paper's plain mapping.
"""

from __future__ import annotations

import torch
from torch import nn

from ..io import InputError
from . import check_scale, register
from .common import upsample_bicubic


@register("srcnn")
class SRCNN(nn.Module):
    def __init__(self, scale: int, features=(64, 32), kernels=(9, 5, 5), residual: bool = False, in_channels: int = 1):
        super().__init__()
        self.scale = check_scale(scale, arch="srcnn")
        features, kernels = list(features), list(kernels)
        if len(kernels) != len(features) + 1:
            raise InputError(
                f"srcnn `net:` has {len(features)} features and {len(kernels)} kernels;"
                " give one kernel size more than features"
            )
        chans = [in_channels] + features + [1]  # in_channels > 1: 2.5D z-context stack
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            # replicate padding: no dark frame from zero padding at image borders
            layers.append(nn.Conv2d(chans[i], chans[i + 1], k, padding=k // 2, padding_mode="replicate"))
            if i < len(kernels) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.residual = bool(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = upsample_bicubic(x, self.scale)
        out = self.body(up - 0.5)  # centre intensities around 0 (EDSR's mean shift)
        c = x.shape[1] // 2  # the centre section is the one being super-resolved
        return up[:, c : c + 1] + out if self.residual else out + 0.5
