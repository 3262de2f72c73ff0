"""Matched LR / HR crops of the same field at an integer scale factor.

The scale is the integer nearest to the LR/HR pixel ratio (3.3 -> 3). The LR
crop is the axis-aligned box of whole LR pixels that lie inside the aligned HR
field (less a safety margin), for the LR sections matched to HR sections. The
paired HR is the HR resampled onto the grid aligned with that crop at pixel
size lr_px / scale, so that its shape is exactly scale x the LR crop's and the
scale x scale block of paired-HR pixels (i, j) covers LR pixel (i // s, j // s)
-- the same registration as the EMSR study's resizing (330 -> 341, 1024 -> 1023).

Grid convention: pixel centres at integer coordinates. Paired-HR pixel (row p,
col q) has its centre at LR coordinates (c0 - 0.5 + (q + 0.5) / s,
r0 - 0.5 + (p + 0.5) / s), where (r0, c0) is the LR crop origin.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from .config import section
from .geometry import apply, compose, field_corners, invert
from .io import InputError, read_image, read_json, read_labels, write_image, write_json, write_labels
from .log import get_logger
from .stacks import float_sections

logger = logging.getLogger("srseg.pairs")


def integer_scale(lr_voxel_nm, hr_voxel_nm, where: str = "meta.json") -> int:
    """The integer nearest to the in-plane pixel ratio; the same along y and x, at least 2."""
    ratios = np.array(lr_voxel_nm[1:], float) / np.array(hr_voxel_nm[1:], float)
    scales = np.rint(ratios).astype(int)
    if scales[0] != scales[1]:
        raise InputError(
            f"{where}: the LR/HR pixel ratio differs between y and x ({ratios[0]:.2f} vs {ratios[1]:.2f}); "
            "fix lr_voxel_nm / hr_voxel_nm in config.yaml"
        )
    if scales[0] < 2:
        raise InputError(
            f"{where}: the LR/HR pixel ratio {ratios[1]:.2f} rounds to {scales[0]}, but super-resolution needs "
            "a factor of at least 2; check lr_voxel_nm / hr_voxel_nm in config.yaml"
        )
    return int(scales[0])


def pair_to_lr(origin_yx, scale: int) -> np.ndarray:
    """2x3 map from paired-HR pixel (x, y) to LR pixel coordinates (see the module docstring)."""
    r0, c0 = origin_yx
    s = float(scale)
    return np.array([[1 / s, 0.0, c0 - 0.5 + 0.5 / s], [0.0, 1 / s, r0 - 0.5 + 0.5 / s]])


def pair_to_hr(m_hr_to_lr: np.ndarray, origin_yx, scale: int) -> np.ndarray:
    """2x3 map from paired-HR pixels to original HR pixels (the inverse map warpAffine needs)."""
    return compose(invert(m_hr_to_lr), pair_to_lr(origin_yx, scale))


def inner_box(m_hr_to_lr: np.ndarray, hr_shape_yx, margin: float) -> tuple[float, float, float, float]:
    """Axis-aligned box (x0, x1, y0, y1), LR coordinates, inside the placed HR field.

    For a field rotated by less than 45 degrees the box bounded by the inner of
    each side's two corners lies inside the quadrilateral.
    """
    tl, tr, br, bl = apply(m_hr_to_lr, field_corners(hr_shape_yx))
    x0 = max(tl[0], bl[0]) + margin
    x1 = min(tr[0], br[0]) - margin
    y0 = max(tl[1], tr[1]) + margin
    y1 = min(bl[1], br[1]) - margin
    return x0, x1, y0, y1


def crop_box(matrices, hr_shape_yx, lr_shape_yx, margin: float) -> tuple[int, int, int, int]:
    """Whole LR pixels (r0, r1, c0, c1) inside the HR field in every given section and inside LR."""
    boxes = np.array([inner_box(np.asarray(m), hr_shape_yx, margin) for m in matrices])
    x0, y0 = boxes[:, 0].max(), boxes[:, 2].max()
    x1, y1 = boxes[:, 1].min(), boxes[:, 3].min()
    # LR pixel j spans [j - 0.5, j + 0.5]: keep those whose whole span is inside.
    c0, c1 = max(0, int(np.ceil(x0 + 0.5))), min(lr_shape_yx[1], int(np.floor(x1 - 0.5)) + 1)
    r0, r1 = max(0, int(np.ceil(y0 + 0.5))), min(lr_shape_yx[0], int(np.floor(y1 - 0.5)) + 1)
    return r0, r1, c0, c1


def warp_section(img: np.ndarray, m_pair_to_src: np.ndarray, shape_yx, labels: bool = False) -> np.ndarray:
    """Resample one section onto the paired-HR grid.

    Images: cv2.warpAffine with the inverse map and bicubic interpolation (the
    pair pixel is within 0.8-1.25x the HR pixel, so no anti-alias blur is
    needed), clipped to [0, 1] against cubic overshoot. Labels: nearest
    neighbour via scipy (any integer dtype, IDs never mixed).
    """
    h, w = shape_yx
    if labels:
        from scipy import ndimage  # imported here: a second of start-up the image path does not need

        a = np.asarray(m_pair_to_src)
        # scipy works in (row, col): swap the roles of x and y in the matrix.
        mat = np.array([[a[1, 1], a[1, 0]], [a[0, 1], a[0, 0]]])
        off = np.array([a[1, 2], a[0, 2]])
        return ndimage.affine_transform(img, mat, off, output_shape=(h, w), order=0, mode="constant", cval=0)
    out = cv2.warpAffine(
        img.astype(np.float32),
        np.asarray(m_pair_to_src, np.float64),
        (w, h),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.clip(out, 0.0, 1.0)


def make_pairs(
    lr: np.ndarray,
    hr: np.ndarray,
    transform: dict,
    lr_voxel_nm,
    hr_voxel_nm,
    params: dict | None = None,
    where: str = "transform.json",
):
    """Paired (lr, hr, info) volumes from an aligned specimen; info is pairs.json's content.

    lr: a (z, y, x) float array or a lazy `stacks.FloatSections` (only the crops are read).
    """
    p = section("pairs", params)
    scale = integer_scale(lr_voxel_nm, hr_voxel_nm, where)
    matrices = [np.asarray(m, float) for m in transform["matrices"]]
    lr_z = [int(z) for z in transform["lr_z"]]
    if len(matrices) != hr.shape[0] or len(lr_z) != hr.shape[0]:
        raise InputError(
            f"{where}: has {len(matrices)} matrices for an HR stack of {hr.shape[0]} sections; rerun the align rule"
        )
    dropped = {}
    kept = []
    for k in range(hr.shape[0]):
        if not 0 <= lr_z[k] < lr.shape[0]:
            dropped[k] = "outside the LR stack in z"
        elif p["drop_empty"] and float(hr[k].std()) < float(p["blank_std"]):
            dropped[k] = "blank HR section"
        else:
            kept.append(k)
    if not kept:
        raise InputError(f"{where}: no HR section overlaps the LR stack; check hr_offset_nm in config.yaml")
    r0, r1, c0, c1 = crop_box([matrices[k] for k in kept], hr.shape[1:], lr.shape[1:], float(p["margin_lr_px"]))
    if r1 - r0 < 2 or c1 - c0 < 2:
        raise InputError(
            f"{where}: the aligned HR field covers less than 2x2 whole LR pixels inside the LR image; "
            "check hr_offset_nm in config.yaml"
        )
    shape_hr = ((r1 - r0) * scale, (c1 - c0) * scale)
    lr_out = np.stack([lr[lr_z[k], r0:r1, c0:c1] for k in kept]).astype(np.float32)
    hr_out = np.stack([warp_section(hr[k], pair_to_hr(matrices[k], (r0, c0), scale), shape_hr) for k in kept])
    if p["drop_empty"]:
        # A field can also be blank after warping (e.g. only padding in the crop).
        blank = [i for i, k in enumerate(kept) if float(hr_out[i].std()) < float(p["blank_std"])]
        for i in blank:
            dropped[kept[i]] = "blank paired HR section"
        keep_idx = [i for i in range(len(kept)) if i not in blank]
        if not keep_idx:
            raise InputError(f"{where}: every paired HR section is blank; check the HR stack and hr_offset_nm")
        lr_out, hr_out = lr_out[keep_idx], hr_out[keep_idx]
        kept = [kept[i] for i in keep_idx]
    pair_vox = [float(hr_voxel_nm[0]), float(lr_voxel_nm[1]) / scale, float(lr_voxel_nm[2]) / scale]
    info = {
        "scale": scale,
        "lr_shape": list(lr_out.shape),
        "hr_shape": list(hr_out.shape),
        "lr_voxel_nm": [float(v) for v in lr_voxel_nm],
        "hr_voxel_nm": pair_vox,
        "lr_origin": [r0, c0],
        "hr_sections": kept,
        "lr_sections": [lr_z[k] for k in kept],
        "dropped": {str(k): why for k, why in sorted(dropped.items())},
        "pair_to_hr": [pair_to_hr(matrices[k], (r0, c0), scale).tolist() for k in kept],
    }
    return lr_out, hr_out, info


def pair_labels(labels: np.ndarray, transform: dict, info: dict) -> np.ndarray:
    """Warp instance labels onto the paired-HR grid of `info` (nearest neighbour)."""
    shape = tuple(info["hr_shape"][1:])
    scale, origin = int(info["scale"]), tuple(info["lr_origin"])
    return np.stack(
        [
            warp_section(labels[k], pair_to_hr(np.asarray(transform["matrices"][k]), origin, scale), shape, labels=True)
            for k in info["hr_sections"]
        ]
    )


def run_pairs(lr_path, hr_path, meta_path, transform_path, out_lr, out_hr, out_json, params: dict, log=None) -> dict:
    """The `pairs` rule: write paired lr.tif, hr.tif (input dtype) and pairs.json.

    The LR overview is read lazily (`stacks.float_sections`): only the crop under the HR field of the
    matched LR sections, whatever the overview's size; the HR field is read whole.
    """
    get_logger(logger.name, log)
    meta = read_json(meta_path)
    transform = read_json(transform_path)
    hr, _, hr_dtype = read_image(hr_path)
    if list(hr.shape) != list(transform.get("hr_shape", hr.shape)):
        raise InputError(
            f"{transform_path}: was made for HR shape {transform['hr_shape']}, not {list(hr.shape)}; rerun align"
        )
    with float_sections(lr_path) as lr:  # the LR overview: only the crops under the HR field are read
        lr_dtype = str(lr.vol.dtype)
        lr_p, hr_p, info = make_pairs(
            lr, hr, transform, meta["lr_voxel_nm"], meta["hr_voxel_nm"], params, where=str(transform_path)
        )
    logger.info("pairs: scale %d, LR %s, HR %s, dropped %s", info["scale"], lr_p.shape, hr_p.shape, info["dropped"])
    write_image(out_lr, lr_p, info["lr_voxel_nm"], lr_dtype)
    write_image(out_hr, hr_p, info["hr_voxel_nm"], hr_dtype)
    write_json(out_json, info)
    return info


def run_pairs_labels(labels_path, transform_path, pairs_json, out_labels, log=None) -> None:
    """The `pairs_labels` rule: the specimen's labels on the paired-HR grid."""
    get_logger(logger.name, log)
    labels, _ = read_labels(labels_path)
    transform = read_json(transform_path)
    info = read_json(pairs_json)
    if list(labels.shape) != list(transform["hr_shape"]):
        raise InputError(
            f"{labels_path}: labels have shape {list(labels.shape)} but the HR stack is {transform['hr_shape']}; "
            "give labels of the HR stack"
        )
    write_labels(out_labels, pair_labels(labels, transform, info), info["hr_voxel_nm"])
