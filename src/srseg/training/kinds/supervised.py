"""Supervised SR (srcnn, edsr, rcan, swinir, edt, emsr, pssr, ...): one optimiser, the configured loss on (SR, HR).

The loss applies its terms' training-input augmentation before the forward pass (EMSR: Gaussian
noise on the LR input y, srseg.losses.EMSRLoss.augment_input); validation sees the acquired input.
"""

from __future__ import annotations

from ...runtime import autocast, require_finite, scaled_step
from ..engine import KINDS
from .sr import SRKind


@KINDS.register("supervised")
class Supervised(SRKind):
    name = "supervised"

    def optimise(self) -> None:
        self.single_optimiser()

    def step(self, step: int) -> dict[str, float]:
        x, y = self.batch()
        with autocast(self.device, self.amp):
            total, terms = self.loss_fn(self.model, x, y)
        require_finite(total, step, self.settings["lr"])
        scaled_step(total, self.optimizer, self.scaler)
        self.scheduler.step()
        return {"loss": total.item(), **{k: v.item() for k, v in terms.items()}}
