"""EDT (Li et al. 2021/2023, "On Efficient Transformer-Based Image Pre-training for Low-Level Vision"), SR branch.

Reference: github.com/fenglinglwb/EDT, utils/modules/edt.py (`Network` with one SR scale,
`SwinBody`, `RSTB`, `BasicLayer`, `CSwinTransformerBlock`, `WindowAttention`, `Mlp`,
`ResBlockDown`, `ResBlockSkip`, `ResBlockUp`, `Upsample`); EDT-B = configs/SRx{2,3,4}_EDTB_*.py.
Module names are the reference's (`head_sr_x{scale}`, `body.layers.{i}.residual_group.blocks.{j}`,
`tail_sr_x{scale}`), so a published EDT state dict loads by name with `init:` (its RGB first and
last convs are folded to grey by srseg.training.weights.adapt_channels).

    x --conv--> ResBlockDown x head_depth (skips) --conv--> F
      --SwinBody: LN, [RSTB = CSwin blocks + skip] x len(depths), LN, conv, + F-->
      ResBlockSkip x head_depth (with the skips) --pixel shuffle--> conv --(+ bilinear(x))--> SR

Encoder / decoder: conv3x3(1 -> num_feat), `head_depth` ResBlockDown (conv3x3-LReLU-conv3x3-LReLU
+ 1x1 shortcut, 32 -> 64 -> 128 at EDT-B; no downsampling for SR), conv3x3 -> embed_dim; the
decoder mirrors it with ResBlockSkip (conv3x3, concat the encoder skip, ResBlockUp), then one
conv + PixelShuffle per x2 / x3 stage and a conv to one channel added to the bilinear upsampled LR.
CSwin block (shifted crossed local attention): X' = X + proj([A_h, A_v]), X'' = X' + ConvFFN(LN(X'));
qkv = Linear(LN(X)); the first half of the channels attends in wh x ww windows, the second half
in ww x wh windows, each with `heads` heads over embed_dim / 2 channels; every second block
shifts the windows by half a window (cyclic roll, masked). No relative position bias: the
position information is LePE, a depthwise 3x3 conv on V inside each window added to the
attention output (softmax(QK^T / sqrt(d)) V + DWConv(V)). ConvFFN: Linear, GELU, depthwise
5x5 conv, GELU, Linear.

EDT-B (the defaults; configs SRx2/3/4_EDTB): embed 180, 6 RSTBs of 6 blocks, 6 heads, window
(6, 24), MLP ratio 2, num_feat 32, head_depth 2. Parameters with grey in/out: 11,477,625 at x2,
11,662,265 at x3, 11,625,337 at x4, the reference Network's counts with IN_CHANNEL = 1 (RGB:
11,479,355 / 11,663,995 / 11,627,067; the EDT paper lists EDT-B as 11.5 M).
Inputs are mirror-padded to a multiple of lcm(wh, ww) (the reference's test code pads with
flipped copies) and the output cropped. Grey input: the reference's RGB mean subtraction is
zero and the image range 1. `context: k` (2.5D) feeds 2k+1 sections to the first conv; the
bilinear residual is the centre section's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from . import check_scale, register
from .common import PIXEL_SHUFFLE_HINT, PixelShuffleUpsampler, factor_2_3, symmetric_pad
from .swinir_arch import _window_hw, from_windows, shift_mask, to_windows


class ResBlockDown(nn.Module):
    """act(conv_2(act(conv_1(x)))) + shortcut(x), LeakyReLU(0.2), 3x3 convs and a 1x1 shortcut (down=False)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_1 = nn.Conv2d(c_in, c_in, 3, padding=1)
        self.conv_2 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        return F.leaky_relu(self.conv_2(F.leaky_relu(self.conv_1(x), 0.2)), 0.2) + self.shortcut(x)


class ResBlockUp(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv_2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        return F.leaky_relu(self.conv_2(F.leaky_relu(self.conv_1(x), 0.2)), 0.2) + self.shortcut(x)


class ResBlockSkip(nn.Module):
    """conv(x), concatenated with the encoder skip, through ResBlockUp."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.block = ResBlockUp(2 * c_out, c_out)

    def forward(self, x, skip):
        return self.block(torch.cat([self.conv(x), skip], dim=1))


class LePEAttention(nn.Module):
    """Window attention of one half of the channels with LePE: softmax(QK^T / sqrt(d)) V + DWConv3x3(V), per window."""

    def __init__(self, dim: int, heads: int, wh: int, ww: int):
        super().__init__()
        self.heads, self.wh, self.ww = heads, wh, ww
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)  # locally-enhanced positional encoding

    def forward(self, q, k, v, mask: torch.Tensor | None) -> torch.Tensor:
        """q, k, v: (B, H, W, C) (already rolled when shifted) -> (B, H, W, C)."""
        b, h, w, c = v.shape
        wh, ww, n, d = self.wh, self.ww, self.wh * self.ww, c // self.heads

        def heads(t):  # (B, nW, N, C) -> (B, nW, heads, N, d)
            return to_windows(t, wh, ww).unflatten(-1, (self.heads, d)).transpose(2, 3)

        vw = to_windows(v, wh, ww)  # (B, nW, N, C)
        img = vw.reshape(-1, wh, ww, c).permute(0, 3, 1, 2)  # each window as an image, zero-padded by the conv
        lepe = self.lepe(img).permute(0, 2, 3, 1).reshape(b, -1, n, self.heads, d).transpose(2, 3)
        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask) + lepe
        return from_windows(out.transpose(2, 3).flatten(-2), h, w, wh, ww)


class CSwinBlock(nn.Module):
    """EDT's CSwinTransformerBlock: shifted crossed window attention with LePE, then ConvFFN."""

    def __init__(self, dim: int, heads: int, window: tuple[int, int], shifted: bool, mlp_ratio: float):
        super().__init__()
        wh, ww = window
        self.window, self.shifted = (wh, ww), shifted
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        # index 0: wh x ww windows on the first dim/2 channels; index 1: ww x wh on the rest
        self.attns = nn.ModuleList([LePEAttention(dim // 2, heads, wh, ww), LePEAttention(dim // 2, heads, ww, wh)])
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C), H and W multiples of lcm(wh, ww)
        _, h, w, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        parts = []
        for i, attn in enumerate(self.attns):
            half = slice(0, c // 2) if i == 0 else slice(c // 2, c)
            qq, kk, vv = q[..., half], k[..., half], v[..., half]
            sh, sw = (attn.wh // 2, attn.ww // 2) if self.shifted else (0, 0)
            mask = None
            if sh or sw:
                qq, kk, vv = (torch.roll(t, (-sh, -sw), dims=(1, 2)) for t in (qq, kk, vv))
                mask = shift_mask(h, w, attn.wh, attn.ww, sh, sw, x.device)[:, None].to(qq.dtype)
            out = attn(qq, kk, vv, mask)
            parts.append(torch.roll(out, (sh, sw), dims=(1, 2)) if sh or sw else out)
        x = x + self.proj(torch.cat(parts, dim=-1))
        return x + self.mlp(self.norm2(x))


class ConvFFN(nn.Module):
    """EDT's Mlp: fc1, GELU, depthwise 5x5 conv, GELU, fc2 (on (B, H, W, C))."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        x = F.gelu(self.fc1(x))
        x = F.gelu(self.dwconv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        return self.fc2(x)


class RSTB(nn.Module):
    """EDT's residual group: `depth` CSwin blocks (odd ones shifted) plus a skip; no conv (unlike SwinIR's)."""

    def __init__(self, dim, depth, heads, window, mlp_ratio):
        super().__init__()
        self.residual_group = nn.Module()
        self.residual_group.blocks = nn.ModuleList(
            CSwinBlock(dim, heads, window, i % 2 == 1, mlp_ratio) for i in range(depth)
        )

    def forward(self, x):
        t = x
        for block in self.residual_group.blocks:
            t = block(t)
        return x + t


class SwinBody(nn.Module):
    """LayerNorm (patch_embed.norm), the RSTBs, LayerNorm, conv_after_body, plus the body's input."""

    def __init__(self, dim, depths, heads, window, mlp_ratio):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(RSTB(dim, int(d), heads, window, mlp_ratio) for d in depths)
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, padding=1)
        self.apply(_init_weights)

    def forward(self, x):  # (B, C, H, W)
        t = self.patch_embed.norm(x.permute(0, 2, 3, 1))
        for layer in self.layers:
            t = layer(t)
        return self.conv_after_body(self.norm(t).permute(0, 3, 1, 2)) + x


def _init_weights(m):
    """The reference SwinBody's init: Linear trunc-normal std 0.02 and zero bias; LayerNorm 1 / 0."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


@register("edt")
class EDT(nn.Module):
    def __init__(
        self,
        scale: int,
        embed_dim: int = 180,
        depths=(6, 6, 6, 6, 6, 6),
        heads: int = 6,
        window=(6, 24),
        mlp_ratio: float = 2.0,
        num_feat: int = 32,
        head_depth: int = 2,
        in_channels: int = 1,
    ):
        super().__init__()
        self.scale = check_scale(scale, lambda s: factor_2_3(s) is not None, "edt", PIXEL_SHUFFLE_HINT)
        wh, ww = _window_hw(window)
        if embed_dim % 2 or (embed_dim // 2) % heads:
            raise InputError(
                f"edt `net:` embed_dim={embed_dim}: each half of the channels has {heads} heads, so embed_dim / 2 "
                f"must be divisible by heads; use e.g. embed_dim={2 * heads * max(1, embed_dim // (2 * heads))}"
            )
        self.window = (wh, ww)
        self.pad_to = math.lcm(wh, ww)  # wh x ww and ww x wh windows both tile the padded input
        head = [nn.Conv2d(in_channels, num_feat, 3, padding=1)]
        head += [ResBlockDown(num_feat * 2**i, num_feat * 2 ** (i + 1)) for i in range(head_depth)]
        head.append(nn.Conv2d(num_feat * 2**head_depth, embed_dim, 3, padding=1))
        self.body = SwinBody(embed_dim, depths, heads, (wh, ww), mlp_ratio)
        tail: list[nn.Module] = []
        out = embed_dim
        for i in reversed(range(head_depth)):
            c_in, out = (embed_dim if i == head_depth - 1 else num_feat * 2 ** (i + 2)), num_feat * 2 ** (i + 1)
            tail.append(ResBlockSkip(c_in, out))
        tail += [PixelShuffleUpsampler(out, self.scale), nn.Conv2d(out, 1, 3, padding=1)]
        self.head_name, self.tail_name = f"head_sr_x{self.scale}", f"tail_sr_x{self.scale}"
        setattr(self, self.head_name, nn.ModuleList(head))
        setattr(self, self.tail_name, nn.ModuleList(tail))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = symmetric_pad(x, (-h) % self.pad_to, (-w) % self.pad_to)
        centre = x[:, x.shape[1] // 2 : x.shape[1] // 2 + 1]
        head, tail = getattr(self, self.head_name), getattr(self, self.tail_name)
        f, skips = x, []
        for j, layer in enumerate(head):
            f = layer(f)
            if 0 < j < len(head) - 1:
                skips.append(f)
        f = self.body(f)
        for j, layer in enumerate(tail[:-2]):
            f = layer(f, skips[-j - 1])
        up = F.interpolate(centre, scale_factor=self.scale, mode="bilinear", align_corners=False)
        out = up + tail[-1](tail[-2](f))
        return out[..., : h * self.scale, : w * self.scale]
