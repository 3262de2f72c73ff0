"""Adversarial SR (wgan, esrgan): a generator (the saved model) and its critic, trained in turn.

Per generator step: `n_critic` critic steps, each on a fresh batch (the critic loss of
the one adversarial loss term), then one generator step on the pixel losses plus the
adversarial term. During the first `gan_start` generator steps the generator learns from
the pixel losses alone and the critic is not trained (Real-ESRGAN pretrains on L1).
Both networks use Adam with `betas`; `d_lr` (null: `lr`) is the critic's learning rate;
`schedule` is `step` (halve every lr_halve_every) or `onecycle` (OneCycleLR over `steps`
generator steps, as Alonso 2021). `freeze:` and `init:` apply to the generator.
"""

from __future__ import annotations

import inspect

import torch

from ...io import InputError
from ...models import ARCHS
from ...runtime import autocast, count_parameters, grad_scaler, prepare_model, require_finite, scaled_step
from ..engine import KINDS
from ..weights import trainable
from .sr import SRKind, halving_schedule


def build_critic(settings: dict) -> torch.nn.Module:
    """The arch's critic with the `critic:` settings (checked against its build_critic)."""
    cls = ARCHS[settings["arch"]]
    accepted = list(inspect.signature(cls.build_critic).parameters)
    unknown = sorted(set(settings["critic"]) - set(accepted))
    if unknown:
        raise InputError(
            f"`critic:` of arch {settings['arch']!r} has unknown key(s) {', '.join(unknown)}; "
            f"accepted keys: {', '.join(accepted)}"
        )
    return cls.build_critic(**settings["critic"])


@KINDS.register("gan")
class GAN(SRKind):
    name = "gan"

    def check_loss(self) -> None:
        adversarial = [(n, fn) for n, _, fn in self.loss_fn.terms if getattr(fn, "adversarial", False)]
        if len(adversarial) != 1:
            raise InputError(
                f"GAN arch {self.arch!r} needs exactly one adversarial loss (wgan_gp, ragan or gan_bce) "
                f"in `loss:`, got {[n for n, _ in adversarial] or 'none'}"
            )
        self.adversarial_name, self.adversarial = adversarial[0]

    def untracked_settings(self) -> frozenset[str]:
        # OneCycleLR spreads its cycle over `steps`: more steps is another trajectory
        return self.untracked - {"steps"} if self.settings["schedule"] == "onecycle" else self.untracked

    def build(self, rng, device) -> None:
        super().build(rng, device)
        self.critic = build_critic(self.settings)
        self.counts = {"critic_steps": 0, "generator_steps": 0}

    def schedule(self, optimizer, lr: float):
        if self.settings["schedule"] == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=self.settings["steps"])
        return halving_schedule(optimizer, self.settings)

    def optimise(self) -> None:
        s = self.settings
        prepare_model(self.critic, self.device)
        betas = tuple(float(b) for b in s["betas"])
        g_lr, d_lr = float(s["lr"]), float(s["d_lr"] or s["lr"])
        self.opt_g = torch.optim.Adam(trainable(self.model), lr=g_lr, betas=betas)
        self.opt_d = torch.optim.Adam(trainable(self.critic), lr=d_lr, betas=betas)
        self.sch_g, self.sch_d = self.schedule(self.opt_g, g_lr), self.schedule(self.opt_d, d_lr)
        self.scaler_g, self.scaler_d = grad_scaler(self.device), grad_scaler(self.device)
        self.critic.train()

    def parts(self) -> dict:
        return {
            "model": self.model,
            "critic": self.critic,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
            "sch_g": self.sch_g,
            "sch_d": self.sch_d,
            "scaler_g": self.scaler_g,
            "scaler_d": self.scaler_d,
        }

    def rates(self) -> dict[str, float]:
        return {"lr": self.opt_g.param_groups[0]["lr"], "d_lr": self.opt_d.param_groups[0]["lr"]}

    def critic_step(self) -> dict[str, float]:
        x, y = self.batch()
        with torch.no_grad(), autocast(self.device, self.amp):
            fake = self.model(x)
        with autocast(self.device, self.amp):
            d_loss, d_terms = self.adversarial.critic_loss(self.critic, y, fake.float())
        scaled_step(d_loss, self.opt_d, self.scaler_d)
        self.counts["critic_steps"] += 1
        return {"critic_loss": d_loss.item(), **{k: v.item() for k, v in d_terms.items()}}

    def step(self, step: int) -> dict[str, float]:
        row = {}
        adversarial = step > self.settings["gan_start"]
        if adversarial:
            for _ in range(self.settings["n_critic"]):
                row = self.critic_step()  # the last critic step's terms are logged
            self.sch_d.step()
        x, y = self.batch()
        self.critic.requires_grad_(False)  # generator step: no critic gradients needed
        with autocast(self.device, self.amp):
            pred = self.model(x)
            total, terms = self.loss_fn.evaluate(pred, y, self.model, x)
            if adversarial:
                g_adv, g_terms = self.adversarial.generator_loss(self.critic, y, pred.float())
                total = total + g_adv
                terms.update(g_terms)
        self.critic.requires_grad_(True)
        require_finite(total, step, self.settings["lr"])
        scaled_step(total, self.opt_g, self.scaler_g)
        self.sch_g.step()
        self.counts["generator_steps"] += 1
        return {"loss": total.item(), **{k: v.item() for k, v in terms.items()}, **row}

    def summary(self, rows) -> dict:
        s = self.settings
        return {
            **super().summary(rows),
            "critic_parameters": count_parameters(self.critic),
            "n_critic": s["n_critic"],
            "adversarial_loss": self.adversarial_name,
            "gan_start": s["gan_start"],
            "schedule": s["schedule"],
            "counts_this_run": dict(self.counts),
        }
