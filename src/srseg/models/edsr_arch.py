"""EDSR (Lim et al. 2017): residual blocks without batch norm, long skip, pixel shuffle.

Paper baseline: 64 features, 16 blocks, residual scaling 1 (the large model: 256,
32, 0.1). Single channel in/out. Intensities are centred around 0.5 instead of
EDSR's RGB mean shift. x4 / x8 use repeated x2 pixel shuffles, x3 one x3 stage.
"""

from __future__ import annotations

from torch import nn

from . import check_scale, register
from .common import PIXEL_SHUFFLE_HINT, PixelShuffleUpsampler, ResBlock, ResidualShuffleSR, factor_2_3


@register("edsr")
class EDSR(ResidualShuffleSR):
    def __init__(self, scale: int, n_feats: int = 64, n_blocks: int = 16, res_scale: float = 1.0, in_channels: int = 1):
        super().__init__()
        self.scale = check_scale(scale, lambda s: factor_2_3(s) is not None, "edsr", PIXEL_SHUFFLE_HINT)
        self.head = nn.Conv2d(in_channels, n_feats, 3, padding=1)  # in_channels > 1: 2.5D z-context stack
        self.body = nn.Sequential(
            *[ResBlock(n_feats, res_scale) for _ in range(n_blocks)],
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.upsample = PixelShuffleUpsampler(n_feats, self.scale)
        self.tail = nn.Conv2d(n_feats, 1, 3, padding=1)
