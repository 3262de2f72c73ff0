"""Where the HR field lies in the LR field: pure arithmetic, shared by the config check and ingest.

Voxel centres: LR pixel i along an axis covers [(i - 0.5) v_lr, (i + 0.5) v_lr) in the LR
frame; HR pixel j lies at offset + j v_hr.
"""

from __future__ import annotations


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
