"""Device, precision, seeding and checkpoint helpers shared by every training loop.

One code path for CPU and GPU: `resolve_device` picks CUDA when present (or as
configured), `autocast` turns on bfloat16/float16 mixed precision on CUDA only,
and checkpoints are written atomically so a killed job can always resume from
the last complete one.
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch

from .io import InputError, atomic_path
from .log import get_logger  # noqa: F401  (re-exported for the training loops)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("config key 'device' asks for cuda but no GPU is visible; set device: auto or cpu")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision on CUDA (bf16 when supported), a no-op on CPU."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler is only needed for float16 autocast; bf16 and CPU get a disabled one."""
    fp16 = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda", enabled=fp16)


def require_finite(loss: torch.Tensor, step: int, lr: float) -> None:
    """Stop training on a NaN/Inf loss with the usual fix, instead of writing a broken model."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower `lr` (now {lr})")


def scaled_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """zero_grad, backward and optimizer step through the GradScaler (disabled on CPU / bf16)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return a numpy Generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def set_threads(n: int | None = None) -> None:
    """Respect the core count Snakemake gave the job (threads) instead of all cores."""
    if n:
        torch.set_num_threads(int(n))


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        # Saving to a handle keeps the temporary file name out of the archive: same state, same bytes.
        torch.save(state, handle)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found; check the path")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({exc}); delete it or point to a valid file") from exc


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
