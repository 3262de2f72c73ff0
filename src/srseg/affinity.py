"""The ruler's network: targets from labels, a 2D / anisotropic-3D U-Net, training, tiled prediction.

Affinity convention (the one waterz reads, funkelab gunpowder/lsd `seg_to_affgraph`):
channel c holds the affinity of voxel p with its neighbour p + o_c, for the offsets
(srseg.ruler_spec.offsets) nearest neighbours first,

    o = [-1, 0, 0] (z), [0, -1, 0] (y), [0, 0, -1] (x), then `affinity.long_range`
    affs[c][p] = 1  if labels[p] == labels[p + o_c] and labels[p] != 0, else 0

and 0 where p + o_c lies outside the volume. So channels 0..2 are the nearest-neighbour
affinities of waterz's region graph (backend/region_graph.hpp pairs seg[p] with seg[p - e_d]
and uses aff[d][p]); the long-range channels (e.g. [0, -8, 0]: 8 pixels up) look across a
membrane from further away and are folded into the agglomeration by srseg.segment.

In 2D mode (`dim: 2`) the network sees one section at a time and the z affinity is 0, so
sections are segmented independently (the right choice when sections are thick and
z-alignment is imperfect). In 3D mode the U-Net uses anisotropic kernels (1x3x3 at full
resolution, 3x3x3 deeper) and pools only in y/x, because EM sections are several times
thicker than pixels. Widths: `features` at the first level, x `growth` per level, `depth`
levels, pooling by `pool` (MALA: 12 features, growth 5, 4 levels, pool 3; config/zoo.yaml).

Multitask (Sheridan et al. 2022, MTLSD): with `affinity.lsd.enabled` a second 1x1 head
predicts the local shape descriptors of the labels (srseg.lsd) as an auxiliary target;
only the affinities are used to segment.

Training (rule train_affinity, `train_affinity_network`) is a kind of the one training engine
(srseg.training.engine): `AffinityTraining` contributes the U-Net, the augmented patch
sampler (srseg.augment: flips, rotation, elastic, intensity, section defects), the
class-balanced BCE (+ LSD MSE) step and the validation loss; init:, freeze:, AMP, the
device, fingerprinted resume and the kept checkpoint work as for every SR model. With
`affinity.cpu_bf16` the ruler also trains in bf16 on a CPU with bf16 instructions
(`training_autocast`). With `affinity.model` (a lab's own network, srseg.ruler_spec)
nothing is trained: `load_ruler`.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import augment, runtime
from .augment import augment_intensity  # noqa: F401 - re-exported (the intensity part of the augmentation)
from .config import section
from .data import ReadBudget, StoredVolume, validation_sections
from .io import InputError, read_labels
from .lsd import local_shape_descriptors
from .ruler_spec import (
    IMAGE_GRID,
    NEAREST,
    check_image_grid,
    image_grid_matters,
    lsd_channels,
    network_augment,
    network_offsets,
    offsets,
    predicted_offsets,
)
from .tiling import tile_axis
from .training.engine import KINDS, Kind, train
from .training.weights import trainable

# --------------------------------------------------------------------------- targets


def offset_affinities(labels: np.ndarray, offset_list: Sequence[Sequence[int]]) -> np.ndarray:
    """Affinities (len(offset_list), z, y, x) float32: aff[c][p] = labels[p] == labels[p + o_c] != 0.

    0 where p + o_c is outside the volume (no neighbour there).
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (z, y, x), got shape {labels.shape}")
    affs = np.zeros((len(offset_list),) + labels.shape, dtype=np.float32)
    fg = labels != 0
    for c, o in enumerate(offset_list):
        here, there = [], []
        for d, k in enumerate(o):
            k, n = int(k), labels.shape[d]
            if abs(k) >= n:
                break
            here.append(slice(max(0, -k), n - max(0, k)))
            there.append(slice(max(0, k), n - max(0, -k)))
        else:
            here, there = tuple(here), tuple(there)
            affs[(c,) + here] = (labels[here] == labels[there]) & fg[here]
    return affs


def affinity_targets(
    labels: np.ndarray, dim: int = 3, offset_list: Sequence[Sequence[int]] | None = None
) -> np.ndarray:
    """Affinities (3 + long range, z, y, x) float32 from instance labels (z, y, x).

    Without `offset_list`: the nearest neighbours, aff[d][p] = 1 iff labels[p] ==
    labels[p - e_d] and labels[p] != 0, the first plane along each axis 0. dim=2: the z
    channel is 0 (a 2D network never links sections).
    """
    affs = offset_affinities(labels, NEAREST if offset_list is None else offset_list)
    if dim == 2:
        affs[0] = 0.0
    return affs


#: LSDs are computed on every n-th pixel in y/x, n = sigma (px) / this, and repeated (lsd-lite's `downsample`):
#: a window of >= 5 pixels is resolved, and a 20-pixel sigma costs 16x less
LSD_SUBSAMPLE_SIGMA = 5.0


class Targets:
    """What the network learns for one `affinity:` slice: its affinity offsets and LSD windows.

    `margin` (y/x) and `margin_z` are the voxels of context a patch's targets need around it:
    the largest offset, the misalignment shift (3D) and, for LSDs, up to one sigma (`context`).
    """

    def __init__(self, settings: dict):
        self.dim = int(settings["dim"])
        self.offsets = network_offsets(settings)  # in the order of the network's channels, its own voxels
        lsd = settings.get("lsd") or {}
        self.lsd = bool(lsd.get("enabled")) and lsd_channels(settings) > 0
        self.lsd_sigma_nm = float(lsd.get("sigma_nm", 0.0)) if self.lsd else 0.0
        reach = max([max(abs(o[1]), abs(o[2])) for o in self.offsets] + [1])
        aug = network_augment(settings) or {}
        if self.dim == 3:
            reach = max(reach, int(aug.get("shift_px", 0)) if aug.get("shifted_section", 0) else 0)
        self.required = reach
        self.margin_z = 0 if self.dim == 2 else max([abs(o[0]) for o in self.offsets] + [1])

    def sigma_px(self, voxel: Sequence[float] | None) -> tuple[float, ...]:
        """The LSD window in voxels (z, y, x) for a volume of `voxel` nm (z, y, x)."""
        if not voxel or not all(voxel):
            raise InputError(
                "affinity.lsd.sigma_nm: the LSD window is in nm, but a training volume has no voxel size; "
                "give its voxel size (TIFF metadata or hr_voxel_nm) or set affinity.lsd.enabled: false"
            )
        return tuple(self.lsd_sigma_nm / float(x) for x in voxel)

    def context(self, voxel) -> int:
        return int(math.ceil(self.sigma_px(voxel)[2])) if self.lsd else 0

    def compute(self, labels: np.ndarray, voxel) -> tuple[np.ndarray, np.ndarray | None]:
        """(affinities (C, z, y, x), LSDs (6 | 10, z, y, x) or None) of a label patch."""
        affs = offset_affinities(labels, self.offsets)
        if not self.lsd:
            return affs, None
        sigma = self.sigma_px(voxel)
        df = max(1, int(sigma[2] / LSD_SUBSAMPLE_SIGMA))  # y/x only: sections are thick
        if self.dim == 2:
            lsds = np.stack([local_shape_descriptors(s, sigma[1:], downsample=df) for s in labels], axis=1)
        else:
            lsds = local_shape_descriptors(labels, sigma, downsample=(1, df, df))
        return affs, lsds


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
    """U-Net mapping an image to affinity logits (and, with `lsd_channels`, LSD logits).

    dim=2: input (B, 1, Y, X) -> logits (B, channels, Y, X), channels = the in-plane offsets
    (2 nearest + long range); dim=3: input (B, 1, Z, Y, X) -> (B, channels, Z, Y, X), kernels
    1x3x3 at full resolution and (1x3x3, 3x3x3) below, pooling 1 x pool x pool (anisotropic:
    z is never downsampled, so any number of sections works). Level i has features x growth**i
    channels. The input is normalised inside: (x - mean) / std. Y and X must be divisible by
    pool**(depth-1); `predict_affinities` pads for that.
    """

    def __init__(
        self,
        dim: int = 2,
        features: int = 16,
        depth: int = 3,
        growth: int = 2,
        pool: int = 2,
        channels: int | None = None,
        lsd_channels: int = 0,
        mean: float = 0.0,
        std: float = 1.0,
        downsample: int = 1,
    ):
        super().__init__()
        self.downsample = int(downsample)
        self.dim, self.features, self.depth = int(dim), int(features), int(depth)
        self.growth, self.pool_size = int(growth), int(pool)
        self.channels = int(channels) if channels is not None else (2 if self.dim == 2 else 3)
        self.lsd_channels = int(lsd_channels)
        self.mean, self.std = float(mean), float(std)
        p = self.pool_size
        if self.dim == 2:
            k_top = k_low = (3, 3)
            pool_k = up = (p, p)
            conv, convT, self.pool = nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d(pool_k)
        else:
            k_top, k_low = ((1, 3, 3), (1, 3, 3)), ((1, 3, 3), (3, 3, 3))
            pool_k = up = (1, p, p)
            conv, convT, self.pool = nn.Conv3d, nn.ConvTranspose3d, nn.MaxPool3d(pool_k)
        kernels = lambda level: (k_top, k_top) if self.dim == 2 else (k_top if level == 0 else k_low)  # noqa: E731
        chans = [self.features * self.growth**i for i in range(self.depth)]
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
        self.head = conv(chans[0], self.channels, 1)
        # offsets (HR voxels) of the output channels incl. a 2D net's zero z channel; builders set long-range ones
        n_nearest = 2 if self.dim == 2 else 3
        self.offsets = [list(o) for o in NEAREST] if self.channels == n_nearest else None
        self.lsd_head = conv(chans[0], self.lsd_channels, 1) if self.lsd_channels else None

    @property
    def multiple(self) -> int:
        """Y and X of the input must be multiples of this."""
        return self.pool_size ** (self.depth - 1)

    def features_at_top(self, x):
        x = (x - self.mean) / self.std
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec in zip(self.up, self.dec):
            x = up(x)
            x = dec(torch.cat([skips.pop(), x], dim=1))
        return x

    def forward(self, x):
        """Affinity logits."""
        return self.head(self.features_at_top(x))

    def forward_all(self, x):
        """(affinity logits, LSD logits or None): the training step's outputs."""
        top = self.features_at_top(x)
        return self.head(top), (self.lsd_head(top) if self.lsd_head is not None else None)

    def config(self) -> dict:
        return {
            "dim": self.dim,
            "features": self.features,
            "depth": self.depth,
            "growth": self.growth,
            "pool": self.pool_size,
            "channels": self.channels,
            "lsd_channels": self.lsd_channels,
            "mean": self.mean,
            "std": self.std,
            "downsample": self.downsample,
        }


def build_network(settings: dict) -> AffinityUNet:
    """The U-Net an `affinity:` slice describes (channels from its offsets and LSDs)."""
    norm = settings.get("normalize") or {"mean": 0.0, "std": 1.0}
    net = AffinityUNet(
        int(settings["dim"]),
        int(settings["features"]),
        int(settings["depth"]),
        int(settings.get("growth", 2)),
        int(settings.get("pool", 2)),
        channels=len(predicted_offsets(settings)),
        lsd_channels=lsd_channels(settings),
        mean=float(norm["mean"]),
        std=float(norm["std"]),
        downsample=int(settings.get("downsample", 1)),
    )
    net.offsets = offsets(settings)
    return net


def logits_to_affs(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Network logits -> (B, 3 + long range, ...) affinities in [0, 1]; 2D nets get a zero z channel first."""
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
    finite = image.is_finite() if isinstance(image, StoredVolume) else np.all(np.isfinite(image))
    if not finite:
        raise InputError(f"{name}: the image contains NaN or infinite values; fix or re-export the stack")


def _float_pair(entry) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) of a (validation) pair with the image as an array (`[...]`: a StoredVolume's float32
    copy, an array's own view): what prediction takes."""
    return entry[0][...], entry[1]


def _volume(entry) -> tuple[np.ndarray, np.ndarray, list | None]:
    """(image, labels, voxel nm or None) of a training volume given as a pair or a triple."""
    return (entry[0], entry[1], entry[2] if len(entry) > 2 else None)


def patch_margin(volumes, targets: Targets, patch: int) -> int:
    """Context (y/x) around a patch: what its targets need, plus LSD context where the sections have room."""
    smallest = min(min(_volume(v)[0].shape[1:]) for v in volumes)
    room = max(0, (smallest - patch) // 2)
    lsd = min(targets.context(_volume(v)[2]) for v in volumes)
    return max(targets.required, min(lsd, room))


def sample_batch(
    volumes: Sequence[tuple],
    rng: np.random.Generator,
    batch: int,
    patch: int,
    dim: int,
    patch_z: int = 1,
    aug: dict | None = None,
    targets: Targets | None = None,
) -> tuple[np.ndarray, ...]:
    """Random augmented training patches.

    Returns (images (B, 1, [Z,] P, P), affinities (B, C, [Z,] P, P)) and, when `targets` has
    LSDs, also (LSDs (B, 6 | 10, [Z,] P, P), foreground (B, 1, [Z,] P, P)). `volumes` are
    (image, labels[, voxel nm]); `targets` defaults to the nearest neighbours of `dim`.

    Each patch is cut with a margin of context on every side, transformed with its labels
    (srseg.augment), its targets are computed from the transformed labels and the margin is
    then dropped, so a patch's first rows get their true affinities, never an artificial 0,
    and a flip never turns a predecessor into a successor. `aug` is the `affinity.augment`
    slice; None: no augmentation at all.
    """
    if targets is None:
        targets = Targets({"dim": dim, "long_range": []})
    margin = patch_margin(volumes, targets, patch)
    imgs, affs_out, lsds_out, fgs = [], [], [], []
    for _ in range(batch):
        image, labels, voxel = _volume(volumes[int(rng.integers(len(volumes)))])
        nz, ny, nx = image.shape
        m = min(margin, (min(ny, nx) - 1) // 2)
        p = min(patch, ny - 2 * m, nx - 2 * m)
        side = p + 2 * m
        mz = 0 if dim == 2 else min(targets.margin_z, max(0, (nz - 1) // 2))
        pz = 1 if dim == 2 else max(1, min(patch_z, nz - 2 * mz))
        z0 = int(rng.integers(0, nz - pz - 2 * mz + 1))
        y0 = int(rng.integers(0, ny - side + 1))
        x0 = int(rng.integers(0, nx - side + 1))
        geometry = augment.sample_geometry(rng, side, aug)
        grow = augment.geometry_margin(side, aug) if geometry[3] is not None else 0
        img, lab = augment.cut(image, labels, z0, pz + 2 * mz, y0, x0, side, grow, geometry, dim)
        if aug is not None and dim == 3:
            img, lab = augment.shift_sections(img, lab, rng, aug)
        aff, lsd = targets.compute(lab, voxel)
        inner = (slice(mz, mz + pz), slice(m, m + p), slice(m, m + p))
        img = np.ascontiguousarray(img[inner])
        if aug is not None:
            img = augment.augment_intensity(img, rng, aug)
            if dim == 3:
                img = augment.drop_sections(img, rng, aug)
        aff = aff[(slice(None),) + inner]
        fg = (lab[inner] != 0).astype(np.float32)[None]
        if dim == 2:
            imgs.append(img[0][None])  # (1, P, P)
            affs_out.append(aff[:, 0])  # (C, P, P)
            fgs.append(fg[:, 0])
            if lsd is not None:
                lsds_out.append(lsd[(slice(None),) + inner][:, 0])
        else:
            imgs.append(img[None])  # (1, Z, P, P)
            affs_out.append(aff)  # (C, Z, P, P)
            fgs.append(fg)
            if lsd is not None:
                lsds_out.append(lsd[(slice(None),) + inner])
    out = (np.stack(imgs).astype(np.float32), np.stack(affs_out).astype(np.float32))
    if targets.lsd:
        out += (np.stack(lsds_out).astype(np.float32), np.stack(fgs))
    return out


def affinity_loss(logits: torch.Tensor, target: torch.Tensor, balance: bool = False) -> torch.Tensor:
    """Binary cross-entropy on logits; `balance` weights both classes equally per channel (lsd balance_labels)."""
    logits = logits.float()
    if not balance:
        return F.binary_cross_entropy_with_logits(logits, target)
    axes = [0] + list(range(2, target.ndim))
    pos = target.mean(dim=axes, keepdim=True).clamp(1e-3, 1 - 1e-3)
    weight = torch.where(target > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


def lsd_loss(logits: torch.Tensor, target: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Mean squared error of sigmoid(logits) against the LSDs, over foreground voxels (LSDs are 0 elsewhere)."""
    err = (torch.sigmoid(logits.float()) - target) ** 2 * foreground
    return err.sum() / (foreground.sum() * target.shape[1]).clamp_min(1.0)


# --------------------------------------------------------------------------- downsampled rulers


def _centred_box(a: np.ndarray, f: int, axis: int) -> np.ndarray:
    """Means over boxes of f pixels along `axis`, box j centred on pixel f*j + f//2 (edge-padded).

    Odd f: the block [f*j, f*j + f). Even f: f + 1 taps with half weight at both ends (the mean
    of the blocks starting at f*j and f*j + 1), so that the box is centred on a pixel, as the
    label samples are. Hand-written: skimage's downscale_local_mean / block_reduce only know
    blocks, whose centres lie half a pixel off every pixel for even f.
    """
    n = a.shape[axis]
    n_out = -(-n // f)
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, n_out * f - n + (1 if f % 2 == 0 else 0))
    a = np.pad(a, pad, mode="edge")

    def blocks(start: int) -> np.ndarray:
        part = np.take(a, np.arange(start, start + n_out * f), axis=axis)
        shape = part.shape[:axis] + (n_out, f) + part.shape[axis + 1 :]
        return part.reshape(shape).mean(axis=axis + 1)

    return blocks(0) if f % 2 else 0.5 * (blocks(0) + blocks(1))


def downsample_image(image: np.ndarray, f: int) -> np.ndarray:
    """The image on the f-times coarser grid in y/x: pixel j is the mean of an f-pixel box around HR pixel f*j + f//2.

    That is where the training labels are sampled (`downsample_volume`) and where the
    affinities go back to on the HR grid (`upsample_affinities`); blocks would sit half an HR
    pixel off the labels for even f, to either side as the flip augmentation falls.
    """
    if f <= 1:
        return np.asarray(image, np.float32)
    img = np.asarray(image, np.float32)
    return _centred_box(_centred_box(img, f, 1), f, 2).astype(np.float32)


def downsample_volume(entry, f: int) -> tuple:
    """A training (image, labels, voxel) triple on the network's grid: box-mean image, labels at the box centres."""
    image, labels, voxel = _volume(entry)
    if f <= 1:
        return tuple(entry)
    ny, nx = (image.shape[1] // f) * f, (image.shape[2] // f) * f
    # section by section: a float32 copy of the whole full-resolution field never exists; the whole section
    # is reduced, so that the last box of an even f reads its real neighbour, not an edge copy
    sections = (downsample_image(image[z : z + 1, :, :], f)[:, : ny // f, : nx // f] for z in range(image.shape[0]))
    img = np.concatenate(list(sections))
    lab = np.ascontiguousarray(labels[:, f // 2 : ny : f, f // 2 : nx : f])
    vox = None if voxel is None else [voxel[0], voxel[1] * f, voxel[2] * f]
    return (img, lab, vox)


def _linear_weights(n_full: int, n_low: int, f: int, edge: bool) -> np.ndarray:
    """(n_full, n_low) linear interpolation from the f-times coarser grid.

    Coarse pixel j sits on HR pixel f*j + f//2 (`downsample_image`), so HR pixel p lies at
    (p - f//2) / f on the coarse grid; a nearest-neighbour edge (edge=True: HR edge between
    p - 1 and p, at p - 0.5; coarse edge j halfway between coarse pixels j - 1 and j) at
    (p - 0.5 - f//2) / f + 0.5.
    """
    p = np.arange(n_full, dtype=np.float64)
    u = (p - 0.5 - f // 2) / f + 0.5 if edge else (p - f // 2) / f
    u = np.clip(u, 0, n_low - 1)
    lo = np.floor(u).astype(int)
    hi = np.minimum(lo + 1, n_low - 1)
    w = np.zeros((n_full, n_low))
    np.add.at(w, (np.arange(n_full), lo), 1 - (u - lo))
    np.add.at(w, (np.arange(n_full), hi), u - lo)
    return w.astype(np.float32)


def upsample_affinities(affs: np.ndarray, channel_offsets, f: int, shape_yx) -> np.ndarray:
    """Affinities (C, z, y', x') of a downsampled ruler on the HR grid (C, z, y, x), linearly interpolated.

    Nearest-neighbour channels are placed at their edges, so the HR edge between p - 1 and p
    gets the coarse edge nearest to it; every other channel at the pixel centres.
    """
    if f <= 1:
        return affs
    ny, nx = shape_yx
    out = np.zeros((affs.shape[0], affs.shape[1], ny, nx), np.float32)
    for c, o in enumerate(channel_offsets):
        wy = _linear_weights(ny, affs.shape[2], f, list(o) == [0, -1, 0])
        wx = _linear_weights(nx, affs.shape[3], f, list(o) == [0, 0, -1])
        out[c] = np.einsum("yj,zjk,xk->zyx", wy, affs[c], wx, optimize=True)
    out[1, :, 0] = 0.0  # no predecessor on the first row / column
    out[2, :, :, 0] = 0.0
    return out


# --------------------------------------------------------------------------- prediction


def _shift(a: np.ndarray, o: int, axis: int) -> np.ndarray:
    """out[p] = a[p + o] along `axis`, 0 where p + o is outside."""
    out = np.zeros_like(a)
    n = a.shape[axis]
    if abs(o) >= n:
        return out
    src, dst = [slice(None)] * a.ndim, [slice(None)] * a.ndim
    src[axis], dst[axis] = (slice(o, n), slice(0, n - o)) if o > 0 else (slice(0, n + o), slice(-o, n))
    out[tuple(dst)] = a[tuple(src)]
    return out


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
    flips: bool = False,
    window: Sequence[int] | None = None,
) -> np.ndarray:
    """Affinities (3 + long range, z, y, x) float32 of an image (z, y, x) in [0, 1], tiled with blended overlap.

    Channels follow srseg.ruler_spec.offsets: z, y, x nearest neighbours, then the long-range
    offsets. Memory on the device is bounded by the tile size; tiles are blended with
    srseg.tiling's raised-cosine weight (0 in the outer quarter of each overlap, where
    the reflect-padded tile borders are least reliable), so tile seams do not show as
    boundaries. 3D nets get z tiles of `tile_z` sections overlapping by 2; 2D nets
    predict each section independently (z affinity 0). `flips` (affinity.test_time_flips):
    the mean over the image and its y, x and y+x flips, each flipped back (an affinity of p
    with p + o predicted on a flipped image is that of p + o with p: moved back by o).

    window (nz, lo, z0, z1): `image` holds sections [lo, lo + len(image)) of a volume of nz
    sections (at least `prediction_window`'s), and the result is the affinities of its sections
    [z0, z1), byte for byte those of the call on the whole volume (`predict_sections`).
    """
    if not flips:
        return _predict_once(net, image, device, tile, overlap, batch, tile_z, progress, window)
    if net.offsets is None:
        raise InputError("test-time flips need the network's channel offsets; load it with load_affinity_model")
    image = np.asarray(image, dtype=np.float32)
    total = None
    for fy in (False, True):
        for fx in (False, True):
            view = image[:, ::-1] if fy else image
            view = np.ascontiguousarray(view[:, :, ::-1] if fx else view)
            affs = _predict_once(net, view, device, tile, overlap, batch, tile_z, progress, window)
            affs = np.ascontiguousarray(affs[:, :, ::-1] if fy else affs)
            affs = np.ascontiguousarray(affs[:, :, :, ::-1] if fx else affs)
            for c, o in enumerate(net.offsets):
                if fy and o[1]:
                    affs[c] = _shift(affs[c], o[1], 1)
                if fx and o[2]:
                    affs[c] = _shift(affs[c], o[2], 2)
            total = affs if total is None else total + affs
    return total / 4


def predict(
    net: AffinityUNet,
    image: np.ndarray,
    device="cpu",
    settings: dict | None = None,
    progress=False,
    window: Sequence[int] | None = None,
):
    """`predict_affinities` with the tiles and test-time flips of an `affinity:` slice (default: the net's own)."""
    p = settings if settings is not None else net.params
    return predict_affinities(
        net,
        image,
        device,
        int(p["tile"]),
        int(p["overlap"]),
        int(p["batch"]),
        int(p["tile_z"]),
        progress=progress,
        flips=bool(p.get("test_time_flips", False)),
        window=window,
    )


def _tile_grid(net, nz: int, ny: int, nx: int, tile: int, overlap: int, tile_z: int):
    """The tiles of a whole (downsampled) volume: ((zs, tz, wz), (ys, ty, wy), (xs, tx, wx)); 2D: one section each."""
    if net.dim == 3:
        z_axis = tile_axis(nz, tile_z, 2)
    else:  # one section per tile, nothing to blend in z
        z_axis = (list(range(nz)), 1, [np.ones(1, np.float32)] * nz)
    return z_axis, tile_axis(ny, tile, overlap), tile_axis(nx, tile, overlap)


def _window_jobs(zs: Sequence[int], tz: int, n_yx: int, batch: int, z0: int, z1: int) -> tuple[int, int]:
    """[first, stop) of the whole volume's tile list (z tile slowest) that a prediction of sections [z0, z1)
    computes: every batch of `batch` tiles that holds a tile reaching into [z0, z1), so that each tile is
    computed in the very batch the whole-volume prediction computes it in."""
    hit = [i for i, a in enumerate(zs) if a < z1 and a + tz > z0]
    if not hit:
        raise ValueError(f"sections [{z0}, {z1}) are outside the volume's {zs[-1] + tz} sections")
    first = (hit[0] * n_yx) // batch * batch
    stop = min(-(-((hit[-1] + 1) * n_yx) // batch) * batch, len(zs) * n_yx)
    return first, stop


def prediction_window(net, shape_zyx: Sequence[int], z0: int, z1: int, settings: dict | None = None) -> tuple[int, int]:
    """The sections [lo, hi) of a (z, y, x) volume of `shape_zyx` that `predict` reads to give the affinities of
    its sections [z0, z1) exactly as on the whole volume: the z extent of every tile batch that holds a tile
    reaching into [z0, z1) (a 3D net's z tiles of tile_z sections overlapping by 2 on the whole volume's grid;
    a 2D net's sections, batch by batch). settings: an `affinity:` slice (default: the net's own)."""
    p = settings if settings is not None else net.params
    nz, ny, nx = (int(s) for s in shape_zyx)
    if not 0 <= z0 < z1 <= nz:
        raise ValueError(f"sections [{z0}, {z1}) are not inside the volume's {nz} sections")
    f = int(getattr(net, "downsample", 1))
    (zs, tz, _), (ys, _, _), (xs, _, _) = _tile_grid(
        net, nz, -(-ny // f), -(-nx // f), int(p["tile"]), int(p["overlap"]), int(p["tile_z"])
    )
    n_yx = len(ys) * len(xs)
    first, stop = _window_jobs(zs, tz, n_yx, int(p["batch"]), z0, z1)
    return zs[first // n_yx], zs[(stop - 1) // n_yx] + tz


def predict_sections(net, volume, z0: int, z1: int, device="cpu", settings: dict | None = None, progress=False):
    """Affinities (C, z1 - z0, y, x) of sections [z0, z1) of `volume` (a (z, y, x) array or lazy volume, floats
    in [0, 1] or integers), byte for byte `predict(net, volume[:], ...)[:, z0:z1]`, from `prediction_window`'s
    sections only: the same tiles, batches, blending and division, of the part a z-block needs. So a volume
    predicted z-block by z-block (in one job or in one job per block) equals its prediction in one piece."""
    from .io import to_float

    lo, hi = prediction_window(net, volume.shape, z0, z1, settings)
    image = to_float(np.asarray(volume[lo:hi]))
    return predict(net, image, device, settings, progress=progress, window=(int(volume.shape[0]), lo, z0, z1))


def _predict_once(net, image, device, tile, overlap, batch, tile_z, progress, window=None) -> np.ndarray:
    device = torch.device(device)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise InputError(f"image must be (z, y, x), got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise InputError("the image to segment contains NaN or infinite values; fix the upstream output")
    net = net.to(device).eval()
    f = int(getattr(net, "downsample", 1))
    full_shape = image.shape[1:]
    image = downsample_image(image, f)
    # window: the image is sections [lo, ...) of a volume of nz sections; the output is sections [z0, z1)
    nz, lo, z0, z1 = (int(v) for v in window) if window is not None else (image.shape[0], 0, 0, image.shape[0])
    _, ny, nx = image.shape
    m = net.multiple
    (zs, tz, wz), (ys, ty, wy), (xs, tx, wx) = _tile_grid(net, nz, ny, nx, tile, overlap, tile_z)
    n_out = net.channels + (1 if net.dim == 2 else 0)
    out = np.zeros((n_out, z1 - z0, ny, nx), np.float32)
    norm = np.zeros((z1 - z0, ny, nx), np.float32)
    # pad each tile up to a multiple of pool**(depth-1) in y/x (reflect: no artificial edges)
    py, px = (-ty) % m, (-tx) % m
    jobs = [(i, j, k) for i in range(len(zs)) for j in range(len(ys)) for k in range(len(xs))]
    first, stop = _window_jobs(zs, tz, len(ys) * len(xs), batch, z0, z1)
    if zs[first // (len(ys) * len(xs))] < lo or zs[(stop - 1) // (len(ys) * len(xs))] + tz > lo + image.shape[0]:
        raise ValueError(f"the image (sections {lo}..) does not hold the tiles of sections [{z0}, {z1})")
    bar = tqdm(total=stop - first, desc="affinities", unit="tile", disable=not progress, mininterval=2)
    for b in range(first, stop, batch):
        chunk = jobs[b : b + batch]
        tiles = [image[zs[i] - lo : zs[i] - lo + tz, ys[j] : ys[j] + ty, xs[k] : xs[k] + tx] for i, j, k in chunk]
        tiles = np.stack([np.pad(t, ((0, 0), (0, py), (0, px)), mode="reflect") for t in tiles])
        inp = torch.from_numpy(tiles).to(device)
        if net.dim == 3:
            inp = inp[:, None]  # (B, 1, Z, Y, X); in 2D the single section is the channel
        with runtime.autocast(device):
            logits = net(inp)
        affs = logits_to_affs(logits, net.dim).cpu().numpy()
        if net.dim == 2:
            affs = affs[:, :, None]  # (B, C, 1, Y, X)
        affs = affs[..., :ty, :tx]
        for (i, j, k), a in zip(chunk, affs):
            # the part of the tile inside [z0, z1): the same products, added in the same tile order
            a0, a1 = max(zs[i], z0), min(zs[i] + tz, z1)
            if a0 >= a1:
                continue
            part = slice(a0 - zs[i], a1 - zs[i])
            weight = wz[i][part, None, None] * np.outer(wy[j], wx[k])[None]
            box = (slice(a0 - z0, a1 - z0), slice(ys[j], ys[j] + ty), slice(xs[k], xs[k] + tx))
            out[(slice(None),) + box] += a[:, part] * weight
            norm[box] += weight
        bar.update(len(chunk))
    bar.close()
    out /= norm
    if f > 1:
        # channels: z, y, x nearest neighbours, then long range (interpolated at the pixel centres); section by
        # section, so that a section's values never depend on how many sections are upsampled with it
        chan = NEAREST + [[0, 0, 0]] * (out.shape[0] - 3)
        out = np.concatenate([upsample_affinities(out[:, z : z + 1], chan, f, full_shape) for z in range(z1 - z0)], 1)
    if net.dim == 2:
        out[0] = 0.0
    return out


def _from_state(state: dict, path) -> AffinityUNet:
    net = AffinityUNet(**state["net"])
    missing, unexpected = net.load_state_dict(state["state_dict"], strict=False)
    if missing or unexpected:
        raise InputError(
            f"{path}: its weights do not fit the affinity network it declares (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); retrain it with the train_affinity rule"
        )
    return net


def load_affinity_model(path, device: torch.device | str = "cpu") -> AffinityUNet:
    """Rebuild the network saved by the train_affinity rule (architecture read from the file).

    `net.params` is the complete `affinity:` slice it was trained with (prediction tiles);
    `net.offsets` the offsets of its output channels (3 nearest neighbours, then long range)."""
    state = runtime.load_checkpoint(path, map_location="cpu")
    if not isinstance(state, dict) or "net" not in state or "state_dict" not in state:
        raise InputError(f"{path}: not an affinity model written by srseg; retrain it with the train_affinity rule")
    check_image_grid(state, str(path))
    net = _from_state(state, path)
    net.params = state.get("params")
    net.offsets = state.get("offsets") or [list(o) for o in NEAREST]
    return net.to(device).eval()


def load_ruler(settings: dict, device: torch.device | str = "cpu") -> AffinityUNet:
    """A lab's own ruler, `affinity.model`: an srseg affinity checkpoint or a bare AffinityUNet state_dict.

    A bare state_dict (or {"state_dict": ...}) is loaded into the network the `affinity:` keys
    describe (dim, features, growth, depth, pool, long_range; an `lsd_head.` it holds is kept);
    the declared offsets and normalisation are those the workflow uses. srseg.ruler_spec
    checked file, arch and channels before any job ran; what only torch can see (a weight
    of another shape) fails here with a sentence naming affinity.model.
    """
    path = settings["model"]
    state = runtime.load_checkpoint(path, map_location="cpu")
    norm = settings.get("normalize") or {"mean": 0.0, "std": 1.0}
    if isinstance(state, dict) and "net" in state and "state_dict" in state:
        check_image_grid(state, f"affinity.model: {path}")
        cfg = {**state["net"], "mean": float(norm["mean"]), "std": float(norm["std"])}
        net = _from_state({"net": cfg, "state_dict": state["state_dict"]}, f"affinity.model: {path}")
    else:
        weights = state.get("state_dict", state) if isinstance(state, dict) else None
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise InputError(
                f"affinity.model: {path} holds no state_dict of tensors; save the network with "
                "torch.save(net.state_dict(), path)"
            )
        lsd = sum(1 for k in weights if k.startswith("lsd_head.")) > 0
        n_lsd = int(weights["lsd_head.weight"].shape[0]) if lsd else 0
        net = build_network({**settings, "lsd": {"enabled": False}})
        if n_lsd:
            net = AffinityUNet(**{**net.config(), "lsd_channels": n_lsd})
        try:
            net.load_state_dict(weights)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[1] if len(str(exc).splitlines()) > 1 else str(exc)
            raise InputError(
                f"affinity.model: {path} does not fit the AffinityUNet of affinity.dim/features/growth/depth/pool "
                f"({first.strip()}); set those keys to the network's architecture"
            ) from None
    net.params = dict(settings)
    net.offsets = offsets(settings)
    return net.to(device).eval()


# --------------------------------------------------------------------------- training


def split_specimens(pairs: dict[str, tuple], val_fraction: float):
    """Per specimen: ((train image, train labels[, voxel]), (val image, val labels[, voxel]), val section range)."""
    out = {}
    for name, entry in pairs.items():
        image, labels, voxel = _volume(entry)
        if image.shape[0] < 2:
            raise InputError(
                f"{name}: a single section cannot be split into training and validation; give at least 2 sections"
            )
        tr, va = validation_sections(image.shape[0], val_fraction)
        extra = (voxel,) if len(entry) > 2 else ()
        out[name] = ((image[tr], labels[tr], *extra), (image[va], labels[va], *extra), [va.start, va.stop])
    return out


def training_patch(volumes, settings: dict) -> int:
    """The patch side: `patch`, shrunk to fit every training section with the targets' margin and the pooling."""
    m = int(settings.get("pool", 2)) ** (int(settings["depth"]) - 1)
    smallest = min(min(_volume(v)[0].shape[1:]) for v in volumes)
    patch = min(int(settings["patch"]), smallest - 2 * Targets(settings).required)
    patch -= patch % m
    if patch < m:
        raise InputError(
            f"training sections of {smallest} pixels are too small for affinity.depth {settings['depth']} "
            f"(and long-range offsets of up to {Targets(settings).required} pixels); lower affinity.depth or "
            "affinity.long_range, or give larger sections"
        )
    return patch


def validation_batch(val_volumes, targets: Targets, settings: dict):
    """Centre crops (at most 2 patches wide) of the validation sections with their targets.

    [(image, affinities, LSDs or None, foreground)], one entry per section (2D) or volume (3D).
    """
    side, m = 2 * int(settings["patch"]), int(settings.get("pool", 2)) ** (int(settings["depth"]) - 1)
    out = []
    for entry in val_volumes:
        image, labels, voxel = _volume(entry)
        nz, ny, nx = image.shape
        cy, cx = min(side, ny), min(side, nx)
        cy, cx = cy - cy % m, cx - cx % m
        y0, x0 = (ny - cy) // 2, (nx - cx) // 2
        crop = (slice(None), slice(y0, y0 + cy), slice(x0, x0 + cx))
        aff, lsd = targets.compute(labels, voxel)  # of the whole sections: no artificial edge at the crop
        aff = aff[(slice(None),) + crop]
        lsd = lsd[(slice(None),) + crop] if lsd is not None else None
        img, fg = image[crop], (labels[crop] != 0).astype(np.float32)
        if targets.dim == 2:
            for z in range(nz):
                out.append((img[z][None], aff[:, z], None if lsd is None else lsd[:, z], fg[z][None]))
        else:
            out.append((img[None], aff, lsd, fg[None]))
    return out


def cpu_bf16_native() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX-BF16).

    Only there is bf16 autocast a measured speed-up (1.5-1.9x per step of this U-Net,
    bench/ruler_precision.py); elsewhere bf16 would be emulated, so such a CPU stays float32.
    """
    caps = getattr(torch.cpu, "get_capabilities", lambda: {})()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def _cpu_bf16(device: torch.device, amp: bool, cpu_bf16: bool) -> bool:
    """bf16 on this CPU: asked for (`amp` and `affinity.cpu_bf16`) and computed natively here."""
    return amp and cpu_bf16 and device.type == "cpu" and cpu_bf16_native()


def training_precision(device: torch.device, amp: bool, cpu_bf16: bool) -> str:
    """What the ruler trains in (train.json's `precision`): `training_autocast`'s dtype, or float32."""
    if _cpu_bf16(device, amp, cpu_bf16):
        return "bfloat16"
    if amp and device.type == "cuda":  # runtime.autocast's choice
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def training_autocast(device: torch.device, amp: bool, cpu_bf16: bool):
    """runtime.autocast, plus bf16 on a CPU (`affinity.cpu_bf16`). Here rather than in runtime: the SR
    models share runtime's code digest, and this switch must not rerun their training."""
    if _cpu_bf16(device, amp, cpu_bf16):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return runtime.autocast(device, amp)


def cosine_decay(steps: int) -> Callable[[int], float]:
    """Learning-rate factor: cosine from 1 to 5 % over `steps`.

    A short CPU budget converges better than at a constant learning rate.
    """
    return lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1)))


@KINDS.register("affinity")
class AffinityTraining(Kind):
    """The affinity U-Net as a training kind: augmented patches, class-balanced BCE (+ LSD MSE), validation loss.

    `settings` is the complete `affinity:` slice plus `seed`; `splits` is `split_specimens`'s
    specimen -> (train pair, validation pair, validation section range), a pair optionally
    with its voxel size in nm (the LSD window is in nm); `inputs` names the files they came
    from (their bytes are fingerprinted). log.csv has `loss` (the sum), `affinity_loss` and,
    with LSDs, `lsd_loss` (x lsd.weight in the sum); validation the same as `val_*`.
    """

    name = "affinity"
    # `steps` shapes the cosine decay, so it stays in the fingerprint; tiles only matter for prediction
    untracked = frozenset(
        {"checkpoint_every", "val_every", "log_every", "tile", "tile_z", "overlap", "model", "test_time_flips"}
    )

    def __init__(self, settings: dict, splits: dict, inputs: dict[str, list[str]]):
        super().__init__(settings, inputs, "affinity")
        self.dim = int(settings["dim"])
        self.targets = Targets(settings)
        self.augment = network_augment(settings)  # HR-pixel lengths on the network's grid
        f = int(settings.get("downsample", 1))
        self.volumes = [downsample_volume(train_pair, f) for train_pair, _, _ in splits.values()]
        self.validation = {name: _float_pair(val_pair) for name, (_, val_pair, _) in splits.items()}  # HR: thresholds
        self.validation_volumes = [downsample_volume(val_pair, f) for _, val_pair, _ in splits.values()]
        self.specimens = {name: sections for name, (_, _, sections) in splits.items()}  # validation section ranges
        self.patch = training_patch(self.volumes, settings)
        self.val_columns = ("val_loss", "val_affinity_loss") + (("val_lsd_loss",) if self.targets.lsd else ())
        self.cpu_bf16 = bool(settings.get("cpu_bf16", False))

    def log_every(self) -> int:
        return int(self.settings["log_every"])

    def derived_settings(self) -> dict:
        # a downsampled ruler's augmentation on its own grid: the same `augment:` numbers meant twice the nm
        # before they became HR pixels, and a finished checkpoint of then must not be resumed as a ruler of now
        derived = {"network_augment": self.augment} if self.augment != self.settings.get("augment") else {}
        # and its image pixels moved onto the label samples (even downsample): a checkpoint of the block grid
        # learnt targets half an HR pixel off and is retrained, not resumed
        if image_grid_matters(self.settings):
            derived["image_grid"] = IMAGE_GRID
        return derived

    def build(self, rng, device) -> None:
        self.rng, self.device = rng, device
        self.model = build_network(self.settings)
        self.val_batch = validation_batch(self.validation_volumes, self.targets, self.settings)

    def optimise(self) -> None:
        self.optimizer = torch.optim.Adam(trainable(self.model), lr=float(self.settings["lr"]))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_decay(int(self.settings["steps"])))
        self.scaler = runtime.grad_scaler(self.device)
        self.model.train()

    def parts(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler}

    def rates(self) -> dict[str, float]:
        return {"lr": self.optimizer.param_groups[0]["lr"]}

    def losses(self, x, aff, lsd=None, fg=None) -> dict[str, torch.Tensor]:
        with training_autocast(self.device, self.amp, self.cpu_bf16):
            aff_logits, lsd_logits = self.model.forward_all(x)
        terms = {"affinity_loss": affinity_loss(aff_logits, aff, bool(self.settings["balance"]))}
        total = terms["affinity_loss"]
        if lsd is not None and lsd_logits is not None:
            terms["lsd_loss"] = lsd_loss(lsd_logits, lsd, fg)
            total = total + float(self.settings["lsd"]["weight"]) * terms["lsd_loss"]
        return {"loss": total, **terms}

    def step(self, step: int) -> dict[str, float]:
        s = self.settings
        batch = sample_batch(
            self.volumes, self.rng, int(s["batch"]), self.patch, self.dim, int(s["patch_z"]), self.augment, self.targets
        )
        terms = self.losses(*(runtime.to_device(b, self.device) for b in batch))
        runtime.require_finite(terms["loss"], step, s["lr"])
        runtime.scaled_step(terms["loss"], self.optimizer, self.scaler)
        self.scheduler.step()
        return {k: v.item() for k, v in terms.items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        sums: dict[str, float] = {}
        n = 0
        for img, aff, lsd, fg in self.val_batch:
            put = lambda a: runtime.to_device(np.ascontiguousarray(a[None]), self.device)  # noqa: E731
            terms = self.losses(put(img), put(aff), None if lsd is None else put(lsd), put(fg))
            weight = aff.size
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * weight
            n += weight
        self.model.train()
        return {f"val_{k}": v / max(n, 1) for k, v in sums.items()}

    def describe(self) -> str:
        lsd = " + LSDs" if self.targets.lsd else ""
        return f"affinity net ({self.dim}D, {len(self.targets.offsets)} offsets{lsd}) on {', '.join(self.specimens)}"

    def summary(self, rows) -> dict:
        params = {k: v for k, v in self.settings.items() if k != "seed"}
        return {
            "params": params,
            "host": platform.node(),
            "trained": True,
            "offsets": offsets(self.settings),
            "train_specimens": list(self.specimens),
            "train_sections": {n: [0, va[0]] for n, va in self.specimens.items()},
            "validation_sections": dict(self.specimens),
            "precision": training_precision(self.device, self.amp, self.cpu_bf16),
        }

    def save(self, path: str, info: dict) -> None:
        save_ruler(path, self.model, self.settings, seed=self.settings["seed"])


def save_ruler(path: str, net: AffinityUNet, settings: dict, seed=None, source: str | None = None) -> None:
    """model.pt of rule train_affinity: architecture, weights, offsets, normalisation, the `affinity:` slice."""
    params = {k: v for k, v in settings.items() if k != "seed"}
    runtime.save_checkpoint(
        path,
        {
            "arch": "affinity",
            "net": net.config(),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "offsets": offsets(settings),
            "normalize": {"mean": net.mean, "std": net.std},
            "lsd": dict(settings.get("lsd") or {}),
            "image_grid": IMAGE_GRID,
            "params": params,
            "seed": seed,
            "source": source,
            "torch_version": torch.__version__,
        },
    )


def read_training_pairs(hr: Sequence[str], labels: Sequence[str]) -> dict[str, tuple]:
    """specimen (the HR file's folder name) -> (image, labels, voxel nm or None), each pair checked."""
    if len(hr) != len(labels) or not hr:
        raise InputError(
            "rule train_affinity needs one labels file per HR file and at least one labelled "
            "training specimen; add labels to a training specimen"
        )
    pairs, budget = {}, ReadBudget()
    for hp, lp in zip(hr, labels):
        image = budget.open(hp)  # patches become float32; the HR field stays in its stored dtype, or on disk
        voxel = image.voxel_nm
        lab, _ = read_labels(lp)
        check_pair(image, lab, f"{lp}")
        pairs[str(Path(hp).parent.name)] = (image, lab, list(voxel) if voxel else None)
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
    kept) and returns the trained kind (its `model`, `device`, validation sections).
    With `affinity.model` (a lab's own ruler) nothing is trained: `own_ruler`."""
    pairs = read_training_pairs(hr, labels)
    splits = split_specimens(pairs, float(section("validation", validation)["fraction"]))
    if affinity.get("model"):
        return own_ruler(affinity, splits, model, log_csv, train_json, device, threads, log)
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
    kind.model.offsets = offsets(kind.settings)
    return kind


class OwnRuler:
    """A lab's network in the place of a trained kind: `model`, `device`, `dim`, validation pairs and sections."""

    def __init__(self, model: AffinityUNet, device: torch.device, splits: dict):
        self.model, self.device, self.dim = model, device, model.dim
        self.validation = {name: _float_pair(val_pair) for name, (_, val_pair, _) in splits.items()}
        self.specimens = {name: sections for name, (_, _, sections) in splits.items()}


def own_ruler(
    affinity: dict, splits: dict, model: str, log_csv: str, train_json: str, device="auto", threads=None, log=None
) -> OwnRuler:
    """`affinity.model`: load the lab's network (no training) and write the train_affinity outputs for it.

    model.pt is the network in srseg's format with the declared offsets and normalisation
    (`source` names the file), log.csv has no rows, train.json says `trained: false`.
    """
    import pandas as pd

    from .io import write_csv, write_json

    logger = runtime.get_logger("srseg.train", log)
    runtime.set_threads(threads)
    dev = runtime.resolve_device(str(device))
    net = load_ruler(affinity, dev)
    logger.info("affinity.model %s: the lab's ruler, not trained (%s)", affinity["model"], net.config())
    save_ruler(model, net, affinity, source=str(affinity["model"]))
    write_csv(log_csv, pd.DataFrame(columns=["step", "loss"]))
    ruler = OwnRuler(net, dev, splits)
    write_json(
        train_json,
        {
            "trained": False,
            "model": str(affinity["model"]),
            "model_digest": runtime.file_digest(affinity["model"]),
            "net": net.config(),
            "offsets": offsets(affinity),
            "parameters": runtime.count_parameters(net),
            "device": str(dev),
            "train_specimens": list(ruler.specimens),
            "validation_sections": dict(ruler.specimens),
            "torch_version": torch.__version__,
        },
    )
    return ruler
