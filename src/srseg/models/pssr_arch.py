"""PSSR ResUNet (Fang et al. 2021, Nature Methods): a U-Net with residual blocks on the
pre-upsampled LR image.

PSSR feeds the bicubic(-like) upsampled LR to a fastai dynamic U-Net with a ResNet-34
encoder and trains it on "crappified" HR (our `pssr` degradation recipe). We rebuild the
idea without the ImageNet encoder (no weights can be downloaded, and EM is grey):

    x --bicubic x s--> U --conv--> [ResBlocks, stride-2 conv] x depth --> ResBlocks (bottleneck)
      --> [x2 pixel shuffle, concat skip, 1x1 conv, ResBlocks] x depth --> conv --> + U

Features double per level (capped at 8x). No batch norm (EDSR showed it hurts SR and it
couples the patches of a batch). The output is a residual over the upsampled centre
section (our choice; it trains faster). Any integer scale works (the upsampling is
bicubic); the input is padded internally (replicate) to a multiple of 2^depth.
Paper-like size: features 64, depth 4, 2 blocks per level (config/zoo.yaml).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from . import check_scale, register
from .common import ResBlock, upsample_bicubic


@register("pssr")
class PSSRResUNet(nn.Module):
    def __init__(self, scale: int, features: int = 32, depth: int = 3, n_blocks: int = 2, in_channels: int = 1):
        super().__init__()
        self.scale = check_scale(scale, arch="pssr")
        if depth < 1 or features < 1 or n_blocks < 1:
            raise InputError(f"pssr `net:` features={features}, depth={depth}, n_blocks={n_blocks} must all be >= 1")
        self.depth = depth
        widths = [features * min(2**i, 8) for i in range(depth + 1)]
        self.head = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.enc = nn.ModuleList(nn.Sequential(*[ResBlock(widths[i]) for _ in range(n_blocks)]) for i in range(depth))
        self.down = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(depth))
        self.bottleneck = nn.Sequential(*[ResBlock(widths[depth]) for _ in range(n_blocks)])
        # x2 sub-pixel upsampling halves the width: C_{i+1} -> C_i (fewer checkerboard artefacts than deconvolution)
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i + 1], widths[i] * 4, 3, padding=1), nn.PixelShuffle(2))
            for i in range(depth)
        )
        self.merge = nn.ModuleList(nn.Conv2d(2 * widths[i], widths[i], 1) for i in range(depth))
        self.dec = nn.ModuleList(nn.Sequential(*[ResBlock(widths[i]) for _ in range(n_blocks)]) for i in range(depth))
        self.tail = nn.Conv2d(widths[0], 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = upsample_bicubic(x, self.scale)
        h, w = up.shape[-2:]
        m = 2**self.depth
        u = F.pad(up, (0, (-w) % m, 0, (-h) % m), mode="replicate")  # whole number of down-samplings
        f = self.head(u - 0.5)
        skips = []
        for enc, down in zip(self.enc, self.down):
            f = enc(f)
            skips.append(f)
            f = down(f)
        f = self.bottleneck(f)
        for i in reversed(range(self.depth)):
            f = self.merge[i](torch.cat([self.up[i](f), skips[i]], dim=1))
            f = self.dec[i](f)
        c = x.shape[1] // 2  # centre section of a 2.5D stack (0 for a single section)
        return up[:, c : c + 1] + self.tail(f)[..., :h, :w]
