"""Training losses, registered by name and combined from the model's `loss:` config.

A loss spec maps registered names to weights, e.g. ``{l1: 1}``, ``{mse: 1, gloss: 0.5}``;
``emsr`` takes a dict instead of a weight:

    loss: {emsr: {l1: 1, lambdas: [1, 1, 1], noise_sigma: 5, input_noise_sigma: 5}}

where the keys other than ``lambdas`` / ``noise_sigma`` / ``input_noise_sigma`` are the pixel
loss l_p of the three terms (``l1: 1`` or ``mse: 1`` as in the EMSR paper; any registered
pixel loss). ``build_loss(spec)`` returns a `CompositeLoss`; calling it as ``loss(model, lr, hr)``
applies the terms' training-input augmentation (EMSR's noise on y), runs the model once and
returns (total, {term name: value}).

Pixel losses are means over pixels (not sums), so weights do not depend on patch size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .io import InputError
from .registry import Registry

#: loss name -> class (classes get `loss_name`); pixel losses take (pred, target), model-aware ones also (model, lr)
LOSSES: Registry[type] = Registry("loss", name_attr="loss_name")
#: class decorator: @register_loss("l1")
register_loss = LOSSES.register

#: noise sigmas in loss settings (emsr's noise_sigma, input_noise_sigma) are on the 8-bit scale:
#: sigma * SIGMA_UNIT on our [0, 1] intensities, which ingest makes relative to the data's real
#: bit depth (12-bit data in uint16 is rescaled to the full range), so 5 means 5/255 of the range.
SIGMA_UNIT = 1.0 / 255.0


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
        raise InputError(
            f"SSIM loss needs patches of at least {n} x {n} HR pixels; raise `patch` or drop the ssim loss"
        )

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
    """G-Loss (Ge & Dou 2023, as used by Trobäck et al. 2025): gradient loss from the eight
    3x3 neighbour-difference kernels G_k, plus pooled (coarser-scale) terms:

        (1 / L) sum_{l < L} mean_k,p |G_k(P^l pred) - G_k(P^l target)|,

    P^l = l times 2x2 average pooling (P^0 = identity), L = `levels` (3). Pooled levels see
    the gradients of larger structures (membranes several pixels wide), the fine level the
    edges themselves. Levels whose pooled image is smaller than 3x3 are left out, so tiny
    patches fall back to the single-scale loss. The thesis only names the kernels and the
    pooled terms; the level count, the 2x2 mean pooling and the plain mean over levels are
    our choices. It ignores a constant intensity offset, so combine it with a pixel loss
    (e.g. {mse: 1, gloss: 1}) unless fine-tuning."""

    def __init__(self, levels: int = 3):
        super().__init__()
        self.levels = int(levels)

    def forward(self, pred, target):
        terms = []
        for level in range(self.levels):
            if level:
                pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
            if min(pred.shape[-2:]) < 3:
                break
            terms.append((neighbour_differences(pred) - neighbour_differences(target)).abs().mean())
        if not terms:
            raise InputError(
                f"gloss needs HR patches of at least 3 x 3 px, got {tuple(pred.shape[-2:])}; raise `patch`"
            )
        return torch.stack(terms).mean()


@register_loss("emsr")
class EMSRLoss(nn.Module):
    """EMSR's three-term loss (eq. 16) with weight sharing between y and a noisier y':

        l1 * lp(f(y), x) + l2 * lp(f(y'), x) + l3 * lp(f(y), f(y')),

    as the authors' code trains it (github.com/mkhateri/EMSR):
    * y is the acquired LR patch plus zero-mean Gaussian noise of a per-image sigma
      ~ U[0, input_noise_sigma] (`augment_input`; the reference's data augmentation,
      utils/transform_collections.py AddGaussianNoise_SR, drawn per training sample; paper
      section III.B: "augmented by adding random zero-mean white Gaussian noise, sigma in [0, 5]").
      Only training inputs are noised, never validation or inference.
    * y' = y + zero-mean Gaussian noise of ONE sigma ~ U[0, noise_sigma] per batch (`noisier`;
      model/EMSR_trainer.py `_get_train_one_batch` draws one noise level per batch).
    Sigmas are on the 8-bit scale (x SIGMA_UNIT). lp is the pixel loss given by the remaining
    keys (``l1: 1`` as the reference config, or ``mse: 1``). The consistency term is not
    detached: f(y) and f(y') are both trained by it, as in the reference (one network, shared
    weights, three losses). The reference runs y and y' as one image (stacked along height);
    here they are two forward passes of the same network.
    """

    needs_model = True

    def __init__(self, lambdas=(1.0, 1.0, 1.0), noise_sigma: float = 5.0, input_noise_sigma: float = 5.0, **base):
        super().__init__()
        lambdas = [float(v) for v in lambdas]
        if len(lambdas) != 3:
            raise InputError(f"loss emsr: `lambdas` needs three weights [l1, l2, l3], got {lambdas}")
        self.lambdas = lambdas
        self.noise_sigma = _sigma(noise_sigma, "loss.emsr.noise_sigma")
        self.input_noise_sigma = _sigma(input_noise_sigma, "loss.emsr.input_noise_sigma")
        self.base = _weighted_pixel_losses(base or {"l1": 1.0}, where="loss emsr")

    def augment_input(self, lr: torch.Tensor) -> torch.Tensor:
        """y = y_acquired + N(0, sigma^2), sigma ~ U[0, input_noise_sigma] * SIGMA_UNIT per image."""
        if not self.input_noise_sigma:
            return lr
        sigma = torch.rand(lr.shape[0], 1, 1, 1, device=lr.device) * (self.input_noise_sigma * SIGMA_UNIT)
        return lr + sigma.to(lr.dtype) * torch.randn_like(lr)

    def noisier(self, lr: torch.Tensor) -> torch.Tensor:
        """y' = y + N(0, sigma^2), one sigma ~ U[0, noise_sigma] * SIGMA_UNIT for the whole batch."""
        sigma = torch.rand((), device=lr.device) * (self.noise_sigma * SIGMA_UNIT)
        return lr + sigma.to(lr.dtype) * torch.randn_like(lr)

    def _lp(self, a, b):
        return sum(w * fn(a.float(), b.float()) for w, fn in self.base)

    def forward(self, pred, target, model, lr):
        """pred = f(y) of the (already augmented) input y = lr."""
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
        cls = LOSSES[name] if name in LOSSES else None
        if cls is None or not issubclass(cls, PixelLoss):
            pixel = sorted(k for k, c in LOSSES.items() if issubclass(c, PixelLoss))
            raise InputError(f"{where}: unknown pixel loss {name!r}; use one of: {', '.join(pixel)}")
        out.append((_weight(weight, f"{where}.{name}"), cls()))
    return out


def _sigma(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise InputError(f"config key {key}: a noise sigma (8-bit scale) must be a number >= 0, got {value!r}")
    return float(value)


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
                    raise InputError(
                        f"config key loss.{name}: give its settings as a mapping, e.g. {{l1: 1, "
                        "lambdas: [1, 1, 1], noise_sigma: 5}}"
                    )
                try:
                    self.terms.append((name, 1.0, cls(**value)))
                except TypeError as exc:
                    raise InputError(f"config key loss.{name}: {exc}; see srseg/losses.py for its settings") from exc

    def forward(self, model: nn.Module, lr: torch.Tensor, hr: torch.Tensor):
        lr = self.augment_input(lr)
        return self.evaluate(model(lr), hr, model, lr)

    def augment_input(self, lr: torch.Tensor) -> torch.Tensor:
        """The terms' training-input augmentation (EMSR: noise on y); the input itself when no term has one."""
        for _, _, fn in self.terms:
            if hasattr(fn, "augment_input"):
                lr = fn.augment_input(lr)
        return lr

    def evaluate(self, pred: torch.Tensor, hr: torch.Tensor, model: nn.Module, lr: torch.Tensor):
        """(weighted total, named terms) of a given prediction; adversarial terms are left to the GAN loop."""
        total = pred.new_zeros((), dtype=torch.float32)
        terms: dict[str, torch.Tensor] = {}
        for name, weight, fn in self.terms:
            if getattr(fn, "adversarial", False):
                continue
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


# --- adversarial and perceptual losses (GAN archs wgan / esrgan; see srseg.training.kinds.gan) -------------
# An adversarial entry is a mapping, e.g. ``loss: {l1: 100, wgan_gp: {weight: 1, gp: 10}}`` (WGAN-GP
# SR: -C(G(z)) + gamma * L1, gamma = 100) or ``{l1: 1, perceptual: {weights: vgg19.pth}, ragan:
# {weight: 0.1}}``. The GAN loop computes it with the critic; CompositeLoss alone cannot.


class AdversarialLoss(nn.Module):
    """Base: `generator_loss(critic, real, fake)` and `critic_loss(critic, real, fake)` -> (value, terms)."""

    adversarial = True

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = _weight(weight, f"loss.{self.loss_name}.weight")

    def forward(self, *args, **kwargs):
        raise InputError(f"loss {self.loss_name!r} needs a critic: use it with a GAN arch (wgan, esrgan)")


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): mean over images of (||grad_x C(x_hat)||_2 - 1)^2, x_hat = e*real + (1-e)*fake.

    e ~ U[0, 1] per image from the torch RNG unless given. Computed in float32 (outside autocast)."""
    real, fake = real.detach().float(), fake.detach().float()
    if eps is None:
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    score = critic(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


@register_loss("wgan_gp")
class WGANGPLoss(AdversarialLoss):
    """Generator: -weight * mean C(fake); critic: mean C(fake) - mean C(real) + gp * GP."""

    def __init__(self, weight: float = 1.0, gp: float = 10.0):
        super().__init__(weight)
        self.gp = _weight(gp, "loss.wgan_gp.gp")

    def generator_loss(self, critic, real, fake):
        adv = -critic(fake).float().mean()
        return self.weight * adv, {"g_adv": adv}

    def critic_loss(self, critic, real, fake):
        wdist = critic(real).float().mean() - critic(fake.detach()).float().mean()
        gp = gradient_penalty(critic, real, fake)
        return -wdist + self.gp * gp, {"wasserstein": wdist, "gp": gp}


@register_loss("ragan")
class RelativisticAverageLoss(AdversarialLoss):
    """Relativistic average GAN (ESRGAN): D_ra(a, b) = C(a) - mean C(b) through a sigmoid BCE.

    Critic: BCE(D_ra(real, fake), 1) + BCE(D_ra(fake, real), 0); generator: the labels swapped.
    Halved, as in ESRGAN's implementation. Works with per-image and per-pixel critics."""

    def _pair(self, critic, real, fake):
        cr, cf = critic(real).float(), critic(fake).float()
        return cr - cf.mean(), cf - cr.mean()

    def generator_loss(self, critic, real, fake):
        d_rf, d_fr = self._pair(critic, real.detach(), fake)
        bce = F.binary_cross_entropy_with_logits
        adv = 0.5 * (bce(d_rf, torch.zeros_like(d_rf)) + bce(d_fr, torch.ones_like(d_fr)))
        return self.weight * adv, {"g_adv": adv}

    def critic_loss(self, critic, real, fake):
        d_rf, d_fr = self._pair(critic, real, fake.detach())
        bce = F.binary_cross_entropy_with_logits
        loss = 0.5 * (bce(d_rf, torch.ones_like(d_rf)) + bce(d_fr, torch.zeros_like(d_fr)))
        return loss, {"d_loss": loss}


@register_loss("gan_bce")
class VanillaGANLoss(AdversarialLoss):
    """Real-ESRGAN's loss with its U-Net discriminator: per-pixel BCE, real -> 1, fake -> 0; generator fake -> 1."""

    def generator_loss(self, critic, real, fake):
        out = critic(fake).float()
        adv = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        return self.weight * adv, {"g_adv": adv}

    def critic_loss(self, critic, real, fake):
        r, f = critic(real).float(), critic(fake.detach()).float()
        bce = F.binary_cross_entropy_with_logits
        loss = bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
        return loss, {"d_loss": loss}


@register_loss("perceptual")
class PerceptualLoss(nn.Module):
    """weight * sum_l w_l * mean|VGG19_l(pred) - VGG19_l(target)| with user-supplied VGG19 weights.

    ``perceptual: {weights: path/to/vgg19.pth, weight: 1, layers: {conv5_4: 1}}`` (ESRGAN: conv5_4
    before ReLU; Real-ESRGAN: {conv1_2: 0.1, conv2_2: 0.1, conv3_4: 1, conv4_4: 1, conv5_4: 1}).
    No weights are downloaded: a missing file is an InputError at config check."""

    needs_model = False

    def __init__(self, weights: str | None = None, weight: float = 1.0, layers: dict | None = None):
        super().__init__()
        import os

        from .models.vgg import VGGFeatures  # not a cycle: only this loss needs VGG (and all the archs)

        if not weights or not os.path.isfile(str(weights)):
            raise InputError(
                f"loss perceptual: VGG19 weights file {weights!r} not found; set `perceptual: {{weights: path}}` "
                "to a torchvision vgg19 state dict"
            )
        self.layer_weights = {
            str(k): _weight(v, f"loss.perceptual.layers.{k}") for k, v in (layers or {"conv5_4": 1.0}).items()
        }
        self.weight = _weight(weight, "loss.perceptual.weight")
        self.vgg = VGGFeatures(str(weights), list(self.layer_weights))

    def forward(self, pred, target):
        self.vgg.to(pred.device)  # CompositeLoss keeps terms in a list, so .to() does not reach them
        fp = self.vgg(pred)
        with torch.no_grad():
            ft = self.vgg(target)
        return self.weight * sum(w * F.l1_loss(fp[n], ft[n]) for n, w in self.layer_weights.items())
