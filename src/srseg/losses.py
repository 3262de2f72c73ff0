"""Training losses, registered by name and combined from the model's `loss:` config.

A loss spec maps registered names to weights, e.g. ``{l1: 1}``, ``{mse: 1, gloss: 0.5}``;
``emsr`` takes a dict instead of a weight:

    loss: {emsr: {l1: 1, lambdas: [1, 1, 1], noise_sigma: 5}}

where the keys other than ``lambdas`` / ``noise_sigma`` are the pixel loss l_p of the
three terms (``l1: 1`` or ``mse: 1`` as in the EMSR paper; any registered pixel loss).
``build_loss(spec)`` returns a `CompositeLoss`; calling it as ``loss(model, lr, hr)``
runs the model once and returns (total, {term name: value}).

Pixel losses are means over pixels (not sums), so weights do not depend on patch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .io import InputError

#: loss name -> class; pixel losses take (pred, target), model-aware ones also (model, lr)
LOSSES: dict[str, type] = {}


def register_loss(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.loss_name = name
        LOSSES[name] = cls
        return cls

    return deco


class PixelLoss(nn.Module):
    """A loss between a prediction and its target (both (B, 1, H, W))."""

    needs_model = False

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@register_loss("l1")
class L1Loss(PixelLoss):
    def forward(self, pred, target):
        return F.l1_loss(pred, target)


@register_loss("mse")
class MSELoss(PixelLoss):
    def forward(self, pred, target):
        return F.mse_loss(pred, target)


@register_loss("charbonnier")
class CharbonnierLoss(PixelLoss):
    """mean(sqrt(d^2 + eps^2)): a differentiable L1 (Lai et al. 2017, LapSRN)."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, pred, target):
        return torch.sqrt((pred - target) ** 2 + self.eps**2).mean()


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    """1D Gaussian of radius int(truncate*sigma + 0.5): 11 taps for sigma 1.5, as skimage's SSIM."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) with a Gaussian window, over valid window positions.

    Matches skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...) which also drops the border.
    """
    g = gaussian_window(sigma).to(pred.device, torch.float32)
    n = g.numel()
    if min(pred.shape[-2:]) < n:
        raise InputError(f"SSIM loss needs patches of at least {n} x {n} HR pixels; raise `patch` or drop the ssim loss")

    def blur(x):  # separable valid convolution
        x = F.conv2d(x, g.view(1, 1, 1, n))
        return F.conv2d(x, g.view(1, 1, n, 1))

    pred, target = pred.float(), target.float()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(pred), blur(target)
    vx = blur(pred * pred) - mx * mx
    vy = blur(target * target) - my * my
    cxy = blur(pred * target) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean()


@register_loss("ssim")
class SSIMLoss(PixelLoss):
    """1 - SSIM (Gaussian window sigma 1.5, data range 1)."""

    def forward(self, pred, target):
        return 1.0 - ssim(pred, target)


def neighbour_differences(x: torch.Tensor) -> torch.Tensor:
    """The eight 3x3 kernels x(p) - x(p + d), d over the 8 neighbours: (B,1,H,W) -> (B,8,H-2,W-2)."""
    k = torch.zeros(8, 1, 3, 3, dtype=x.dtype, device=x.device)
    offsets = [(i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)]
    for n, (i, j) in enumerate(offsets):
        k[n, 0, 1, 1] = 1.0
        k[n, 0, i, j] = -1.0
    return F.conv2d(x, k)


@register_loss("gloss")
class GradientLoss(PixelLoss):
    """G-Loss (Ge & Dou 2023, as used by Trobäck et al. 2025): mean |G_k(pred) - G_k(target)|
    over the eight neighbour-difference maps G_k. It ignores a constant intensity offset, so
    combine it with a pixel loss (e.g. {mse: 1, gloss: 1}) unless fine-tuning."""

    def forward(self, pred, target):
        return (neighbour_differences(pred) - neighbour_differences(target)).abs().mean()


@register_loss("emsr")
class EMSRLoss(nn.Module):
    """EMSR's three-term loss (eq. 16) with weight sharing between y and a noisier y':

        l1 * lp(f(y), x) + l2 * lp(f(y'), x) + l3 * lp(f(y), f(y')),

    y' = y + n, n zero-mean Gaussian with a per-image sigma ~ U[0, noise_sigma] / 255.
    lp is the pixel loss given by the remaining keys (``l1: 1`` or ``mse: 1``).
    The consistency term is not detached: f(y) and f(y') are both trained by it,
    as in the paper's figure 2 (one network, shared weights, three losses).
    """

    needs_model = True

    def __init__(self, lambdas=(1.0, 1.0, 1.0), noise_sigma: float = 5.0, **base):
        super().__init__()
        lambdas = [float(v) for v in lambdas]
        if len(lambdas) != 3:
            raise InputError(f"loss emsr: `lambdas` needs three weights [l1, l2, l3], got {lambdas}")
        self.lambdas = lambdas
        self.noise_sigma = float(noise_sigma)
        self.base = _weighted_pixel_losses(base or {"l1": 1.0}, where="loss emsr")

    def noisier(self, lr: torch.Tensor) -> torch.Tensor:
        """y' = y + N(0, sigma^2), sigma ~ U[0, noise_sigma] / 255 per image (8-bit scale)."""
        sigma = torch.rand(lr.shape[0], 1, 1, 1, device=lr.device) * (self.noise_sigma / 255.0)
        return lr + sigma * torch.randn_like(lr)

    def _lp(self, a, b):
        return sum(w * fn(a.float(), b.float()) for w, fn in self.base)

    def forward(self, pred, target, model, lr):
        pred_noisy = model(self.noisier(lr))
        t1 = self._lp(pred, target)
        t2 = self._lp(pred_noisy, target)
        t3 = self._lp(pred, pred_noisy)
        l1, l2, l3 = self.lambdas
        total = l1 * t1 + l2 * t2 + l3 * t3
        return total, {"emsr_sup": t1, "emsr_noisy": t2, "emsr_consistency": t3}


def _weighted_pixel_losses(spec: dict, where: str) -> list[tuple[float, nn.Module]]:
    out = []
    for name, weight in spec.items():
        cls = LOSSES.get(name)
        if cls is None or not issubclass(cls, PixelLoss):
            pixel = sorted(k for k, c in LOSSES.items() if issubclass(c, PixelLoss))
            raise InputError(f"{where}: unknown pixel loss {name!r}; use one of: {', '.join(pixel)}")
        out.append((_weight(weight, f"{where}.{name}"), cls()))
    return out


def _weight(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"config key {key}: weight must be a number, got {value!r}")
    return float(value)


class CompositeLoss(nn.Module):
    """Weighted sum of registered losses; call as loss(model, lr, hr) -> (total, terms)."""

    def __init__(self, spec: dict):
        super().__init__()
        if not isinstance(spec, dict) or not spec:
            raise InputError("config key loss: give at least one loss, e.g. `loss: {l1: 1}`")
        self.terms: list[tuple[str, float, nn.Module]] = []
        for name, value in spec.items():
            if name not in LOSSES:
                raise InputError(f"config key loss: unknown loss {name!r}; use one of: {', '.join(sorted(LOSSES))}")
            cls = LOSSES[name]
            if issubclass(cls, PixelLoss):
                self.terms.append((name, _weight(value, f"loss.{name}"), cls()))
            else:
                if not isinstance(value, dict):
                    raise InputError(f"config key loss.{name}: give its settings as a mapping, e.g. {{l1: 1, lambdas: [1, 1, 1], noise_sigma: 5}}")
                try:
                    self.terms.append((name, 1.0, cls(**value)))
                except TypeError as exc:
                    raise InputError(f"config key loss.{name}: {exc}; see srseg/losses.py for its settings") from exc

    def forward(self, model: nn.Module, lr: torch.Tensor, hr: torch.Tensor):
        pred = model(lr)
        total = pred.new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        for name, weight, fn in self.terms:
            if getattr(fn, "needs_model", False):
                value, sub = fn(pred, hr, model, lr)
                terms.update(sub)
            else:
                value = fn(pred.float(), hr.float())
                terms[name] = value
            total = total + weight * value
        return total, terms


def build_loss(spec: dict) -> CompositeLoss:
    return CompositeLoss(spec)
