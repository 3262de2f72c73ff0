"""SR3 (Saharia et al. 2021): conditional diffusion SR, concatenating the upsampled LR to x_t.

Training (srseg.training.kinds.diffusion): x0 = 2*HR - 1 (images in [-1, 1]), t ~ U{0..T-1} with a
linear beta schedule (`timesteps`, `beta_start`, `beta_end`), x_t = sqrt(ab_t) x0 +
sqrt(1 - ab_t) eps, and the U-Net predicts eps from [bicubic-upsampled LR, x_t] and the
noise level. As in SR3 the network is conditioned on the noise level sqrt(ab_t) (not the
step index), through a sinusoidal embedding of 1000*sqrt(ab_t) and an MLP, so it can be
sampled with any subset of the training steps.

Sampling: DDIM with eta = 0 (Song et al. 2021), a deterministic map from the initial noise
x_T to the image, over `sample_steps` evenly spaced steps of the T training steps (T steps =
the full chain). Quality versus steps is measured by changing `sample_steps`. The initial
noise is an argument of forward(): tiled inference cuts it from one seeded noise plane per
section at HR resolution (noise_factor = scale), so overlapping tiles start from the same
noise and agree (see infer.super_resolve).

U-Net: `channels` x `mults` per level, `res_blocks` residual blocks (GroupNorm, SiLU,
noise-level embedding added in between) per level, self-attention at the lowest level
(`attention`), strided-conv down / nearest+conv up with skips. Inputs are reflect-padded to a
multiple of 2^(levels-1) and cropped back. Paper-sized (SR3 for 64->256 faces): 64 channels,
mults (1, 2, 4, 8, 8), 3 res blocks, T = 2000, beta 1e-6 .. 1e-2; ours for EM defaults smaller.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import check_scale, register
from .common import upsample_bicubic


def sinusoidal(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer positional encoding of a (B,) float tensor: (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    a = x.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


def _groups(c: int) -> int:
    return math.gcd(32, c)


class TimeResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(c), c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.out = nn.Conv2d(c, c, 1)

    def forward(self, x, emb=None):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps_theta([cond, x_t], noise level): (B, c_in + 1, H, W) -> (B, 1, H, W)."""

    def __init__(self, c_in: int, channels: int, mults, res_blocks: int, attention: bool, dropout: float):
        super().__init__()
        emb_dim = 4 * channels
        self.channels = channels
        self.emb = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.head = nn.Conv2d(c_in + 1, channels, 3, padding=1)
        self.down, skips, c = nn.ModuleList(), [channels], channels
        for level, m in enumerate(mults):
            for _ in range(res_blocks):
                self.down.append(TimeResBlock(c, channels * m, emb_dim, dropout))
                c = channels * m
                skips.append(c)
            if level < len(mults) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList(
            [
                TimeResBlock(c, c, emb_dim, dropout),
                SelfAttention(c) if attention else nn.Identity(),
                TimeResBlock(c, c, emb_dim, dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mults))):
            for _ in range(res_blocks + 1):
                self.up.append(TimeResBlock(c + skips.pop(), channels * m, emb_dim, dropout))
                c = channels * m
            if level > 0:
                self.up.append(
                    nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1))
                )
        self.tail = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x, level):
        emb = self.emb(sinusoidal(1000.0 * level, self.channels))
        h = self.head(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, TimeResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, TimeResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, TimeResBlock):
                h = layer(torch.cat([h, hs.pop()], 1), emb)
            else:
                h = layer(h)
        return self.tail(h)


@register("sr3")
class SR3(nn.Module):
    training = "diffusion"

    def __init__(
        self,
        scale: int,
        channels: int = 64,
        mults=(1, 2, 4, 8),
        res_blocks: int = 2,
        attention: bool = True,
        dropout: float = 0.0,
        timesteps: int = 2000,
        beta_start: float = 1e-6,
        beta_end: float = 1e-2,
        sample_steps: int = 50,
        in_channels: int = 1,
    ):
        super().__init__()
        self.scale = check_scale(scale, arch="sr3")
        self.unet = UNet(in_channels, channels, list(mults), res_blocks, attention, dropout)
        self.multiple = 2 ** (len(mults) - 1)
        self.timesteps, self.sample_steps = int(timesteps), int(sample_steps)
        betas = np.linspace(beta_start, beta_end, self.timesteps, dtype=np.float64)  # linear schedule
        ab = np.cumprod(1.0 - betas)
        # derived from net settings, so not saved in the state dict
        self.register_buffer("alpha_bar", torch.tensor(ab, dtype=torch.float32), persistent=False)
        self.noise_channels, self.noise_factor = 1, self.scale  # initial noise x_T at HR resolution

    def condition(self, lr: torch.Tensor) -> torch.Tensor:
        return 2.0 * upsample_bicubic(lr, self.scale) - 1.0

    def _eps(self, cond, x_t, sqrt_ab):
        """U-Net on reflect-padded input (sides a multiple of 2^(levels-1)), cropped back."""
        h, w = x_t.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        inp = torch.cat([cond, x_t], 1)
        if ph or pw:
            inp = F.pad(inp, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        return self.unet(inp, sqrt_ab)[..., :h, :w]

    def diffusion_pair(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training draw: (predicted eps, true eps) for random t and noise from the torch RNG."""
        x0 = 2.0 * hr - 1.0
        t = torch.randint(0, self.timesteps, (hr.shape[0],), device=hr.device)
        ab = self.alpha_bar.to(hr.device)[t].view(-1, 1, 1, 1)
        eps = torch.randn_like(x0)
        x_t = ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps
        return self._eps(self.condition(lr), x_t, ab.sqrt().flatten()), eps

    def step_schedule(self, steps: int | None = None) -> list[int]:
        """Descending training-step indices used by the sampler (evenly spaced, last one 0)."""
        n = min(max(int(steps or self.sample_steps), 1), self.timesteps)
        return sorted({int(round(v)) for v in np.linspace(self.timesteps - 1, 0, n)}, reverse=True)

    def sample(self, lr: torch.Tensor, noise: torch.Tensor | None = None, steps: int | None = None) -> torch.Tensor:
        """DDIM (eta = 0) from x_T = noise to x0 in [-1, 1]."""
        cond = self.condition(lr)
        x = torch.randn_like(cond[:, :1]) if noise is None else noise.to(cond.dtype)
        ab_all = self.alpha_bar.to(lr.device)
        seq = self.step_schedule(steps)
        for i, t in enumerate(seq):
            ab = ab_all[t]
            ab_prev = ab_all[seq[i + 1]] if i + 1 < len(seq) else torch.ones((), device=lr.device)
            level = ab.sqrt().expand(x.shape[0])
            eps = self._eps(cond, x, level).to(x.dtype)
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1.0, 1.0)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # consistent with the clipped x0
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return (self.sample(x, noise) + 1.0) / 2.0
