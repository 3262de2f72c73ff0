"""One tiler for every tiled prediction: SR inference (srseg.infer) and affinities (srseg.affinity).

An axis of n pixels is covered by tiles of t = min(tile, n) pixels whose starts are
`tile_starts` apart by at most t - overlap (the last tile ends at n). Tile outputs,
`scale` output pixels per input pixel (the SR factor; 1 for affinities), are blended with
a separable raised-cosine weight (`blend_weights`): on every side that has a neighbouring
tile the weight is 0 for the outer quarter of the overlap (where the tile's own border
effects live: zero or reflect padding), rises smoothly over the middle half and is 1
inside. Opposite ramps of two neighbours sum to 1, and the caller divides the weighted
sum by the summed weights, so there are no seams, and a model whose receptive field is
within a quarter of the overlap gives the untiled result exactly.

numpy only (no torch): a low layer that the prediction modules share.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .io import InputError


class AxisTiles(NamedTuple):
    """The tiling of one axis: tile starts (input pixels), tile size (input pixels), per-tile output weights."""

    starts: list[int]
    size: int
    weights: list[np.ndarray]


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, n) with tiles of size min(tile, n) overlapping by >= overlap."""
    t = min(tile, n)
    if t == n:
        return [0]
    step = t - min(overlap, t - 1)  # an overlap of t or more: tiles one pixel apart
    starts = list(range(0, n - t, step)) + [n - t]
    return sorted(set(starts))


def blend_weights(starts: list[int], t: int, overlap: int, scale: int = 1) -> list[np.ndarray]:
    """Per-tile 1D output weights (float32, t * scale long) for the tiles of one axis (see the module docstring).

    The ramp on each side spans that side's actual overlap with its neighbour (at least
    `overlap`; the last tile usually overlaps more), less a quarter of `overlap` at both ends.
    An overlap of t or more counts as t - 1, as in `tile_starts`, so every pixel keeps a
    positive summed weight.
    """
    margin = min(overlap, t - 1) // 4
    out = []
    for i, a in enumerate(starts):
        w = np.ones(t * scale, np.float64)
        p = np.arange(t * scale) + 0.5
        if i > 0:  # neighbour on the low side
            ov = starts[i - 1] + t - a
            w *= raised_cosine(p, margin * scale, (ov - margin) * scale)
        if i < len(starts) - 1:  # neighbour on the high side
            ov = a + t - starts[i + 1]
            w *= raised_cosine(t * scale - p, margin * scale, (ov - margin) * scale)
        out.append(w.astype(np.float32))
    return out


def raised_cosine(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below lo, raised cosine from lo to hi, 1 above."""
    r = np.clip((p - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * r)


def tile_axis(n: int, tile: int, overlap: int, scale: int = 1) -> AxisTiles:
    """`tile_starts` and `blend_weights` of one axis of n input pixels, in one call."""
    starts = tile_starts(n, tile, overlap)
    t = min(tile, n)
    return AxisTiles(starts, t, blend_weights(starts, t, overlap, scale))


def check_tiling(tile, overlap, batch, where: str = "infer") -> None:
    """Refuse tiling settings (config keys `where`.tile / .overlap / .batch) the tiler cannot use well."""
    for key, v, lo in (("tile", tile, 1), ("overlap", overlap, 0), ("batch", batch, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise InputError(f"config key {where}.{key}: must be an integer >= {lo}, got {v!r}")
    if 2 * overlap >= tile:
        raise InputError(
            f"config key {where}.overlap: {overlap} must be less than half of {where}.tile ({tile});"
            " lower overlap or raise tile"
        )
