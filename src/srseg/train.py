"""Train one SR model on one kind of training data for one fold, resumable.

`train_sr` samples random non-empty patches (flips, 90-degree rotations) from the
fold's training specimens, holds back the last sections of each specimen for a fixed
seeded set of validation patches, and optimises the configured loss with Adam (or
AdamW / SGD) and a step schedule that halves the learning rate every
`lr_halve_every` steps. CUDA is used when available (mixed precision through
runtime.autocast), the CPU otherwise, with one code path.

Checkpoints (model, optimiser, scheduler, grad scaler, step, numpy/torch RNG states and
the log rows so far) are written atomically every `checkpoint_every` steps to
`checkpoint.pt` beside model.pt. A restarted job resumes from it and, on CPU, ends
with exactly the weights of an uninterrupted run. The checkpoint is kept after training
so that raising `steps` continues from where training stopped; it carries a
fingerprint of every setting and input byte that shapes the trajectory (all but
steps, checkpoint_every, val_every, val_patches, device), and a checkpoint whose
fingerprint differs is ignored (training starts from step 0 and says so in the log).

Fine-tuning: `init:` loads a user's weights (RGB checkpoints adapted to grey, see
`adapt_channels`); `freeze: [prefix, ...]` keeps parameters whose names start with a
prefix fixed. `context: k` (a model key) trains on 2k+1 neighbouring LR sections.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import data as sr_data
from .io import InputError, write_csv, write_json
from .losses import build_loss
from .models import build_model, save_trained
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

DEFAULTS = {
    "optimizer": "adam",
    "lr": 1e-4,
    "lr_halve_every": 50000,
    "steps": 1000,
    "batch": 16,
    "patch": 48,
    "checkpoint_every": 1000,
    "val_every": 1000,
    "val_patches": 32,
    "val_fraction": 0.125,
    "amp": True,
    "seed": 0,
    "device": "auto",
    "init": None,
}
# Keys that do not change the optimisation trajectory: a checkpoint stays valid when they change.
_NOT_FINGERPRINTED = {"steps", "checkpoint_every", "val_every", "val_patches", "device"}
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def training_config(spec: dict) -> dict:
    """The model's config slice with defaults filled in and every value checked."""
    cfg = {**DEFAULTS, **spec}
    if "loss" not in spec:
        raise InputError(f"model with arch {spec.get('arch')!r} has no `loss:`; add e.g. `loss: {{l1: 1}}`")
    for key in ("steps", "batch", "patch", "checkpoint_every", "val_every", "val_patches", "lr_halve_every"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"config key {key}: must be a positive integer, got {v!r}")
    if isinstance(cfg["lr"], bool) or not isinstance(cfg["lr"], (int, float)) or not cfg["lr"] > 0:
        raise InputError(f"config key lr: must be a positive number, got {cfg['lr']!r}")
    if cfg["optimizer"] not in OPTIMIZERS:
        raise InputError(f"config key optimizer: unknown optimizer {cfg['optimizer']!r}; use one of: {', '.join(OPTIMIZERS)}")
    if not 0 <= float(cfg["val_fraction"]) < 1:
        raise InputError(f"config key val_fraction: must be in [0, 1), got {cfg['val_fraction']!r}")
    return cfg


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(cfg: dict, input_paths: list[str]) -> str:
    """Hash of everything that shapes the training trajectory (settings + input bytes)."""
    keyed = {k: v for k, v in cfg.items() if k not in _NOT_FINGERPRINTED}
    keyed["inputs"] = [file_digest(p) for p in input_paths]
    if cfg.get("init"):
        keyed["init_digest"] = file_digest(cfg["init"])
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()


def load_init(model: torch.nn.Module, path: str, arch: str) -> dict:
    """Fine-tuning start: load a user's weights non-strictly; report what did not fit.

    Accepts an srseg model.pt / checkpoint, a BasicSR file ({"params"|"params_ema": ...})
    or a bare state_dict. Tensors whose shape differs (e.g. another scale's upsampler)
    are skipped and reported like missing keys.
    """
    state = load_checkpoint(path)
    if isinstance(state, dict) and "arch" in state and state["arch"] != arch:
        raise InputError(f"{path}: init checkpoint was trained as arch {state['arch']!r}, this model is {arch!r}; point `init:` to a {arch} checkpoint")
    weights = state
    if isinstance(state, dict):
        for key in ("state_dict", "model", "params_ema", "params"):
            if isinstance(state.get(key), dict):
                weights = state[key]
                break
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise InputError(f"{path}: no weight dictionary found in the init checkpoint; give an srseg model.pt or a state_dict file")
    own = model.state_dict()
    adapted = {}
    for k, v in weights.items():
        if k in own and own[k].shape != v.shape:
            fitted = adapt_channels(v, own[k].shape)
            if fitted is not None:
                adapted[k] = fitted
    mismatched = sorted(k for k, v in weights.items() if k in own and own[k].shape != v.shape and k not in adapted)
    usable = {k: adapted.get(k, v) for k, v in weights.items() if k in own and k not in mismatched}
    if not usable:
        raise InputError(f"{path}: none of its weights fit arch {arch!r} with these `net:` settings; check `init:` and `net:`")
    result = model.load_state_dict(usable, strict=False)
    return {
        "path": str(path),
        "loaded": len(usable),
        "missing": sorted(result.missing_keys),
        "unexpected": sorted(k for k in weights if k not in own),
        "shape_mismatch": mismatched,
        "channel_adapted": sorted(adapted),
    }


def adapt_channels(w: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """Fit a checkpoint tensor built for other colour / section channels to our shape, or None.

    * input conv, RGB -> grey (weight (C, 3, k, k) -> (C, 1, k, k)): SUM over the colour
      axis. A grey image fed to the RGB net as three equal channels gives exactly the same
      activations, so this is "replicate the grey channel to 3" folded into the weights.
    * output conv, RGB -> grey (weight (3, C, k, k) -> (1, C, k, k), bias (3,) -> (1,)):
      MEAN over the output colours, i.e. the grey value the net would give as (R+G+B)/3.
    * input conv, 1 -> 2k+1 sections (fine-tuning a 2.5D model from a 2D one): the weights
      go to the centre section and the neighbours start at 0, so the start is the 2D model.
    """
    if w.ndim != len(shape):
        return None
    if w.ndim == 4 and w.shape[0] == shape[0] and w.shape[2:] == shape[2:]:
        if w.shape[1] == 3 and shape[1] == 1:
            return w.sum(dim=1, keepdim=True)
        if w.shape[1] == 1 and shape[1] % 2 == 1 and shape[1] > 1:
            out = w.new_zeros(shape)
            out[:, shape[1] // 2] = w[:, 0]
            return out
    if w.shape[0] == 3 and shape[0] == 1 and w.shape[1:] == shape[1:]:
        return w.mean(dim=0, keepdim=True)
    return None


def freeze_parameters(model: torch.nn.Module, prefixes) -> list[str]:
    """Stop training every parameter whose name starts with one of `prefixes`; returns the frozen names."""
    if not prefixes:
        return []
    if isinstance(prefixes, str) or not all(isinstance(p, str) and p for p in prefixes):
        raise InputError(f"config key freeze: give a list of parameter-name prefixes such as [head., body.0.], got {prefixes!r}")
    names = [n for n, _ in model.named_parameters()]
    for p in prefixes:
        if not any(n.startswith(p) for n in names):
            tops = sorted({n.split(".")[0] + "." for n in names})
            raise InputError(f"config key freeze: prefix {p!r} matches no parameter; top-level names are {', '.join(tops)}")
    frozen = []
    for n, param in model.named_parameters():
        if any(n.startswith(p) for p in prefixes):
            param.requires_grad_(False)
            frozen.append(n)
    return frozen


def _rng_state(rng: np.random.Generator, device: torch.device) -> dict:
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(rng: np.random.Generator, state: dict, device: torch.device) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@torch.inference_mode()
def evaluate(model, lr: np.ndarray, hr: np.ndarray, device, batch: int, amp: bool) -> dict:
    """Mean L1 and PSNR (data range 1, pooled MSE) of the model on fixed validation patches."""
    model.eval()
    abs_sum = sq_sum = 0.0
    for i in range(0, len(lr), batch):
        x = torch.from_numpy(lr[i : i + batch]).to(device)
        y = torch.from_numpy(hr[i : i + batch]).to(device)
        with autocast(device, amp):
            out = model(x)
        d = out.float().clamp(0, 1) - y
        abs_sum += d.abs().sum().item()
        sq_sum += (d * d).sum().item()
    model.train()
    n = hr.size
    mse = sq_sum / n
    return {"val_l1": abs_sum / n, "val_psnr": 10 * math.log10(1.0 / max(mse, 1e-12))}


def train_sr(
    spec: dict,
    lr_paths: list[str],
    hr_paths: list[str],
    out_model: str,
    out_log_csv: str,
    out_json: str,
    checkpoint_path: str | None = None,
    threads: int = 1,
    log_file: str | None = None,
    on_step=None,
) -> dict:
    """Train `spec` (a model's merged config slice) on LR/HR TIFF pairs; write model.pt, log.csv, train.json.

    checkpoint_path defaults to checkpoint.pt beside out_model. `on_step(step)` is
    called after each step (after its checkpoint, if any). Returns the train.json dict.
    """
    # GAN / diffusion archs (training = "gan" / "diffusion") have their own loops: srseg.train_gan / train_diffusion
    from .train_gan import dispatch

    if (generative := dispatch(spec)) is not None:
        return generative(spec, lr_paths, hr_paths, out_model, out_log_csv, out_json, checkpoint_path, threads, log_file, on_step)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    log = get_logger("srseg.train", log_file)
    cfg = training_config(spec)
    checkpoint_path = Path(checkpoint_path or Path(out_model).with_name("checkpoint.pt"))
    set_threads(threads)
    device = resolve_device(str(cfg["device"]))

    # --- everything that can be wrong with the input is checked before any training
    pairs, scale = sr_data.load_pairs(list(lr_paths), list(hr_paths))
    rng = seed_everything(int(cfg["seed"]))  # before building: initial weights come from the torch RNG
    model = build_model(cfg, scale)
    if not getattr(model, "trainable", True) or count_parameters(model) == 0:
        raise InputError(f"arch {cfg['arch']!r} has no trainable parameters; it needs no training (list it as an untrained baseline)")
    loss_fn = build_loss(cfg["loss"])
    sr_data.check_patch(pairs, cfg["patch"], list(lr_paths))
    train_pairs, val_pairs = sr_data.split_sections(pairs, float(cfg["val_fraction"]))
    init_report = None
    if cfg["init"]:
        init_report = load_init(model, cfg["init"], cfg["arch"])
    frozen = freeze_parameters(model, cfg.get("freeze"))
    context = getattr(model, "context", 0)  # 2.5D: 2k+1 LR sections per patch

    sampler = sr_data.PatchSampler(train_pairs, cfg["patch"], scale, rng, context=context)
    val_lr, val_hr = sr_data.fixed_patches(val_pairs, cfg["patch"], scale, cfg["val_patches"], int(cfg["seed"]) + 1, context=context)
    model.to(device)
    cuda = device.type == "cuda"
    if cuda:  # NHWC convolutions are faster under mixed precision
        model.to(memory_format=torch.channels_last)
    optimizer = OPTIMIZERS[cfg["optimizer"]]([p for p in model.parameters() if p.requires_grad], lr=float(cfg["lr"]))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(cfg["lr_halve_every"]), gamma=0.5)
    scaler = grad_scaler(device)
    amp = bool(cfg["amp"])
    fp = fingerprint(cfg, list(lr_paths) + list(hr_paths))

    step, rows, seconds_before, resumed_from = 0, [], 0.0, None
    if checkpoint_path.exists():
        ck = load_checkpoint(checkpoint_path)
        if ck.get("fingerprint") != fp:
            log.info("ignoring %s: it was made with other settings or inputs; training from step 0", checkpoint_path)
        elif ck["step"] > cfg["steps"]:
            log.info("ignoring %s: it is at step %d, beyond steps=%d; training from step 0", checkpoint_path, ck["step"], cfg["steps"])
        else:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            scaler.load_state_dict(ck["scaler"])
            _set_rng_state(rng, ck["rng"], device)
            step, rows, seconds_before = ck["step"], ck["rows"], ck["seconds"]
            resumed_from = step
            log.info("resumed from %s at step %d", checkpoint_path, step)

    n_params = count_parameters(model)
    log.info("training %s (%d parameters) x%d on %s: %d train / %d val patches of %d LR px; device %s",
             cfg["arch"], n_params, scale, ", ".join(map(str, lr_paths)), cfg["steps"], len(val_lr), cfg["patch"], device)
    if init_report:
        log.info("init from %s: %d tensors loaded; missing %s; unexpected %s; shape mismatch %s; colour/section channels adapted %s",
                 init_report["path"], init_report["loaded"], init_report["missing"], init_report["unexpected"],
                 init_report["shape_mismatch"], init_report["channel_adapted"])
    if frozen:
        log.info("frozen (not trained): %d parameter tensors: %s", len(frozen), frozen)

    def save_ck():
        save_checkpoint(checkpoint_path, {
            "fingerprint": fp, "step": step, "arch": cfg["arch"],
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "rng": _rng_state(rng, device), "rows": rows,
            "seconds": seconds_before + time.perf_counter() - t_loop,
        })

    model.train()
    t_loop = time.perf_counter()
    steps_run = cfg["steps"] - step
    bar = tqdm(total=cfg["steps"], initial=step, desc=f"train {cfg['arch']}", mininterval=5, file=None)
    while step < cfg["steps"]:
        step += 1
        lr_np, hr_np = sampler.batch(cfg["batch"])
        x = torch.from_numpy(lr_np).to(device, non_blocking=True)
        y = torch.from_numpy(hr_np).to(device, non_blocking=True)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            total, terms = loss_fn(model, x, y)
        require_finite(total, step, cfg["lr"])
        scaled_step(total, optimizer, scaler)
        row = {"step": step, "loss": total.item(), **{k: v.item() for k, v in terms.items()},
               "lr": optimizer.param_groups[0]["lr"], "val_l1": float("nan"), "val_psnr": float("nan")}
        scheduler.step()
        if step % cfg["val_every"] == 0 or step == cfg["steps"]:
            row.update(evaluate(model, val_lr, val_hr, device, cfg["batch"], amp))
            log.info("step %d loss %.5f val_l1 %.5f val_psnr %.2f", step, row["loss"], row["val_l1"], row["val_psnr"])
        row["seconds"] = seconds_before + time.perf_counter() - t_loop
        rows.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
        if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"]:
            save_ck()
        if on_step is not None:
            on_step(step)
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    loop_seconds = time.perf_counter() - t_loop

    # bicubic on the same validation patches: the bar a trained model has to clear
    bicubic = build_model({"arch": "bicubic"}, scale).to(device)
    val_bicubic = evaluate(bicubic, val_lr, val_hr, device, cfg["batch"], amp=False)
    final_val = {k: rows[-1][k] for k in ("val_l1", "val_psnr")} if rows else {}

    info = {
        "arch": cfg["arch"], "net": cfg.get("net") or {}, "loss": cfg["loss"], "scale": scale,
        "steps": cfg["steps"], "resumed_from_step": resumed_from, "steps_this_run": steps_run,
        "parameters": n_params, "steps_per_s": steps_run / loop_seconds if loop_seconds > 0 else None,
        "train_seconds_total": rows[-1]["seconds"] if rows else 0.0,
        "wall_seconds_this_run": time.perf_counter() - t_start,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": threads, "torch_version": torch.__version__, "amp": amp and device.type == "cuda",
        "seed": cfg["seed"], "batch": cfg["batch"], "patch": cfg["patch"],
        "train_sections": int(sum(lr.shape[0] for lr, _ in train_pairs)),
        "val_patches": len(val_lr), "val_bicubic_psnr": val_bicubic["val_psnr"], "val_bicubic_l1": val_bicubic["val_l1"],
        **{f"final_{k}": v for k, v in final_val.items()},
        "empty_patches_skipped": sampler.n_empty_skipped, "init": init_report,
        "context": context, "frozen_parameters": frozen,
        "checkpoint": str(checkpoint_path), "inputs": {"lr": list(map(str, lr_paths)), "hr": list(map(str, hr_paths))},
    }
    save_trained(out_model, model, cfg, scale, extra={"train": {k: info[k] for k in ("steps", "loss", "seed", "parameters")}})
    write_csv(out_log_csv, pd.DataFrame(rows))
    info["wall_seconds_this_run"] = time.perf_counter() - t_start
    info["cpu_seconds_this_run"] = time.process_time() - cpu_start  # all threads of this process
    write_json(out_json, info)
    log.info("done: %d steps, %.1f steps/s, final val PSNR %.2f dB (bicubic %.2f dB)", cfg["steps"],
             info["steps_per_s"] or 0.0, final_val.get("val_psnr", float("nan")), val_bicubic["val_psnr"])
    return info
