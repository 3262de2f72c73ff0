"""SwinIR (Liang et al. 2021) for SR.

    x --conv--> F0 --[RSTB] x G--> LayerNorm --> conv --(+ F0)--> conv-LeakyReLU (64 ch) --> pixel shuffle --> conv

A residual Swin transformer block (RSTB) is `depth` Swin layers and a 3x3 conv, with a
skip around it. A Swin layer is  X' = X + W-MSA(LN(X)),  X'' = X' + MLP(LN(X'))  (GELU);
every second layer shifts the windows by half a window (cyclic roll + attention mask,
as in Swin) so information crosses window borders. Attention inside a window adds a
learned relative position bias.

Windows may be rectangular: `window: [6, 24]`. `crossed: true` splits the heads in two
halves, one attending in wh x ww windows and the other in ww x wh windows (EDT's window
layout on a SwinIR body, with SwinIR's position bias and MLP). It is not EDT: EDT itself
(LePE, convolutional feed-forward, its conv encoder / decoder) is arch `edt`, edt_arch.py.

The LR input is padded (replicate) to a multiple of every window side and the output
cropped, so any LR size works. Defaults follow lightweight SwinIR (embed 60, 4 RSTBs of
6 layers, 6 heads, window 8, MLP ratio 2); classical SwinIR is embed 180, 6 x 6 layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from . import check_scale, register
from .common import PIXEL_SHUFFLE_HINT, PixelShuffleUpsampler, factor_2_3


def _window_hw(window) -> tuple[int, int]:
    if isinstance(window, int) and not isinstance(window, bool):
        window = [window, window]
    if (
        not isinstance(window, (list, tuple))
        or len(window) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in window)
    ):
        raise InputError(f"swinir `net:` window must be a positive integer or [height, width], got {window!r}")
    return int(window[0]), int(window[1])


def relative_position_index(wh: int, ww: int) -> torch.Tensor:
    """(N, N) index into a (2wh-1)(2ww-1) bias table for every pair of positions in a wh x ww window."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)


def to_windows(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, wh*ww, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // wh) * (w // ww), wh * ww, c)


def from_windows(x: torch.Tensor, h: int, w: int, wh: int, ww: int) -> torch.Tensor:
    b, _, _, c = x.shape
    x = x.view(b, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shift_mask(h: int, w: int, wh: int, ww: int, sh: int, sw: int, device) -> torch.Tensor:
    """(nW, N, N) additive mask: -inf between positions that the cyclic shift brought from different image regions."""

    def bands(win, shift):  # Swin's three bands along an axis; one band when that axis is not shifted
        return (slice(0, -win), slice(-win, -shift), slice(-shift, None)) if shift else (slice(None),)

    region = torch.zeros(1, h, w, 1, device=device)
    n = 0
    for ys in bands(wh, sh):
        for xs in bands(ww, sw):
            region[:, ys, xs] = n
            n += 1
    r = to_windows(region, wh, ww).squeeze(-1)[0]  # (nW, N)
    same = r[:, :, None] == r[:, None, :]
    return torch.zeros(same.shape, device=device).masked_fill(~same, float("-inf"))


class WindowGroup(nn.Module):
    """Heads that attend inside one window shape, with a relative position bias per head."""

    def __init__(self, heads: int, wh: int, ww: int):
        super().__init__()
        self.heads, self.wh, self.ww = heads, wh, ww
        self.bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("index", relative_position_index(wh, ww), persistent=False)

    def forward(self, q, k, v, shifted: bool) -> torch.Tensor:
        """q, k, v: (B, H, W, C_group) -> attended (B, H, W, C_group)."""
        _, h, w, c = q.shape
        wh, ww = self.wh, self.ww
        sh, sw = (wh // 2, ww // 2) if shifted else (0, 0)
        # shift only along axes with more than one window (Swin: no shift when the window covers the image)
        sh, sw = (sh if h > wh else 0), (sw if w > ww else 0)
        if sh or sw:
            q, k, v = (torch.roll(t, (-sh, -sw), dims=(1, 2)) for t in (q, k, v))
        d = c // self.heads

        def heads(t):  # (B, nW, N, C) -> (B, nW, heads, N, d)
            return to_windows(t, wh, ww).unflatten(-1, (self.heads, d)).transpose(2, 3)

        n = wh * ww
        bias = self.bias_table[self.index.reshape(-1)].view(n, n, self.heads).permute(2, 0, 1)  # (heads, N, N)
        mask = bias[None]
        if sh or sw:
            mask = mask + shift_mask(h, w, wh, ww, sh, sw, q.device)[:, None]
        mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(
            heads(q), heads(k), heads(v), attn_mask=mask
        )  # softmax(QK^T/sqrt(d) + B) V
        out = from_windows(out.transpose(2, 3).flatten(-2), h, w, wh, ww)
        if sh or sw:
            out = torch.roll(out, (sh, sw), dims=(1, 2))
        return out


class SwinLayer(nn.Module):
    def __init__(self, dim: int, heads: int, window: tuple[int, int], crossed: bool, shifted: bool, mlp_ratio: float):
        super().__init__()
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        wh, ww = window
        if crossed:  # EDT: half the heads in wh x ww windows, half in ww x wh
            self.groups = nn.ModuleList([WindowGroup(heads // 2, wh, ww), WindowGroup(heads - heads // 2, ww, wh)])
            d = dim // heads
            self.split = [d * (heads // 2), dim - d * (heads // 2)]
        else:
            self.groups = nn.ModuleList([WindowGroup(heads, wh, ww)])
            self.split = [dim]
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = round(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        parts = [
            g(qq, kk, vv, self.shifted)
            for g, qq, kk, vv in zip(
                self.groups, q.split(self.split, -1), k.split(self.split, -1), v.split(self.split, -1)
            )
        ]
        x = x + self.proj(torch.cat(parts, dim=-1))
        return x + self.mlp(self.norm2(x))


class RSTB(nn.Module):
    def __init__(self, dim, depth, heads, window, crossed, mlp_ratio):
        super().__init__()
        self.layers = nn.ModuleList(SwinLayer(dim, heads, window, crossed, i % 2 == 1, mlp_ratio) for i in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        t = x.permute(0, 2, 3, 1)
        for layer in self.layers:
            t = layer(t)
        return x + self.conv(t.permute(0, 3, 1, 2))


@register("swinir")
class SwinIR(nn.Module):
    def __init__(
        self,
        scale: int,
        embed_dim: int = 60,
        depths=(6, 6, 6, 6),
        heads: int = 6,
        window=8,
        crossed: bool = False,
        mlp_ratio: float = 2.0,
        upsample_feats: int = 64,
        in_channels: int = 1,
    ):
        super().__init__()
        name = self.arch_name
        self.scale = check_scale(scale, lambda s: factor_2_3(s) is not None, name, PIXEL_SHUFFLE_HINT)
        wh, ww = _window_hw(window)
        if embed_dim % heads:
            raise InputError(
                f"{name} `net:` embed_dim={embed_dim} is not divisible by heads={heads};"
                " make embed_dim a multiple of heads"
            )
        if crossed and heads < 2:
            raise InputError(f"{name} `net:` crossed windows split the heads in two; use heads >= 2 (got {heads})")
        self.window = (wh, ww)
        # pad to a multiple of both sides when crossed (ww x wh windows are used too)
        self.pad_to = (math.lcm(wh, ww),) * 2 if crossed else (wh, ww)
        self.head = nn.Conv2d(in_channels, embed_dim, 3, padding=1)
        self.body = nn.ModuleList(RSTB(embed_dim, int(d), heads, (wh, ww), bool(crossed), mlp_ratio) for d in depths)
        self.norm = nn.LayerNorm(embed_dim)
        self.body_conv = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        # SwinIR's "pixelshuffle" reconstruction: embed_dim -> 64 features before upsampling
        self.before_up = nn.Sequential(
            nn.Conv2d(embed_dim, upsample_feats, 3, padding=1), nn.LeakyReLU(0.01, inplace=True)
        )
        self.upsample = PixelShuffleUpsampler(upsample_feats, self.scale)
        self.tail = nn.Conv2d(upsample_feats, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.pad_to[0], (-w) % self.pad_to[1]
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")  # replicate: reflect fails on inputs smaller than the pad
        f = self.head(x - 0.5)
        t = f
        for block in self.body:
            t = block(t)
        t = self.body_conv(self.norm(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        out = self.tail(self.upsample(self.before_up(f + t))) + 0.5
        return out[..., : h * self.scale, : w * self.scale]
