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

Training (rule train_affinity, `run_train_affinity`) is a kind of the one training engine
(srseg.training.engine): `AffinityTraining` contributes the U-Net, the augmented patch
sampler, the class-balanced BCE step and the validation loss; init:, freeze:, AMP, the
device, fingerprinted resume and the kept checkpoint work as for every SR model.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from tqdm import tqdm

from . import runtime
from .config import section
from .data import validation_sections
from .io import InputError, read_image, read_labels
from .tiling import tile_axis
from .training.engine import KINDS, Kind, train
from .training.weights import trainable

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
            layers += [
                conv(cin if i == 0 else cout, cout, k, padding=pad),
                nn.GroupNorm(_groups(cout), cout),
                nn.ReLU(inplace=True),
            ]
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
    """Random contrast, gamma, blur and noise on a float image in [0, 1]; `aug` is the `affinity.augment` slice.

    Why: the network is trained on HR but applied to SR outputs, which are
    softer and differently contrasted; seeing such variation in training keeps
    the segmentation from collapsing on them.
    """
    if rng.random() >= float(aug["prob"]):
        return patch
    out = patch.astype(np.float32, copy=True)
    c = float(aug["contrast"])
    if c > 0:
        out = out * rng.uniform(1 - c, 1 + c) + rng.uniform(-c / 2, c / 2)
    g = float(aug["gamma"])
    if g > 0:
        out = np.clip(out, 0, 1) ** np.exp(rng.uniform(-g, g))
    s = float(aug["blur_sigma"])
    if s > 0:
        sigma = rng.uniform(0, s)
        # blur in y/x only: SR works per section
        out = ndimage.gaussian_filter(out, sigma=(0,) * (out.ndim - 2) + (sigma, sigma))
    n = float(aug["noise"])
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
    `aug` is the `affinity.augment` slice; None: no augmentation at all.
    """
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
        if aug is not None and aug["flip"]:
            k = int(rng.integers(4))
            img, lab = np.rot90(img, k, axes=(1, 2)), np.rot90(lab, k, axes=(1, 2))
            if rng.random() < 0.5:
                img, lab = img[:, :, ::-1], lab[:, :, ::-1]
            if dim == 3 and rng.random() < 0.5:
                img, lab = img[::-1], lab[::-1]
        aff = affinity_targets(np.ascontiguousarray(lab), dim=dim)
        inner = (slice(mz, mz + pz), slice(1, 1 + p), slice(1, 1 + p))
        img = np.ascontiguousarray(img[inner])
        if aug is not None:
            img = augment_intensity(img, rng, aug)
        aff = aff[(slice(None),) + inner]
        if dim == 2:
            imgs.append(img[0][None])  # (1, P, P)
            tgts.append(aff[1:, 0])  # (2, P, P): y, x
        else:
            imgs.append(img[None])  # (1, Z, P, P)
            tgts.append(aff)  # (3, Z, P, P)
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
    srseg.tiling's raised-cosine weight (0 in the outer quarter of each overlap, where
    the reflect-padded tile borders are least reliable), so tile seams do not show as
    boundaries. 3D nets get z tiles of `tile_z` sections overlapping by 2; 2D nets
    predict each section independently (z affinity 0).
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
    if net.dim == 3:
        zs, tz, wz = tile_axis(nz, tile_z, 2)
    else:  # one section per tile, nothing to blend in z
        zs, tz, wz = list(range(nz)), 1, [np.ones(1, np.float32)] * nz
    (ys, ty, wy), (xs, tx, wx) = tile_axis(ny, tile, overlap), tile_axis(nx, tile, overlap)
    out = np.zeros((3, nz, ny, nx), np.float32)
    norm = np.zeros((nz, ny, nx), np.float32)
    # pad each tile up to a multiple of 2**(depth-1) in y/x (reflect: no artificial edges)
    py, px = (-ty) % m, (-tx) % m
    jobs = [(i, j, k) for i in range(len(zs)) for j in range(len(ys)) for k in range(len(xs))]
    bar = tqdm(total=len(jobs), desc="affinities", unit="tile", disable=not progress, mininterval=2)
    for b in range(0, len(jobs), batch):
        chunk = jobs[b : b + batch]
        tiles = [image[zs[i] : zs[i] + tz, ys[j] : ys[j] + ty, xs[k] : xs[k] + tx] for i, j, k in chunk]
        tiles = np.stack([np.pad(t, ((0, 0), (0, py), (0, px)), mode="reflect") for t in tiles])
        inp = torch.from_numpy(tiles).to(device)
        if net.dim == 3:
            inp = inp[:, None]  # (B, 1, Z, Y, X); in 2D the single section is the channel
        with runtime.autocast(device):
            logits = net(inp)
        affs = logits_to_affs(logits, net.dim).cpu().numpy()
        if net.dim == 2:
            affs = affs[:, :, None]  # (B, 3, 1, Y, X)
        affs = affs[..., :ty, :tx]
        for (i, j, k), a in zip(chunk, affs):
            weight = wz[i][:, None, None] * np.outer(wy[j], wx[k])[None]
            box = (slice(zs[i], zs[i] + tz), slice(ys[j], ys[j] + ty), slice(xs[k], xs[k] + tx))
            out[(slice(None),) + box] += a * weight
            norm[box] += weight
        bar.update(len(chunk))
    bar.close()
    out /= norm
    if net.dim == 2:
        out[0] = 0.0
    return out


def load_affinity_model(path, device: torch.device | str = "cpu") -> AffinityUNet:
    """Rebuild the network saved by the train_affinity rule (architecture read from the file).

    `net.params` is the complete `affinity:` slice it was trained with (prediction tiles)."""
    state = runtime.load_checkpoint(path, map_location="cpu")
    if not isinstance(state, dict) or "net" not in state or "state_dict" not in state:
        raise InputError(f"{path}: not an affinity model written by srseg; retrain it with the train_affinity rule")
    net = AffinityUNet(**state["net"])
    net.load_state_dict(state["state_dict"])
    net.params = state.get("params")
    return net.to(device).eval()


# --------------------------------------------------------------------------- training


def split_specimens(pairs: dict[str, tuple[np.ndarray, np.ndarray]], val_fraction: float):
    """Per specimen: ((train image, train labels), (val image, val labels), val section range)."""
    out = {}
    for name, (image, labels) in pairs.items():
        if image.shape[0] < 2:
            raise InputError(
                f"{name}: a single section cannot be split into training and validation; give at least 2 sections"
            )
        tr, va = validation_sections(image.shape[0], val_fraction)
        out[name] = ((image[tr], labels[tr]), (image[va], labels[va]), [va.start, va.stop])
    return out


def training_patch(volumes, settings: dict) -> int:
    """The patch side: `patch`, shrunk to fit every training section (1-px margin) and the U-Net's pooling."""
    m = 2 ** (int(settings["depth"]) - 1)
    smallest = min(min(image.shape[1:]) for image, _ in volumes)
    patch = min(int(settings["patch"]), smallest - 2)
    patch -= patch % m
    if patch < m:
        raise InputError(
            f"training sections of {smallest} pixels are too small for affinity.depth {settings['depth']}; "
            "lower affinity.depth or give larger sections"
        )
    return patch


def validation_batch(val_volumes, dim: int, settings: dict):
    """Centre crops (at most 2 patches wide) of the validation sections with their targets."""
    side, m = 2 * int(settings["patch"]), 2 ** (int(settings["depth"]) - 1)
    imgs, tgts = [], []
    for image, labels in val_volumes:
        nz, ny, nx = image.shape
        cy, cx = min(side, ny), min(side, nx)
        cy, cx = cy - cy % m, cx - cx % m
        y0, x0 = (ny - cy) // 2, (nx - cx) // 2
        aff = affinity_targets(labels, dim)[:, :, y0 : y0 + cy, x0 : x0 + cx]
        img = image[:, y0 : y0 + cy, x0 : x0 + cx]
        if dim == 2:
            imgs += [im[None] for im in img]
            tgts += [aff[1:, z] for z in range(nz)]
        else:
            imgs.append(img[None])
            tgts.append(aff)
    return imgs, tgts


def cosine_decay(steps: int) -> Callable[[int], float]:
    """Learning-rate factor: cosine from 1 to 5 % over `steps`.

    A short CPU budget converges better than at a constant learning rate.
    """
    return lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1)))


@KINDS.register("affinity")
class AffinityTraining(Kind):
    """The affinity U-Net as a training kind: augmented patches, class-balanced BCE, validation loss.

    `settings` is the complete `affinity:` slice plus `seed`; `splits` is `split_specimens`'s
    specimen -> (train pair, validation pair, validation section range); `inputs` names the
    files they came from (their bytes are fingerprinted).
    """

    name = "affinity"
    val_columns = ("val_loss",)
    # `steps` shapes the cosine decay, so it stays in the fingerprint; tiles only matter for prediction
    untracked = frozenset({"checkpoint_every", "val_every", "log_every", "tile", "tile_z", "overlap"})

    def __init__(self, settings: dict, splits: dict, inputs: dict[str, list[str]]):
        super().__init__(settings, inputs, "affinity")
        self.dim = int(settings["dim"])
        self.volumes = [train_pair for train_pair, _, _ in splits.values()]
        self.validation = {name: val_pair for name, (_, val_pair, _) in splits.items()}
        self.specimens = {name: sections for name, (_, _, sections) in splits.items()}  # validation section ranges
        self.patch = training_patch(self.volumes, settings)

    def log_every(self) -> int:
        return int(self.settings["log_every"])

    def build(self, rng, device) -> None:
        s = self.settings
        self.rng, self.device = rng, device
        self.model = AffinityUNet(self.dim, s["features"], s["depth"])
        self.val_batch = validation_batch(list(self.validation.values()), self.dim, s)

    def optimise(self) -> None:
        self.optimizer = torch.optim.Adam(trainable(self.model), lr=float(self.settings["lr"]))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_decay(int(self.settings["steps"])))
        self.scaler = runtime.grad_scaler(self.device)
        self.model.train()

    def parts(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler}

    def rates(self) -> dict[str, float]:
        return {"lr": self.optimizer.param_groups[0]["lr"]}

    def step(self, step: int) -> dict[str, float]:
        s = self.settings
        x, y = sample_batch(
            self.volumes, self.rng, int(s["batch"]), self.patch, self.dim, int(s["patch_z"]), s["augment"]
        )
        x, y = runtime.to_device(x, self.device), runtime.to_device(y, self.device)
        with runtime.autocast(self.device, self.amp):
            logits = self.model(x)
        loss = affinity_loss(logits, y, bool(s["balance"]))
        runtime.require_finite(loss, step, s["lr"])
        runtime.scaled_step(loss, self.optimizer, self.scaler)
        self.scheduler.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        total, n = 0.0, 0
        for img, tgt in zip(*self.val_batch):
            x = runtime.to_device(np.ascontiguousarray(img[None]), self.device)
            y = runtime.to_device(np.ascontiguousarray(tgt[None]), self.device)
            with runtime.autocast(self.device, self.amp):
                logits = self.model(x)
            total += float(affinity_loss(logits, y, bool(self.settings["balance"]))) * y.numel()
            n += y.numel()
        self.model.train()
        return {"val_loss": total / max(n, 1)}

    def describe(self) -> str:
        return f"affinity net ({self.dim}D) on {', '.join(self.specimens)}"

    def summary(self, rows) -> dict:
        params = {k: v for k, v in self.settings.items() if k != "seed"}
        return {
            "params": params,
            "host": platform.node(),
            "train_specimens": list(self.specimens),
            "train_sections": {n: [0, va[0]] for n, va in self.specimens.items()},
            "validation_sections": dict(self.specimens),
        }

    def save(self, path: str, info: dict) -> None:
        params = {k: v for k, v in self.settings.items() if k != "seed"}
        runtime.save_checkpoint(
            path,
            {
                "arch": "affinity",
                "net": self.model.config(),
                "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "params": params,
                "seed": self.settings["seed"],
                "torch_version": torch.__version__,
            },
        )


def read_training_pairs(hr: Sequence[str], labels: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """specimen (the HR file's folder name) -> (image, labels), each pair checked."""
    if len(hr) != len(labels) or not hr:
        raise InputError(
            "rule train_affinity needs one labels file per HR file and at least one labelled "
            "training specimen; add labels to a training specimen"
        )
    pairs = {}
    for hp, lp in zip(hr, labels):
        image, _, _ = read_image(hp)
        lab, _ = read_labels(lp)
        check_pair(image, lab, f"{lp}")
        pairs[str(Path(hp).parent.name)] = (image, lab)
    return pairs


def train_affinity_network(
    hr: Sequence[str],
    labels: Sequence[str],
    model: str,
    log_csv: str,
    train_json: str,
    affinity: dict,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    log: str | None = None,
    checkpoint: str | None = None,
    on_step: Callable[[int], None] | None = None,
    validation: dict | None = None,
) -> AffinityTraining:
    """Train the affinity U-Net on the training sections of every HR + labels pair.

    `affinity` is the complete `affinity:` slice, `validation` the `validation:` one (which
    sections are held back: data.validation_sections, shared with SR training). Writes
    model.pt, log.csv, train.json (the training engine; checkpoint.pt beside model.pt is
    kept) and returns the trained kind (its `model`, `device`, validation sections)."""
    pairs = read_training_pairs(hr, labels)
    splits = split_specimens(pairs, float(section("validation", validation)["fraction"]))
    kind = AffinityTraining(
        {**affinity, "seed": seed}, splits, {"hr": list(map(str, hr)), "labels": list(map(str, labels))}
    )
    train(
        kind,
        model=model,
        log_csv=log_csv,
        train_json=train_json,
        checkpoint=checkpoint,
        device=device,
        threads=threads,
        log=log,
        where="affinity",
        on_step=on_step,
    )
    kind.model.eval()
    return kind
