"""Diffusion SR (sr3): the pixel losses between predicted and true noise eps.

Each step draws a batch, a noise level and Gaussian noise (torch RNG, seeded and
checkpointed) as the SR3 reference does (`SR3.diffusion_pair`: one step t per batch, a
continuous gamma ~ U(gamma_t, gamma_{t-1}) per image, the U-Net conditioned on gamma) and
minimises the configured pixel losses between the predicted and the true eps (the
reference: `loss: {l1: 1}`; `{mse: 1}` is DDPM's). Validation samples with the arch's
`sampler` (ancestral or ddim) over its `sample_steps`.
"""

from __future__ import annotations

import torch

from ...io import InputError
from ...runtime import autocast, require_finite, scaled_step
from ..engine import KINDS
from .sr import SRKind


def diffusion_loss(model, loss_fn, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Weighted pixel losses between predicted and true eps for one random (noise level, eps) draw."""
    eps_pred, eps = model.diffusion_pair(lr, hr)
    return loss_fn.evaluate(eps_pred, eps, model, lr)


@KINDS.register("diffusion")
class Diffusion(SRKind):
    name = "diffusion"

    def check_loss(self) -> None:
        bad = [
            n
            for n, _, fn in self.loss_fn.terms
            if getattr(fn, "adversarial", False) or getattr(fn, "needs_model", False)
        ]
        if bad:
            raise InputError(
                f"arch {self.arch!r} is trained on the noise eps with pixel losses only; "
                f"drop {', '.join(bad)} from `loss:`"
            )

    def optimise(self) -> None:
        self.single_optimiser()

    def step(self, step: int) -> dict[str, float]:
        x, y = self.batch()
        with autocast(self.device, self.amp):
            total, terms = diffusion_loss(self.model, self.loss_fn, x, y)
        require_finite(total, step, self.settings["lr"])
        scaled_step(total, self.optimizer, self.scaler)
        self.scheduler.step()
        return {"loss": total.item(), **{f"eps_{k}": v.item() for k, v in terms.items()}}

    def summary(self, rows) -> dict:
        m = self.model
        return {**super().summary(rows), "timesteps": m.timesteps, "sampler": m.sampler, "sample_steps": m.sample_steps}
