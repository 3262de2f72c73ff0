"""Acquisition simulator: an LR overview + an HR sub-field acquisition from one real HR stack.

Real EM data sets with instance labels (ISBI 2012, CREMI, SNEMI) hold only HR
images. To run the whole workflow on them -- alignment included -- this module
images the real HR stack twice, as an SBEM microscope would:

* LR overview: the whole field at a coarser pixel (``lr_voxel_nm``, any ratio,
  e.g. 4x or 3.3x), seen through a slightly rotated / mis-scaled stage
  (``max_rotation_deg``, ``max_scale_error``): pixel-area integration plus a
  Gaussian probe PSF, a contrast/gamma change, Poisson-Gaussian noise (shot
  noise at ``lr_dose`` electrons per unit intensity plus read noise) and
  correlated scan-line noise (a per-row offset following an AR(1) process down
  the rows, as slow scan-line drift in SEM gives).
* HR acquisition: a sub-field (``hr_field_fraction`` of the field, placed at
  random away from the edges) cut from the source at its own pixel size, with
  its own independent Poisson-Gaussian noise and a small per-section stage
  drift (integer HR pixels, random walk).
* metadata as the microscope gives it: voxel sizes and a stage offset
  ``hr_offset_nm`` that is off by up to ``offset_error_lr_px`` LR pixels.

Outputs are those of srseg.phantom (lr.tif, hr.tif, labels.tif, meta.json,
truth.json) with the same transform convention: ``truth["matrices"][k]`` maps HR
pixel (x, y) of HR section k to LR pixel (x, y); ``truth["lr_z"][k]`` is its LR
section; ``hr_offset_nm`` [z, y, x] is where HR pixel (0, 0, 0)'s centre lies
in the frame where LR pixel (0, 0, 0)'s centre is at 0 nm.

Pseudo-specimens: one stack can be split into blocks of consecutive sections
(``sections: [start, stop)``), one specimen each, so that leave-one-specimen-out
works on single-stack data sets; `check_section_blocks` refuses overlapping
blocks of the same source so no section is ever in both training and test.

Every random draw comes from ``seed`` through independent streams (geometry,
LR acquisition, HR acquisition): the same parameters give the same bytes.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
from scipy.signal import lfilter
from tqdm import tqdm

from .config import section
from .io import InputError, resolve_bit_depth, to_float, to_full_range
from .labels import area_px, cell_mask_to_instances
from .phantom import write_generated  # noqa: F401  (re-exported)
from .stacks import check_image, read_stack
from .streams import named_streams, signed_draw

# ------------------------------------------------------------------------------ pseudo-specimens


def section_range(spec: dict, n_sections: int | None = None, where: str = "simulate") -> tuple[int, int]:
    """The [start, stop) block of source sections a simulate entry uses."""
    sec = spec.get("sections")
    if sec is None:
        return 0, (n_sections if n_sections is not None else 2**62)
    try:
        start, stop = (int(v) for v in sec)
    except (TypeError, ValueError):
        raise InputError(f"config key {where}.sections = {sec!r} must be [start, stop) section indices") from None
    if start < 0 or stop <= start or (n_sections is not None and stop > n_sections):
        have = f" (the source has {n_sections})" if n_sections is not None else ""
        raise InputError(
            f"config key {where}.sections = {sec!r} is not a valid [start, stop) block of "
            f"sections{have}; use 0 <= start < stop <= the number of sections"
        )
    return start, stop


def source_sections(entry: dict) -> set[tuple[str, int]]:
    """(source path, section index) pairs a simulate specimen is made of (for leak checks)."""
    sim = entry["simulate"]
    start, stop = section_range(sim)
    src = os.path.normpath(os.path.abspath(str(sim["source"])))
    return {(src, k) for k in range(start, stop)}


# ---------------------------------------------------------------------------------- parameters


def merge_params(params: dict, where: str = "simulate") -> dict:
    """The simulate entry over its defaults (schemas/config.schema.yaml); InputError names a bad key."""
    return section("specimens.*.simulate", params, where=where)


def _triplet(value, key: str) -> list[float]:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        out = []
    if len(out) != 3 or not all(np.isfinite(out)) or min(out) <= 0:
        raise InputError(f"config key {key} = {value!r} must be three positive numbers [z, y, x] in nm")
    return out


# Independent random streams (srseg.streams): changing a noise level leaves the geometry unchanged.
STREAMS = ("geometry", "lr_acq", "hr_acq")


# ------------------------------------------------------------------------------------ geometry


def draw_geometry(
    p: dict,
    src_shape,
    src_voxel_nm,
    rng: np.random.Generator,
    *,
    rotation_deg=None,
    scale=None,
    offset_error_lr_px=None,
) -> dict:
    """The true placement of both acquisitions (explicit values override the random draws).

    G maps source pixels (x, y) to LR pixels: the LR grid covers the source field
    (centres coincide) at the nominal pixel ratio times `scale`, rotated by
    `rotation_deg`. HR section k is the source cut at origin c_k (x, y), so its
    true HR->LR matrix is M_k = G @ [I | c_k].
    """
    nz, H, W = (int(v) for v in src_shape)
    _, svy, svx = src_voxel_nm
    _, lvy, lvx = p["lr_voxel_nm"]
    theta = signed_draw(rng, p["max_rotation_deg"]) if rotation_deg is None else float(rotation_deg)
    s = 1.0 + signed_draw(rng, p["max_scale_error"]) if scale is None else float(scale)
    err = (
        np.array([signed_draw(rng, p["offset_error_lr_px"]) for _ in range(2)])
        if offset_error_lr_px is None
        else np.asarray(offset_error_lr_px, float).reshape(2)
    )  # (y, x) LR px
    lr_shape = (nz, max(8, round(H * svy / lvy)), max(8, round(W * svx / lvx)))
    c, sn = math.cos(math.radians(theta)), math.sin(math.radians(theta))
    lin = s * np.array([[c, -sn], [sn, c]]) @ np.diag([svx / lvx, svy / lvy])
    src_c = np.array([(W - 1) / 2, (H - 1) / 2])
    lr_c = np.array([(lr_shape[2] - 1) / 2, (lr_shape[1] - 1) / 2])
    G = np.hstack([lin, (lr_c - lin @ src_c)[:, None]])

    frac = float(p["hr_field_fraction"])
    h, w = max(8, round(H * frac)), max(8, round(W * frac))
    drift = np.cumsum(np.rint(rng.normal(0, p["section_jitter_hr_px"], (nz, 2))), axis=0)
    drift -= drift[0]  # section 0 sits at the nominal origin, (x, y) HR px
    # the field centre is placed at random in the middle half of the free room: away from the edges
    room = np.array([W - w, H - h], float) / 2 - np.abs(drift).max(0) - 1
    if np.any(room < 0):
        raise InputError("config key simulate.hr_field_fraction is too large for the source field; lower it")
    c0 = np.rint(np.array([W - w, H - h]) / 2 + rng.uniform(-0.5, 0.5, 2) * room)
    origins = (c0 + drift).astype(int)
    mats = [np.hstack([lin, (G[:, 2] + lin @ o)[:, None]]) for o in origins]

    # The HR field must lie inside the LR overview (the metadata error may place it partly outside:
    # alignment then searches a clipped window, as with a real stage).
    margin = 2.0
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    for M in mats:
        xy = M @ corners
        if xy.min() < margin or xy[0].max() > lr_shape[2] - 1 - margin or xy[1].max() > lr_shape[1] - 1 - margin:
            raise InputError(
                "config key simulate.hr_field_fraction leaves no room for the rotated, shifted HR "
                "field inside the LR overview; lower hr_field_fraction"
            )
    true_off = [0.0, float(mats[0][1, 2] * lvy), float(mats[0][0, 2] * lvx)]
    meta_off = [0.0, true_off[1] + float(err[0]) * lvy, true_off[2] + float(err[1]) * lvx]
    return {
        "G": G,
        "matrices": mats,
        "origins_xy": origins,
        "hr_shape": (nz, h, w),
        "lr_shape": lr_shape,
        "rotation_deg": theta,
        "scale": s,
        "offset_error_lr_px": [float(e) for e in err],
        "hr_offset_nm_true": true_off,
        "hr_offset_nm_meta": meta_off,
    }


# --------------------------------------------------------------------------------- acquisition


def poisson_gaussian(img: np.ndarray, dose: float, read_noise: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise (Poisson counts at `dose` per unit intensity) plus Gaussian read noise."""
    out = np.clip(img, 0, None).astype(np.float64)
    if dose > 0:
        out = rng.poisson(out * dose) / dose
    if read_noise > 0:
        out = out + rng.normal(0, read_noise, out.shape)
    return out.astype(np.float32)


def scanline_offsets(n_sections: int, n_rows: int, sd: float, corr: float, rng) -> np.ndarray:
    """Per-row intensity offsets (z, y, 1): a stationary AR(1) process down the rows, sd `sd`."""
    e = rng.normal(0, sd * math.sqrt(max(1 - corr**2, 0.0)), (n_sections, n_rows))
    e[:, 0] = rng.normal(0, sd, n_sections)
    # AR(1) recursion x_i = corr x_{i-1} + e_i as an IIR filter (scipy.signal.lfilter)
    return lfilter([1.0], [1.0, -corr], e, axis=1)[..., None].astype(np.float32)


def acquire(
    source: np.ndarray, p: dict, geom: dict, rngs: dict, labels: np.ndarray | None = None, progress: bool = False
) -> dict:
    """Render the LR overview and the HR acquisition of `source` (float32 [0, 1], z y x) for `geom`."""
    nz, h, w = geom["hr_shape"]
    lr_shape = geom["lr_shape"]
    G = geom["G"]
    ratio = float(np.mean(np.hypot(G[0, :2], G[1, :2])) ** -1)  # source px per LR px
    # pixel-area integration (box of `ratio` source px ~ Gaussian sd ratio / sqrt(12)) + probe PSF
    sd = math.hypot(ratio / math.sqrt(12), float(p["psf_sigma_lr_px"]) * ratio)
    inv = cv2.invertAffineTransform(G)  # LR px -> source px
    lr = np.empty(lr_shape, np.float32)
    hr = np.empty((nz, h, w), np.float32)
    lab = None if labels is None else np.empty((nz, h, w), labels.dtype)
    for k in tqdm(range(nz), desc="simulate sections", disable=not progress):
        blurred = cv2.GaussianBlur(source[k], (0, 0), sd)
        lr[k] = cv2.warpAffine(
            blurred,
            inv,
            (lr_shape[2], lr_shape[1]),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
        x0, y0 = geom["origins_xy"][k]
        hr[k] = source[k, y0 : y0 + h, x0 : x0 + w]
        if lab is not None:
            lab[k] = labels[k, y0 : y0 + h, x0 : x0 + w]

    acq = rngs["lr_acq"]
    lr = p["lr_offset"] + p["lr_contrast"] * np.clip(lr, 0, None) ** p["lr_gamma"]
    lr = poisson_gaussian(lr, float(p["lr_dose"]), float(p["lr_read_noise"]), acq)
    if p["scanline_noise"] > 0:
        lr += scanline_offsets(nz, lr_shape[1], float(p["scanline_noise"]), float(p["scanline_corr"]), acq)
    hr = poisson_gaussian(hr, float(p["hr_dose"]), float(p["hr_read_noise"]), rngs["hr_acq"])
    return {"lr": np.clip(lr, 0, 1), "hr": np.clip(hr, 0, 1), "labels": lab}


def simulate_volume(
    source: np.ndarray,
    source_voxel_nm,
    params: dict,
    labels: np.ndarray | None = None,
    geometry_overrides: dict | None = None,
    progress: bool = False,
    where: str = "simulate",
) -> dict:
    """Simulate an LR/HR acquisition pair from a real HR volume already cut to its sections.

    source: float32 [0, 1] (z, y, x); labels: instance IDs of the same shape (or
    None). geometry_overrides: rotation_deg / scale / offset_error_lr_px (for
    benchmarks). Returns lr, hr, labels, lr_voxel_nm, hr_voxel_nm, hr_offset_nm
    (metadata, with error) and truth (srseg.phantom's truth.json format).
    """
    p = merge_params(params, where)
    src_vox = _triplet(source_voxel_nm, f"{where}.source_voxel_nm")
    p["lr_voxel_nm"] = _triplet(p["lr_voxel_nm"], f"{where}.lr_voxel_nm")
    if abs(p["lr_voxel_nm"][0] - src_vox[0]) > 1e-6 * src_vox[0]:
        raise InputError(
            f"config key {where}.lr_voxel_nm z ({p['lr_voxel_nm'][0]}) must equal the source's "
            f"section thickness ({src_vox[0]} nm): both acquisitions image the same sections"
        )
    if min(p["lr_voxel_nm"][1] / src_vox[1], p["lr_voxel_nm"][2] / src_vox[2]) <= 1:
        raise InputError(
            f"config key {where}.lr_voxel_nm {p['lr_voxel_nm']} must be coarser in y and x than the "
            f"source's {src_vox} nm"
        )
    rngs = named_streams(p["seed"], STREAMS)
    geom = draw_geometry(p, source.shape, src_vox, rngs["geometry"], **(geometry_overrides or {}))
    out = acquire(source, p, geom, rngs, labels=labels, progress=progress)
    truth = {
        "matrices": [m.tolist() for m in geom["matrices"]],
        "lr_z": list(range(source.shape[0])),
        "rotation_deg": geom["rotation_deg"],
        "scale": geom["scale"],
        "hr_offset_nm_true": geom["hr_offset_nm_true"],
        "offset_error_lr_px": geom["offset_error_lr_px"],
        "hr_origin_in_source_xy": geom["origins_xy"].tolist(),
        "section_drift_hr_px": (geom["origins_xy"] - geom["origins_xy"][0])[:, ::-1].tolist(),  # (y, x)
        "source_to_lr": geom["G"].tolist(),
        "seed": int(p["seed"]),
        "lr_shape": list(geom["lr_shape"]),
        "hr_shape": list(geom["hr_shape"]),
    }
    return {
        "lr": out["lr"],
        "hr": out["hr"],
        "labels": out["labels"],
        "lr_voxel_nm": p["lr_voxel_nm"],
        "hr_voxel_nm": src_vox,
        "hr_offset_nm": geom["hr_offset_nm_meta"],
        "truth": truth,
    }


# ---------------------------------------------------------------------------------- rule entry


def load_source(
    params: dict, where: str = "simulate", bit_depth: int | None = None
) -> tuple[np.ndarray, list[float], np.ndarray | None, dict]:
    """Read the source stack (+ labels), cut to `sections` and `crop`; labels made instances.

    An integer source is read relative to its real bit depth (`bit_depth`, the specimen's
    `bit_depth:`, or detected: 12-bit data in uint16 fills [0, 1], as ingest does).
    Returns (float32 image, source voxel nm, uint32 labels or None, provenance dict).
    """
    p = merge_params(params, where)
    raw, vox = read_stack(str(p["source"]))
    bits = resolve_bit_depth(raw, bit_depth, f"{where.rsplit('.', 1)[0]}.bit_depth", f"simulate source {p['source']}")
    if bits is not None:
        raw = to_full_range(raw, bits)
    img, _ = check_image(raw, f"simulate source {p['source']}")
    start, stop = section_range(p, img.shape[0], where)
    crop = p["crop"]
    if crop is not None:
        y0, y1, x0, x1 = (int(v) for v in crop)
        if not (0 <= y0 < y1 <= img.shape[1] and 0 <= x0 < x1 <= img.shape[2]):
            raise InputError(
                f"config key {where}.crop = {crop} is outside the source field {list(img.shape[1:])}; "
                f"give [y0, y1, x0, x1] inside it"
            )
    else:
        y0, y1, x0, x1 = 0, img.shape[1], 0, img.shape[2]
    cut = (slice(start, stop), slice(y0, y1), slice(x0, x1))
    src_vox = p["source_voxel_nm"]
    if src_vox is None:
        if vox is None or any(v is None for v in vox):
            raise InputError(
                f"{p['source']}: no complete voxel size in its metadata ({vox}); set "
                f"{where}.source_voxel_nm: [z, y, x] (nm) in the config"
            )
        src_vox = vox
    lab = None
    if p["labels"]:
        lraw, _ = read_stack(str(p["labels"]))
        if lraw.shape != raw.shape:
            raise InputError(
                f"{p['labels']}: shape {list(lraw.shape)} differs from the source {list(raw.shape)}; "
                f"labels must cover the source voxel for voxel ({where}.labels)"
            )
        lab = lraw[cut]
        # instances from a cell mask after cutting, so a cell split by the cut gets two IDs
        lab = (
            cell_mask_to_instances(lab, p["labels_connectivity"], area_px(p["labels_min_area_nm2"], src_vox))
            if p["labels_kind"] == "cell_mask"
            else lab.astype(np.uint32)
        )
    prov = {
        "source": str(p["source"]),
        "labels": p["labels"],
        "sections": [start, stop],
        "crop": [y0, y1, x0, x1],
        "source_bit_depth": bits,
    }
    return to_float(img[cut]), [float(v) for v in src_vox], lab, prov


def run_simulate(
    params: dict,
    out_lr: str,
    out_hr: str,
    out_labels: str,
    out_meta: str,
    out_truth: str,
    specimen: str = "simulate",
    threads: int = 1,
    progress: bool = True,
    log=None,
    bit_depth: int | None = None,
) -> dict:
    """The `simulate` rule: read the source, simulate, write lr/hr (uint8), labels, meta.json, truth.json.

    bit_depth: the specimen's `bit_depth:` (the source's real depth; None: detected).

    Without labels in the config an all-zero labels.tif is NOT written: the rule
    needs labels (the ISBI use case); ask for them with a clear error instead.
    """
    cv2.setNumThreads(int(threads))  # results do not depend on the thread count
    where = f"specimens.{specimen}.simulate"
    if not params.get("labels"):
        raise InputError(
            f"config key {where}.labels is missing; give the source's labels (instances or a "
            f"cell mask with labels_kind: cell_mask)"
        )
    source, src_vox, labels, prov = load_source(params, where, bit_depth)
    sim = simulate_volume(source, src_vox, params, labels=labels, progress=progress, where=where)
    sim["truth"].update(prov)
    write_generated(sim, out_lr, out_hr, out_labels, out_meta, out_truth, phantom=False, simulated=True, **prov)
    return sim
