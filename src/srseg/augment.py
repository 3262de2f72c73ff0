"""Training augmentation of the ruler (srseg.affinity): the transforms used in connectomics, seeded.

Every random choice draws from the numpy Generator passed in, so one seed gives one sequence
of patches (and resumed training continues it exactly). `aug` is the `affinity.augment` slice.

- geometry, applied to image and labels together *before* the targets are computed (so an
  affinity or an LSD is always that of the transformed labels): 90-degree rotations and
  flips in y/x (and a z flip for 3D patches); a small rotation by U(-rotate_deg, rotate_deg);
  an elastic deformation (a random displacement of sd `elastic_sigma` px on a grid of
  control points `elastic_spacing` px apart, interpolated smoothly, as gunpowder's
  ElasticAugment). The image is interpolated linearly, labels by nearest neighbour;
- section defects for 3D patches (gunpowder's DefectAugment / ShiftAugment): a section goes
  missing (its image black, the labels kept: the network must bridge it) with probability
  `missing_section`; the stack is misaligned from a section on (image and labels shifted by
  up to `shift_px` in y/x) with probability `shifted_section`;
- intensity, on the image only: contrast and brightness, gamma, Gaussian blur (y/x) and
  Gaussian noise, each drawn per patch with probability `prob`, so the ruler is not thrown
  by SR outputs being cleaner, blurrier or differently contrasted than HR.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage


def geometry_margin(side: int, aug: dict | None) -> int:
    """Extra pixels around a `side` window that the small rotation and the elastic field can pull in."""
    if aug is None:
        return 0
    angle = math.radians(min(float(aug["rotate_deg"]), 45.0))
    rot = side / 2 * (math.cos(angle) + math.sin(angle) - 1)
    return int(math.ceil(rot + 3 * float(aug["elastic_sigma"])))


@functools.lru_cache(maxsize=32)
def _spline_matrix(side: int, n: int) -> np.ndarray:
    """(side, n): row i holds the cubic-spline weights of the n control points at position i (n - 1) / (side - 1).

    map_coordinates(order=3) is a tensor product of 1D spline interpolations, so on a full
    grid the field is W g W^T: the same numbers as interpolating every pixel, far cheaper.
    """
    t = np.linspace(0, n - 1, side)
    return np.stack([ndimage.map_coordinates(e, [t], order=3, mode="nearest") for e in np.eye(n)], axis=1)


def _elastic_field(side: int, rng: np.random.Generator, spacing: float, sigma: float) -> np.ndarray:
    """(2, side, side) displacement: normal(0, sigma) at control points `spacing` apart, cubic in between."""
    n = max(2, int(math.ceil(side / spacing)) + 1)
    grid = rng.normal(0.0, sigma, (2, n, n))
    w = _spline_matrix(side, n)
    return np.stack([w @ g @ w.T for g in grid])


def sample_geometry(rng: np.random.Generator, side: int, aug: dict | None):
    """A random y/x transform of a `side` x `side` window: (k rot90, flip x, flip z, source offsets or None).

    The offsets (2, side, side) are source positions relative to the window's top-left corner
    (small rotation about its centre plus the elastic field); None when neither is on (the
    window is then cut exactly, no interpolation).
    """
    if aug is None:
        return 0, False, False, None
    k, flip_x, flip_z = 0, False, False
    if aug["flip"]:
        k = int(rng.integers(4))
        flip_x = bool(rng.random() < 0.5)
        flip_z = bool(rng.random() < 0.5)
    rotate, elastic = float(aug["rotate_deg"]), float(aug["elastic_sigma"])
    if rotate <= 0 and elastic <= 0:
        return k, flip_x, flip_z, None
    c = (side - 1) / 2
    yy, xx = np.meshgrid(np.arange(side) - c, np.arange(side) - c, indexing="ij")
    a = math.radians(rng.uniform(-rotate, rotate)) if rotate > 0 else 0.0
    coords = np.stack([math.cos(a) * yy - math.sin(a) * xx + c, math.sin(a) * yy + math.cos(a) * xx + c])
    if elastic > 0:
        coords = coords + _elastic_field(side, rng, float(aug["elastic_spacing"]), elastic)
    return k, flip_x, flip_z, coords.astype(np.float32)


def cut(
    image: np.ndarray,
    labels: np.ndarray,
    z0: int,
    nz: int,
    y0: int,
    x0: int,
    side: int,
    margin: int,
    geometry,
    dim: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The (nz, side, side) window at (z0, y0, x0) of image and labels, transformed by `geometry`.

    With source offsets the window is sampled from the region grown by `margin` (mirrored at
    the volume's edges); rot90 / flips come last, so they commute with nothing else drawn.
    """
    k, flip_x, flip_z, coords = geometry
    zs = slice(z0, z0 + nz)
    if coords is None:
        img = image[zs, y0 : y0 + side, x0 : x0 + side]
        lab = labels[zs, y0 : y0 + side, x0 : x0 + side]
    else:
        ny, nx = image.shape[1:]
        ys = slice(max(0, y0 - margin), min(ny, y0 + side + margin))
        xs = slice(max(0, x0 - margin), min(nx, x0 + side + margin))
        src_img, src_lab = image[zs, ys, xs], labels[zs, ys, xs]
        pos = [coords[0] + (y0 - ys.start), coords[1] + (x0 - xs.start)]
        img = np.stack([ndimage.map_coordinates(s, pos, order=1, mode="mirror") for s in src_img.astype(np.float32)])
        # nearest neighbour of float64 IDs: exact below 2**53
        lab = np.stack([ndimage.map_coordinates(s, pos, order=0, mode="mirror") for s in src_lab.astype(np.float64)])
        lab = lab.astype(labels.dtype)
    if k:
        img, lab = np.rot90(img, k, axes=(1, 2)), np.rot90(lab, k, axes=(1, 2))
    if flip_x:
        img, lab = img[:, :, ::-1], lab[:, :, ::-1]
    if flip_z and dim == 3:
        img, lab = img[::-1], lab[::-1]
    return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(lab)


def shift_sections(
    image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, aug: dict
) -> tuple[np.ndarray, np.ndarray]:
    """3D patches: a misaligned stack, i.e. image and labels from a section on shifted by up to `shift_px`."""
    p, px = float(aug["shifted_section"]), int(aug["shift_px"])
    if p <= 0 or px <= 0:
        return image, labels
    image, labels = image.copy(), labels.copy()
    for z in range(1, image.shape[0]):
        if rng.random() < p:
            dy, dx = (int(v) for v in rng.integers(-px, px + 1, 2))
            image[z:] = np.roll(image[z:], (dy, dx), axis=(1, 2))
            labels[z:] = np.roll(labels[z:], (dy, dx), axis=(1, 2))
    return image, labels


def drop_sections(image: np.ndarray, rng: np.random.Generator, aug: dict) -> np.ndarray:
    """3D patches: missing sections (image black, labels kept), each with probability `missing_section`."""
    p = float(aug["missing_section"])
    if p <= 0:
        return image
    image = image.copy()
    for z in range(image.shape[0]):
        if rng.random() < p:
            image[z] = 0.0
    return image


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
