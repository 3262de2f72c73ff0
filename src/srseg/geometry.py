"""Where the HR field lies in the LR field: pure arithmetic (numpy only), shared by config checks,
ingest, align, pairs and the data generators.

Voxel centres: LR pixel i along an axis covers [(i - 0.5) v_lr, (i + 0.5) v_lr) in the LR
frame; HR pixel j lies at offset + j v_hr.

Transform convention (align, pairs, the phantom's truth.json): a 2x3 matrix M maps HR pixel
coordinates (x = column, y = row, pixel centres at integers) to LR pixel coordinates,
[x_lr, y_lr] = M @ [x_hr, y_hr, 1]; HR section k lies in LR section lr_z[k].
"""

from __future__ import annotations

import numpy as np

from .io import InputError

# --------------------------------------------------------------------------- fields in nm


def field_extent(n: int, voxel: float, start: float = 0.0) -> tuple[float, float]:
    """[lo, hi) in nm of n pixels of size voxel whose first pixel centre is at `start`."""
    return start - voxel / 2, start + (n - 0.5) * voxel


def hr_outside_lr(lr_shape, hr_shape, lr_voxel, hr_voxel, hr_offset, tolerance_lr_px: float = 1.0):
    """The first axis along which the HR field sticks out of the LR field, as (axis, HR range, LR range), or None.

    `tolerance_lr_px` allows for a stage offset that is off by up to that many LR pixels (the
    alignment finds the true position); a field larger than the LR field is never accepted.
    """
    for ax, axis in enumerate("zyx"):
        lr_lo, lr_hi = field_extent(lr_shape[ax], lr_voxel[ax])
        hr_lo, hr_hi = field_extent(hr_shape[ax], hr_voxel[ax], hr_offset[ax])
        tol = tolerance_lr_px * lr_voxel[ax]
        if hr_hi - hr_lo > lr_hi - lr_lo + 1e-6 or hr_lo < lr_lo - tol or hr_hi > lr_hi + tol:
            return axis, (hr_lo, hr_hi), (lr_lo, lr_hi)
    return None


def coarse_matrix(lr_voxel_nm, hr_voxel_nm, hr_offset_nm) -> np.ndarray:
    """HR->LR matrix from voxel sizes and the stage offset alone (no rotation).

    hr_offset_nm [z, y, x] is where HR pixel (0, 0, 0)'s centre lies in the frame
    where LR pixel (0, 0, 0)'s centre is at 0 nm.
    """
    _, ly, lx = (float(v) for v in lr_voxel_nm)
    _, hy, hx = (float(v) for v in hr_voxel_nm)
    _, oy, ox = (float(v) for v in hr_offset_nm)
    return np.array([[hx / lx, 0.0, ox / lx], [0.0, hy / ly, oy / ly]])


def coarse_lr_z(n_hr: int, lr_voxel_nm, hr_voxel_nm, hr_offset_nm) -> np.ndarray:
    """LR section of each HR section: the nearest LR section centre in z."""
    lz, hz, oz = float(lr_voxel_nm[0]), float(hr_voxel_nm[0]), float(hr_offset_nm[0])
    return np.floor((oz + np.arange(n_hr) * hz) / lz + 0.5).astype(int)  # halves round up, not to even


# --------------------------------------------------------------------------- 2x3 affine matrices


def to3x3(m: np.ndarray) -> np.ndarray:
    """A 2x3 affine matrix as a 3x3 homogeneous one (so affines compose by @)."""
    out = np.eye(3)
    out[:2] = np.asarray(m, dtype=np.float64).reshape(2, 3)
    return out


def compose(*mats: np.ndarray) -> np.ndarray:
    """compose(A, B) = A after B, for 2x3 affine matrices."""
    out = np.eye(3)
    for m in mats:
        out = out @ to3x3(m)
    return out[:2]


def invert(m: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix."""
    return np.linalg.inv(to3x3(m))[:2]


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (n, 2) points (x, y) through a 2x3 matrix."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return pts @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]


def with_centre(linear: np.ndarray, centre_lr, centre_hr) -> np.ndarray:
    """The 2x3 map with linear part `linear` that sends HR point centre_hr to LR point centre_lr."""
    linear = np.asarray(linear, float)[:, :2]
    return np.hstack([linear, (np.asarray(centre_lr, float) - linear @ np.asarray(centre_hr, float))[:, None]])


def axis_scales(m: np.ndarray) -> np.ndarray:
    """Length of the images of the x and y unit vectors (the per-axis scale)."""
    a = np.asarray(m)[:, :2]
    return np.hypot(a[0], a[1])


def rotation_deg(m: np.ndarray) -> float:
    """Rotation in degrees: the angle of the image of the x unit vector, from +x towards +y."""
    a = np.asarray(m)[:, :2]
    return float(np.degrees(np.arctan2(a[1, 0], a[0, 0])))


# --------------------------------------------------------------------------- image fields in pixels


def field_corners(shape_yx) -> np.ndarray:
    """Outer corners (x, y) of an image field: pixel edges at -0.5 and n - 0.5."""
    h, w = shape_yx
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])


def field_centre(shape_yx) -> np.ndarray:
    """Centre (x, y) of an image field, in its pixel coordinates."""
    h, w = shape_yx
    return np.array([(w - 1) / 2, (h - 1) / 2])


def corner_rms(m_a: np.ndarray, m_b: np.ndarray, shape_yx) -> float:
    """RMS distance (in the target's pixels) between where two transforms put a field's corners."""
    c = field_corners(shape_yx)
    d = apply(m_a, c) - apply(m_b, c)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=1))))


def require_hr_inside(specimen: str, lr_shape, hr_shape, lr_voxel, hr_voxel, hr_offset) -> None:
    """InputError naming specimens.<specimen>.hr_offset_nm when the HR field is not inside the LR field."""
    outside = hr_outside_lr(lr_shape, hr_shape, lr_voxel, hr_voxel, hr_offset)
    if outside is not None:
        axis, (h0, h1), (l0, l1) = outside
        raise InputError(
            f"specimens.{specimen}.hr_offset_nm: the HR field ({h0:.0f} to {h1:.0f} nm along {axis}) is not "
            f"inside the LR field ({l0:.0f} to {l1:.0f} nm); fix hr_offset_nm or the voxel sizes "
            f"(HR must be a sub-field of the LR overview)"
        )
