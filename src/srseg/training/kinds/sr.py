"""What every super-resolution kind (supervised, gan, diffusion) shares: data, validation, model.pt.

Training patches are random non-empty LR/HR patches (flips, 90-degree rotations; with
`context: k` the 2k+1 LR sections around the HR section) from the first sections of every
training specimen; the last `val_fraction` of the sections give a fixed, seeded set of
validation patches, scored by L1 and PSNR (data range 1) and, as the bar to clear, by
bicubic upsampling. model.pt is `srseg.models.save_trained`'s format (read by
`load_trained` and inference).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ... import data as sr_data
from ...io import InputError
from ...losses import build_loss
from ...models import build_model, save_trained
from ...runtime import autocast, count_parameters, grad_scaler, to_device
from ..engine import Kind
from ..weights import trainable

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def halving_schedule(optimizer, settings: dict):
    """The learning rate halves every `lr_halve_every` steps."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(settings["lr_halve_every"]), gamma=0.5)


@torch.inference_mode()
def evaluate(model, lr: np.ndarray, hr: np.ndarray, device, batch: int, amp: bool) -> dict:
    """Mean L1 and PSNR (data range 1, pooled MSE) of the model on fixed validation patches."""
    was_training = model.training
    model.eval()
    abs_sum = sq_sum = 0.0
    for i in range(0, len(lr), batch):
        x, y = to_device(lr[i : i + batch], device), to_device(hr[i : i + batch], device)
        with autocast(device, amp):
            out = model(x)
        d = out.float().clamp(0, 1) - y
        abs_sum += d.abs().sum().item()
        sq_sum += (d * d).sum().item()
    model.train(was_training)
    n = hr.size
    return {"val_l1": abs_sum / n, "val_psnr": 10 * math.log10(1.0 / max(sq_sum / n, 1e-12))}


class SRKind(Kind):
    """An SR model trained on LR/HR TIFF pairs; subclasses add the optimisers and the step."""

    val_columns = ("val_l1", "val_psnr")

    def __init__(self, settings: dict, lr_paths: list[str], hr_paths: list[str]):
        super().__init__(settings, {"lr": list(map(str, lr_paths)), "hr": list(map(str, hr_paths))}, settings["arch"])
        # everything that can be wrong with the input is found here, before any training
        self.pairs, self.scale = sr_data.load_pairs(self.inputs["lr"], self.inputs["hr"])
        sr_data.check_patch(self.pairs, settings["patch"], self.inputs["lr"])
        self.loss_fn = build_loss(settings["loss"])
        self.check_loss()

    def check_loss(self) -> None:
        """Refuse loss terms this kind cannot train with (the config check does so before any job)."""
        adversarial = [n for n, _, fn in self.loss_fn.terms if getattr(fn, "adversarial", False)]
        if adversarial:
            raise InputError(
                f"loss {adversarial[0]!r} is adversarial but arch {self.arch!r} has no critic; "
                f"use arch wgan or esrgan or drop the loss"
            )

    def build(self, rng, device) -> None:
        s = self.settings
        self.device = device
        self.model = build_model(s, self.scale)
        if not getattr(self.model, "trainable", True) or count_parameters(self.model) == 0:
            raise InputError(
                f"arch {self.arch!r} has no trainable parameters;"
                " it needs no training (list it as an untrained baseline)"
            )
        self.context = self.model.context  # 2.5D: 2k+1 LR sections per patch
        self.train_pairs, val_pairs = sr_data.split_sections(self.pairs, float(s["val_fraction"]))
        self.sampler = sr_data.PatchSampler(self.train_pairs, s["patch"], self.scale, rng, context=self.context)
        self.val_lr, self.val_hr = sr_data.fixed_patches(
            val_pairs, s["patch"], self.scale, s["val_patches"], int(s["seed"]) + 1, context=self.context
        )

    def single_optimiser(self) -> None:
        """The configured optimiser over the trainable parameters, the halving schedule, a grad scaler."""
        s = self.settings
        self.optimizer = OPTIMIZERS[s["optimizer"]](trainable(self.model), lr=float(s["lr"]))
        self.scheduler = halving_schedule(self.optimizer, s)
        self.scaler = grad_scaler(self.device)

    def parts(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler}

    def rates(self) -> dict[str, float]:
        return {"lr": self.optimizer.param_groups[0]["lr"]}

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.sampler.batch(self.settings["batch"])
        return to_device(lr, self.device), to_device(hr, self.device)

    def validate(self) -> dict[str, float]:
        return evaluate(self.model, self.val_lr, self.val_hr, self.device, self.settings["batch"], self.amp)

    def describe(self) -> str:
        return (
            f"{self.arch} x{self.scale} on {', '.join(self.inputs['lr'])} ({len(self.val_lr)} val patches of "
            f"{self.settings['patch']} LR px)"
        )

    def summary(self, rows) -> dict:
        s = self.settings
        # bicubic on the same validation patches (centre section of a 2.5D stack): the bar to clear
        bicubic = build_model({"arch": "bicubic"}, self.scale).to(self.device)
        centre = self.val_lr[:, self.context : self.context + 1]
        val_bicubic = evaluate(bicubic, centre, self.val_hr, self.device, s["batch"], amp=False)
        return {
            "arch": s["arch"],
            "net": s["net"],
            "loss": s["loss"],
            "scale": self.scale,
            "patch": s["patch"],
            "train_sections": int(sum(lr.shape[0] for lr, _ in self.train_pairs)),
            "val_patches": len(self.val_lr),
            "val_bicubic_psnr": val_bicubic["val_psnr"],
            "val_bicubic_l1": val_bicubic["val_l1"],
            "empty_patches_skipped": self.sampler.n_empty_skipped,
            "context": self.context,
        }

    def save(self, path: str, info: dict) -> None:
        save_trained(
            path,
            self.model,
            self.settings,
            self.scale,
            extra={"train": {k: info[k] for k in ("steps", "loss", "seed", "parameters")}},
        )
