"""Affinity network: targets from labels, a 2D / anisotropic-3D U-Net, training, tiled prediction.

Affinity convention (the one waterz reads, funkelab gunpowder/lsd
`seg_to_affgraph` with neighbourhood [[-1,0,0],[0,-1,0],[0,0,-1]]):

    affs[0] = z, affs[1] = y, affs[2] = x
    affs[d][p] = 1  if labels[p] == labels[p - e_d] and labels[p] != 0, else 0

i.e. channel d at voxel p is the affinity between p and its *predecessor*
along axis d; voxels on the first plane of an axis (no predecessor) get 0.
waterz's region graph (backend/region_graph.hpp) reads exactly this: for voxel
p and d in 0..2 it pairs seg[p] with seg[p - e_d] and uses aff[d][p].

In 2D mode (`dim: 2`) the network sees one section at a time and the z
affinity is 0 everywhere, so sections are segmented independently (the right
choice when sections are thick and z-alignment is imperfect). In 3D mode the
U-Net uses anisotropic kernels (1x3x3 at full resolution, 3x3x3 deeper) and
pools only in y/x, because EM sections are several times thicker than pixels.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import platform
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from tqdm import tqdm

from . import runtime
from .io import InputError, read_image, read_labels, write_csv, write_json

# Defaults for keys of config["affinity"] that the demo config may leave out.
DEFAULTS = {
    "dim": 2,
    "features": 12,           # demo-sized: 400 steps take ~60 s on one CPU thread
    "depth": 3,
    "steps": 400,
    "lr": 2.0e-3,
    "batch": 4,
    "patch": 96,
    "patch_z": 4,             # 3D mode only: sections per training patch
    "val_fraction": 0.25,
    "val_every": 100,
    "log_every": 20,
    "checkpoint_every": 200,
    "balance": True,          # class-balanced BCE: without it short runs can collapse to "all connected"
    "tile": 256,              # prediction tile side (y, x)
    "tile_z": 8,              # 3D prediction tile depth
    "overlap": 32,            # prediction tile overlap (y, x); z overlap is 2 in 3D
    "augment": {
        "flip": True,          # random flips and 90-degree rotations in y/x
        "prob": 0.8,           # probability that a patch gets intensity augmentation
        "contrast": 0.3,       # gain ~ U(1 - c, 1 + c), offset ~ U(-c/2, c/2)
        "gamma": 0.3,          # gamma ~ exp(U(-g, g))
        "blur_sigma": 1.5,     # Gaussian blur sigma ~ U(0, s) pixels (SR outputs are softer than HR)
        "noise": 0.05,         # additive Gaussian noise sigma ~ U(0, n)
    },
}


def affinity_params(params: dict | None) -> dict:
    """config["affinity"] merged over DEFAULTS (nested for `augment`)."""
    merged = copy.deepcopy(DEFAULTS)
    for key, value in (params or {}).items():
        if key == "augment" and isinstance(value, dict):
            merged["augment"].update(value)
        elif key == "augment" and not value:
            merged["augment"] = {"flip": False, "prob": 0.0, "contrast": 0.0, "gamma": 0.0, "blur_sigma": 0.0, "noise": 0.0}
        else:
            merged[key] = value
    if int(merged["dim"]) not in (2, 3):
        raise InputError(f"config key affinity.dim: {merged['dim']!r} is not supported; use 2 or 3")
    if not 0.0 < float(merged["val_fraction"]) < 1.0:
        raise InputError(f"config key affinity.val_fraction: {merged['val_fraction']} must be between 0 and 1 (exclusive)")
    return merged


# --------------------------------------------------------------------------- targets


def affinity_targets(labels: np.ndarray, dim: int = 3) -> np.ndarray:
    """Nearest-neighbour affinities (3, z, y, x) float32 from instance labels (z, y, x).

    aff[d][p] = 1 iff labels[p] == labels[p - e_d] and labels[p] != 0; the first
    plane along each axis is 0 (no predecessor). With dim=2 the z channel is 0.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (z, y, x), got shape {labels.shape}")
    affs = np.zeros((3,) + labels.shape, dtype=np.float32)
    fg = labels != 0
    axes = (0, 1, 2) if dim == 3 else (1, 2)
    for d in axes:
        here = [slice(None)] * 3
        prev = [slice(None)] * 3
        here[d] = slice(1, None)
        prev[d] = slice(None, -1)
        here, prev = tuple(here), tuple(prev)
        target = (labels[here] == labels[prev]) & fg[here]
        affs[(d,) + here] = target
    return affs


# --------------------------------------------------------------------------- network


def _groups(channels: int) -> int:
    """GroupNorm groups of 4 channels: 1-channel groups (instance norm) trained markedly worse here."""
    return channels // 4 if channels % 4 == 0 else 1


class _Block(nn.Module):
    """Two convolutions with GroupNorm + ReLU (GroupNorm: batches are small)."""

    def __init__(self, dim: int, cin: int, cout: int, kernels: Sequence[Sequence[int] | int]):
        super().__init__()
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        layers = []
        for i, k in enumerate(kernels):
            pad = tuple(kk // 2 for kk in k) if isinstance(k, (tuple, list)) else k // 2
            layers += [conv(cin if i == 0 else cout, cout, k, padding=pad),
                       nn.GroupNorm(_groups(cout), cout), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class AffinityUNet(nn.Module):
    """U-Net mapping an image to affinity logits.

    dim=2: input (B, 1, Y, X) -> logits (B, 2, Y, X) for the (y, x) affinities.
    dim=3: input (B, 1, Z, Y, X) -> logits (B, 3, Z, Y, X) for (z, y, x); kernels
    are 1x3x3 at full resolution and (1x3x3, 3x3x3) below, pooling is 1x2x2
    (anisotropic: z is never downsampled, so any number of sections works).
    Y and X must be divisible by 2**(depth-1); `predict_affinities` pads for that.
    """

    def __init__(self, dim: int = 2, features: int = 16, depth: int = 3):
        super().__init__()
        self.dim, self.features, self.depth = int(dim), int(features), int(depth)
        if self.dim == 2:
            k_top = k_low = (3, 3)
            pool, up = (2, 2), (2, 2)
            conv, convT, self.pool = nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d(pool)
        else:
            k_top, k_low = ((1, 3, 3), (1, 3, 3)), ((1, 3, 3), (3, 3, 3))
            pool, up = (1, 2, 2), (1, 2, 2)
            conv, convT, self.pool = nn.Conv3d, nn.ConvTranspose3d, nn.MaxPool3d(pool)
        kernels = lambda level: (k_top, k_top) if self.dim == 2 else (k_top if level == 0 else k_low)  # noqa: E731
        chans = [self.features * 2**i for i in range(self.depth)]
        self.down = nn.ModuleList()
        cin = 1
        for level, c in enumerate(chans):
            self.down.append(_Block(self.dim, cin, c, kernels(level)))
            cin = c
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for level in reversed(range(self.depth - 1)):
            self.up.append(convT(chans[level + 1], chans[level], up, stride=up))
            self.dec.append(_Block(self.dim, 2 * chans[level], chans[level], kernels(level)))
        self.head = conv(chans[0], 2 if self.dim == 2 else 3, 1)

    @property
    def multiple(self) -> int:
        """Y and X of the input must be multiples of this."""
        return 2 ** (self.depth - 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec in zip(self.up, self.dec):
            x = up(x)
            x = dec(torch.cat([skips.pop(), x], dim=1))
        return self.head(x)

    def config(self) -> dict:
        return {"dim": self.dim, "features": self.features, "depth": self.depth}


def logits_to_affs(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Network logits -> (B, 3, ...) affinities in [0, 1]; 2D nets get a zero z channel."""
    affs = torch.sigmoid(logits.float())
    if dim == 2:
        affs = torch.cat([torch.zeros_like(affs[:, :1]), affs], dim=1)
    return affs


# --------------------------------------------------------------------------- training data


def validation_sections(n_sections: int, val_fraction: float) -> tuple[slice, slice]:
    """(train, validation) section slices: validation = the last ceil(val_fraction * n) sections.

    At least one section is kept on each side; a specimen with a single section
    cannot be split and is rejected by the caller.
    """
    n_val = min(max(1, math.ceil(val_fraction * n_sections)), n_sections - 1)
    return slice(0, n_sections - n_val), slice(n_sections - n_val, n_sections)


def check_pair(image: np.ndarray, labels: np.ndarray, name: str) -> None:
    """Reject an image/labels pair that cannot train or score (one sentence, names the specimen)."""
    if image.shape != labels.shape:
        raise InputError(
            f"{name}: labels have shape {labels.shape} but the image has {image.shape}; "
            "give labels of exactly the image's (z, y, x) shape"
        )
    if not np.any(labels):
        raise InputError(f"{name}: labels are all background (0); give instance labels with at least one cell")
    if not np.all(np.isfinite(image)):
        raise InputError(f"{name}: the image contains NaN or infinite values; fix or re-export the stack")


def augment_intensity(patch: np.ndarray, rng: np.random.Generator, aug: dict) -> np.ndarray:
    """Random contrast, gamma, blur and noise on a float image in [0, 1].

    Why: the network is trained on HR but applied to SR outputs, which are
    softer and differently contrasted; seeing such variation in training keeps
    the segmentation from collapsing on them.
    """
    if rng.random() >= float(aug.get("prob", 0.0)):
        return patch
    out = patch.astype(np.float32, copy=True)
    c = float(aug.get("contrast", 0.0))
    if c > 0:
        out = out * rng.uniform(1 - c, 1 + c) + rng.uniform(-c / 2, c / 2)
    g = float(aug.get("gamma", 0.0))
    if g > 0:
        out = np.clip(out, 0, 1) ** np.exp(rng.uniform(-g, g))
    s = float(aug.get("blur_sigma", 0.0))
    if s > 0:
        sigma = rng.uniform(0, s)
        # blur in y/x only: SR works per section
        out = ndimage.gaussian_filter(out, sigma=(0,) * (out.ndim - 2) + (sigma, sigma))
    n = float(aug.get("noise", 0.0))
    if n > 0:
        out = out + rng.normal(0, rng.uniform(0, n), out.shape).astype(np.float32)
    return np.clip(out, 0, 1).astype(np.float32)


def sample_batch(
    volumes: Sequence[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    batch: int,
    patch: int,
    dim: int,
    patch_z: int = 1,
    aug: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random augmented training patches: images (B, 1, [Z,] P, P) and targets (B, 2|3, [Z,] P, P).

    Labels are cropped with one voxel of margin on every side and augmented
    with the image; targets are computed after augmentation (so a flip never
    turns a predecessor into a successor) and the margin is then dropped, so
    the first row of a patch gets its true affinity, not an artificial 0.
    """
    aug = aug or {}
    imgs, tgts = [], []
    for _ in range(batch):
        image, labels = volumes[int(rng.integers(len(volumes)))]
        nz, ny, nx = image.shape
        p = min(patch, ny - 2, nx - 2)
        pz = 1 if dim == 2 else min(patch_z, nz - 2) if nz > 2 else nz
        mz = 0 if dim == 2 or nz <= 2 else 1
        z0 = int(rng.integers(0, nz - pz - 2 * mz + 1))
        y0 = int(rng.integers(0, ny - p - 2 + 1))
        x0 = int(rng.integers(0, nx - p - 2 + 1))
        sl = (slice(z0, z0 + pz + 2 * mz), slice(y0, y0 + p + 2), slice(x0, x0 + p + 2))
        img, lab = image[sl], labels[sl]
        if aug.get("flip", False):
            k = int(rng.integers(4))
            img, lab = np.rot90(img, k, axes=(1, 2)), np.rot90(lab, k, axes=(1, 2))
            if rng.random() < 0.5:
                img, lab = img[:, :, ::-1], lab[:, :, ::-1]
            if dim == 3 and rng.random() < 0.5:
                img, lab = img[::-1], lab[::-1]
        aff = affinity_targets(np.ascontiguousarray(lab), dim=dim)
        inner = (slice(mz, mz + pz), slice(1, 1 + p), slice(1, 1 + p))
        img = augment_intensity(np.ascontiguousarray(img[inner]), rng, aug)
        aff = aff[(slice(None),) + inner]
        if dim == 2:
            imgs.append(img[0][None])          # (1, P, P)
            tgts.append(aff[1:, 0])            # (2, P, P): y, x
        else:
            imgs.append(img[None])             # (1, Z, P, P)
            tgts.append(aff)                   # (3, Z, P, P)
    return np.stack(imgs).astype(np.float32), np.stack(tgts).astype(np.float32)


def affinity_loss(logits: torch.Tensor, target: torch.Tensor, balance: bool = False) -> torch.Tensor:
    """Binary cross-entropy on logits; `balance` weights both classes equally (lsd balance_labels)."""
    logits = logits.float()
    if not balance:
        return F.binary_cross_entropy_with_logits(logits, target)
    pos = target.mean().clamp(1e-3, 1 - 1e-3)
    weight = torch.where(target > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


# --------------------------------------------------------------------------- prediction


def _tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, n) with tiles of `tile` overlapping by >= `overlap`."""
    if n <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, n - tile, step))
    return starts + [n - tile]


def _ramp(n: int, overlap: int) -> np.ndarray:
    """1-D blending weight: linear ramp over `overlap` at both ends, never 0 (hand-written: no library does this)."""
    if overlap <= 0:
        return np.ones(n, np.float32)
    i = np.arange(n, dtype=np.float32)
    return np.minimum(1.0, np.minimum(i + 1, n - i) / (overlap + 1)).astype(np.float32)


@torch.no_grad()
def predict_affinities(
    net: AffinityUNet,
    image: np.ndarray,
    device: torch.device | str = "cpu",
    tile: int = 256,
    overlap: int = 32,
    batch: int = 4,
    tile_z: int = 8,
    progress: bool = True,
) -> np.ndarray:
    """Affinities (3, z, y, x) float32 of an image (z, y, x) in [0, 1], tiled with blended overlap.

    Memory on the device is bounded by the tile size; tiles are blended with
    linear ramps so tile seams do not show as boundaries. 2D nets predict each
    section independently (z affinity 0).
    """
    device = torch.device(device)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise InputError(f"image must be (z, y, x), got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise InputError("the image to segment contains NaN or infinite values; fix the upstream output")
    net = net.to(device).eval()
    nz, ny, nx = image.shape
    m = net.multiple
    ty, tx = min(tile, ny), min(tile, nx)
    oz = 2 if net.dim == 3 else 0
    tz = min(tile_z, nz) if net.dim == 3 else 1
    zs = _tile_starts(nz, tz, oz) if net.dim == 3 else list(range(nz))
    ys, xs = _tile_starts(ny, ty, overlap), _tile_starts(nx, tx, overlap)
    wz = _ramp(tz, oz if len(zs) > 1 else 0)
    w2 = _ramp(ty, overlap if len(ys) > 1 else 0)[:, None] * _ramp(tx, overlap if len(xs) > 1 else 0)[None, :]
    weight = wz[:, None, None] * w2[None]
    out = np.zeros((3, nz, ny, nx), np.float32)
    norm = np.zeros((nz, ny, nx), np.float32)
    # pad each tile up to a multiple of 2**(depth-1) in y/x (reflect: no artificial edges)
    py, px = (-ty) % m, (-tx) % m
    jobs = [(z, y, x) for z in zs for y in ys for x in xs]
    bar = tqdm(total=len(jobs), desc="affinities", unit="tile", disable=not progress, mininterval=2)
    for i in range(0, len(jobs), batch):
        chunk = jobs[i:i + batch]
        tiles = [image[z:z + tz, y:y + ty, x:x + tx] for z, y, x in chunk]
        tiles = np.stack([np.pad(t, ((0, 0), (0, py), (0, px)), mode="reflect") for t in tiles])
        inp = torch.from_numpy(tiles).to(device)
        if net.dim == 3:
            inp = inp[:, None]                # (B, 1, Z, Y, X); in 2D the single section is the channel
        with runtime.autocast(device):
            logits = net(inp)
        affs = logits_to_affs(logits, net.dim).cpu().numpy()
        if net.dim == 2:
            affs = affs[:, :, None]           # (B, 3, 1, Y, X)
        affs = affs[..., :ty, :tx]
        for (z, y, x), a in zip(chunk, affs):
            out[:, z:z + tz, y:y + ty, x:x + tx] += a * weight
            norm[z:z + tz, y:y + ty, x:x + tx] += weight
        bar.update(len(chunk))
    bar.close()
    out /= norm
    if net.dim == 2:
        out[0] = 0.0
    return out


def load_affinity_model(path, device: torch.device | str = "cpu") -> AffinityUNet:
    """Rebuild the network saved by `train_affinity` (architecture read from the file)."""
    state = runtime.load_checkpoint(path, map_location="cpu")
    if "net" not in state or "state_dict" not in state:
        raise InputError(f"{path}: not an affinity model written by srseg; retrain it with the train_affinity rule")
    net = AffinityUNet(**state["net"])
    net.load_state_dict(state["state_dict"])
    net.params = affinity_params(state.get("params"))  # training config: prediction tile defaults
    return net.to(device).eval()


# --------------------------------------------------------------------------- training


def _params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _fingerprint(volumes) -> str:
    """Hash of the training data, so a checkpoint is only resumed on the data it was trained on."""
    h = hashlib.blake2b(digest_size=16)
    for image, labels in volumes:
        for arr in (image, labels):
            arr = np.ascontiguousarray(arr)
            h.update(str((arr.shape, arr.dtype.str)).encode())
            h.update(arr.data)
    return h.hexdigest()


def train_affinity(
    volumes: Sequence[tuple[np.ndarray, np.ndarray]],
    params: dict,
    seed: int = 0,
    device: torch.device | str = "cpu",
    checkpoint: str | Path | None = None,
    val_volumes: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    logger=None,
    progress: bool = True,
) -> tuple[AffinityUNet, list[dict], dict]:
    """Train an AffinityUNet on (image, labels) volumes; return (net, log rows, info).

    Checkpoints every `checkpoint_every` steps to `checkpoint` (atomically) and
    resumes from it when it exists and was written for the same params and seed
    (a changed config starts afresh). Logs every `log_every` steps; the
    validation loss (on `val_volumes`, no augmentation) every `val_every` steps.
    """
    p = affinity_params(params)
    dim = int(p["dim"])
    device = torch.device(device)
    key = _params_hash({"params": p, "seed": seed, "data": _fingerprint(volumes)})
    rng = runtime.seed_everything(seed)
    net = AffinityUNet(dim, p["features"], p["depth"]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=float(p["lr"]))
    steps = int(p["steps"])
    # cosine decay to 5 % of lr: a short CPU budget converges better than at constant lr
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))))
    scaler = runtime.grad_scaler(device)
    start, rows, elapsed, resumed = 0, [], 0.0, None
    if checkpoint is not None and Path(checkpoint).exists():
        state = runtime.load_checkpoint(checkpoint, map_location=device)
        if state.get("key") == key:
            net.load_state_dict(state["state_dict"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            start, rows, elapsed, resumed = state["step"], state["rows"], state["elapsed"], state["step"]
            if logger:
                logger.info("resumed from %s at step %d", checkpoint, start)
        elif logger:
            logger.info("ignoring %s: written for other params", checkpoint)

    # the patch must fit every training section (with a 1-px margin) and the U-Net's pooling
    m = net.multiple
    patch = min(int(p["patch"]), min(min(v[0].shape[1:]) for v in volumes) - 2)
    patch -= patch % m
    if patch < m:
        raise InputError(f"training sections of {min(min(v[0].shape[1:]) for v in volumes)} pixels are too small for "
                         f"affinity.depth {p['depth']}; lower affinity.depth or give larger sections")
    val_batch = _validation_batch(val_volumes, dim, p)
    running, count = 0.0, 0
    t0 = time.perf_counter()
    bar = tqdm(total=steps, initial=start, desc="affinity training", unit="step", disable=not progress, mininterval=2)
    for step in range(start + 1, steps + 1):
        net.train()
        x, y = sample_batch(volumes, rng, int(p["batch"]), patch, dim, int(p["patch_z"]), p["augment"])
        x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        with runtime.autocast(device):
            logits = net(x)
        loss = affinity_loss(logits, y, bool(p["balance"]))
        runtime.scaled_step(loss, opt, scaler)
        lr_now = opt.param_groups[0]["lr"]
        sched.step()
        running += float(loss.detach())
        count += 1
        bar.update(1)
        val_due = val_batch is not None and (step % int(p["val_every"]) == 0 or step == steps)
        if step % int(p["log_every"]) == 0 or step == steps or val_due:
            val_loss = _val_loss(net, val_batch, device, p) if val_due else float("nan")
            row = {"step": step, "loss": running / count, "val_loss": val_loss,
                   "lr": lr_now, "seconds": elapsed + time.perf_counter() - t0}
            rows.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            if logger:
                logger.info("step %d loss %.4f val_loss %.4f", step, row["loss"], row["val_loss"])
            running, count = 0.0, 0
        if checkpoint is not None and (step % int(p["checkpoint_every"]) == 0 or step == steps):
            runtime.save_checkpoint(checkpoint, {
                "key": key, "step": step, "state_dict": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "rows": rows, "elapsed": elapsed + time.perf_counter() - t0,
            })
    bar.close()
    wall = elapsed + time.perf_counter() - t0
    info = {"steps": steps, "resumed_from_step": resumed, "wall_seconds": wall,
            "steps_per_second": (steps - start) / max(time.perf_counter() - t0, 1e-9) if steps > start else None}
    return net.eval(), rows, info


def _validation_batch(val_volumes, dim: int, p: dict):
    """Centre crops (at most 2 patches wide) of the validation sections with their targets."""
    if not val_volumes:
        return None
    side = 2 * int(p["patch"])
    imgs, tgts = [], []
    for image, labels in val_volumes:
        nz, ny, nx = image.shape
        cy, cx = min(side, ny), min(side, nx)
        m = 2 ** (int(p["depth"]) - 1)
        cy, cx = cy - cy % m, cx - cx % m
        y0, x0 = (ny - cy) // 2, (nx - cx) // 2
        aff = affinity_targets(labels, dim)[:, :, y0:y0 + cy, x0:x0 + cx]
        img = image[:, y0:y0 + cy, x0:x0 + cx]
        if dim == 2:
            imgs += [im[None] for im in img]
            tgts += [aff[1:, z] for z in range(nz)]
        else:
            imgs.append(img[None])
            tgts.append(aff)
    return imgs, tgts


@torch.no_grad()
def _val_loss(net, val_batch, device, p) -> float:
    net.eval()
    imgs, tgts = val_batch
    total, n = 0.0, 0
    for img, tgt in zip(imgs, tgts):
        x = torch.from_numpy(np.ascontiguousarray(img[None])).to(device)
        y = torch.from_numpy(np.ascontiguousarray(tgt[None])).to(device)
        with runtime.autocast(device):
            logits = net(x)
        total += float(affinity_loss(logits, y, bool(p["balance"]))) * y.numel()
        n += y.numel()
    return total / max(n, 1)


def split_specimens(pairs: dict[str, tuple[np.ndarray, np.ndarray]], val_fraction: float):
    """Per specimen: ((train image, train labels), (val image, val labels), val section range)."""
    out = {}
    for name, (image, labels) in pairs.items():
        if image.shape[0] < 2:
            raise InputError(f"{name}: a single section cannot be split into training and validation; give at least 2 sections")
        tr, va = validation_sections(image.shape[0], val_fraction)
        out[name] = ((image[tr], labels[tr]), (image[va], labels[va]), [va.start, va.stop])
    return out


def run_train_affinity(
    hr: Sequence[str],
    labels: Sequence[str],
    model: str,
    log_csv: str,
    train_json: str,
    threshold_json: str,
    params: dict,
    thresholds: Sequence[float],
    seed_min_distance: int = 3,
    merge_function: str = "mean",
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    log: str | None = None,
) -> None:
    """Snakemake entry point of rule train_affinity (one fold).

    Trains on the first (1 - val_fraction) sections of every training specimen,
    then segments the held-back validation sections at every threshold and
    writes the one with the lowest mean VOI sum to threshold.json: the test
    specimen is never looked at.
    """
    from .segment import choose_threshold  # segment imports this module

    logger = runtime.get_logger("srseg.affinity", log)
    runtime.set_threads(threads)
    p = affinity_params(params)
    if len(hr) != len(labels) or not hr:
        raise InputError("rule train_affinity needs one labels file per HR file and at least one labelled "
                         "training specimen; add labels to a training specimen")
    pairs = {}
    for hp, lp in zip(hr, labels):
        image, _, _ = read_image(hp)
        lab, _ = read_labels(lp)
        check_pair(image, lab, f"{lp}")
        pairs[str(Path(hp).parent.name)] = (image, lab)
    splits = split_specimens(pairs, float(p["val_fraction"]))
    dev = runtime.resolve_device(device)
    logger.info("training affinity net (%dD) on %s, device %s", p["dim"], ", ".join(pairs), dev)
    ckpt = Path(model).with_name("checkpoint.pt")
    net, rows, info = train_affinity(
        [s[0] for s in splits.values()], p, seed=seed, device=dev, checkpoint=ckpt,
        val_volumes=[s[1] for s in splits.values()], logger=logger,
    )
    write_csv(log_csv, pd.DataFrame(rows, columns=["step", "loss", "val_loss", "lr", "seconds"]))

    predict: Callable[[np.ndarray], np.ndarray] = lambda img: predict_affinities(  # noqa: E731
        net, img, dev, int(p["tile"]), int(p["overlap"]), int(p["batch"]), int(p["tile_z"]))
    choice = choose_threshold(
        predict, {name: s[1] for name, s in splits.items()}, thresholds,
        seed_min_distance=seed_min_distance, dim=int(p["dim"]), merge_function=merge_function,
    )
    choice["validation_sections"] = {name: s[2] for name, s in splits.items()}
    logger.info("best threshold on validation: %s", choice["best_threshold"])

    runtime.save_checkpoint(model, {"net": net.config(), "state_dict": net.state_dict(), "params": p,
                                     "seed": seed, "torch_version": torch.__version__})
    write_json(train_json, {
        "params": p, "seed": seed, "device": str(dev), "torch_version": torch.__version__,
        "host": platform.node(), "threads": torch.get_num_threads(), "n_parameters": runtime.count_parameters(net),
        "train_specimens": list(pairs), "train_sections": {n: [0, s[2][0]] for n, s in splits.items()},
        "validation_sections": choice["validation_sections"],
        "final_loss": rows[-1]["loss"] if rows else None,
        "final_val_loss": next((r["val_loss"] for r in reversed(rows) if not math.isnan(r["val_loss"])), None),
        **info,
    })
    write_json(threshold_json, choice)
    if ckpt.exists():
        ckpt.unlink()  # the run is complete; a forced rerun starts afresh
