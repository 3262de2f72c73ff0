"""Place the HR stack inside the LR stack: stage offsets, then SIFT + RANSAC, then ECC.

Transform convention (srseg.geometry; shared with pairs and the phantom's truth.json): a 2x3
matrix M maps HR pixel coordinates (x = column, y = row, pixel centres at
integers) to LR pixel coordinates, [x_lr, y_lr] = M @ [x_hr, y_hr, 1]; HR
section k lies in LR section lr_z[k].

Method, per specimen (`align_volume` runs one function per step):
1. Coarse placement from voxel sizes and the stage offset (`hr_offset_nm`), which
   may be off by several LR pixels (geometry.coarse_matrix, `check_geometry`).
2. Per HR section (`fit_sections`; `explain_failure` when none fits): downsample
   HR to about the LR pixel size (INTER_AREA), match SIFT features against an LR
   window around the coarse position (Lowe ratio test), fit a similarity with
   RANSAC (cv2.estimateAffinePartial2D).
3. Consensus (`consensus`): the sections of one SBEM stack share rotation and scale (one
   stage, one calibration) but the stage drifts slightly from section to
   section. So the linear part (rotation/scale) is pooled -- the median over
   sections, with sections whose fit disagrees set aside as wrong match sets --
   while the position of the field centre stays per section; sections without
   a usable fit get a position interpolated from their neighbours.
4. Sub-pixel refinement (`ecc_refinement`, option `refine`): ECC (cv2.findTransformECC, affine) of each
   section's downsampled HR against its LR section, started from the
   consensus. The final linear part is the mean of the per-section ECC fits
   that agree with their median (averaging sections beats noise); each
   section keeps its own ECC centre position (the stage drift).
   transform.json holds one matrix per HR section plus the per-section fits.
5. QC (`qc_summary`): matches, residuals, scale, rotation, drift, stage-offset
   error and, for simulated data, the error against the truth.

Bad input (no overlap, too few matches, implausible scale) raises InputError
before anything is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from .config import section
from .geometry import (
    apply,
    axis_scales,
    coarse_lr_z,
    coarse_matrix,
    compose,
    corner_rms,
    field_centre,
    field_corners,
    invert,
    rotation_deg,
    with_centre,
)
from .io import InputError, atomic_path, read_image, read_json, write_json
from .log import get_logger
from .stacks import float_sections

logger = logging.getLogger("srseg.align")


# --------------------------------------------------------------------------- coarse placement


def check_geometry(lr_shape, hr_shape, lr_voxel_nm, hr_voxel_nm, hr_offset_nm, where: str = "meta.json") -> None:
    """Fail early, with one sentence, when voxel sizes are unusable or HR misses LR."""
    for name, v in (("lr_voxel_nm", lr_voxel_nm), ("hr_voxel_nm", hr_voxel_nm), ("hr_offset_nm", hr_offset_nm)):
        try:
            ok = len(v) == 3 and all(np.isfinite(float(x)) for x in v)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"{where}: {name} must be three finite numbers [z, y, x] in nm; set it in config.yaml")
    if min(float(x) for x in lr_voxel_nm) <= 0 or min(float(x) for x in hr_voxel_nm) <= 0:
        raise InputError(f"{where}: voxel sizes must be positive; fix lr_voxel_nm / hr_voxel_nm in config.yaml")
    ratio = np.array(lr_voxel_nm[1:], float) / np.array(hr_voxel_nm[1:], float)
    if np.any(ratio <= 1.0):
        raise InputError(
            f"{where}: the LR pixel ({lr_voxel_nm[1:]} nm) must be larger than the HR pixel "
            f"({hr_voxel_nm[1:]} nm); check that lr and hr are not swapped in config.yaml"
        )
    m = coarse_matrix(lr_voxel_nm, hr_voxel_nm, hr_offset_nm)
    quad = apply(m, field_corners(hr_shape[1:]))
    (x0, y0), (x1, y1) = quad.min(0), quad.max(0)
    ih = min(y1, lr_shape[1] - 0.5) - max(y0, -0.5)
    iw = min(x1, lr_shape[2] - 0.5) - max(x0, -0.5)
    lr_z = coarse_lr_z(hr_shape[0], lr_voxel_nm, hr_voxel_nm, hr_offset_nm)
    z_inside = np.sum((lr_z >= 0) & (lr_z < lr_shape[0]))
    if ih <= 0 or iw <= 0 or z_inside == 0:
        raise InputError(
            f"{where}: the HR field placed by hr_offset_nm {list(hr_offset_nm)} does not overlap the LR stack "
            f"(LR is {list(lr_shape)} voxels of {list(lr_voxel_nm)} nm); fix hr_offset_nm in config.yaml"
        )


# --------------------------------------------------------------------------- per-section steps


def downsample_to_lr(hr2d: np.ndarray, m_coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area-downsample an HR section to about the LR pixel size.

    Returns the image and the exact 2x3 map from HR pixels to its pixels
    (cv2.resize puts output pixel centre u at input (u + 0.5) * W / w - 0.5).
    """
    h, w = hr2d.shape
    fx, fy = axis_scales(m_coarse)
    w2, h2 = max(8, int(round(w * fx))), max(8, int(round(h * fy)))
    small = cv2.resize(hr2d.astype(np.float32), (w2, h2), interpolation=cv2.INTER_AREA)
    sx, sy = w2 / w, h2 / h
    d = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    return small, d


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Contrast-stretch (0.5-99.5 percentiles) to uint8, the input SIFT needs.

    Stretching both images the same way makes SIFT's contrast threshold mean
    the same thing for LR and downsampled HR.
    """
    lo, hi = np.percentile(img, [0.5, 99.5])
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    return np.clip((img - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def sift_matches(template: np.ndarray, image: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints of `template` matched to `image` with Lowe's ratio test: (n, 2) x/y arrays."""
    sift = cv2.SIFT_create()
    kt, dt = sift.detectAndCompute(to_uint8(template), None)
    ki, di = sift.detectAndCompute(to_uint8(image), None)
    if dt is None or di is None or len(kt) < 2 or len(ki) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dt, di, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    src = np.array([kt[g.queryIdx].pt for g in good], dtype=np.float64).reshape(-1, 2)
    dst = np.array([ki[g.trainIdx].pt for g in good], dtype=np.float64).reshape(-1, 2)
    return src, dst


def ransac_similarity(src: np.ndarray, dst: np.ndarray, ransac_px: float):
    """Similarity (rotation, uniform scale, shift) src->dst by RANSAC: (2x3 or None, inlier mask)."""
    if len(src) < 3:
        return None, np.zeros(len(src), bool)
    cv2.setRNGSeed(0)  # RANSAC sampling: same input, same answer
    m, inl = cv2.estimateAffinePartial2D(
        src.astype(np.float32),
        dst.astype(np.float32),
        method=cv2.RANSAC,
        ransacReprojThreshold=float(ransac_px),
        maxIters=5000,
        confidence=0.999,
        refineIters=20,
    )
    if m is None:
        return None, np.zeros(len(src), bool)
    return m.astype(np.float64), inl.ravel().astype(bool)


def ecc_refine(template: np.ndarray, image: np.ndarray, init: np.ndarray) -> tuple[np.ndarray, float]:
    """Intensity-based sub-pixel refinement of a template->image affine (cv2.findTransformECC).

    ECC maximises the normalised correlation, so the differing contrast and
    noise of LR and downsampled HR do not bias it. Returns (2x3, correlation);
    raises cv2.error when it does not converge. No Gaussian pre-filter
    (gaussFiltSize=1): OpenCV blurs the template with border replication, which
    pulls its edge pixels inward and biases the fitted scale by ~0.1 % (0.1 LR
    px at the corners of a 90-px field); the template is already area-averaged.
    """
    warp = np.asarray(init, dtype=np.float32).copy()
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-7)
    cc, warp = cv2.findTransformECC(
        template.astype(np.float32), image.astype(np.float32), warp, cv2.MOTION_AFFINE, criteria, None, 1
    )
    return warp.astype(np.float64), float(cc)


def ncc_place(template: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Translation of `template` in `image` by normalised cross-correlation (cv2.matchTemplate).

    The fallback for noisy sections where too few SIFT keypoints survive: NCC
    sums over every pixel of the field, so it still finds the position when
    single keypoints drown in noise. Returns ((x, y) of the template's pixel
    (0, 0) in `image`, peak NCC, margin of the peak over the best peak farther
    than a quarter field away -- a low margin means an ambiguous, untrustworthy match).
    """
    th, tw = template.shape
    if image.shape[0] < th or image.shape[1] < tw:
        return np.zeros(2), -1.0, 0.0
    score = cv2.matchTemplate(image.astype(np.float32), template.astype(np.float32), cv2.TM_CCOEFF_NORMED)
    _, peak, _, (px, py) = cv2.minMaxLoc(score)
    # sub-pixel peak: parabola through the neighbours along each axis (hand-written, three points)
    sub = np.array([px, py], float)
    if 0 < px < score.shape[1] - 1:
        lo, hi = score[py, px - 1], score[py, px + 1]
        sub[0] += 0.5 * (lo - hi) / min(lo - 2 * peak + hi, -1e-9)
    if 0 < py < score.shape[0] - 1:
        lo, hi = score[py - 1, px], score[py + 1, px]
        sub[1] += 0.5 * (lo - hi) / min(lo - 2 * peak + hi, -1e-9)
    yy, xx = np.indices(score.shape)
    far = np.hypot(yy - py, xx - px) > max(th, tw) / 4
    second = float(score[far].max()) if far.any() else -1.0
    return sub, float(peak), float(peak - second)


def _window(quad: np.ndarray, margin: float, shape_yx) -> tuple[int, int, int, int]:
    """Integer LR window (y0, y1, x0, x1) around a placed field plus a margin, clipped to the image."""
    (x0, y0), (x1, y1) = quad.min(0) - margin, quad.max(0) + margin
    h, w = shape_yx
    return (
        max(0, int(np.floor(y0))),
        min(h, int(np.ceil(y1)) + 1),
        max(0, int(np.floor(x0))),
        min(w, int(np.ceil(x1)) + 1),
    )


# --------------------------------------------------------------------------- the whole stack, step by step


def align_volume(
    lr: np.ndarray,
    hr: np.ndarray,
    lr_voxel_nm,
    hr_voxel_nm,
    hr_offset_nm,
    params: dict | None = None,
    truth: dict | None = None,
    where: str = "meta.json",
) -> dict:
    """Register an HR stack (z, y, x) in an LR stack; returns transform.json's content plus a "qc" entry.

    lr: a float (z, y, x) array or a lazy `stacks.FloatSections` (only the LR sections of the HR
    sections are read, each whole: SIFT searches a window of it, ECC warps it).

    `truth` (phantoms only) is {"matrices": [...], "lr_z": [...]} in the same
    convention; when given, qc gets error_px (RMS corner distance, LR pixels).
    The steps are those of the module docstring: coarse placement, `fit_sections`
    (`explain_failure` when no section fits), `consensus`, `ecc_refinement`, `qc_summary`.
    """
    p = section("align", params)
    check_geometry(lr.shape, hr.shape, lr_voxel_nm, hr_voxel_nm, hr_offset_nm, where)
    m0 = coarse_matrix(lr_voxel_nm, hr_voxel_nm, hr_offset_nm)
    lr_z = coarse_lr_z(hr.shape[0], lr_voxel_nm, hr_voxel_nm, hr_offset_nm)
    sections, smalls = fit_sections(lr, hr, m0, lr_z, p)
    if not any(r["status"] == "ok" for r in sections):
        raise explain_failure(sections, p, where)
    shared = consensus(sections, hr.shape[1:], axis_scales(m0), p, where)
    final = ecc_refinement(lr, smalls, sections, lr_z, shared, hr.shape[1:], axis_scales(m0), p, where)
    c_hr = field_centre(hr.shape[1:])
    matrices = [with_centre(final.linear, final.centres[k], c_hr) for k in range(hr.shape[0])]
    qc = qc_summary(sections, matrices, shared, final, m0, hr.shape[1:], lr_z, truth)
    return {
        "matrices": [m.tolist() for m in matrices],
        "lr_z": lr_z.tolist(),
        "hr_shape": list(hr.shape),
        "lr_shape": list(lr.shape),
        "lr_voxel_nm": [float(v) for v in lr_voxel_nm],
        "hr_voxel_nm": [float(v) for v in hr_voxel_nm],
        "coarse_matrix": m0.tolist(),
        "method": (
            "per-section SIFT+RANSAC similarity; shared linear part (median, then mean of per-section "
            "ECC affine fits); per-section position of the field centre (stage drift) from ECC"
        ),
        "sections": sections,
        "qc": qc,
    }


def fit_sections(
    lr: np.ndarray, hr: np.ndarray, m0: np.ndarray, lr_z: np.ndarray, p: dict
) -> tuple[list[dict], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Step 2, every HR section on its own: SIFT + RANSAC (`fit_section`) against the LR window around the
    coarse placement `m0`.

    Returns (one record per HR section, {hr_z: (downsampled HR, its map from HR pixels)} for the
    sections that lie inside the LR stack). A record's status is "outside" (no LR section),
    "blank" (no contrast) or what `fit_section` found.
    """
    expected_scale = axis_scales(m0)
    window = _window(apply(m0, field_corners(hr.shape[1:])), float(p["search_margin_lr_px"]), lr.shape[1:])
    inside = (lr_z >= 0) & (lr_z < lr.shape[0])
    sections, smalls = [], {}
    for k in tqdm(range(hr.shape[0]), desc="align: SIFT per section", unit="section"):
        rec = {
            "hr_z": k,
            "lr_z": int(lr_z[k]),
            "n_matches": 0,
            "n_inliers": 0,
            "residual_px": None,
            "status": "outside",
        }
        sections.append(rec)
        if not inside[k]:
            continue
        small, d = downsample_to_lr(hr[k], m0)
        smalls[k] = (small, d)
        if float(hr[k].std()) < 1e-6:
            rec["status"] = "blank"
            continue
        fit_section(rec, small, d, lr[lr_z[k]], window, expected_scale, p)
    return sections, smalls


def fit_section(
    rec: dict, small: np.ndarray, d: np.ndarray, lr2d: np.ndarray, window, expected_scale: np.ndarray, p: dict
) -> None:
    """Fit one section's similarity HR -> LR into its record `rec` (status, matches, the fit and its checks).

    SIFT keypoints of the downsampled HR `small` (map `d` from HR pixels) are matched in the
    LR `window` (y0, y1, x0, x1) and a similarity is fitted by RANSAC in HR pixels, so every
    section fits the same map. Too few inliers: status "few_matches", or with `ncc_fallback`
    an unambiguous cross-correlation peak places the field (position only, method "ncc").
    A fit whose scale or rotation is implausible gets status "bad_scale" / "bad_rotation".
    """
    y0, y1, x0, x1 = window
    src, dst = sift_matches(small, lr2d[y0:y1, x0:x1], float(p["sift_ratio"]))
    dst = dst + [x0, y0]
    src_hr = apply(invert(d), src)  # keypoints in HR pixels, so every section fits the same map
    rec["n_matches"] = int(len(src))
    a, inl = ransac_similarity(src_hr, dst, float(p["ransac_px"]))
    rec["n_inliers"] = int(inl.sum())
    rec["method"] = "sift"
    if a is None or inl.sum() < int(p["min_inliers"]):
        rec["status"] = "few_matches"
        if p["ncc_fallback"]:
            xy, peak, margin = ncc_place(small, lr2d[y0:y1, x0:x1])
            rec["ncc_peak"], rec["ncc_margin"] = peak, margin
            if peak >= float(p["ncc_min_peak"]) and margin >= float(p["ncc_min_margin"]):
                # position only: rotation and scale stay nominal until ECC (or SIFT elsewhere) fits them
                a = compose(np.array([[1.0, 0, x0 + xy[0]], [0, 1.0, y0 + xy[1]]]), d)
                rec.update(status="ok", method="ncc", sift_matrix=a.tolist(), scale_error=0.0, rotation_deg=0.0)
        return
    rec["residual_px"] = float(np.sqrt(np.mean(np.sum((apply(a, src_hr[inl]) - dst[inl]) ** 2, axis=1))))
    rec["sift_matrix"] = a.tolist()
    scale_err = np.abs(axis_scales(a) / expected_scale - 1).max()
    rec["scale_error"] = float(scale_err)
    rec["rotation_deg"] = rotation_deg(a)
    rec["status"] = "ok" if scale_err <= float(p["max_scale_error"]) else "bad_scale"
    if p["max_rotation_deg"] is not None and abs(rec["rotation_deg"]) > float(p["max_rotation_deg"]):
        rec["status"] = "bad_rotation"
    rec["_pts"] = (src_hr[inl], dst[inl])  # inliers, for the QC residual (dropped by qc_summary)


def explain_failure(sections: list[dict], p: dict, where: str) -> InputError:
    """The one-sentence InputError for a stack in which no section fits: what went wrong, and what to change.

    In order: SIFT found too little and cross-correlation no unambiguous peak; the fits rotate
    more than allowed; their scale is off the voxel-size ratio; too few SIFT matches.
    """
    ncc = [r for r in sections if "ncc_peak" in r]
    if ncc and not any(r["status"] in ("bad_rotation", "bad_scale") for r in sections):
        best = max(ncc, key=lambda r: r["ncc_peak"])
        return InputError(
            f"{where}: too few SIFT matches between HR and LR (best section: "
            f"{max(r['n_inliers'] for r in sections)} inliers, align.min_inliers is {p['min_inliers']}) and "
            f"no unambiguous cross-correlation peak (best {best['ncc_peak']:.2f}, margin "
            f"{best['ncc_margin']:.2f}); check hr_offset_nm and voxel sizes, or raise "
            "align.search_margin_lr_px in config.yaml"
        )
    rot = [r for r in sections if r["status"] == "bad_rotation"]
    if rot:
        worst = min(rot, key=lambda r: abs(r["rotation_deg"]))
        return InputError(
            f"{where}: SIFT fits a rotation of {worst['rotation_deg']:.1f} degrees, more than "
            f"align.max_rotation_deg ({p['max_rotation_deg']}); check that HR and LR are not flipped or "
            "rotated on disk, or raise align.max_rotation_deg in config.yaml"
        )
    bad = [r for r in sections if r["status"] == "bad_scale"]
    if bad:
        worst = min(bad, key=lambda r: r["scale_error"])
        return InputError(
            f"{where}: SIFT fits a scale {100 * worst['scale_error']:.0f}% away from the voxel-size ratio "
            f"(allowed {100 * float(p['max_scale_error']):.0f}%); check lr_voxel_nm and hr_voxel_nm in config.yaml"
        )
    best = max((r["n_inliers"] for r in sections), default=0)
    return InputError(
        f"{where}: too few SIFT matches between HR and LR (best section: {best} inliers, "
        f"align.min_inliers is {p['min_inliers']}); check hr_offset_nm and voxel sizes, or raise "
        "align.search_margin_lr_px in config.yaml"
    )


class Consensus(NamedTuple):
    """The stack's shared placement before refinement."""

    linear: np.ndarray  # 2x2 linear part (rotation/scale): median over the agreeing SIFT sections
    centres: np.ndarray  # (n_hr, 2) LR position (x, y) of the HR field centre per section
    ok: list[int]  # sections whose fit agrees (SIFT or NCC)
    sift: list[int]  # those of them fitted by SIFT


def consensus(sections: list[dict], field, expected_scale: np.ndarray, p: dict, where: str) -> Consensus:
    """Step 3: pool the section fits into one linear part and a per-section position.

    The sections of one stack share rotation and scale (one stage, one calibration) but the
    stage drifts a little between sections, so the linear part is pooled (median over
    sections) and the position of the field centre is kept per section. A section whose fit
    disagrees with the median is a wrong match set, not a real shift: its status becomes
    "outlier". Sections without an agreeing fit get a position interpolated from their
    neighbours. NCC placements carry no rotation/scale: the linear part comes from SIFT
    sections where there are any.
    """
    ransac = float(p["ransac_px"])
    c_hr = field_centre(field)
    ok = [r for r in sections if r["status"] == "ok"]
    lin = {r["hr_z"]: np.array(r["sift_matrix"])[:, :2] for r in ok}
    ctr = {r["hr_z"]: apply(np.array(r["sift_matrix"]), c_hr)[0] for r in ok}
    fitted = [r["hr_z"] for r in ok if r["method"] == "sift"] or list(lin)
    lin_med = np.median(np.stack([lin[k] for k in fitted]), axis=0)
    ctr_med = np.median(np.stack(list(ctr.values())), axis=0)
    for r in ok:
        k = r["hr_z"]
        wrong_lin = (
            r["method"] == "sift"
            and corner_rms(with_centre(lin[k], ctr[k], c_hr), with_centre(lin_med, ctr[k], c_hr), field) > ransac
        )
        if wrong_lin or np.hypot(*(ctr[k] - ctr_med)) > 4 * ransac:
            r["status"] = "outlier"
    ok_k = [r["hr_z"] for r in ok if r["status"] == "ok"]
    if not ok_k:
        raise InputError(
            f"{where}: the SIFT fits of the sections disagree with each other; check that HR and LR show the "
            "same region (hr_offset_nm, voxel sizes in config.yaml)"
        )
    sift_k = [k for k in ok_k if sections[k]["method"] == "sift"]
    lin_sift = np.median(np.stack([lin[k] for k in (sift_k or ok_k)]), axis=0)
    _check_scale(lin_sift, expected_scale, p, where)
    return Consensus(lin_sift, _interp_centres(ok_k, [ctr[k] for k in ok_k], len(sections)), ok_k, sift_k)


class Refined(NamedTuple):
    """The stack's final placement."""

    linear: np.ndarray  # 2x2 linear part: mean of the agreeing ECC fits (else the consensus)
    centres: np.ndarray  # (n_hr, 2) LR position (x, y) of the HR field centre per section
    ecc: list[int]  # sections whose ECC fit was used


def ecc_refinement(
    lr: np.ndarray,
    smalls: dict,
    sections: list[dict],
    lr_z: np.ndarray,
    shared: Consensus,
    field,
    expected_scale: np.ndarray,
    p: dict,
    where: str,
) -> Refined:
    """Step 4: sub-pixel ECC of each section's downsampled HR against its LR section, started from the consensus.

    Records each section's ECC correlation (None: blank, not refined or not converged). A fit
    whose centre wanders off the start (NCC-only starts get more room: their rotation/scale
    were nominal) is not used. The final linear part is the mean of the ECC fits that agree
    with their median (averaging sections beats noise); each section keeps its own ECC centre
    (the stage drift), interpolated where it has none. Without usable ECC fits the consensus
    stands, unless nothing but cross-correlation placed the field: then rotation and scale are
    unknown and an InputError is raised rather than a guess.
    """
    ransac = float(p["ransac_px"])
    c_hr = field_centre(field)
    ecc_lin, ecc_ctr = {}, {}
    for k, (small, d) in smalls.items():
        rec = sections[k]
        rec["ecc"] = None
        if rec["status"] == "blank" or not p["refine"]:
            continue
        init = compose(with_centre(shared.linear, shared.centres[k], c_hr), invert(d))  # downsampled HR -> LR
        try:
            w, cc = ecc_refine(small, lr[lr_z[k]], init)
        except cv2.error:  # did not converge
            continue
        mk = compose(w, d)
        rec["ecc"] = float(cc)
        if np.hypot(*(apply(mk, c_hr)[0] - shared.centres[k])) <= (2 if shared.sift else 4) * ransac:
            ecc_lin[k], ecc_ctr[k] = mk[:, :2], apply(mk, c_hr)[0]
    good = []
    if ecc_lin:
        med = np.median(np.stack(list(ecc_lin.values())), axis=0)
        good = [
            k
            for k in ecc_lin
            if corner_rms(with_centre(ecc_lin[k], c_hr, c_hr), with_centre(med, c_hr, c_hr), field) <= 0.5
        ]
    if good:
        lin_final = np.mean([ecc_lin[k] for k in good], axis=0)  # averaging sections beats noise
        ctr_final = _interp_centres(good, [ecc_ctr[k] for k in good], len(sections))
    elif not shared.sift:
        raise InputError(
            f"{where}: only cross-correlation could place HR in LR and the intensity refinement (ECC) did not "
            "converge, so rotation and scale are unknown; check the images (noise, contrast) and voxel sizes in "
            "config.yaml"
        )
    else:
        lin_final, ctr_final = shared.linear, shared.centres
    _check_scale(lin_final, expected_scale, p, where)
    return Refined(lin_final, ctr_final, good)


def qc_summary(
    sections: list[dict],
    matrices: list[np.ndarray],
    shared: Consensus,
    final: Refined,
    m0: np.ndarray,
    field,
    lr_z: np.ndarray,
    truth: dict | None,
) -> dict:
    """Step 5: the QC numbers of an alignment; completes each section's record on the way.

    Each record gets ecc_used and centre_lr (its final field centre) and loses the fit's
    inlier points, which give the SIFT residual (NaN without any SIFT section). With `truth`
    (phantoms, simulations) the error against the true matrices is added.
    """
    c_hr = field_centre(field)
    n_hr = len(sections)
    res2 = []
    for r in sections:
        pts = r.pop("_pts", None)
        r["ecc_used"] = r["hr_z"] in final.ecc
        r["centre_lr"] = final.centres[r["hr_z"]].tolist()
        if pts is not None and r["status"] == "ok":
            res2.append(np.sum((apply(np.array(r["sift_matrix"]), pts[0]) - pts[1]) ** 2, axis=1))
    res2 = np.concatenate(res2) if res2 else np.full(1, np.nan)  # NaN: no SIFT section (NCC + ECC only)
    m_mid = matrices[n_hr // 2]
    qc = {
        "n_sections": int(n_hr),
        "n_sections_sift_ok": len(shared.sift),
        "n_sections_ncc_ok": len(shared.ok) - len(shared.sift),
        "n_sections_ecc_ok": len(final.ecc),
        "n_matches": int(sum(r["n_matches"] for r in sections)),
        "n_inliers": int(sum(sections[k]["n_inliers"] for k in shared.ok)),
        "residual_px": float(np.sqrt(res2.mean())),
        "ecc_mean": float(np.mean([sections[k]["ecc"] for k in final.ecc])) if final.ecc else None,
        "scale": axis_scales(m_mid).tolist(),
        "expected_scale": axis_scales(m0).tolist(),
        "rotation_deg": rotation_deg(m_mid),
        # where HR pixel (0, 0) really is minus where hr_offset_nm put it (x, y; mean over sections)
        "stage_offset_error_lr_px": (np.mean([m[:, 2] for m in matrices], axis=0) - m0[:, 2]).tolist(),
        "drift_range_lr_px": (final.centres.max(0) - final.centres.min(0)).tolist(),
        "sift_vs_final_px": float(
            np.sqrt(
                np.mean(
                    [
                        corner_rms(with_centre(shared.linear, shared.centres[k], c_hr), matrices[k], field) ** 2
                        for k in range(n_hr)
                    ]
                )
            )
        ),
    }
    if truth is not None:
        tm = [np.asarray(m, float) for m in truth["matrices"]]
        errs = [corner_rms(t, m, field) for t, m in zip(tm, matrices)]
        qc["error_px"] = float(np.sqrt(np.mean(np.square(errs))))
        qc["error_px_max"] = float(np.max(errs))
        qc["z_errors"] = int(np.sum(np.asarray(truth["lr_z"]) != lr_z))
    return qc


def _interp_centres(ks, centres, n: int) -> np.ndarray:
    """Per-section centres for all n sections: measured where given, linearly interpolated
    (held constant beyond the ends) elsewhere -- stage drift is smooth."""
    c = np.asarray(centres, float).reshape(-1, 2)
    return np.stack([np.interp(np.arange(n), ks, c[:, i]) for i in range(2)], axis=1)


def _check_scale(linear, expected_scale, p, where) -> None:
    err = float(np.abs(axis_scales(linear) / expected_scale - 1).max())
    if err > float(p["max_scale_error"]):
        raise InputError(
            f"{where}: the fitted scale is {100 * err:.0f}% away from the voxel-size ratio "
            f"(allowed {100 * float(p['max_scale_error']):.0f}%); check lr_voxel_nm and hr_voxel_nm in config.yaml"
        )


# --------------------------------------------------------------------------- QC figure


def warp_hr_to_lr(hr2d: np.ndarray, m: np.ndarray, lr_shape_yx) -> tuple[np.ndarray, np.ndarray]:
    """Resample an HR section onto the LR grid (area-downsample, then warp); returns (image, valid mask)."""
    small, d = downsample_to_lr(hr2d, np.array([[m[0][0], 0, 0], [0, m[1][1], 0]]))
    a = compose(m, invert(d))
    size = (lr_shape_yx[1], lr_shape_yx[0])
    img = cv2.warpAffine(small, a, size, flags=cv2.INTER_LINEAR, borderValue=0)
    valid = cv2.warpAffine(np.ones_like(small), a, size, flags=cv2.INTER_NEAREST, borderValue=0) > 0.5
    valid = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # edge pixels mix in the border
    return img, valid


def qc_figure(path, lr2d: np.ndarray, hr2d: np.ndarray, m: np.ndarray, title: str = "") -> None:
    """LR, a checkerboard of aligned HR and LR, and a magenta/green overlay, cropped to the HR field."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warped, valid = warp_hr_to_lr(hr2d, m, lr2d.shape)
    ys, xs = np.nonzero(valid)
    pad = 4
    y0, y1 = max(0, ys.min() - pad), min(lr2d.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(lr2d.shape[1], xs.max() + pad + 1)
    a, b, v = lr2d[y0:y1, x0:x1], warped[y0:y1, x0:x1], valid[y0:y1, x0:x1]

    def norm(img):
        lo, hi = np.percentile(img[v], [1, 99]) if v.any() else (0, 1)
        return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)

    a, b = norm(a), np.where(v, norm(b), 0)
    tile = max(4, min(a.shape) // 8)
    yy, xx = np.indices(a.shape)
    checker = np.where(((yy // tile + xx // tile) % 2 == 0) & v, b, a)
    overlay = np.stack([b, a, b], axis=-1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, img, name in zip(axes, (a, checker, overlay), ("LR", "checkerboard HR / LR", "HR magenta, LR green")):
        ax.imshow(img, cmap="gray", interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- rule entry point


def run_align(
    lr_path, hr_path, meta_path, transform_path, qc_png, qc_json, params: dict, truth_path=None, log=None
) -> dict:
    """The `align` rule: read ingest outputs, align, write transform.json, qc.png, qc.json.

    The LR overview is read lazily (`stacks.float_sections`): only the LR sections the HR sections
    lie in, one at a time, whatever the overview's size; the HR field is read whole.
    """
    get_logger(logger.name, log)
    meta = read_json(meta_path)
    for key in ("lr_voxel_nm", "hr_voxel_nm", "hr_offset_nm"):
        if meta.get(key) is None:
            raise InputError(f"{meta_path}: key {key} is missing; set it for this specimen in config.yaml")
    hr, _, _ = read_image(hr_path)
    truth = read_json(truth_path) if truth_path else None
    with float_sections(lr_path) as lr:  # the LR overview: only the sections under the HR field are read
        logger.info("aligning %s (HR %s) in %s (LR %s)", hr_path, hr.shape, lr_path, lr.shape)
        result = align_volume(
            lr,
            hr,
            meta["lr_voxel_nm"],
            meta["hr_voxel_nm"],
            meta["hr_offset_nm"],
            params,
            truth=truth,
            where=str(meta_path),
        )
        qc = result.pop("qc")
        qc["sections"] = result["sections"]
        logger.info("qc: %s", {k: v for k, v in qc.items() if k != "sections"})
        k = hr.shape[0] // 2
        lz = min(max(result["lr_z"][k], 0), lr.shape[0] - 1)
        title = f"{Path(hr_path).parent.name}: HR section {k} on LR section {lz}; residual {qc['residual_px']:.2f} px"
        if "error_px" in qc:
            title += f", error vs truth {qc['error_px']:.3f} px"
        qc_figure(qc_png, lr[lz], hr[k], np.array(result["matrices"][k]), title)
    write_json(qc_json, qc)
    write_json(transform_path, result)  # last: its presence means the stage finished
    return qc
