"""EMSR (Khateri, Ghahremani, Sierra, Tohka 2024, IEEE TCI), section II.C and III.B.

    y --3x3 conv--> X_SF --k basic blocks--> conv --(+ X_SF, long skip)--> pixel shuffle --> mapper --> x

Basic block (Fig. 3), with F its input features:
  * m residual blocks give G;
  * upper path: n residual blocks give the deep features U;
  * lower path: n residual blocks, then conv-ReLU-conv give an LR-space image estimate y_hat;
  * a-trous wavelet (B3-spline, `edge_scales` detail planes) edges of y and of y_hat are
    concatenated and filtered (3x3 conv), and an attention block (conv-ReLU-conv-sigmoid)
    turns them into a gate A; attention features U*A are added to U;
  * a ViT block with window multi-head self-attention (window 4, LayerNorm, MLP ratio 2, ReLU);
  * a final 3x3 conv. A residual connection around the block (as in SwinIR's RSTB) is our
    addition for stable training; the paper does not say.
Paper defaults: C=64, k=3, m=4, n=1, 16 heads, window 4, MLP ratio 2, 3 edge scales.
Choices the paper leaves open (documented here): the image estimate is predicted as a
residual over y, windows are not shifted (W-MSA only), no relative position bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from . import check_scale, register
from .common import PIXEL_SHUFFLE_HINT, PixelShuffleUpsampler, ResBlock, factor_2_3


def atrous_wavelet(img: torch.Tensor, n_scales: int = 3) -> torch.Tensor:
    """Detail planes w_j = c_{j-1} - c_j of the a-trous (starlet) transform, (B,1,H,W) -> (B,n,H,W).

    Hand-written (no torch/kornia equivalent): c_j is c_{j-1} smoothed by the separable
    B3-spline kernel [1, 4, 6, 4, 1] / 16 with 2^(j-1) - 1 holes between taps.
    Replicate padding keeps the size and works for images smaller than the kernel.
    """
    k = img.new_tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    c = img
    details = []
    for j in range(n_scales):
        d = 2**j
        s = F.pad(c, (2 * d, 2 * d, 0, 0), mode="replicate")
        s = F.conv2d(s, k.view(1, 1, 1, 5), dilation=(1, d))
        s = F.pad(s, (0, 0, 2 * d, 2 * d), mode="replicate")
        s = F.conv2d(s, k.view(1, 1, 5, 1), dilation=(d, 1))
        details.append(c - s)
        c = s
    return torch.cat(details, dim=1)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping window x window patches (Swin's W-MSA)."""

    def __init__(self, channels: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, W, C), H and W multiples of window
        b, h, w, c = x.shape
        m = self.window
        win = x.view(b, h // m, m, w // m, m, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, m * m, c)
        qkv = self.qkv(win).view(win.shape[0], m * m, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # softmax(QK^T / sqrt(d_k)) V
        out = self.proj(out.transpose(1, 2).reshape(-1, m * m, c))
        return out.view(b, h // m, w // m, m, m, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class ViTBlock(nn.Module):
    """X' = W-MSA(LN(X)) + X ; X'' = FFN(LN(X')) + X'  (eq. 12)."""

    def __init__(self, channels: int, heads: int, window: int, mlp_ratio: float):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(channels)
        self.attn = WindowAttention(channels, heads, window)
        self.norm2 = nn.LayerNorm(channels)
        hidden = round(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        h, w = x.shape[-2:]
        m = self.window
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:  # pad to whole windows, crop afterwards
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        t = x.permute(0, 2, 3, 1)
        t = t + self.attn(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2)[..., :h, :w]


class BasicBlock(nn.Module):
    def __init__(
        self, channels: int, n_res: int, n_path: int, heads: int, window: int, mlp_ratio: float, edge_scales: int
    ):
        super().__init__()
        self.edge_scales = edge_scales
        self.res = nn.Sequential(*[ResBlock(channels) for _ in range(n_res)])
        self.upper = nn.Sequential(*[ResBlock(channels) for _ in range(n_path)])
        self.lower = nn.Sequential(
            *[ResBlock(channels) for _ in range(n_path)],
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 1, 3, padding=1),
        )
        self.edge_filter = nn.Conv2d(2 * edge_scales, channels, 3, padding=1)
        self.attention = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.Sigmoid(),
        )
        self.vit = ViTBlock(channels, heads, window, mlp_ratio)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = self.res(f)
        u = self.upper(g)
        y_hat = y + self.lower(g)  # LR-space image estimate
        edges = torch.cat([atrous_wavelet(y, self.edge_scales), atrous_wavelet(y_hat, self.edge_scales)], dim=1)
        gate = self.attention(self.edge_filter(edges))
        x = u + u * gate  # edge-attention features added to the upper path
        return f + self.conv(self.vit(x))


@register("emsr")
class EMSR(nn.Module):
    def __init__(
        self,
        scale: int,
        channels: int = 64,
        n_basic: int = 3,
        n_res: int = 4,
        n_path: int = 1,
        heads: int = 16,
        window: int = 4,
        mlp_ratio: float = 2.0,
        edge_scales: int = 3,
    ):
        super().__init__()
        self.scale = check_scale(scale, lambda s: factor_2_3(s) is not None, "emsr", PIXEL_SHUFFLE_HINT)
        if channels % heads:
            raise InputError(
                f"emsr `net:` channels={channels} is not divisible by heads={heads}; make channels a multiple of heads"
            )
        self.head = nn.Conv2d(1, channels, 3, padding=1)  # shallow feature extractor H_FE
        self.blocks = nn.ModuleList(
            BasicBlock(channels, n_res, n_path, heads, window, mlp_ratio, edge_scales) for _ in range(n_basic)
        )
        self.body_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsample = PixelShuffleUpsampler(channels, self.scale)
        self.mapper = nn.Sequential(  # reconstruction "mapper: convolution, ReLU"
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 1, 3, padding=1),
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x_sf = self.head(y - 0.5)
        f = x_sf
        for block in self.blocks:
            f = block(f, y)
        x_ea = self.body_conv(f)
        return self.mapper(self.upsample(x_ea + x_sf)) + 0.5  # long skip (eq. 15)
