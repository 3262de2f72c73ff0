"""SR3 (Saharia et al. 2021): conditional diffusion SR, as the public reference implementation builds it.

Reference: github.com/Janspiry/Image-Super-Resolution-via-Iterative-Refinement (the code
Trobäck et al. fine-tuned), model/sr3_modules/diffusion.py (`GaussianDiffusion`) and unet.py
(`UNet`), config sr_sr3_16_128.json. Images are mapped to [-1, 1]; the U-Net sees
[bicubic-upsampled LR, x_t] and the noise level.

Training (srseg.training.kinds.diffusion, `diffusion_pair`), as `p_losses`: a linear beta
schedule of `timesteps` T steps (`beta_start`, `beta_end`), gamma_t = sqrt(alpha_bar_t),
gamma_0 = 1; ONE step t ~ U{1..T} per batch and, per image, a continuous noise level
gamma ~ U(gamma_t, gamma_{t-1}); x_noisy = gamma x0 + sqrt(1 - gamma^2) eps; the U-Net is
conditioned on gamma itself (WaveGrad positional encoding of gamma, MLP), never on t, and
predicts eps. The reference's loss is L1 between eps and its prediction (`loss_type='l1'`):
use `loss: {l1: 1}` (srseg's pixel losses are means, the reference's a sum over pixels: a
constant factor, which Adam all but ignores).

Sampling (`sampler`, `sample_steps`):
* `ancestral` (the reference's `p_sample_loop`): x_T = noise, then for each step the
  posterior q(x_{t-1} | x_t, x0_hat) of the clipped x0 estimate plus sqrt(posterior variance)
  times fresh Gaussian noise (none at the last step). `sample_steps` = T is the reference's
  full chain; fewer steps use the training alpha_bar at evenly spaced steps ("respacing",
  beta'_i = 1 - alpha_bar_{t_i} / alpha_bar_{t_{i-1}}: the continuous-gamma conditioning makes
  any subset valid). The reference accelerates with a second linear beta schedule instead
  ("val" beta_schedule); respacing keeps x_T pure noise whatever the step count.
* `ddim`: DDIM with eta = 0 (Song et al. 2021) over the same steps: deterministic given x_T.
The noise is an argument of forward(): tiled inference cuts it from one seeded noise plane
per section at HR resolution (noise_factor = scale), so overlapping tiles agree (see
infer.super_resolve). DDIM needs one plane (x_T). The ancestral sampler needs a fresh
Gaussian per step: it draws it from a counter-based hash of the pixel's two noise-plane
values (noise_channels = 2) and the step, so it is the same number for every tile that
holds the pixel, and the memory does not grow with the step count.

U-Net (reference `UNet`): `channels` x `mults` per level, `res_blocks` ResNet blocks per level
(GroupNorm(32), Swish, conv; noise embedding added; GroupNorm, Swish, dropout, conv) down and
`res_blocks` + 1 up, self-attention (one head, no qkv bias) after every block of the levels
whose side is in `attn_res` when the input is `image_size` px (reference attn_res [16] at
image_size 128: the level at 1/8 resolution), a bottleneck of block + attention (`attention`)
and a block, strided-conv down / nearest + conv up, skips. Inputs are reflect-padded to a
multiple of 2^(levels-1) and cropped back.
Paper size = the reference's sr_sr3_16_128 config (the defaults): 64 channels, mults
(1, 2, 4, 8, 8), 2 res blocks, attention at 16 px, dropout 0.2, T = 2000, beta 1e-6 .. 1e-2:
97,804,033 parameters with grey in/out, equal to the reference UNet with in_channel 2 and
out_channel 1 (97,807,491 with its RGB 6 -> 3). The SR3 paper's own networks are not public.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from . import check_scale, register
from .common import upsample_bicubic

SAMPLERS = ("ancestral", "ddim")


def sinusoidal(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The reference's (WaveGrad) PositionalEncoding of a (B,) noise level: (B, dim), x * 10000^(-k/(dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(1e4) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    a = x.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


def _groups(c: int) -> int:
    return math.gcd(32, c)  # the reference's 32 groups; fewer for tiny test nets


class SelfAttention(nn.Module):
    """One-head self-attention over all positions, x + out(softmax(QK^T / sqrt(C)) V); qkv without bias."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(c), c)
        self.qkv = nn.Conv2d(c, 3 * c, 1, bias=False)
        self.out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class TimeResBlock(nn.Module):
    """The reference's ResnetBlocWithAttn: ResNet block with the noise embedding, then optional attention."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, attention: bool = False):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.attn = SelfAttention(c_out) if attention else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        h = self.skip(x) + h
        return self.attn(h) if self.attn is not None else h


class UNet(nn.Module):
    """eps_theta([cond, x_t], gamma): (B, c_in + 1, H, W) -> (B, 1, H, W)."""

    def __init__(self, c_in: int, channels: int, mults, res_blocks: int, attention: bool, attn_levels, dropout: float):
        super().__init__()
        emb_dim = channels  # the reference's noise_level_channel = inner_channel
        self.channels = channels
        self.emb = nn.Sequential(nn.Linear(channels, 4 * channels), nn.SiLU(), nn.Linear(4 * channels, channels))
        self.head = nn.Conv2d(c_in + 1, channels, 3, padding=1)
        self.down, skips, c = nn.ModuleList(), [channels], channels
        for level, m in enumerate(mults):
            for _ in range(res_blocks):
                self.down.append(TimeResBlock(c, channels * m, emb_dim, dropout, level in attn_levels))
                c = channels * m
                skips.append(c)
            if level < len(mults) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList(
            [TimeResBlock(c, c, emb_dim, dropout, bool(attention)), TimeResBlock(c, c, emb_dim, dropout)]
        )
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mults))):
            for _ in range(res_blocks + 1):
                self.up.append(TimeResBlock(c + skips.pop(), channels * m, emb_dim, dropout, level in attn_levels))
                c = channels * m
            if level > 0:
                self.up.append(
                    nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1))
                )
        self.tail = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x, level):
        emb = self.emb(sinusoidal(level, self.channels))
        h = self.head(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, TimeResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, TimeResBlock):
                h = layer(torch.cat([h, hs.pop()], 1), emb)
            else:
                h = layer(h)
        return self.tail(h)


# --- per-step noise of the ancestral sampler: a counter-based hash, the same in every tile ----------------
_M32 = 0xFFFFFFFF


def _mul32(a, c: int):
    """(a * c) mod 2^32 for a in [0, 2^32) (int64 tensor or int), split so that no product exceeds 2^49."""
    return (a * (c & 0xFFFF) + (((a * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _fmix32(h):
    """MurmurHash3's 32-bit finaliser: a bijective mix in which every input bit flips half the output bits."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def noise_key(noise: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) float noise planes -> (B, 1, H, W) int64 per-pixel keys from the float32 bits of planes 0 and 1."""
    bits = noise.float().contiguous().view(torch.int32).to(torch.int64) & _M32
    second = bits[:, 1:2] if noise.shape[1] > 1 else torch.zeros_like(bits[:, :1])
    return _fmix32(bits[:, :1] ^ _fmix32(second ^ 0x9E3779B9))


def hashed_normal(key: torch.Tensor, step: int) -> torch.Tensor:
    """Standard Gaussian per pixel for (key, step): Box-Muller of two hashed uniforms in (0, 1]; float32."""
    u = [(_fmix32(key ^ _fmix32((2 * int(step) + j + 1) & _M32)).to(torch.float32) + 0.5) * 2.0**-32 for j in (0, 1)]
    return torch.sqrt(-2.0 * torch.log(u[0].clamp(max=1.0))) * torch.cos(2.0 * math.pi * u[1])


@register("sr3")
class SR3(nn.Module):
    training = "diffusion"

    def __init__(
        self,
        scale: int,
        channels: int = 64,
        mults=(1, 2, 4, 8, 8),
        res_blocks: int = 2,
        attention: bool = True,
        attn_res=(16,),
        image_size: int = 128,
        dropout: float = 0.2,
        timesteps: int = 2000,
        beta_start: float = 1e-6,
        beta_end: float = 1e-2,
        sampler: str = "ancestral",
        sample_steps: int = 2000,
        in_channels: int = 1,
    ):
        super().__init__()
        self.scale = check_scale(scale, arch="sr3")
        if sampler not in SAMPLERS:
            raise InputError(f"sr3 `net:` sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if isinstance(sample_steps, bool) or not isinstance(sample_steps, int) or sample_steps < 1:
            raise InputError(f"sr3 `net:` sample_steps must be an integer >= 1, got {sample_steps!r}")
        # levels whose side is one of attn_res px when the input is image_size px (the reference's now_res)
        attn_levels = {lv for lv in range(len(mults)) if image_size / 2**lv in {float(r) for r in attn_res}}
        self.unet = UNet(in_channels, channels, list(mults), res_blocks, attention, attn_levels, dropout)
        self.attn_levels = sorted(attn_levels)
        self.multiple = 2 ** (len(mults) - 1)
        self.timesteps, self.sampler = int(timesteps), sampler
        self.sample_steps = min(int(sample_steps), self.timesteps)
        betas = np.linspace(beta_start, beta_end, self.timesteps, dtype=np.float64)  # the reference's "linear"
        self._alpha_bar = np.cumprod(1.0 - betas)  # float64, index t-1 = step t
        # derived from net settings, so not saved in the state dict
        self.register_buffer("alpha_bar", torch.tensor(self._alpha_bar, dtype=torch.float32), persistent=False)
        gammas = np.sqrt(np.append(1.0, self._alpha_bar))  # gamma_0 = 1, gamma_t = sqrt(alpha_bar_t)
        self.register_buffer("gammas", torch.tensor(gammas, dtype=torch.float32), persistent=False)
        # noise planes at HR resolution: x_T, plus the key plane of the ancestral per-step noise
        self.noise_channels, self.noise_factor = (2 if sampler == "ancestral" else 1), self.scale

    def condition(self, lr: torch.Tensor) -> torch.Tensor:
        return 2.0 * upsample_bicubic(lr, self.scale) - 1.0

    def _eps(self, cond, x_t, gamma):
        """U-Net on reflect-padded input (sides a multiple of 2^(levels-1)), cropped back."""
        h, w = x_t.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        inp = torch.cat([cond, x_t], 1)
        if ph or pw:
            inp = F.pad(inp, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        return self.unet(inp, gamma)[..., :h, :w]

    def noise_level(self, batch: int, device) -> torch.Tensor:
        """The training draw of gamma: one step t ~ U{1..T} for the batch, gamma ~ U(gamma_t, gamma_{t-1}) per image."""
        t = int(torch.randint(1, self.timesteps + 1, ()).item())
        g = self.gammas.to(device)
        return g[t] + (g[t - 1] - g[t]) * torch.rand(batch, device=device)

    def diffusion_pair(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training draw (reference p_losses): (predicted eps, true eps), RNG = torch's (seeded, checkpointed)."""
        x0 = 2.0 * hr - 1.0
        gamma = self.noise_level(hr.shape[0], hr.device)
        eps = torch.randn_like(x0)
        g = gamma.view(-1, 1, 1, 1)
        x_noisy = g * x0 + (1.0 - g * g).sqrt() * eps
        return self._eps(self.condition(lr), x_noisy, gamma), eps

    def step_schedule(self, steps: int | None = None) -> list[int]:
        """Descending 0-based training-step indices the samplers visit (evenly spaced, last one 0)."""
        n = min(max(int(steps or self.sample_steps), 1), self.timesteps)
        return sorted({int(round(v)) for v in np.linspace(self.timesteps - 1, 0, n)}, reverse=True)

    def sample(
        self,
        lr: torch.Tensor,
        noise: torch.Tensor | None = None,
        steps: int | None = None,
        sampler: str | None = None,
    ) -> torch.Tensor:
        """x0 in [-1, 1] from the noise planes (B, noise_channels, H, W) (None: drawn from the torch RNG)."""
        cond = self.condition(lr)
        if noise is None:
            noise = torch.randn(cond.shape[0], self.noise_channels, *cond.shape[-2:], device=cond.device)
        sampler = sampler or self.sampler
        x = noise[:, :1].to(cond.dtype)
        key = noise_key(noise) if sampler == "ancestral" else None
        seq = self.step_schedule(steps)
        ab = self._alpha_bar
        for i, t in enumerate(seq):
            a_t = float(ab[t])
            a_prev = float(ab[seq[i + 1]]) if i + 1 < len(seq) else 1.0
            level = torch.full((x.shape[0],), math.sqrt(a_t), device=x.device)
            eps = self._eps(cond, x, level).to(x.dtype)
            x0 = ((x - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)).clamp(-1.0, 1.0)
            if sampler == "ddim":
                eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1.0 - a_t)  # consistent with the clipped x0
                x = math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev) * eps
                continue
            beta = 1.0 - a_t / a_prev  # the (respaced) step's beta
            c0 = beta * math.sqrt(a_prev) / (1.0 - a_t)  # posterior mean coefficients
            ct = (1.0 - a_prev) * math.sqrt(1.0 - beta) / (1.0 - a_t)
            x = c0 * x0 + ct * x
            if i + 1 < len(seq):  # no noise at the last step (reference: t > 0)
                std = math.exp(0.5 * math.log(max(beta * (1.0 - a_prev) / (1.0 - a_t), 1e-20)))
                x = x + std * hashed_normal(key, t).to(x.dtype)
        return x

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return (self.sample(x, noise) + 1.0) / 2.0
