"""Instance labels from the forms labs give them in."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .io import InputError


def cell_mask_to_instances(mask: np.ndarray, connectivity: str = "2d") -> np.ndarray:
    """Instance IDs from a cell mask (nonzero = inside a cell, 0 = membrane / boundary).

    Connected components of the cell pixels, with face connectivity only (4 in a
    section) so that a thin membrane with a diagonal gap does not merge two
    neurons. "2d": per section, IDs unique across the whole volume (sections too
    far apart for z-linking, as in ISBI 2012); "3d": components through z.
    Returns uint32 (z, y, x), 0 on the membrane.
    """
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[None]
    cells = mask > 0
    if connectivity == "3d":
        lab, _ = ndi.label(cells, structure=ndi.generate_binary_structure(3, 1))
        return lab.astype(np.uint32)
    if connectivity != "2d":
        raise InputError(f"labels_connectivity {connectivity!r} is not known; use 2d or 3d")
    out = np.zeros(cells.shape, np.uint32)
    nxt = 0
    for k in range(cells.shape[0]):
        lab, n = ndi.label(cells[k], structure=ndi.generate_binary_structure(2, 1))
        out[k] = np.where(lab > 0, lab + nxt, 0)
        nxt += n
    return out
