"""Training loop of diffusion SR archs (sr3), dispatched from train.train_sr via train_gan.dispatch.

Each step draws a batch, a random training step t and Gaussian noise per image (torch RNG,
seeded and checkpointed), and minimises the configured pixel losses between the predicted
and the true noise eps (SR3: ``loss: {mse: 1}`` or ``{l1: 1}``). Optimiser, step schedule,
validation (DDIM sampling with the arch's `sample_steps`), checkpoints and outputs are those
of the other loops (train.train_sr / train_gan.Session).
"""

from __future__ import annotations

import torch

from .io import InputError
from .runtime import autocast, grad_scaler, require_finite, scaled_step
from .train import OPTIMIZERS
from .train_gan import Session, pixel_terms


def diffusion_loss(model, loss_fn, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Weighted pixel losses between predicted and true eps for one random (t, eps) draw per image."""
    eps_pred, eps = model.diffusion_pair(lr, hr)
    return pixel_terms(loss_fn, eps_pred, eps, model, lr)


def train_diffusion(spec, lr_paths, hr_paths, out_model, out_log_csv, out_json, checkpoint_path=None, threads=1,
                    log_file=None, on_step=None) -> dict:
    """Train a diffusion arch on eps-prediction (same signature and outputs as train.train_sr)."""
    s = Session(spec, lr_paths, hr_paths, out_model, checkpoint_path, threads, log_file, {})
    cfg, device = s.cfg, s.device
    bad = [n for n, _, fn in s.loss_fn.terms if getattr(fn, "adversarial", False) or getattr(fn, "needs_model", False)]
    if bad:
        raise InputError(f"arch {cfg['arch']!r} is trained on the noise eps with pixel losses only; drop {', '.join(bad)} from `loss:`")
    model = s.model.to(device)
    opt = OPTIMIZERS[cfg["optimizer"]](model.parameters(), lr=float(cfg["lr"]))
    sch = torch.optim.lr_scheduler.StepLR(opt, step_size=int(cfg["lr_halve_every"]), gamma=0.5)
    scaler = grad_scaler(device)
    model.train()

    def step_fn(step):
        x, y = s.batch()
        with autocast(device, s.amp):
            total, terms = diffusion_loss(model, s.loss_fn, x, y)
        require_finite(total, step, cfg["lr"])
        scaled_step(total, opt, scaler)
        row = {"loss": total.item(), **{f"eps_{k}": v.item() for k, v in terms.items()}, "lr": opt.param_groups[0]["lr"]}
        sch.step()
        return row

    parts = {"model": model, "optimizer": opt, "scheduler": sch, "scaler": scaler}
    extra = {"timesteps": model.timesteps, "sample_steps": model.sample_steps}
    return s.run(parts, step_fn, out_model, out_log_csv, out_json, on_step, extra)
