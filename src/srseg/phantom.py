"""Embedded demo data: an EM-like tissue phantom imaged twice (HR field + LR overview).

One physical tissue block is modelled per specimen and rendered by two
simulated acquisitions, so that an SR model that learns LR -> HR has a real
mapping to learn and alignment has real work to do:

* tissue: neurons are the cells of a Voronoi diagram of Poisson-disk seed points
  whose spacing varies smoothly (``cell_radius_nm`` +- ``cell_size_variation``),
  with boundaries made wavy by a smooth displacement field.  Seeds drift slowly
  from section to section, so every neuron keeps its ID through z.  Dark
  membranes (``membrane_nm`` FWHM, depth ``membrane_contrast``) lie on the cell
  boundaries; cytoplasm has per-cell brightness plus smooth and fine texture;
  mitochondria (dark ellipses with cristae, ellipsoids in 3D) and vesicle
  clusters (small dark rings) sit inside cells.  All of it is drawn on a fine
  grid (``fine_nm``, default half an HR pixel) covering the LR field of view.
* HR image: the fine tissue integrated over each HR pixel (Gaussian of the pixel
  area plus a small probe PSF) and sampled at the HR pixel centres placed by the
  TRUE similarity transform, plus Gaussian noise ``noise``.
* labels: neuron IDs at the HR pixel centres; 0 on membranes (the usual EM
  ground-truth convention), so two different neurons never touch.
* LR image: the same tissue integrated over the coarser LR pixels plus a wider
  probe PSF, a different contrast curve (gain / offset / gamma), slight
  section-to-section brightness drift and its own noise ``lr_noise``.

Transform convention (shared with srseg.align): for HR section k, the 2x3 matrix
``truth["matrices"][k]`` maps HR pixel coordinates (x=col, y=row; pixel centres
at integers) to LR pixel coordinates: [x_lr, y_lr] = M @ [x_hr, y_hr, 1].
HR section k lies in LR section ``truth["lr_z"][k]``.  ``hr_offset_nm`` is the
physical position [z, y, x] of HR pixel (0, 0, 0)'s centre in a frame where LR
pixel (0, 0, 0)'s centre is at 0 nm, as the microscope metadata gives it (off by
up to ``offset_error_lr_px`` LR pixels); the true one is in the truth.

Every random draw comes from ``params["seed"]`` through independent streams
(tissue, placement, HR noise, LR acquisition), so changing a noise level leaves
the tissue and the transform unchanged, and the same parameters give the same
bytes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from .config import section
from .io import InputError, read_json, write_image, write_json, write_labels
from .streams import named_streams, signed_draw

# Independent random streams (srseg.streams), so e.g. changing `noise` leaves the tissue alone.
STREAMS = ("tissue", "placement", "hr_noise", "lr_acq")


def _smooth_field(rng, shape, up_shape) -> np.ndarray:
    """Unit-sd smooth random field: Gaussian noise on a coarse grid, bicubic-upsampled."""
    coarse = rng.standard_normal(shape).astype(np.float32)
    out = cv2.resize(coarse, (up_shape[1], up_shape[0]), interpolation=cv2.INTER_CUBIC)
    return out / max(float(out.std()), 1e-6)


def _poisson_disk(rng, extent_nm, radius_fn, n_candidates) -> np.ndarray:
    """Dart-throwing Poisson-disk sampling with a spatially varying minimum distance.

    Hand-written: scipy/skimage have no variable-radius Poisson-disk sampler.
    Candidates are tried in random order and kept if no kept seed lies closer
    than the local spacing; `radius_fn(points) -> spacing in nm`.
    """
    pts = rng.uniform(0, 1, size=(n_candidates, 2)) * np.asarray(extent_nm, float)
    spacing = radius_fn(pts)
    kept = np.empty((0, 2))
    kept_r = np.empty(0)
    for p, r in zip(pts, spacing):
        if kept.size:
            d2 = ((kept - p) ** 2).sum(1)
            # the local spacing is the mean of both seeds' spacings: symmetric rule
            if np.any(d2 < (0.5 * (kept_r + r)) ** 2):
                continue
        kept = np.vstack([kept, p])
        kept_r = np.append(kept_r, r)
    return kept


class _Tissue:
    """The fine-grid tissue model of one specimen (all lengths in nm).

    Physical frame: LR pixel (0, 0) centre at (0, 0); x = columns, y = rows.
    Fine pixel (i, j) centre at (x0 + j * f, y0 + i * f).
    """

    def __init__(self, p: dict, g: dict, n_sections: int, lr_extent_nm, rng: np.random.Generator):
        self.p, self.f, self.nz, self.rng = p, g["fine_nm"], n_sections, rng
        f = self.f
        r = float(p["cell_radius_nm"])
        # room for the boundary warp and the widest blur; seeds in the pad keep edge cells natural
        pad = 3 * p["boundary_wobble"] * r + 4 * max(p["lr_psf_nm"], g["lr_voxel_nm"][2]) + 50
        lr_vy, lr_vx = g["lr_voxel_nm"][1], g["lr_voxel_nm"][2]
        self.x0 = -lr_vx / 2 - pad
        self.y0 = -lr_vy / 2 - pad
        ext = (lr_extent_nm[0] + 2 * pad, lr_extent_nm[1] + 2 * pad)
        self.shape = (int(math.ceil(ext[0] / f)), int(math.ceil(ext[1] / f)))
        H, W = self.shape

        # Cell size varies smoothly over ~1.5 cell diameters (big dendrites among thin axons).
        gy, gx = max(2, int(ext[0] / (3 * r)) + 2), max(2, int(ext[1] / (3 * r)) + 2)
        size_field = _smooth_field(rng, (gy, gx), (gy * 8, gx * 8))
        size_field = np.clip(size_field, -1.5, 1.5) / 1.5

        def spacing(pts):  # Poisson-disk spacing d ~ 1.35 r gives Voronoi cells of equivalent radius ~ r
            iy = np.clip((pts[:, 0] / ext[0] * size_field.shape[0]).astype(int), 0, size_field.shape[0] - 1)
            ix = np.clip((pts[:, 1] / ext[1] * size_field.shape[1]).astype(int), 0, size_field.shape[1] - 1)
            return 1.35 * r * (1 + p["cell_size_variation"] * size_field[iy, ix])

        n_cand = int(40 * ext[0] * ext[1] / (math.pi * r * r)) + 100
        seeds = _poisson_disk(rng, ext, spacing, n_cand)  # (n, 2) y, x in nm from grid origin
        self.seeds0 = seeds
        self.n_cells = len(seeds)
        # Oblique neurites: each seed drifts at its own constant velocity through z.
        self.velocity = rng.normal(0, p["drift_per_section"] * r, size=(self.n_cells, 2))
        self.brightness = np.clip(0.62 + rng.normal(0, p["cell_brightness_sd"], self.n_cells), 0.45, 0.8)

        # Wavy boundaries: smooth displacement (dy, dx), correlated over ~2 r in xy and smooth in z.
        cy, cx = max(2, int(ext[0] / (2 * r)) + 2), max(2, int(ext[1] / (2 * r)) + 2)
        disp = rng.standard_normal((2, n_sections + 4, cy, cx)).astype(np.float32)
        disp = ndi.gaussian_filter1d(disp, 1.5, axis=1)[:, 2:-2]
        disp /= max(float(disp.std()), 1e-6)
        self.disp_coarse = disp * (p["boundary_wobble"] * r / f)  # fine pixels

        self._mitos = self._plan_mitochondria(r)
        self._gx, self._gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))

    # ------------------------------------------------------------------ geometry
    def _plan_mitochondria(self, r):
        """3D mitochondria: ellipsoids attached to a neuron, spanning a few sections."""
        rng, p = self.rng, self.p
        mitos = []
        counts = rng.poisson(p["mito_density"] * 1.6, self.n_cells)  # ~60% cut in a given section
        for cell, n in enumerate(counts):
            for _ in range(n):
                a = rng.uniform(90, 220)
                b = rng.uniform(45, 80)
                mitos.append(
                    {
                        "cell": cell,
                        "offset": rng.normal(0, 0.3 * r, 2),
                        "a": min(a, 0.8 * r),
                        "b": min(b, 0.4 * r),
                        "theta": rng.uniform(0, math.pi),
                        "zc": rng.uniform(-2, self.nz + 1),
                        "half_len": rng.uniform(1.5, 4.0),
                        "phase": rng.uniform(0, 2 * math.pi),
                    }
                )
        return mitos

    def seeds_at(self, k: int) -> np.ndarray:
        return self.seeds0 + k * self.velocity

    def displacement(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        H, W = self.shape
        dy = cv2.resize(self.disp_coarse[0, k], (W, H), interpolation=cv2.INTER_CUBIC)
        dx = cv2.resize(self.disp_coarse[1, k], (W, H), interpolation=cv2.INTER_CUBIC)
        return dy, dx

    # ------------------------------------------------------------------ rendering
    def section(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(intensity float32, labels int32 with 0 on membranes) of section k on the fine grid."""
        p, f, rng = self.p, self.f, self.rng
        H, W = self.shape
        seeds = self.seeds_at(k) / f  # fine pixel coordinates (y, x)
        si = np.clip(np.rint(seeds).astype(int), 0, [H - 1, W - 1])
        # Voronoi labels in O(N): OpenCV's exact (MASK_PRECISE) distance transform labels
        # every pixel with its nearest zero pixel; the zeros are the seeds.
        marker = np.ones(self.shape, np.uint8)
        marker[si[:, 0], si[:, 1]] = 0
        _, nearest = cv2.distanceTransformWithLabels(
            marker, cv2.DIST_L2, cv2.DIST_MASK_PRECISE, labelType=cv2.DIST_LABEL_PIXEL
        )
        lut = np.zeros(int(nearest.max()) + 1, np.int32)
        lut[nearest[si[:, 0], si[:, 1]]] = np.arange(1, self.n_cells + 1, dtype=np.int32)
        vor = lut[nearest]
        dy, dx = self.displacement(k)
        cells = cv2.remap(vor, self._gx + dx, self._gy + dy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)

        # Distance (nm) to the nearest cell interface: pixels on either side of a label change.
        edge = np.ones(self.shape, np.uint8)
        dh = cells[:, 1:] != cells[:, :-1]
        dv = cells[1:, :] != cells[:-1, :]
        edge[:, 1:][dh] = 0
        edge[:, :-1][dh] = 0
        edge[1:, :][dv] = 0
        edge[:-1, :][dv] = 0
        dist = (cv2.distanceTransform(edge, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) + 0.5) * f

        # Cytoplasm: per-neuron brightness + smooth texture + fine grain.
        img = self.brightness[cells - 1].astype(np.float32)
        img += p["texture"] * _smooth_field(rng, (int(H * f / 80) + 2, int(W * f / 80) + 2), (H, W))
        img += p["grain"] * _smooth_field(rng, (int(H * f / 15) + 2, int(W * f / 15) + 2), (H, W))

        self._draw_mitochondria(img, cells, dist, k, dy, dx)
        self._draw_vesicles(img, cells, dist)

        # Membranes on top: a dark Gaussian band of FWHM membrane_nm on every interface.
        sigma = p["membrane_nm"] / 2.3548
        img *= 1.0 - p["membrane_contrast"] * np.exp(-0.5 * (dist / sigma) ** 2)
        labels = np.where(dist < p["membrane_nm"] / 2, 0, cells).astype(np.int32)
        return img, labels

    def _draw_mitochondria(self, img, cells, dist, k, dy, dx):
        f = self.f
        H, W = self.shape
        seeds = self.seeds_at(k) / f
        for m in self._mitos:
            s = 1.0 - ((k - m["zc"]) / m["half_len"]) ** 2
            if s < 0.1:
                continue
            s = math.sqrt(s)
            a, b = m["a"] * s / f, max(m["b"] * math.sqrt(s), 25.0) / f
            cy, cx = seeds[m["cell"]] + m["offset"] / f
            iy, ix = int(np.clip(cy, 0, H - 1)), int(np.clip(cx, 0, W - 1))
            cy, cx = cy - dy[iy, ix], cx - dx[iy, ix]  # follow the cell through the boundary warp
            R = int(a) + 3
            y0, y1, x0, x1 = int(cy) - R, int(cy) + R + 1, int(cx) - R, int(cx) + R + 1
            if y0 < 0 or x0 < 0 or y1 > H or x1 > W:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            c, sn = math.cos(m["theta"]), math.sin(m["theta"])
            u = (xx - cx) * c + (yy - cy) * sn
            v = -(xx - cx) * sn + (yy - cy) * c
            rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            alpha = np.clip((1.0 - rho) * b, 0.0, 1.0)  # ~1 fine pixel antialiased rim
            # stay inside the own neuron, away from its membrane
            alpha *= (cells[y0:y1, x0:x1] == m["cell"] + 1) & (dist[y0:y1, x0:x1] > 25.0)
            # matrix with cristae stripes across the long axis, darker double membrane at the rim
            val = 0.36 + 0.06 * np.cos(2 * math.pi * u * f / 32.0 + m["phase"])
            val = np.where(rho > 0.8, 0.24, val)
            win = img[y0:y1, x0:x1]
            win[:] = win * (1 - alpha) + val * alpha

    def _draw_vesicles(self, img, cells, dist):
        """Clusters of ~40 nm dark rings near membranes (presynaptic sites)."""
        p, f, rng = self.p, self.f, self.rng
        H, W = self.shape
        area_um2 = H * W * f * f / 1e6
        n_clusters = rng.poisson(p["vesicle_density"] * area_um2)
        if n_clusters == 0:
            return
        cand = np.flatnonzero((dist > 40) & (dist < 70))
        if cand.size == 0:
            return
        layer = np.zeros(self.shape, np.float32)
        shift = 4  # cv2 sub-pixel bits
        for c in rng.choice(cand, size=n_clusters):
            cy, cx = divmod(int(c), W)
            cell = cells[cy, cx]
            n = rng.integers(5, 15)
            pos = np.array([cy, cx]) + rng.normal(0, 45.0 / f, size=(n, 2))
            rad = rng.uniform(17, 24, n) / f
            for (py, px), rv in zip(pos, rad):
                iy, ix = int(round(py)), int(round(px))
                if not (0 <= iy < H and 0 <= ix < W) or cells[iy, ix] != cell or dist[iy, ix] < rv * f + 12:
                    continue
                cv2.circle(layer, (int(px * 16), int(py * 16)), int(rv * 16), 1.0, 1, cv2.LINE_8, shift)
        img *= 1.0 - 0.6 * cv2.GaussianBlur(layer, (0, 0), 0.6)


# ---------------------------------------------------------------------- public API


def _merge(params: dict, geometry: dict) -> tuple[dict, dict]:
    """The specimen's parameters and the shared geometry with their defaults (schemas/config.schema.yaml)."""
    p = section("specimens.*.phantom", params, where="specimens.<name>.phantom")
    g = section("phantom", geometry)
    g["hr_voxel_nm"] = [float(v) for v in g["hr_voxel_nm"]]
    g["lr_voxel_nm"] = [float(v) for v in g["lr_voxel_nm"]]
    if g["hr_voxel_nm"][0] != g["lr_voxel_nm"][0]:
        raise InputError("phantom.lr_voxel_nm: its z must equal phantom.hr_voxel_nm's (one section thickness)")
    if g["fine_nm"] is None:
        g["fine_nm"] = min(g["hr_voxel_nm"][1:]) / 2
    if g["placement_jitter_lr_px"] is None:
        g["placement_jitter_lr_px"] = g["lr_margin_nm"] / g["lr_voxel_nm"][2] / 4
    return p, g


def _placement(g: dict, n_sections: int, lr_shape_yx, rng) -> dict:
    """True similarity transform(s) HR px -> LR px, and the metadata's stage offset."""
    hz, hy, hx = g["hr_shape"]
    _, hvy, hvx = g["hr_voxel_nm"]
    _, lvy, lvx = g["lr_voxel_nm"]
    theta = signed_draw(rng, g["max_rotation_deg"])
    scale = 1.0 + signed_draw(rng, g["max_scale_error"])
    c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
    # HR px -> nm: the true HR pixel is `scale` times its nominal size (calibration error)
    A = scale * np.array([[c, -s], [s, c]]) @ np.diag([hvx, hvy])
    # HR field centre = LR field centre + a random shift (sub-pixel + integer, LR px)
    lr_centre = np.array([(lr_shape_yx[1] - 1) * lvx, (lr_shape_yx[0] - 1) * lvy]) / 2
    hr_centre = np.array([(hx - 1) / 2, (hy - 1) / 2])
    shift = rng.uniform(-1, 1, 2) * g["placement_jitter_lr_px"] * np.array([lvx, lvy])
    t0 = lr_centre + shift - A @ hr_centre  # nm position of HR pixel (0, 0)'s centre, (x, y)
    to_lr = np.diag([1 / lvx, 1 / lvy])
    drift = np.cumsum(rng.normal(0, g["section_jitter_lr_px"], (n_sections, 2)), axis=0)
    drift -= drift[0]  # section 0 sits at the nominal offset
    mats = []
    for k in range(n_sections):
        t = t0 + drift[k] * np.array([lvx, lvy])
        mats.append(np.hstack([to_lr @ A, (to_lr @ t)[:, None]]))
    err_px = np.array([signed_draw(rng, g["offset_error_lr_px"]), signed_draw(rng, g["offset_error_lr_px"])])  # (y, x)
    true_off = [0.0, float(t0[1]), float(t0[0])]
    meta_off = [0.0, true_off[1] + err_px[0] * lvy, true_off[2] + err_px[1] * lvx]
    # The whole HR field must lie inside the LR field, with room for the offset error.
    corners = np.array([[0, 0, 1], [hx - 1, 0, 1], [0, hy - 1, 1], [hx - 1, hy - 1, 1]], float).T
    room = g["offset_error_lr_px"] + 2
    for M in mats:
        xy = M @ corners
        if xy.min() < room or xy[0].max() > lr_shape_yx[1] - 1 - room or xy[1].max() > lr_shape_yx[0] - 1 - room:
            raise InputError(
                "config key phantom.lr_margin_nm is too small to hold the rotated, shifted HR field; increase it"
            )
    return {
        "matrices": [M.tolist() for M in mats],
        "rotation_deg": theta,
        "scale": scale,
        "hr_offset_nm_true": true_off,
        "offset_error_lr_px": err_px.tolist(),
        "section_drift_lr_px": drift[:, ::-1].tolist(),  # (y, x) per section
        "hr_offset_nm_meta": meta_off,
    }


def generate_specimen(params: dict, geometry: dict, progress: bool = False) -> dict:
    """Generate one phantom specimen (see module docstring).

    params: the specimen's `phantom:` entry (seed, plus any key of the schema's
    specimens.*.phantom); geometry: config `phantom:` (defaults in the schema).
    Returns lr, hr (float32 zyx in [0, 1]), labels (uint32 zyx, 0 = membrane),
    lr_voxel_nm, hr_voxel_nm, hr_offset_nm (metadata, with error) and truth.
    """
    p, g = _merge(params, geometry)
    rngs = named_streams(p["seed"], STREAMS)
    hz, hy, hx = (int(v) for v in g["hr_shape"])
    _, hvy, hvx = g["hr_voxel_nm"]
    _, lvy, lvx = g["lr_voxel_nm"]
    margin = float(g["lr_margin_nm"])
    lr_shape = (hz, int(round((hy * hvy + 2 * margin) / lvy)), int(round((hx * hvx + 2 * margin) / lvx)))
    lr_extent = (lr_shape[1] * lvy, lr_shape[2] * lvx)
    place = _placement(g, hz, lr_shape[1:], rngs["placement"])
    tissue = _Tissue(p, g, hz, lr_extent, rngs["tissue"])
    f = g["fine_nm"]

    # Fine-grid pixel of a physical point: (pos - origin) / f.
    to_fine = np.array([[1 / f, 0, -tissue.x0 / f], [0, 1 / f, -tissue.y0 / f], [0, 0, 1]])
    lr_to_phys = np.array([[lvx, 0, 0], [0, lvy, 0], [0, 0, 1]])
    lr_to_fine = (to_fine @ lr_to_phys)[:2]
    # Area integration over a pixel of width w ~ Gaussian with sd w / sqrt(12), combined with the probe PSF.
    sd_hr = math.hypot(min(hvx, hvy) / math.sqrt(12), p["hr_psf_nm"]) / f
    sd_lr = math.hypot(max(lvx, lvy) / math.sqrt(12), p["lr_psf_nm"]) / f

    hr = np.empty((hz, hy, hx), np.float32)
    labels = np.empty((hz, hy, hx), np.uint32)
    lr = np.empty(lr_shape, np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for k in tqdm(range(hz), desc="phantom sections", disable=not progress):
        img, lab = tissue.section(k)
        M = np.vstack([np.asarray(place["matrices"][k]), [0, 0, 1]])
        hr_to_fine = (to_fine @ lr_to_phys @ M)[:2]  # HR px -> LR px -> nm -> fine px
        hr[k] = cv2.warpAffine(
            cv2.GaussianBlur(img, (0, 0), sd_hr), hr_to_fine, (hx, hy), flags=flags, borderMode=cv2.BORDER_REFLECT
        )
        labels[k] = cv2.warpAffine(
            lab, hr_to_fine, (hx, hy), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
        lr[k] = cv2.warpAffine(
            cv2.GaussianBlur(img, (0, 0), sd_lr),
            lr_to_fine,
            lr_shape[:0:-1],
            flags=flags,
            borderMode=cv2.BORDER_REFLECT,
        )
    labels = _separate_touching(labels)

    hr += p["noise"] * rngs["hr_noise"].standard_normal(hr.shape, dtype=np.float32)
    acq = rngs["lr_acq"]
    lr = p["lr_offset"] + p["lr_contrast"] * np.clip(lr, 0, None) ** p["lr_gamma"]
    lr += acq.normal(0, p["lr_brightness_drift"], (hz, 1, 1)).astype(np.float32)
    lr += p["lr_noise"] * acq.standard_normal(lr.shape, dtype=np.float32)

    truth = {k: v for k, v in place.items() if k != "hr_offset_nm_meta"}
    truth.update(
        {
            "lr_z": list(range(hz)),
            "seed": int(p["seed"]),
            "n_cells": int(tissue.n_cells),
            "lr_shape": list(lr_shape),
            "hr_shape": [hz, hy, hx],
        }
    )
    return {
        "lr": np.clip(lr, 0, 1).astype(np.float32),
        "hr": np.clip(hr, 0, 1).astype(np.float32),
        "labels": labels,
        "lr_voxel_nm": list(g["lr_voxel_nm"]),
        "hr_voxel_nm": list(g["hr_voxel_nm"]),
        "hr_offset_nm": place["hr_offset_nm_meta"],
        "truth": truth,
    }


def _separate_touching(labels: np.ndarray) -> np.ndarray:
    """Guarantee a membrane (0) between different neurons in every section.

    Nearest-neighbour sampling of a >= 2-pixel-wide membrane band almost always
    leaves one, but a corner can slip through; zero any pixel whose 4-neighbour
    in the same section is a different neuron.
    """
    out = labels.copy()
    for a, b, axis in ((labels[:, :, 1:], labels[:, :, :-1], 2), (labels[:, 1:, :], labels[:, :-1, :], 1)):
        clash = (a != b) & (a > 0) & (b > 0)
        if axis == 2:
            out[:, :, 1:][clash] = 0
        else:
            out[:, 1:, :][clash] = 0
    return out


def run_phantom(
    params: dict,
    geometry: dict,
    out_lr: str,
    out_hr: str,
    out_labels: str,
    out_meta: str,
    out_truth: str,
    progress: bool = True,
    threads: int = 1,
    log=None,
) -> dict:
    """Generate one specimen and write lr/hr (uint8), labels, meta.json, truth.json (all atomic).

    meta.json holds what a microscope would record (voxel sizes, the stage offset
    with its error); truth.json the true placement for testing alignment.
    """
    cv2.setNumThreads(int(threads))  # stay within the cores Snakemake gave the job (results do not depend on it)
    spec = generate_specimen(params, geometry, progress=progress)
    write_generated(spec, out_lr, out_hr, out_labels, out_meta, out_truth, phantom=True)
    return spec


def write_generated(spec: dict, out_lr, out_hr, out_labels, out_meta, out_truth, **meta) -> None:
    """A generated specimen (phantom or simulated) as ingest reads it: lr/hr (uint8), labels, truth.json, meta.json.

    meta.json (written last: its presence means the specimen is complete) holds what a
    microscope would record (voxel sizes, the stage offset with its error) plus `meta`.
    """
    write_image(out_lr, spec["lr"], spec["lr_voxel_nm"], "uint8")
    write_image(out_hr, spec["hr"], spec["hr_voxel_nm"], "uint8")
    write_labels(out_labels, spec["labels"], spec["hr_voxel_nm"])
    write_json(out_truth, spec["truth"])
    keys = ("lr_voxel_nm", "hr_voxel_nm", "hr_offset_nm")
    write_json(out_meta, {**{k: spec[k] for k in keys}, **meta})


def read_truth(path) -> dict:
    """The true placement written by run_phantom (matrices as float arrays)."""
    truth = read_json(path)
    truth["matrices"] = [np.asarray(m, float) for m in truth["matrices"]]
    return truth
