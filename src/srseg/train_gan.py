"""Training loops for generative SR archs: GANs (wgan, esrgan) here, diffusion (sr3) in train_diffusion.

`train_sr` dispatches here (`dispatch(spec)`) when the arch declares ``training = "gan"`` or
``"diffusion"``. Data sampling, validation, fingerprinted resumable checkpoints, log.csv /
train.json and model.pt are those of srseg.train; only the step differs. Model keys on top of
train.DEFAULTS (all fingerprinted):

    n_critic: 1          critic steps per generator step, each on a fresh batch (WGAN-GP SR: 5)
    d_lr: null           critic learning rate (default: lr)
    betas: [0.9, 0.99]   Adam betas of both optimisers (WGAN-GP SR: [0.5, 0.9])
    schedule: step       `step` (halve every lr_halve_every) or `onecycle` (OneCycleLR to lr / d_lr
                         over `steps` generator steps, as Alonso 2021)
    gan_start: 0         generator steps with the pixel losses only before the adversarial term
                         and critic start (Real-ESRGAN pretrains its generator on L1)
    critic: {}           keyword arguments of the arch's build_critic (e.g. {channels: [64, 128]})

`steps` counts generator steps; a checkpoint holds both networks, both optimisers, both
schedulers and grad scalers, and the RNG states, so a resumed run equals an uninterrupted one on CPU.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from . import data as sr_data
from . import train as base
from .io import InputError, write_csv, write_json
from .losses import LOSSES, build_loss
from .models import ARCHS, build_model, save_trained
from .runtime import (
    autocast,
    count_parameters,
    get_logger,
    grad_scaler,
    load_checkpoint,
    require_finite,
    resolve_device,
    save_checkpoint,
    scaled_step,
    seed_everything,
    set_threads,
)

GAN_DEFAULTS = {"n_critic": 1, "d_lr": None, "betas": [0.9, 0.99], "schedule": "step", "gan_start": 0, "critic": {}}


def adversarial_names(loss_spec) -> list[str]:
    return [k for k in (loss_spec or {}) if getattr(LOSSES.get(k), "adversarial", False)]


def dispatch(spec: dict):
    """The training function for spec's arch kind (None: the supervised loop of train.train_sr)."""
    cls = ARCHS.get(spec.get("arch"))
    kind = getattr(cls, "training", "supervised")
    adv = adversarial_names(spec.get("loss"))
    if kind == "gan":
        return train_gan
    if kind == "diffusion":
        from .train_diffusion import train_diffusion

        return train_diffusion
    if adv:
        raise InputError(f"loss {adv[0]!r} is adversarial but arch {spec.get('arch')!r} has no critic; use arch wgan or esrgan or drop the loss")
    return None


def pixel_terms(loss_fn, pred, target, model, lr) -> tuple[torch.Tensor, dict]:
    """CompositeLoss.forward for a given prediction, skipping adversarial terms (weighted total, terms)."""
    return loss_fn.evaluate(pred, target, model, lr)


def _check_int(cfg, key, lo):
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise InputError(f"config key {key}: must be an integer >= {lo}, got {v!r}")


class Session:
    """Everything train_sr sets up before its loop (data, model, validation patches, fingerprint, logger)."""

    def __init__(self, spec, lr_paths, hr_paths, out_model, checkpoint_path, threads, log_file, extra_defaults):
        self.t_start, self.cpu_start = time.perf_counter(), time.process_time()
        self.log = get_logger("srseg.train", log_file)
        self.cfg = cfg = base.training_config({**extra_defaults, **spec})
        self.checkpoint_path = Path(checkpoint_path or Path(out_model).with_name("checkpoint.pt"))
        self.threads = threads
        set_threads(threads)
        self.device = resolve_device(str(cfg["device"]))
        self.lr_paths, self.hr_paths = list(lr_paths), list(hr_paths)
        pairs, self.scale = sr_data.load_pairs(self.lr_paths, self.hr_paths)
        self.rng = seed_everything(int(cfg["seed"]))
        self.model = build_model(cfg, self.scale)
        self.loss_fn = build_loss(cfg["loss"])
        sr_data.check_patch(pairs, cfg["patch"], self.lr_paths)
        self.train_pairs, val_pairs = sr_data.split_sections(pairs, float(cfg["val_fraction"]))
        self.init_report = base.load_init(self.model, cfg["init"], cfg["arch"]) if cfg["init"] else None
        self.sampler = sr_data.PatchSampler(self.train_pairs, cfg["patch"], self.scale, self.rng)
        self.val_lr, self.val_hr = sr_data.fixed_patches(val_pairs, cfg["patch"], self.scale, cfg["val_patches"], int(cfg["seed"]) + 1)
        self.amp = bool(cfg["amp"])
        self.fp = base.fingerprint(cfg, self.lr_paths + self.hr_paths)

    def batch(self):
        lr_np, hr_np = self.sampler.batch(self.cfg["batch"])
        return torch.from_numpy(lr_np).to(self.device), torch.from_numpy(hr_np).to(self.device)

    def run(self, parts: dict, step_fn, out_model, out_log_csv, out_json, on_step, extra_info: dict) -> dict:
        """The loop shared by GAN and diffusion training: resume, step_fn(step) -> row dict, validate, checkpoint, write.

        parts: name -> object with state_dict/load_state_dict (networks, optimisers, schedulers, scalers)."""
        cfg, log, device = self.cfg, self.log, self.device
        step, rows, seconds_before, resumed_from = 0, [], 0.0, None
        if self.checkpoint_path.exists():
            ck = load_checkpoint(self.checkpoint_path)
            if ck.get("fingerprint") != self.fp:
                log.info("ignoring %s: it was made with other settings or inputs; training from step 0", self.checkpoint_path)
            elif ck["step"] > cfg["steps"]:
                log.info("ignoring %s: it is at step %d, beyond steps=%d; training from step 0", self.checkpoint_path, ck["step"], cfg["steps"])
            else:
                for name, obj in parts.items():
                    obj.load_state_dict(ck["parts"][name])
                base._set_rng_state(self.rng, ck["rng"], device)
                step, rows, seconds_before = ck["step"], ck["rows"], ck["seconds"]
                resumed_from = step
                log.info("resumed from %s at step %d", self.checkpoint_path, step)
        n_params = count_parameters(self.model)
        log.info("training %s (%d parameters) x%d on %s: %d steps, %d val patches of %d LR px; device %s",
                 cfg["arch"], n_params, self.scale, ", ".join(self.lr_paths), cfg["steps"], len(self.val_lr), cfg["patch"], device)
        t_loop = time.perf_counter()
        steps_run = cfg["steps"] - step
        bar = tqdm(total=cfg["steps"], initial=step, desc=f"train {cfg['arch']}", mininterval=5)
        while step < cfg["steps"]:
            step += 1
            row = {"step": step, **step_fn(step), "val_l1": float("nan"), "val_psnr": float("nan")}
            if not all(v == v and abs(v) != float("inf") for k, v in row.items() if k == "loss"):
                raise FloatingPointError(f"loss became {row['loss']} at step {step}; lower `lr` (now {cfg['lr']})")
            if step % cfg["val_every"] == 0 or step == cfg["steps"]:
                row.update(base.evaluate(self.model, self.val_lr, self.val_hr, device, cfg["batch"], self.amp))
                log.info("step %d loss %.5f val_l1 %.5f val_psnr %.2f", step, row["loss"], row["val_l1"], row["val_psnr"])
            row["seconds"] = seconds_before + time.perf_counter() - t_loop
            rows.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
            if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"]:
                save_checkpoint(self.checkpoint_path, {
                    "fingerprint": self.fp, "step": step, "arch": cfg["arch"],
                    "parts": {name: obj.state_dict() for name, obj in parts.items()},
                    "rng": base._rng_state(self.rng, device), "rows": rows,
                    "seconds": seconds_before + time.perf_counter() - t_loop,
                })
            if on_step is not None:
                on_step(step)
        bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        loop_seconds = time.perf_counter() - t_loop
        bicubic = build_model({"arch": "bicubic"}, self.scale).to(device)
        val_bicubic = base.evaluate(bicubic, self.val_lr, self.val_hr, device, cfg["batch"], amp=False)
        final_val = {k: rows[-1][k] for k in ("val_l1", "val_psnr")} if rows else {}
        info = {
            "arch": cfg["arch"], "net": cfg.get("net") or {}, "loss": cfg["loss"], "scale": self.scale,
            "steps": cfg["steps"], "resumed_from_step": resumed_from, "steps_this_run": steps_run,
            "parameters": n_params, "steps_per_s": steps_run / loop_seconds if loop_seconds > 0 else None,
            "train_seconds_total": rows[-1]["seconds"] if rows else 0.0,
            "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": self.threads, "torch_version": torch.__version__, "amp": self.amp and device.type == "cuda",
            "seed": cfg["seed"], "batch": cfg["batch"], "patch": cfg["patch"],
            "train_sections": int(sum(lr.shape[0] for lr, _ in self.train_pairs)),
            "val_patches": len(self.val_lr), "val_bicubic_psnr": val_bicubic["val_psnr"], "val_bicubic_l1": val_bicubic["val_l1"],
            **{f"final_{k}": v for k, v in final_val.items()},
            "empty_patches_skipped": self.sampler.n_empty_skipped, "init": self.init_report,
            "checkpoint": str(self.checkpoint_path), "inputs": {"lr": self.lr_paths, "hr": self.hr_paths},
            **extra_info,
        }
        save_trained(out_model, self.model, cfg, self.scale,
                     extra={"train": {k: info[k] for k in ("steps", "loss", "seed", "parameters")}})
        write_csv(out_log_csv, pd.DataFrame(rows))
        info["wall_seconds_this_run"] = time.perf_counter() - self.t_start
        info["cpu_seconds_this_run"] = time.process_time() - self.cpu_start
        write_json(out_json, info)
        log.info("done: %d steps, %.1f steps/s, final val PSNR %.2f dB (bicubic %.2f dB)", cfg["steps"],
                 info["steps_per_s"] or 0.0, final_val.get("val_psnr", float("nan")), val_bicubic["val_psnr"])
        return info


def _schedulers(cfg, opt, lr):
    if cfg["schedule"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=cfg["steps"])
    return torch.optim.lr_scheduler.StepLR(opt, step_size=int(cfg["lr_halve_every"]), gamma=0.5)


def check_gan_config(cfg: dict) -> None:
    _check_int(cfg, "n_critic", 1)
    _check_int(cfg, "gan_start", 0)
    if cfg["schedule"] not in ("step", "onecycle"):
        raise InputError(f"config key schedule: {cfg['schedule']!r} is not one of step, onecycle")
    betas = cfg["betas"]
    if not isinstance(betas, (list, tuple)) or len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise InputError(f"config key betas: give two Adam betas in [0, 1), e.g. [0.5, 0.9]; got {betas!r}")
    if cfg["d_lr"] is not None and (isinstance(cfg["d_lr"], bool) or not isinstance(cfg["d_lr"], (int, float)) or cfg["d_lr"] <= 0):
        raise InputError(f"config key d_lr: must be a positive number or null, got {cfg['d_lr']!r}")
    if not isinstance(cfg["critic"], dict):
        raise InputError("config key critic: give the critic's settings as a mapping, e.g. {channels: [64, 128, 256, 512]}")


def build_critic(cfg: dict) -> torch.nn.Module:
    cls = ARCHS[cfg["arch"]]
    accepted = [p for p in inspect.signature(cls.build_critic).parameters]
    unknown = sorted(set(cfg["critic"]) - set(accepted))
    if unknown:
        raise InputError(f"`critic:` of arch {cfg['arch']!r} has unknown key(s) {', '.join(unknown)}; accepted keys: {', '.join(accepted)}")
    return cls.build_critic(**cfg["critic"])


def train_gan(spec, lr_paths, hr_paths, out_model, out_log_csv, out_json, checkpoint_path=None, threads=1,
              log_file=None, on_step=None) -> dict:
    """Adversarial training of a GAN arch (same signature and outputs as train.train_sr).

    Per generator step: n_critic critic steps (fresh batch each, critic loss of the adversarial
    term), then one generator step on pixel losses + the adversarial term. Before `gan_start`
    the generator learns from the pixel losses alone and the critic is not trained."""
    s = Session(spec, lr_paths, hr_paths, out_model, checkpoint_path, threads, log_file, GAN_DEFAULTS)
    cfg, device = s.cfg, s.device
    check_gan_config(cfg)
    adv = adversarial_names(cfg["loss"])
    if len(adv) != 1:
        raise InputError(f"GAN arch {cfg['arch']!r} needs exactly one adversarial loss (wgan_gp, ragan or gan_bce) in `loss:`, got {adv or 'none'}")
    adv_fn = dict((n, fn) for n, _, fn in s.loss_fn.terms)[adv[0]]
    critic = build_critic(cfg).to(device)
    gen = s.model.to(device)
    betas = tuple(float(b) for b in cfg["betas"])
    g_lr = float(cfg["lr"])
    d_lr = float(cfg["d_lr"] or cfg["lr"])
    opt_g = torch.optim.Adam(gen.parameters(), lr=g_lr, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=d_lr, betas=betas)
    sch_g, sch_d = _schedulers(cfg, opt_g, g_lr), _schedulers(cfg, opt_d, d_lr)
    scaler_g, scaler_d = grad_scaler(device), grad_scaler(device)
    gen.train(), critic.train()
    counts = {"critic_steps": 0, "generator_steps": 0}

    def step_fn(step):
        row = {}
        adversarial = step > cfg["gan_start"]
        if adversarial:
            for _ in range(cfg["n_critic"]):
                x, y = s.batch()
                with torch.no_grad(), autocast(device, s.amp):
                    fake = gen(x)
                with autocast(device, s.amp):
                    d_loss, d_terms = adv_fn.critic_loss(critic, y, fake.float())
                scaled_step(d_loss, opt_d, scaler_d)
                counts["critic_steps"] += 1
            row.update({"critic_loss": d_loss.item(), **{k: v.item() for k, v in d_terms.items()}})
            sch_d.step()
        x, y = s.batch()
        critic.requires_grad_(False)  # generator step: no critic gradients needed
        with autocast(device, s.amp):
            pred = gen(x)
            total, terms = pixel_terms(s.loss_fn, pred, y, gen, x)
            if adversarial:
                g_adv, g_terms = adv_fn.generator_loss(critic, y, pred.float())
                total = total + g_adv
                terms.update(g_terms)
        critic.requires_grad_(True)
        require_finite(total, step, cfg["lr"])
        scaled_step(total, opt_g, scaler_g)
        counts["generator_steps"] += 1
        row.update({"loss": total.item(), **{k: v.item() for k, v in terms.items()}, "lr": opt_g.param_groups[0]["lr"],
                    "d_lr": opt_d.param_groups[0]["lr"]})
        sch_g.step()
        return row

    parts = {"model": gen, "critic": critic, "opt_g": opt_g, "opt_d": opt_d, "sch_g": sch_g, "sch_d": sch_d,
             "scaler_g": scaler_g, "scaler_d": scaler_d}
    extra = {"critic_parameters": count_parameters(critic), "n_critic": cfg["n_critic"], "adversarial_loss": adv[0],
             "gan_start": cfg["gan_start"], "schedule": cfg["schedule"], "counts_this_run": counts}
    return s.run(parts, step_fn, out_model, out_log_csv, out_json, on_step, extra)
