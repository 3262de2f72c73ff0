"""Instance labels from the forms labs give them in."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .io import InputError


def cell_mask_to_instances(mask: np.ndarray, connectivity: str = "2d", min_area_px: float = 0) -> np.ndarray:
    """Instance IDs from a cell mask (nonzero = inside a cell, 0 = membrane / boundary).

    Connected components of the cell pixels, with face connectivity only (4 in a
    section) so that a thin membrane with a diagonal gap does not merge two
    neurons. "2d": per section, IDs unique across the whole volume (sections too
    far apart for z-linking, as in ISBI 2012); "3d": components through z.
    Components whose largest cross-section is below `min_area_px` pixels become
    membrane (see `drop_small_components`). Returns uint32 (z, y, x), 0 on the membrane.
    """
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[None]
    cells = mask > 0
    if connectivity == "3d":
        lab, _ = ndi.label(cells, structure=ndi.generate_binary_structure(3, 1))
        return drop_small_components(lab.astype(np.uint32), min_area_px)
    if connectivity != "2d":
        raise InputError(f"labels_connectivity {connectivity!r} is not known; use 2d or 3d")
    out = np.zeros(cells.shape, np.uint32)
    nxt = 0
    for k in range(cells.shape[0]):
        lab, n = ndi.label(cells[k], structure=ndi.generate_binary_structure(2, 1))
        out[k] = np.where(lab > 0, lab + nxt, 0)
        nxt += n
    return drop_small_components(out, min_area_px)


def area_px(area_nm2: float, voxel_nm) -> float:
    """An area in nm² as pixels of a section of voxel size [z, y, x] nm."""
    return float(area_nm2) / (float(voxel_nm[1]) * float(voxel_nm[2]))


def drop_small_components(labels: np.ndarray, min_area_px: float) -> np.ndarray:
    """Set to 0 every label whose largest cross-section (pixels in one section) is < min_area_px.

    A cell mask drawn with a thick pen leaves pixel-thin gaps inside the drawn
    membrane (between the two lines of a double membrane, at junctions); as
    connected components they would count as cells that no segmentation can
    match. No neurite is that thin, so they become membrane: ignored by the
    metrics and a boundary for the ruler. Expects compact IDs (as ndi.label gives).
    """
    if min_area_px <= 0 or labels.max() == 0:
        return labels
    largest = np.zeros(int(labels.max()) + 1, np.int64)
    for section in labels:  # only the IDs present: per-section IDs of a 2d mask grow with z
        ids, counts = np.unique(section, return_counts=True)
        np.maximum.at(largest, ids, counts)
    small = largest < min_area_px
    small[0] = False
    return np.where(small[labels], 0, labels).astype(labels.dtype)
