"""WGAN-GP super-resolution (Alonso 2021, chapter 4 and appendix tables): generator + critic.

Generator (SRResNet-like, paper fig. 4.2): a 5x5 conv to 64 features + PReLU, N residual
blocks Conv3x3-PReLU-Conv3x3 with a short skip, a conv after the blocks and a long skip
over all of them, log2(S) upsample blocks Conv(64 -> 256)-PixelShuffle(2)-PReLU, a 5x5
conv to one channel and tanh. Choices the paper leaves open, documented here:
- scale 3 (the paper only has S = 2^k): one Conv(64 -> 576)-PixelShuffle(3)-PReLU block;
  scale 6 = x2 then x3 (common.factor_2_3).
- intensities: the input [0, 1] is mapped to [-1, 1] and the tanh output t back by (t + 1) / 2,
  so the model speaks [0, 1] like every other srseg model.
- optional generator noise (``noise: true``) for generative-variance maps: StyleGAN-style
  noise injection, one single-channel Gaussian noise map at LR resolution added to every
  residual block's input with a learned per-channel strength (initialised at 0.1 so the
  generator starts stochastic; training can scale it up or down). The map is an argument of
  forward(); tiled inference cuts it from one seeded noise plane per section so that
  overlapping tiles see the same noise (see infer.super_resolve). Paper default: off.
Critic (section 4.1.2, fig. 4.3): "a series of Conv2D layers with a stride of 2 ... and an
increasing number of 3x3 sized filters in each step", instance normalisation after each and
LeakyReLU, then instead of SRGAN's dense classifier "we average over the last convolutional
layer, which uses only one filter": here four 3x3 stride-2 convs with 64, 128, 256, 512
filters, each followed by InstanceNorm2d (no affine parameters, PyTorch's default) and
LeakyReLU(0.2), a 3x3 stride-1 conv with one filter, and the mean over the image: one
unbounded score per image (no sigmoid). Fig. 4.3's layer list is not in the extracted thesis
text; this reading gives 1,554,433 parameters, the "1.6 M" of the thesis's Tables 1 and 2,
and is layer for layer the `Discriminator` of a public PyTorch Lightning implementation of
this WGAN-GP (class `WGANGP`; its repository could not be identified). SRGAN's layout (a
stride-1 and a stride-2 conv per width) would have 4.69 M.
Paper-sized: 15 residual blocks (1.4 M generator + 1.6 M critic parameters; at x4: 1,444,609
+ 1,554,433 here).
"""

from __future__ import annotations

import torch
from torch import nn

from . import check_scale, register
from .common import PIXEL_SHUFFLE_HINT, factor_2_3


class NoiseInjection(nn.Module):
    """x + strength[c] * noise (StyleGAN, Karras et al. 2019); noise is (B, 1, h, w) or None (no noise)."""

    def __init__(self, channels: int, init: float = 0.1):
        super().__init__()
        self.strength = nn.Parameter(torch.full((1, channels, 1, 1), float(init)))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            return x
        return x + self.strength * noise.to(x.dtype)


class PReLUResBlock(nn.Module):
    """Conv-PReLU-Conv with a short skip (paper section 4.1.1); optional noise on the input."""

    def __init__(self, channels: int, noise: bool):
        super().__init__()
        self.noise = NoiseInjection(channels) if noise else None
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.PReLU(channels), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.noise is not None:
            x = self.noise(x, noise)
        return x + self.body(x)


def pixel_shuffle_prelu(channels: int, scale: int) -> nn.Sequential:
    """log2(S) blocks Conv(C -> C*s*s)-PixelShuffle(s)-PReLU (x3: one s = 3 block)."""
    layers: list[nn.Module] = []
    for s in factor_2_3(scale):
        layers += [nn.Conv2d(channels, channels * s * s, 3, padding=1), nn.PixelShuffle(s), nn.PReLU(channels)]
    return nn.Sequential(*layers)


@register("wgan")
class WGANGenerator(nn.Module):
    """The WGAN-GP SR generator; `build_critic(**critic)` makes its critic (spec key `critic:`)."""

    training = "gan"

    def __init__(self, scale: int, n_feats: int = 64, n_blocks: int = 15, noise: bool = False, in_channels: int = 1):
        super().__init__()
        self.scale = check_scale(scale, lambda s: factor_2_3(s) is not None, "wgan", PIXEL_SHUFFLE_HINT)
        self.head = nn.Sequential(nn.Conv2d(in_channels, n_feats, 5, padding=2), nn.PReLU(n_feats))
        self.blocks = nn.ModuleList(PReLUResBlock(n_feats, noise) for _ in range(n_blocks))
        self.body_tail = nn.Conv2d(n_feats, n_feats, 3, padding=1)
        self.upsample = pixel_shuffle_prelu(n_feats, self.scale) if self.scale > 1 else nn.Identity()
        self.tail = nn.Conv2d(n_feats, 1, 5, padding=2)
        # tiled inference reads these: one noise channel at LR resolution (factor 1); 0 = deterministic
        self.noise_channels, self.noise_factor = (1, 1) if noise else (0, 0)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.noise_factor and noise is None:  # training / untiled use: fresh noise from the torch RNG
            noise = torch.randn(x.shape[0], 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
        f = self.head(2.0 * x - 1.0)
        r = f
        for block in self.blocks:
            r = block(r, noise)
        f = f + self.body_tail(r)  # long skip
        t = torch.tanh(self.tail(self.upsample(f)))
        return (t + 1.0) / 2.0  # tanh range [-1, 1] -> [0, 1]

    @staticmethod
    def build_critic(channels: tuple[int, ...] | list[int] = (64, 128, 256, 512), slope: float = 0.2) -> nn.Module:
        return WGANCritic(channels, slope)


class WGANCritic(nn.Module):
    """Stride-2 3x3 convs (InstanceNorm, LeakyReLU) per width, a one-filter 3x3 conv, mean: one score per image."""

    def __init__(self, channels=(64, 128, 256, 512), slope: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in (int(c) for c in channels):  # k3n64s2, k3n128s2, k3n256s2, k3n512s2
            layers += [
                nn.Conv2d(c_in, c, 3, stride=2, padding=1),
                nn.InstanceNorm2d(c),
                nn.LeakyReLU(slope, inplace=True),
            ]
            c_in = c
        layers.append(nn.Conv2d(c_in, 1, 3, padding=1))  # k3n1s1
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(2.0 * x - 1.0).mean(dim=(1, 2, 3))  # (B,) unbounded Wasserstein scores
