"""EMSR (Khateri, Ghahremani, Sierra, Tohka 2024, IEEE TCI), as the authors' code builds it.

Reference: github.com/mkhateri/EMSR, model/models.py (`SRNET`, `BasicBlock`, `AttentionBranch`,
`Residual_block`, `ViTBlock`, `edge_extractor`) with configs/config_train.py; module names
here are the reference's, so its state-dict keys map one to one.

    y --conv_1--> X_SF --k BasicBlocks--> (+ X_SF, long skip) --pixel shuffle--> conv_4 --> x

BasicBlock(x, E_y), E_y = a-trous edges of the LR input y (computed once per forward):
  * stageI: m residual blocks (conv-ReLU-conv, short skip);
  * LR image estimate y_hat = conv_2(ReLU(conv_1(x))) (one channel);
  * edge features e = conv_3([E_y, edges(y_hat)]) (2 x edge_scales planes -> C);
  * n rounds of: c = RB_coarse(x); e = RB_fine(e); a = AttentionBranch(e); x = c + a * c
    (the edge features run their own residual path from round to round);
  * ViT block (W-MSA + FFN, eq. 12), then conv_4. No skip around the block.
AttentionBranch(e) = k4(k3(e) * sigmoid(k2(LeakyReLU_0.2(k1(e))))): k1, k3, k4 3x3 and k2 1x1.
Every conv has no bias except k2 (as the reference). Edges (`edge_extractor`): a pre-smoothing
by [0.002566, 0.1655, 0.6638, 0.1655, 0.002566], then `edge_scales` a-trous B3-spline levels
([1, 4, 6, 4, 1] / 16 with 2^(j-1) - 1 holes), detail planes c_{j-1} - c_j.
ViT: LayerNorm, window MHSA (no qkv bias, no position bias, no shift), LayerNorm, MLP with ReLU.

Paper size (section III.B; reference config): C = 64, k = 3 basic blocks, m = 4, 16 heads,
window 4, MLP ratio 2, 3 edge scales, and n = 2 rounds (`n_blocks_stage2=2` in SRNET; the paper's
text says n = 1, but only n = 2 gives its 3.2 M parameters). Parameters at x3, grey in/out:
ours 3,124,032; the reference 3,164,992 (3,196,096 with RGB in/out); the paper "3.2 M". The
reference's extra 40,960 belong to layers whose output is never used (each block's conv_5
and ViT spatialConv, SRNET's conv_2 and conv_before_upsample); they are not built here.

Deviations, each for a stated reason:
* scales: the reference upsamples x2 or x3 with one conv + pixel shuffle (its x4 branch
  feeds 128 channels into a 64-channel conv and cannot run); here every product of 2 and 3,
  one bias-free conv(C -> s^2 C) + PixelShuffle(s) per stage (x4 = two x2 stages).
* `edge_pad: replicate` (default) pads the edge filters by replication; the reference's
  zero padding (`edge_pad: zeros`) turns every image and tile border into a strong edge,
  which tiled inference would see at each tile seam. Interior values are the same.
* windows: a feature map that is not a multiple of the window is replicate-padded and
  cropped; the reference resizes it (nearest) to a multiple and back.
Main-input noise augmentation and the noisier branch are in the loss (srseg.losses.EMSRLoss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from . import check_scale, register
from .common import PIXEL_SHUFFLE_HINT, PixelShuffleUpsampler, factor_2_3

#: the reference's pre-smoothing kernel (edge_extractor, level 1), normalised to sum 1
PRE_SMOOTH = (0.002566, 0.1655, 0.6638, 0.1655, 0.002566)
B3_SPLINE = (1.0, 4.0, 6.0, 4.0, 1.0)


def _smooth(img: torch.Tensor, taps, dilation: int, pad: str) -> torch.Tensor:
    """Separable 5-tap filter with `dilation` (2^(j-1) - 1 holes), same size; pad 'replicate' or 'zeros'."""
    k = img.new_tensor(taps)
    k = k / k.sum()
    r = 2 * dilation
    if pad == "zeros":
        s = F.conv2d(img, k.view(1, 1, 1, 5), dilation=(1, dilation), padding=(0, r))
        return F.conv2d(s, k.view(1, 1, 5, 1), dilation=(dilation, 1), padding=(r, 0))
    s = F.conv2d(F.pad(img, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, 5), dilation=(1, dilation))
    return F.conv2d(F.pad(s, (0, 0, r, r), mode="replicate"), k.view(1, 1, 5, 1), dilation=(dilation, 1))


def atrous_wavelet(img: torch.Tensor, n_scales: int = 3, pad: str = "replicate") -> torch.Tensor:
    """Detail planes of the a-trous (starlet) transform as EMSR's edge_extractor: (B,1,H,W) -> (B,n,H,W).

    c_0 = img pre-smoothed by PRE_SMOOTH; c_j = c_{j-1} smoothed by the B3 spline with 2^(j-1) - 1
    holes; the planes are w_j = c_{j-1} - c_j, j = 1..n. Hand-written (no torch/kornia
    equivalent); the reference's 2D kernels are outer products of these 1D ones (separable).
    """
    c = _smooth(img, PRE_SMOOTH, 1, pad)
    details = []
    for j in range(n_scales):
        s = _smooth(c, B3_SPLINE, 2**j, pad)
        details.append(c - s)
        c = s
    return torch.cat(details, dim=1)


class ResidualBlock(nn.Module):
    """Residual_block: x + conv2(ReLU(conv1(x))), 3x3 convs without bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class AttentionBranch(nn.Module):
    """k4(k3(e) * sigmoid(k2(LeakyReLU_0.2(k1(e))))): the pixel-attention branch on the edge features."""

    def __init__(self, channels: int):
        super().__init__()
        self.k1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.k2 = nn.Conv2d(channels, channels, 1)
        self.k3 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.k4 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.k2(F.leaky_relu(self.k1(e), 0.2)))
        return self.k4(self.k3(e) * gate)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping window x window patches (W-MSA, no qkv bias)."""

    def __init__(self, channels: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
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
    """X' = W-MSA(LN(X)) + X ; X'' = FFN(LN(X')) + X'  (eq. 12); FFN = Linear-ReLU-Linear."""

    def __init__(self, channels: int, heads: int, window: int, mlp_ratio: float):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(channels)
        self.attn = WindowAttention(channels, heads, window)
        self.norm2 = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        # named as the reference's MLP: mlp.net = (Linear, act, Dropout(0), Linear, Dropout(0))
        self.mlp = nn.Module()
        self.mlp.net = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Identity(), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        h, w = x.shape[-2:]
        m = self.window
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:  # pad to whole windows, crop afterwards
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        t = x.permute(0, 2, 3, 1)
        t = t + self.attn(self.norm1(t))
        t = t + self.mlp.net(self.norm2(t))
        return t.permute(0, 3, 1, 2)[..., :h, :w]


class BasicBlock(nn.Module):
    def __init__(
        self,
        channels: int,
        n_res: int,
        n_path: int,
        heads: int,
        window: int,
        mlp_ratio: float,
        edge_scales: int,
        edge_pad: str,
    ):
        super().__init__()
        self.edge_scales, self.edge_pad = edge_scales, edge_pad
        self.stageI = nn.Sequential(*[ResidualBlock(channels) for _ in range(n_res)])
        self.conv_1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)  # LR image estimate
        self.conv_2 = nn.Conv2d(channels, 1, 3, padding=1, bias=False)
        self.conv_3 = nn.Conv2d(2 * edge_scales, channels, 3, padding=1, bias=False)  # edge features
        self.stageII_coarse = nn.Sequential(*[ResidualBlock(channels) for _ in range(n_path)])
        self.stageII_fine = nn.Sequential(*[ResidualBlock(channels) for _ in range(n_path)])
        self.stageII_att = nn.Sequential(*[AttentionBranch(channels) for _ in range(n_path)])
        self.att = ViTBlock(channels, heads, window, mlp_ratio)
        self.conv_4 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, edges_y: torch.Tensor) -> torch.Tensor:
        x = self.stageI(x)
        y_hat = self.conv_2(F.relu(self.conv_1(x)))
        e = self.conv_3(torch.cat([edges_y, atrous_wavelet(y_hat, self.edge_scales, self.edge_pad)], dim=1))
        for coarse, fine, attention in zip(self.stageII_coarse, self.stageII_fine, self.stageII_att):
            c = coarse(x)
            e = fine(e)
            x = c + attention(e) * c
        return self.conv_4(self.att(x))


@register("emsr")
class EMSR(nn.Module):
    def __init__(
        self,
        scale: int,
        channels: int = 64,
        n_basic: int = 3,
        n_res: int = 4,
        n_path: int = 2,
        heads: int = 16,
        window: int = 4,
        mlp_ratio: float = 2.0,
        edge_scales: int = 3,
        edge_pad: str = "replicate",
    ):
        super().__init__()
        self.scale = check_scale(scale, lambda s: factor_2_3(s) is not None, "emsr", PIXEL_SHUFFLE_HINT)
        if channels % heads:
            raise InputError(
                f"emsr `net:` channels={channels} is not divisible by heads={heads}; make channels a multiple of heads"
            )
        if edge_pad not in ("replicate", "zeros"):
            raise InputError(f"emsr `net:` edge_pad must be 'replicate' or 'zeros' (the reference's), got {edge_pad!r}")
        self.edge_scales, self.edge_pad = int(edge_scales), edge_pad
        self.conv_1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)  # shallow feature extractor H_FE
        self.BasicBlocks = nn.ModuleList(
            BasicBlock(channels, n_res, n_path, heads, window, mlp_ratio, self.edge_scales, edge_pad)
            for _ in range(n_basic)
        )
        self.upsample_shuffle = PixelShuffleUpsampler(channels, self.scale, bias=False)
        self.conv_4 = nn.Conv2d(channels, 1, 3, padding=1, bias=False)  # the mapper

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x_sf = self.conv_1(y)
        edges_y = atrous_wavelet(y, self.edge_scales, self.edge_pad)
        x = x_sf
        for block in self.BasicBlocks:
            x = block(x, edges_y)
        return self.conv_4(self.upsample_shuffle(x + x_sf))  # long skip (eq. 15)
