"""Device, precision, seeding and checkpoint helpers shared by the training engine and inference.

One code path for CPU and GPU: `resolve_device` picks CUDA when present (or as
configured), `autocast` turns on bfloat16/float16 mixed precision on CUDA only,
`to_device` / `prepare_model` use channels-last memory on CUDA, and checkpoints are
written atomically so a killed job can always resume from the last complete one.
`rng_state` / `restore_rng_state` capture every random stream a training step draws
from (numpy Generator, torch CPU, CUDA), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
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


def rng_state(rng: np.random.Generator, device: torch.device) -> dict:
    """Every random stream of a training run: the numpy Generator, torch CPU and (on CUDA) the device's."""
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(rng: np.random.Generator, state: dict, device: torch.device) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:  # a CPU checkpoint resumed on a GPU has none
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def isolated_rng(device: torch.device, seed: int):
    """Run a block (validation) on its own seeded torch RNG and restore the training streams after it.

    Sampling models (noise, diffusion) draw noise when validated; isolating it keeps the
    training trajectory independent of how often it is validated, and every validation
    sees the same noise.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _memory_format(ndim: int):
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy batch on the device: non-blocking copy, channels-last on CUDA (faster convolutions under AMP)."""
    x = torch.from_numpy(array).to(device, non_blocking=True)
    fmt = _memory_format(x.ndim) if device.type == "cuda" else None
    return x.contiguous(memory_format=fmt) if fmt is not None else x


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a network to the device; on CUDA in the channels-last layout of its convolutions."""
    model.to(device)
    if device.type == "cuda":
        dims = {p.ndim for p in model.parameters()} & {4, 5}
        if len(dims) == 1:  # 2D or 3D convolutions; a mixed net keeps the default layout
            model.to(memory_format=_memory_format(dims.pop()))
    return model


def file_digest(path: str | os.PathLike) -> str:
    """Hash of a file's bytes (inputs and init weights in a checkpoint's fingerprint)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        raise InputError(
            f"{path}: not a readable PyTorch checkpoint ({exc}); delete it or point to a valid file"
        ) from exc


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MiB: VmHWM of /proc/self/status (None where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
