"""Real-ESRGAN-style GAN (Wang et al. 2018 ESRGAN; 2021 Real-ESRGAN): RRDB generator + U-Net discriminator.

Generator (RRDBNet): conv, `n_blocks` residual-in-residual dense blocks (three dense
blocks of five 3x3 convs with `growth` channels and LeakyReLU(0.2), residuals scaled by
0.2), a conv and a long skip, then nearest-neighbour x2 (or x3) upsampling + conv +
LeakyReLU per stage, two output convs. Single channel in/out, centred at 0.5 like EDSR.
Paper-sized: 64 features, 23 blocks, growth 32 (16.7 M parameters).

Optional generator noise (``noise: true``, as ESRGAN+ adds Gaussian noise inside its
residual blocks): a single-channel LR noise map added to every RRDB input with a learned
per-channel strength (wgan_arch.NoiseInjection), used for generative-variance maps.

Discriminator (Real-ESRGAN's UNetDiscriminatorSN): a U-Net whose convolutions are spectrally
normalised (torch.nn.utils.parametrizations.spectral_norm), three stride-2 convs down,
bilinear upsampling with skips back up, and a per-pixel realness logit map (B, 1, H, W).
Skips are resized to the decoder (not the reverse), so any patch size works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from . import check_scale, register
from .common import PIXEL_SHUFFLE_HINT, factor_2_3
from .wgan_arch import NoiseInjection


class DenseBlock(nn.Module):
    """Five 3x3 convs, each seeing all earlier feature maps; residual scaled by 0.2."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, padding=1) for i in range(5))
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(self.act(out))
        return x + 0.2 * out


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, outer residual scaled by 0.2."""

    def __init__(self, nf: int, gc: int, noise: bool):
        super().__init__()
        self.noise = NoiseInjection(nf) if noise else None
        self.body = nn.Sequential(DenseBlock(nf, gc), DenseBlock(nf, gc), DenseBlock(nf, gc))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.noise is not None:
            x = self.noise(x, noise)
        return x + 0.2 * self.body(x)


@register("esrgan")
class RRDBNet(nn.Module):
    """RRDB generator; `build_critic(**critic)` makes the spectral-norm U-Net discriminator."""

    training = "gan"

    def __init__(
        self,
        scale: int,
        n_feats: int = 64,
        n_blocks: int = 23,
        growth: int = 32,
        noise: bool = False,
        in_channels: int = 1,
    ):
        super().__init__()
        self.scale = check_scale(scale, lambda s: factor_2_3(s) is not None, "esrgan", PIXEL_SHUFFLE_HINT)
        self.conv_first = nn.Conv2d(in_channels, n_feats, 3, padding=1)
        self.blocks = nn.ModuleList(RRDB(n_feats, growth, noise) for _ in range(n_blocks))
        self.conv_body = nn.Conv2d(n_feats, n_feats, 3, padding=1)
        self.stages = factor_2_3(self.scale)
        self.conv_up = nn.ModuleList(nn.Conv2d(n_feats, n_feats, 3, padding=1) for _ in self.stages)
        self.conv_hr = nn.Conv2d(n_feats, n_feats, 3, padding=1)
        self.conv_last = nn.Conv2d(n_feats, 1, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.noise_channels, self.noise_factor = (1, 1) if noise else (0, 0)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.noise_factor and noise is None:
            noise = torch.randn(x.shape[0], 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
        f = self.conv_first(x - 0.5)
        r = f
        for block in self.blocks:
            r = block(r, noise)
        f = f + self.conv_body(r)
        for s, conv in zip(self.stages, self.conv_up):
            f = self.act(conv(F.interpolate(f, scale_factor=s, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(f))) + 0.5

    @staticmethod
    def build_critic(n_feats: int = 64, skip: bool = True) -> nn.Module:
        return UNetDiscriminatorSN(n_feats, skip)


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation: per-pixel logits (B, 1, H, W)."""

    def __init__(self, n_feats: int = 64, skip: bool = True):
        super().__init__()
        nf, sn = n_feats, spectral_norm
        self.skip = skip
        self.conv0 = nn.Conv2d(1, nf, 3, padding=1)
        self.conv1 = sn(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = sn(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = sn(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = sn(nn.Conv2d(nf * 8, nf * 4, 3, padding=1, bias=False))
        self.conv5 = sn(nn.Conv2d(nf * 4, nf * 2, 3, padding=1, bias=False))
        self.conv6 = sn(nn.Conv2d(nf * 2, nf, 3, padding=1, bias=False))
        self.conv7 = sn(nn.Conv2d(nf, nf, 3, padding=1, bias=False))
        self.conv8 = sn(nn.Conv2d(nf, nf, 3, padding=1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        x0 = act(self.conv0(2.0 * x - 1.0))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))

        def up(t, like):  # to the skip's size (patch sides need not be multiples of 8)
            return F.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=False)

        x4 = act(self.conv4(up(x3, x2)))
        x4 = x4 + x2 if self.skip else x4
        x5 = act(self.conv5(up(x4, x1)))
        x5 = x5 + x1 if self.skip else x5
        x6 = act(self.conv6(up(x5, x0)))
        x6 = x6 + x0 if self.skip else x6
        return self.conv9(act(self.conv8(act(self.conv7(x6)))))
