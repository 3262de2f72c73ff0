"""Blockwise segmentation of volumes larger than memory, with globally consistent IDs.

The funkelab lsd / daisy scheme, as a few pure functions over numpy blocks (and a driver
over zarr arrays), so that every block can be one Snakemake job:

1. fragments per block (`block_fragments`): the seeded watershed of srseg.segment
   (`fold_long_range`, `fragments_from_affinities`) on the block plus `context` voxels in
   y/x, cropped to the block's core, split into connected pieces and offset by
   ``block.index * block.budget`` (budget = voxels of a full block, so no block can run out
   of IDs and no job needs to know another's count). A cell crossing a block face thus has
   one fragment per block;
2. RAG statistics per block (`block_edges`, the default agglomeration "rag"): for every
   voxel pair (p, p - e_d) whose voxel p lies in the block's core and whose fragments
   differ, the (folded) affinity aff[d][p] is summed into the pair's edge (sum, count).
   Each voxel pair is counted by exactly one block, so the blocks' statistics add up to the
   region adjacency graph waterz would build from the whole volume. With
   `link_cut_fragments`, the block also lists the edges between pieces that lie mostly in
   one fragment of its own block + context watershed (a fragment a face cut, crumbs);
   the gather joins them first;
   2'. (agglomeration "blocks", and any merge function but "mean") merges per block
   (`block_merges`): srseg.segment's `agglomerate` (waterz, the same
   scoring function, thresholds and 2D / 3D mode as the in-memory path) on the global
   fragments and affinities of block + context. For every pair (u, v) of touching
   fragments the block *owns*, it records the lowest threshold at which waterz put u and v
   into one segment. **Ownership rule**: the edge (u, v), u < v, belongs to the block that
   holds fragment u. IDs grow with the block index, so that is the lower-index block of
   the two, the edge lies in it or on its face with a neighbour, and with context >= 1
   voxel the owner sees the whole contact face. Every edge is thus decided exactly once,
   by one block, and no two blocks can disagree about it (lsd writes the RAG edges "whose
   first node lies in the write ROI" for the same reason). Waterz scores an edge there
   by what one block + context sees of the two regions, and its hierarchical merges
   cascade from that, which is why "rag" is the default;
3. global segments: "rag" (`rag_luts`): the blocks' statistics summed per edge and the
   hierarchical mean agglomeration of waterz (`mean_agglomeration`) run on that graph to
   every threshold at once, one group of fragments that can merge at a time
   (`merge_groups`: exact, and memory bounded by the largest group, not the volume);
   "blocks" (`segment_luts`): per threshold, connected components of the fragment graph
   whose edges are the merges at or below it. Either gives a lookup table
   compact fragment index -> segment ID 1..n, deterministic; `relabel_block` applies it
   block by block (memory: one block and the table, which has one entry per fragment);
4. size filter (`filter_small_block`, only with min_size > 1): segment sizes are summed
   over the blocks first (`segment_sizes`), so "small" is decided on *global* sizes,
   exactly as in memory; the flooding of small segments by their neighbours (watershed
   of the boundary map) then runs per block + context and is exact where each connected
   group of small segments lies inside the block's context, approximate (ties, cut
   groups) elsewhere. A block whose segments are all small is left as it is (in memory:
   a section / the volume).

Why not daisy: it needs a scheduler process holding the block DAG and a MongoDB (or file)
RAG store that workers write to; here each pass is a pure function of its block's inputs,
its outputs are one zarr chunk and one small file per block, and the scatter / gather is
Snakemake's (one job per block, one gather job for the lookup tables).

Differences from `srseg.segment.segment_affinities` on the whole array: fragments near a
block face see only `context` voxels beyond it (the pass-1 watershed runs per block); the
"rag" agglomeration is otherwise waterz's, exactly (ties aside: one block covering the volume
gives waterz's labels). With "blocks", a merge across a face is also decided with the owner's
view of the neighbour. Long-range folding (`fold_long_range`) is local: it is
exact in the core when the context is at least the largest long-range offset along each
folded axis, so a smaller context is refused (ValueError). In 2D mode (dim=2, sections
independent) z context is never needed and is ignored; in 3D it is the z context of the
agglomeration. Context must be >= 1 along every axis whose edges can merge (y, x; z in
3D), else faces could never be stitched (ValueError).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from skimage.measure import label as connected_label
from skimage.segmentation import watershed

from . import runtime
from .affinity import load_affinity_model, predict_sections
from .io import InputError, label_dtype, write_json
from .segment import (
    agglomerate,
    boundary_map,
    check_affinities,
    fold_long_range,
    fragment_options,
    fragments_from_affinities,
    rule_settings,
    run_segment,
    segment_info,
    waterz_cache,
)
from .volumes import open_volume, split_zarr, tmp_path, write_sections

Slices = tuple[slice, slice, slice]


# --------------------------------------------------------------------------- block grid


@dataclass(frozen=True)
class Block:
    """One block of a grid: `index` (its place in `block_grid`'s order), `position` (z, y, x in the
    grid), `core` (slices of the voxels it owns), `budget` (fragment IDs reserved for it) and the
    volume `shape`."""

    index: int
    position: tuple[int, int, int]
    core: Slices
    budget: int
    shape: tuple[int, int, int]

    def with_context(self, context_zyx: Sequence[int], shape: Sequence[int] | None = None) -> Slices:
        """Slices of the core grown by `context_zyx` voxels on each side, clipped to the volume."""
        shape = self.shape if shape is None else tuple(int(s) for s in shape)
        return tuple(
            slice(max(0, s.start - int(c)), min(int(n), s.stop + int(c)))
            for s, c, n in zip(self.core, context_zyx, shape)
        )

    def core_in(self, window: Slices) -> Slices:
        """The core as slices into an array cut out by `window` (e.g. `with_context(...)`)."""
        return tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(self.core, window))

    @property
    def id_offset(self) -> int:
        """Fragment IDs of this block are id_offset + 1 .. id_offset + budget."""
        return self.index * self.budget


def block_grid(shape_zyx: Sequence[int], block_zyx: Sequence[int]) -> list[Block]:
    """The blocks tiling a (z, y, x) volume, in C order of their grid position (z slowest); edge blocks are cut."""
    shape = tuple(int(s) for s in shape_zyx)
    block = tuple(int(b) for b in block_zyx)
    if len(shape) != 3 or len(block) != 3 or min(block) < 1:
        raise ValueError(f"need a (z, y, x) shape and a positive (z, y, x) block size, got {shape_zyx}, {block_zyx}")
    block = tuple(min(b, max(s, 1)) for b, s in zip(block, shape))
    counts = [-(-s // b) for s, b in zip(shape, block)]
    budget = int(np.prod(block))
    out = []
    for i, pos in enumerate(itertools.product(*(range(n) for n in counts))):
        core = tuple(slice(p * b, min((p + 1) * b, s)) for p, b, s in zip(pos, block, shape))
        out.append(Block(i, tuple(pos), core, budget, shape))
    return out


def block_of(ids: np.ndarray, budget: int) -> np.ndarray:
    """The block index of global fragment IDs (IDs >= 1)."""
    return (np.asarray(ids, np.uint64) - np.uint64(1)) // np.uint64(budget)


def check_context(
    context_zyx: Sequence[int], dim: int, offsets: Sequence[Sequence[int]] | None, long_range_weight: float
) -> tuple[int, int, int]:
    """The context as ints, refused (ValueError) where faces could not be stitched or folding would not be exact."""
    context = tuple(int(c) for c in context_zyx)
    if len(context) != 3 or min(context) < 0:
        raise ValueError(f"context must be 3 non-negative voxel counts (z, y, x), got {context_zyx}")
    axes = (0, 1, 2) if dim == 3 else (1, 2)
    for a in axes:
        if context[a] < 1:
            raise ValueError(
                f"context {context}: axis {'zyx'[a]} needs at least 1 voxel of context, else fragments on the two "
                "sides of a block face are never compared and objects crossing it are never stitched"
            )
    if offsets is not None and len(offsets) > 3 and long_range_weight > 0:
        for o in offsets[3:]:
            nonzero = [a for a, v in enumerate(o) if v]
            if len(nonzero) == 1 and nonzero[0] in axes and abs(int(o[nonzero[0]])) > context[nonzero[0]]:
                a = nonzero[0]
                raise ValueError(
                    f"context {context}: the long-range offset {list(o)} spans {abs(int(o[a]))} voxels along "
                    f"{'zyx'[a]}; fold_long_range is exact blockwise only with at least that much context"
                )
    return context


def pass_context(context: Sequence[int], dim: int | None = 2) -> tuple[int, int, int]:
    """The context a pass reads: fragments (dim=None) and 2D agglomeration need no z context."""
    return (int(context[0]) if dim == 3 else 0, int(context[1]), int(context[2]))


# --------------------------------------------------------------------------- pass 1: fragments


def window_fragments(
    affs_with_context: np.ndarray,
    block: Block,
    context: Sequence[int],
    seed_min_distance: int = 3,
    boundary_threshold: float = 0.5,
    offsets: Sequence[Sequence[int]] | None = None,
    long_range_weight: float = 0.5,
) -> np.ndarray:
    """Pass 1's watershed (z, y, x) uint64 of the block's core sections with their y/x context, before the
    crop (IDs of this window alone): what `block_fragments` crops and what pass 2's `fragment_settings`
    compare the global fragments with (pass it there as `pass1` to skip a second watershed)."""
    window = block.with_context(context)
    affs = np.asarray(affs_with_context)
    if affs.shape[1:] != tuple(s.stop - s.start for s in window):
        raise ValueError(f"affinities of shape {affs.shape} do not cover block {block.index}'s window {window}")
    nn = fold_long_range(check_affinities(affs[:, block.core_in(window)[0]]), offsets, long_range_weight)
    return fragments_from_affinities(nn, seed_min_distance, boundary_threshold)


def block_fragments(
    affs_with_context: np.ndarray,
    block: Block,
    context: Sequence[int],
    seed_min_distance: int = 3,
    boundary_threshold: float = 0.5,
    offsets: Sequence[Sequence[int]] | None = None,
    long_range_weight: float = 0.5,
    pass1: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """(fragments of the block's core, uint64 with global IDs; their count) from the affinities of
    `block.with_context(context)` (all channels, as `segment_affinities` takes them).

    Fragments are per section (as in memory), so only y/x context is used; z context in the
    input is cropped off. IDs are block.id_offset + 1 .. + count. pass1: `window_fragments` of
    the same inputs, if the caller already has it (None: computed here).
    """
    if pass1 is None:
        pass1 = window_fragments(
            affs_with_context, block, context, seed_min_distance, boundary_threshold, offsets, long_range_weight
        )
    core = block.core_in(block.with_context(context))
    frag = np.asarray(pass1)[:, core[1], core[2]]
    # a fragment cut by the core's faces may fall apart: one ID per connected piece (sections never connect:
    # fragment IDs are unique per section)
    pieces = connected_label(frag.astype(np.int64), background=-1, connectivity=1).astype(np.uint64)
    n = int(pieces.max())
    if n > block.budget:  # cannot happen: at most one fragment per voxel
        raise RuntimeError(f"block {block.index}: {n} fragments exceed its ID budget {block.budget}")
    return pieces + np.uint64(block.id_offset), n


def _links_window(nn, core, fragment_settings, pass1) -> np.ndarray:
    """The window fragments pass 2 links by: `pass1` (pass 1's, if kept) or the same watershed again."""
    if pass1 is not None:
        pass1 = np.asarray(pass1)
        if pass1.shape != (core[0].stop - core[0].start, *nn.shape[2:]):
            raise ValueError(f"pass 1 window fragments {pass1.shape} do not match the block's core sections")
        return pass1
    return fragments_from_affinities(
        nn[:, core[0]],
        int(fragment_settings.get("seed_min_distance", 3)),
        float(fragment_settings.get("boundary_threshold", 0.5)),
    )


# --------------------------------------------------------------------------- pass 2: merges


def _block_window(affs_with_context, fragments_with_context, block, context, dim, offsets, long_range_weight):
    """(window, fragments, folded nearest-neighbour affinities, core inside them) of one block.

    2D: only the core's sections (sections are independent). Raises ValueError when the arrays
    do not cover the block's window.
    """
    window = block.with_context(context)
    affs, frag = np.asarray(affs_with_context), np.asarray(fragments_with_context, np.uint64)
    if affs.shape[1:] != frag.shape or frag.shape != tuple(s.stop - s.start for s in window):
        raise ValueError(
            f"affinities {affs.shape} and fragments {frag.shape} do not both cover block {block.index}'s window"
        )
    core = block.core_in(window)
    if dim == 2:
        affs, frag = affs[:, core[0]], frag[core[0]]
        core = (slice(0, frag.shape[0]), core[1], core[2])
    return window, frag, fold_long_range(check_affinities(affs), offsets, long_range_weight), core


def block_merges(
    affs_with_context: np.ndarray,
    fragments_with_context: np.ndarray,
    block: Block,
    context: Sequence[int],
    thresholds: Sequence[float],
    dim: int = 2,
    merge_function: str = "mean",
    offsets: Sequence[Sequence[int]] | None = None,
    long_range_weight: float = 0.5,
    fragment_settings: Mapping | None = None,
    pass1: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(edges (n, 2) uint64 with u < v, merge thresholds (n,) float64): the fragment pairs this block owns
    that waterz merges, each with the lowest of `thresholds` at which it merges them.

    Inputs cover `block.with_context(context)` (2D mode: z context, if given, is cropped
    off); `fragments_with_context` holds the global IDs of pass 1. An edge (u, v) is owned
    by the block holding u (see the module docstring). Because waterz's thresholds are
    hierarchical, the pair is merged at every threshold >= its merge threshold.

    `fragment_settings` ({"seed_min_distance", "boundary_threshold"} of pass 1, or {} for the
    defaults; None: off): the block recomputes its pass-1 watershed of block + context (the
    "window fragments", before the crop), and waterz is given, in place of each global
    fragment lying mostly (> 50 % of its voxels in the window) inside one window fragment,
    that window fragment. A fragment that a block face cut in two (or the crumbs a fragment
    seeded in the context leaves in the core) is then agglomerated whole, as in memory: its
    pieces merge at every threshold and never decide merges on their own small boundaries.
    Without it, such pieces are separate waterz nodes, which splits objects along block
    faces at low thresholds and lets crumbs bridge objects at high ones. `pass1`: pass 1's
    `window_fragments` of this block with these settings, if kept (None: that watershed is run again).
    """
    thresholds = sorted(float(t) for t in thresholds)
    window, frag, nn, core = _block_window(
        affs_with_context, fragments_with_context, block, context, dim, offsets, long_range_weight
    )
    nodes = frag
    if fragment_settings is not None:  # waterz sees the owner's pass-1 window fragments whole (see above)
        whole = _links_window(nn, core, fragment_settings, pass1)
        ids, of = _majority(frag[core[0]], whole)
        window_ids, inverse = np.unique(frag, return_inverse=True)
        key = np.arange(1, len(window_ids) + 1, dtype=np.uint64) + np.uint64(whole.max())
        pos = np.searchsorted(ids, window_ids).clip(0, max(len(ids) - 1, 0))
        joined = (ids[pos] == window_ids) & (of[pos] > 0) if len(ids) else np.zeros(len(window_ids), bool)
        key[joined] = of[pos][joined]
        nodes = key[inverse.reshape(frag.shape)]
    segs = agglomerate(nn, nodes, thresholds, dim, merge_function)
    axes = (0, 1, 2) if dim == 3 else (1, 2)
    us, vs, levels = [], [], []
    for a in axes:
        lo = tuple(slice(None, -1) if d == a else slice(None) for d in range(3))
        hi = tuple(slice(1, None) if d == a else slice(None) for d in range(3))
        fa, fb = frag[lo], frag[hi]
        touch = fa != fb
        if not touch.any():
            continue
        u, v = np.minimum(fa, fb)[touch], np.maximum(fa, fb)[touch]
        mine = block_of(u, block.budget) == block.index
        # level: index of the first threshold merging the pair (len: never); monotone in the threshold
        level = np.full(int(mine.sum()), len(thresholds), np.int64)
        for i in reversed(range(len(thresholds))):
            s = segs[thresholds[i]]
            level[(s[lo][touch] == s[hi][touch])[mine]] = i
        us.append(u[mine])
        vs.append(v[mine])
        levels.append(level)
    if not us:
        return np.zeros((0, 2), np.uint64), np.zeros(0, np.float64)
    u, v, level = np.concatenate(us), np.concatenate(vs), np.concatenate(levels)
    window_ids = np.unique(frag)  # 1D codes of the pairs: np.unique(axis=0) would be far slower
    n = np.int64(len(window_ids))
    codes, inverse = np.unique(
        np.searchsorted(window_ids, u).astype(np.int64) * n + np.searchsorted(window_ids, v), return_inverse=True
    )
    edges = np.stack([window_ids[codes // n], window_ids[codes % n]], axis=1)
    inverse = inverse.ravel()
    first = np.full(len(edges), len(thresholds), np.int64)
    np.minimum.at(first, inverse, level)
    merged = first < len(thresholds)
    return edges[merged], np.asarray(thresholds, np.float64)[first[merged]]


def _majority(frag: np.ndarray, whole: np.ndarray, share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(sorted fragment IDs, the window fragment holding more than `share` of each one's voxels, else 0)."""
    ids = np.unique(frag)  # the inverse by searchsorted: np.unique(return_inverse=True) argsorts, ~4x slower
    inv = np.searchsorted(ids, frag.ravel())
    width = np.int64(whole.max()) + 1
    codes, counts = np.unique(inv.ravel().astype(np.int64) * width + whole.ravel().astype(np.int64), return_counts=True)
    owner, window_id = codes // width, (codes % width).astype(np.uint64)
    sizes = np.bincount(owner, counts, len(ids))
    order = np.lexsort((-counts, owner))  # per fragment, the largest overlap first
    first = order[np.searchsorted(owner[order], np.arange(len(ids)))]
    return ids, np.where(counts[first] > share * sizes, window_id[first], np.uint64(0))


# --------------------------------------------------------------------------- pass 2 (rag): edge statistics


def block_edges(
    affs_with_context: np.ndarray,
    fragments_with_context: np.ndarray,
    block: Block,
    context: Sequence[int],
    dim: int = 2,
    offsets: Sequence[Sequence[int]] | None = None,
    long_range_weight: float = 0.5,
    fragment_settings: Mapping | None = None,
    pass1: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The block's share of the global region adjacency graph (RAG): {"edges" (n, 2) uint64, u < v,
    "sums" (n,) float64, "counts" (n,) int64, "links" (m, 2) uint64}.

    For every voxel pair (p, p - e_d) with p in the block's core (d: z, y, x in 3D; y, x in 2D)
    whose fragments differ, the (folded) affinity aff[d][p] is added to the pair's edge: the
    statistics waterz's `mean` scoring reads (its region_graph.hpp pairs seg[p] with
    seg[p - e_d] through aff[d][p]). Each voxel pair is counted by exactly one block (the one
    holding p), so summing the blocks' statistics per edge gives the whole volume's RAG.

    `fragment_settings` (see `block_merges`; None: off): "links" are the edges whose two
    fragments lie mostly inside one of this block's window fragments (a fragment a block face
    cut, or a crumb): `rag_luts` joins them before agglomerating, so the pieces act as the one
    fragment the in-memory watershed would have made. `pass1`: as in `block_merges`.
    """
    window, frag, nn, core = _block_window(
        affs_with_context, fragments_with_context, block, context, dim, offsets, long_range_weight
    )
    us, vs, ws = [], [], []
    for d in (0, 1, 2) if dim == 3 else (1, 2):
        start = max(core[d].start, 1)  # p - e_d must lie in the window (index 0: the volume's face)
        here = tuple(slice(start, c.stop) if a == d else c for a, c in enumerate(core))
        below = tuple(slice(start - 1, c.stop - 1) if a == d else c for a, c in enumerate(core))
        fa, fb = frag[here], frag[below]
        touch = fa != fb
        us.append(np.minimum(fa, fb)[touch])
        vs.append(np.maximum(fa, fb)[touch])
        ws.append(nn[d][here][touch].astype(np.float64))
    u, v, w = np.concatenate(us), np.concatenate(vs), np.concatenate(ws)
    window_ids = np.unique(frag)  # 1D codes of the pairs (np.unique(axis=0) would be far slower)
    n = np.int64(len(window_ids))
    codes, inverse = np.unique(
        np.searchsorted(window_ids, u).astype(np.int64) * n + np.searchsorted(window_ids, v), return_inverse=True
    )
    inverse = inverse.ravel()
    edges = np.stack([window_ids[codes // n], window_ids[codes % n]], axis=1).astype(np.uint64).reshape(-1, 2)
    sums = np.bincount(inverse, weights=w, minlength=len(codes)).astype(np.float64)
    counts = np.bincount(inverse, minlength=len(codes)).astype(np.int64)
    links = np.zeros((0, 2), np.uint64)
    if fragment_settings is not None and len(edges):
        whole = _links_window(nn, core, fragment_settings, pass1)
        ids, of = _majority(frag[core[0]], whole)
        pos_u, pos_v = np.searchsorted(ids, edges[:, 0]), np.searchsorted(ids, edges[:, 1])
        ok = (pos_u < len(ids)) & (pos_v < len(ids))
        pos_u, pos_v = pos_u.clip(0, len(ids) - 1), pos_v.clip(0, len(ids) - 1)
        ok &= (ids[pos_u] == edges[:, 0]) & (ids[pos_v] == edges[:, 1])
        same = ok & (of[pos_u] > 0) & (of[pos_u] == of[pos_v])
        links = edges[same]
    return {"edges": edges, "sums": sums, "counts": counts, "links": links}


def mean_agglomeration(
    n: int, u: np.ndarray, v: np.ndarray, sums: np.ndarray, counts: np.ndarray, thresholds: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Hierarchical agglomeration of a RAG of `n` nodes, as waterz's OneMinus<MeanAffinity> scoring does it:
    repeatedly merge the edge of the lowest score 1 - sum / count while that score is < the threshold, the
    merged region's edge to a common neighbour getting the summed statistics, for each of the ascending
    `thresholds` in turn (waterz's mergeUntil, IterativeRegionMerging.hpp). Returns the merges as
    (pairs (m, 2) int64 of nodes, index of the first threshold at which they merge (m,)); the partition at
    threshold i is the connected components of the merges with index <= i.

    Written here because waterz builds its RAG from the voxel arrays (which no block holds whole)
    and no maintained PyPI package agglomerates a given RAG (nifty / affogato are conda-only). A
    heap of (score, a, b) with lazy invalidation (an entry is current while a and b are both
    regions and their edge still has that score), union by merging the smaller adjacency map into
    the larger. Memory: O(fragments + RAG edges) Python objects, about 0.16 kB an edge, which is
    why `rag_luts` calls it one group of fragments that can merge at a time
    (`merge_groups_agglomeration`). Ties may be broken in another order than waterz's; scores
    are float64 (waterz: float32 running means), which can only matter for scores within ~1e-7
    of a threshold or of each other.
    """
    import heapq

    thresholds = sorted(float(t) for t in thresholds)
    top = thresholds[-1] if thresholds else -np.inf
    # memory (this holds the whole RAG as Python objects): an edge's statistics are one complex number
    # sum + count * 1j (both float64 parts add exactly as before; counts are integers < 2**53), shared by its
    # two adjacency entries; node keys are shared int objects; the heap only gets scores < the top threshold
    # (no other entry can ever be popped)
    node = list(range(int(n)))
    adj: list[dict | None] = [{} for _ in node]
    step = 1 << 16  # the arrays as Python lists a slice at a time (whole, they would double the peak)
    for k in range(0, len(u), step):
        part = (u[k : k + step], v[k : k + step], sums[k : k + step], counts[k : k + step])
        for a, b, s, c in zip(*(np.asarray(x).tolist() for x in part)):
            if a == b or c <= 0:
                continue
            a, b = node[a], node[b]
            st = adj[a].get(b, 0j) + complex(s, c)
            adj[a][b] = adj[b][a] = st
    heap = []
    for a in node:
        for b, st in adj[a].items():
            if a < b and 1.0 - st.real / st.imag < top:
                heap.append((1.0 - st.real / st.imag, a, b))
    heapq.heapify(heap)
    pairs, levels = [], []
    for i, t in enumerate(thresholds):
        while heap and heap[0][0] < t:
            score, a, b = heapq.heappop(heap)
            na, nb = adj[a], adj[b]
            if na is None or nb is None:
                continue
            st = na.get(b)
            if st is None or 1.0 - st.real / st.imag != score:
                continue  # a stale entry: the edge was merged into another, or has a newer score
            keep, gone = (a, b) if len(na) >= len(nb) else (b, a)
            nk, ng = adj[keep], adj[gone]
            del nk[gone]
            for x, sx in ng.items():
                if x == keep:
                    continue
                nx = adj[x]
                del nx[gone]
                sk = nk.get(x, 0j) + sx
                nk[x] = nx[keep] = sk
                score = 1.0 - sk.real / sk.imag
                if score < top:
                    heapq.heappush(heap, (score, min(keep, x), max(keep, x)))
            adj[gone] = None
            pairs.append((keep, gone))
            levels.append(i)
    return np.asarray(pairs, np.int64).reshape(-1, 2), np.asarray(levels, np.int64)


def merge_groups(
    n: int, u: np.ndarray, v: np.ndarray, sums: np.ndarray, counts: np.ndarray, top: float
) -> tuple[int, np.ndarray]:
    """(number of groups, group of each node): the connected components of the RAG's edges whose score
    1 - sum / count is below `top`, the highest threshold.

    No merge ever leaves its group: two regions merge only over an edge scoring < top, and a
    region pair's statistics are the sums of its fragment pairs', so their mean can be below
    top only if one of those fragment pairs' is (a weighted mean is never below all its
    terms). Hence every region lies inside one group, an edge between two groups is never
    merged and its statistics never reach an edge that is, and agglomerating each group on its
    own gives exactly the merges of the whole graph.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        low = (counts > 0) & (1.0 - sums / counts < top)
    graph = sparse.coo_array((np.ones(int(low.sum()), np.int8), (u[low], v[low])), shape=(n, n)).tocsr()
    return connected_components(graph, directed=False)


def merge_groups_agglomeration(
    n: int,
    u: np.ndarray,
    v: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    thresholds: Sequence[float],
    group_edges: int = 1 << 17,
) -> tuple[np.ndarray, np.ndarray]:
    """`mean_agglomeration` of the RAG, run group by group (`merge_groups`): the same merges, with memory
    bounded by the largest group, not by the whole graph.

    Groups are taken in order and batched up to `group_edges` edges per call (a batch of groups that
    cannot interact agglomerates as each would alone); nodes keep their order within a batch, so ties
    are broken as on the whole graph. Edges between groups, which no threshold merges, are dropped
    first. The largest group (edges) is logged: it, not the volume, sets the peak of this step. With a
    2D ruler (sections independent) a group never leaves its section; in 3D a group is at most the
    fragments of the objects a too-high top threshold would join.
    """
    thresholds = sorted(float(t) for t in thresholds)
    empty = (np.zeros((0, 2), np.int64), np.zeros(0, np.int64))
    if not thresholds or len(u) == 0:
        return empty
    u, v = np.asarray(u, np.int64), np.asarray(v, np.int64)
    _, group = merge_groups(n, u, v, np.asarray(sums, np.float64), np.asarray(counts, np.float64), thresholds[-1])
    inside = np.flatnonzero(group[u] == group[v])
    order = inside[np.argsort(group[u[inside]], kind="stable")]  # edges of a group together, in their order
    g = group[u[order]]
    if len(order) == 0:
        return empty
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])  # each group's first edge in `order`
    bounds = np.r_[starts, len(order)]
    sizes = np.diff(bounds)
    logging.getLogger("srseg.blockwise").info(
        "agglomerating %d of %d RAG edges in %d groups that can merge (largest: %d edges)",
        len(order),
        len(u),
        len(starts),
        int(sizes.max()),
    )
    pairs, levels = [], []
    i = 0
    while i < len(starts):
        j = i + 1  # a batch: whole groups up to group_edges edges (a larger group alone)
        while j < len(starts) and bounds[j + 1] - bounds[i] <= group_edges:
            j += 1
        e = order[bounds[i] : bounds[j]]
        nodes, local = np.unique(np.concatenate([u[e], v[e]]), return_inverse=True)
        local = local.ravel()
        p, lv = mean_agglomeration(len(nodes), local[: len(e)], local[len(e) :], sums[e], counts[e], thresholds)
        pairs.append(nodes[p])
        levels.append(lv)
        i = j
    return np.concatenate(pairs).reshape(-1, 2), np.concatenate(levels)


def rag_luts(
    counts: Sequence[int], budget: int, blocks: Iterable[Mapping[str, np.ndarray]], thresholds: Sequence[float]
) -> dict[float, np.ndarray]:
    """{threshold: lookup table} compact fragment index -> segment ID (as `segment_luts`), by exact mean
    agglomeration (`mean_agglomeration`) of the global RAG summed over every block's `block_edges`.

    The blocks' "links" are joined first (at every threshold), their edges' statistics summed.
    """
    thresholds = sorted(float(t) for t in thresholds)
    starts = fragment_starts(counts)
    n = int(starts[-1])
    parts: dict[str, list] = {k: [] for k in ("u", "v", "sums", "counts", "lu", "lv")}
    for b in blocks:  # one block's arrays at a time, kept compact (memory: the RAG's arrays once)
        edges, links = (np.asarray(b[k], np.uint64).reshape(-1, 2) for k in ("edges", "links"))
        for key, ids in (("u", edges[:, 0]), ("v", edges[:, 1]), ("lu", links[:, 0]), ("lv", links[:, 1])):
            parts[key].append(compact_index(ids, starts, budget))
        parts["sums"].append(np.asarray(b["sums"], np.float64).ravel())
        parts["counts"].append(np.asarray(b["counts"], np.int64).ravel())
    dtypes = {"u": np.int64, "v": np.int64, "lu": np.int64, "lv": np.int64, "sums": np.float64, "counts": np.int64}
    u, v, sums, cnts, lu, lv = (
        np.concatenate([np.zeros(0, dtypes[k]), *parts.pop(k)]) for k in ("u", "v", "sums", "counts", "lu", "lv")
    )
    graph = sparse.coo_array((np.ones(len(lu), np.int8), (lu, lv)), shape=(n, n)).tocsr()
    m, comp = connected_components(graph, directed=False)  # linked pieces: one node
    del graph, lu, lv
    cu, cv = comp[u], comp[v]
    del u, v
    inner = cu != cv
    cu, cv = np.minimum(cu, cv)[inner], np.maximum(cu, cv)[inner]
    codes, inverse = np.unique(cu.astype(np.int64) * m + cv, return_inverse=True)
    del cu, cv
    inverse = inverse.ravel()
    edge_sums = np.bincount(inverse, weights=sums[inner], minlength=len(codes))
    edge_counts = np.bincount(inverse, weights=cnts[inner], minlength=len(codes))
    del sums, cnts, inner, inverse  # the agglomeration's Python graph is the peak: free the arrays first
    pairs, levels = merge_groups_agglomeration(m, codes // m, codes % m, edge_sums, edge_counts, thresholds)
    luts = {}
    for i, t in enumerate(thresholds):
        keep = levels <= i
        merged = sparse.coo_array(
            (np.ones(int(keep.sum()), np.int8), (pairs[keep, 0], pairs[keep, 1])), shape=(m, m)
        ).tocsr()
        _, seg = connected_components(merged, directed=False)
        luts[t] = seg[comp].astype(np.uint64) + np.uint64(1)
    return luts


def agglomeration_mode(agglomeration: str, merge_function: str) -> str:
    """The agglomeration to run: "rag" (exact global mean agglomeration) or "blocks" (waterz per block).

    The RAG path implements waterz's `mean` scoring only; any other merge function (hist_quant_*,
    C++ types) falls back to the per-block waterz path, with a warning.
    """
    if agglomeration not in ("rag", "blocks"):
        raise ValueError(f"agglomeration must be 'rag' or 'blocks', got {agglomeration!r}")
    if agglomeration == "rag" and merge_function != "mean":
        logging.getLogger("srseg.blockwise").warning(
            "merge function %r: the exact RAG agglomeration implements 'mean' only; "
            "agglomerating per block with waterz (block + context) instead",
            merge_function,
        )
        return "blocks"
    return agglomeration


# --------------------------------------------------------------------------- pass 3: global segments


def fragment_starts(counts: Sequence[int]) -> np.ndarray:
    """Compact index of each block's first fragment (prefix sums of the per-block fragment counts)."""
    return np.concatenate([[0], np.cumsum(np.asarray(counts, np.int64))])


def compact_index(ids: np.ndarray, starts: np.ndarray, budget: int) -> np.ndarray:
    """Global fragment IDs -> 0..n_fragments - 1 (block by block, in ID order)."""
    ids = np.asarray(ids, np.uint64)
    b = block_of(ids, budget).astype(np.int64)
    return starts[b] + (ids - np.uint64(1)).astype(np.int64) - b * int(budget)


def segment_luts(
    counts: Sequence[int], budget: int, merges: Iterable[tuple[np.ndarray, np.ndarray]], thresholds: Sequence[float]
) -> dict[float, np.ndarray]:
    """{threshold: lookup table} compact fragment index -> segment ID (uint64, 1..n), from every block's
    `block_merges`: connected components of the merges at or below the threshold.

    Components are numbered in the order of their first fragment (scipy's connected_components),
    so the IDs depend only on the inputs: two runs give the same labels.
    """
    thresholds = sorted(float(t) for t in thresholds)
    starts = fragment_starts(counts)
    n = int(starts[-1])
    merges = list(merges)
    edges = np.concatenate([e for e, _ in merges]) if merges else np.zeros((0, 2), np.uint64)
    scores = np.concatenate([s for _, s in merges]) if merges else np.zeros(0)
    u, v = compact_index(edges[:, 0], starts, budget), compact_index(edges[:, 1], starts, budget)
    luts = {}
    for t in thresholds:
        keep = scores <= t
        graph = sparse.coo_array((np.ones(int(keep.sum()), np.int8), (u[keep], v[keep])), shape=(n, n)).tocsr()
        _, comp = connected_components(graph, directed=False)
        luts[t] = comp.astype(np.uint64) + np.uint64(1)
    return luts


def relabel_block(fragments: np.ndarray, lut: np.ndarray, starts: np.ndarray, budget: int) -> np.ndarray:
    """Segment IDs (uint64) of a block of global fragment IDs."""
    return lut[compact_index(fragments, starts, budget)]


def segment_sizes(blocks: Iterable[np.ndarray]) -> dict[int, int]:
    """{segment ID: voxels} summed over blocks of a segmentation (for the global size filter)."""
    total: dict[int, int] = {}
    for seg in blocks:
        ids, counts = np.unique(np.asarray(seg), return_counts=True)
        for i, c in zip(ids.tolist(), counts.tolist()):
            total[i] = total.get(i, 0) + c
    return total


def filter_small_block(
    seg_with_context: np.ndarray,
    affs_with_context: np.ndarray,
    block: Block,
    context: Sequence[int],
    sizes: Mapping[int, int] | tuple[np.ndarray, np.ndarray],
    min_size: int,
    dim: int = 2,
    offsets: Sequence[Sequence[int]] | None = None,
    long_range_weight: float = 0.5,
) -> np.ndarray:
    """The block's core of the segmentation with segments of fewer than `min_size` voxels (by their
    global `sizes`, {id: voxels} or (ids, counts)) flooded by their neighbours across the boundary map,
    as `srseg.segment.filter_small` (per section in 2D). Exactness: see the module docstring."""
    window = block.with_context(context)
    seg = np.asarray(seg_with_context, np.uint64)
    core = block.core_in(window)
    if min_size <= 1:
        return seg[core].copy()
    if isinstance(sizes, Mapping):
        ids = np.fromiter(sizes.keys(), np.uint64, len(sizes))
        counts = np.fromiter(sizes.values(), np.int64, len(sizes))
    else:
        ids, counts = np.asarray(sizes[0], np.uint64), np.asarray(sizes[1], np.int64)
    order = np.argsort(ids)
    ids, counts = ids[order], counts[order]
    pos = np.clip(np.searchsorted(ids, seg), 0, max(len(ids) - 1, 0))
    if len(ids) == 0 or np.any(ids[pos] != seg):
        raise ValueError(f"block {block.index}: segment IDs without a size; sum the sizes over every block")
    small = counts[pos] < min_size
    if not small[core].any():
        return seg[core].copy()
    nn = fold_long_range(check_affinities(affs_with_context), offsets, long_range_weight)
    boundary = boundary_map(nn, dim)
    keep = np.where(small, 0, seg)
    out = seg.copy()
    units = [(slice(z, z + 1),) for z in range(core[0].start, core[0].stop)] if dim == 2 else [(slice(None),)]
    for u in units:
        if not small[u].any() or not keep[u].any():
            continue
        out[u] = watershed(boundary[u], keep[u].astype(np.int64)).astype(np.uint64)
    return out[core]


# --------------------------------------------------------------------------- in-memory driver


def _sizes_option(min_size) -> int:
    if isinstance(min_size, (list, tuple)):
        raise ValueError(
            "blockwise segmentation takes one min_size (an int); choose it on the validation sections "
            "(srseg.segment.choose_threshold) and pass the chosen value"
        )
    return int(min_size)


def segment_blockwise(
    affs: np.ndarray,
    thresholds: Sequence[float],
    block_zyx: Sequence[int],
    context_zyx: Sequence[int],
    seed_min_distance: int = 3,
    dim: int = 2,
    merge_function: str = "mean",
    progress: bool = False,
    boundary_threshold: float = 0.5,
    min_size: int = 0,
    offsets: Sequence[Sequence[int]] | None = None,
    long_range_weight: float = 0.5,
    link_cut_fragments: bool = True,
    agglomeration: str = "rag",
) -> tuple[dict[float, np.ndarray], dict]:
    """`srseg.segment.segment_affinities` done block by block on an in-memory array (tests, small volumes).

    Returns ({threshold: labels (z, y, x) uint64}, info: timings, fragment and block counts).
    Runs the same pure functions as `segment_blockwise_zarr`, block after block.
    `link_cut_fragments`: see `block_merges`'s `fragment_settings` (False: the cut pieces stay separate nodes).
    `agglomeration`: "rag" (default: `block_edges` + `rag_luts`, exact mean agglomeration of the global
    RAG) or "blocks" (`block_merges` + `segment_luts`: waterz per block + context); see `agglomeration_mode`.
    """
    del progress  # one line per pass would be noise for the small volumes this is for
    affs = np.asarray(affs)
    shape = tuple(affs.shape[1:])
    min_size = _sizes_option(min_size)
    context = check_context(context_zyx, dim, offsets, long_range_weight)
    thresholds = sorted(float(t) for t in thresholds)
    blocks = block_grid(shape, block_zyx)
    opts = {"offsets": offsets, "long_range_weight": long_range_weight}
    link = {"fragment_settings": {"seed_min_distance": seed_min_distance, "boundary_threshold": boundary_threshold}}
    link = link if link_cut_fragments else {}
    t0 = time.perf_counter()
    fragments = np.zeros(shape, np.uint64)
    counts, pass1 = [], []
    fctx, actx = pass_context(context, None), pass_context(context, dim)
    for b in blocks:
        w = b.with_context(fctx)
        pass1.append(window_fragments(affs[(slice(None), *w)], b, fctx, seed_min_distance, boundary_threshold, **opts))
        frag, n = block_fragments(affs[(slice(None), *w)], b, fctx, pass1=pass1[-1])
        fragments[b.core] = frag
        counts.append(n)
    pass1 = pass1 if link_cut_fragments else [None] * len(blocks)
    t1 = time.perf_counter()
    budget = blocks[0].budget
    starts = fragment_starts(counts)
    mode = agglomeration_mode(agglomeration, merge_function)
    if mode == "rag":
        stats = []
        for b in blocks:
            w = b.with_context(actx)
            stats.append(
                block_edges(affs[(slice(None), *w)], fragments[w], b, actx, dim, **opts, **link, pass1=pass1[b.index])
            )
        luts = rag_luts(counts, budget, stats, thresholds)
        n_merges = int(starts[-1]) - int(luts[thresholds[-1]].max(initial=0))  # fragments joined at the top
        n_edges = int(sum(len(st["edges"]) for st in stats))
    else:
        merges = []
        for b in blocks:
            w = b.with_context(actx)
            merges.append(
                block_merges(
                    affs[(slice(None), *w)],
                    fragments[w],
                    b,
                    actx,
                    thresholds,
                    dim,
                    merge_function,
                    **opts,
                    **link,
                    pass1=pass1[b.index],
                )
            )
        luts = segment_luts(counts, budget, merges, thresholds)
        n_merges = n_edges = int(sum(len(e) for e, _ in merges))
    t2 = time.perf_counter()
    segs = {t: np.zeros(shape, np.uint64) for t in thresholds}
    for b in blocks:
        for t in thresholds:
            segs[t][b.core] = relabel_block(fragments[b.core], luts[t], starts, budget)
    t3 = time.perf_counter()
    if min_size > 1:
        for t in thresholds:
            sizes = segment_sizes(segs[t][b.core] for b in blocks)
            out = np.zeros(shape, np.uint64)
            for b in blocks:
                w = b.with_context(actx)
                out[b.core] = filter_small_block(
                    segs[t][w], affs[(slice(None), *w)], b, actx, sizes, min_size, dim, **opts
                )
            segs[t] = out
    t4 = time.perf_counter()
    info = {
        "fragment_seconds": t1 - t0,
        "agglomerate_seconds": t2 - t1,
        "relabel_seconds": t3 - t2,
        "filter_seconds": t4 - t3,
        "n_fragments": int(starts[-1]),
        "n_blocks": len(blocks),
        "n_merges": n_merges,
        "n_edges": n_edges,
        "agglomeration": mode,
    }
    return segs, info


# --------------------------------------------------------------------------- zarr driver (one block per call)


def _open_affs(affs):
    """A (C, z, y, x) zarr array from a zarr.Array or a path (`a.zarr` holding an array, or `a.zarr/name`)."""
    import zarr

    if isinstance(affs, zarr.Array):
        return affs
    root, inner = split_zarr(affs)
    arr = zarr.open_array(str(root), path=inner or None, mode="r")
    if arr.ndim != 4 or arr.shape[0] < 3:
        raise ValueError(f"{affs}: affinities must be a (3 + long range, z, y, x) array, got shape {arr.shape}")
    return arr


def _write_atomic(path: Path, write) -> None:
    tmp = tmp_path(path)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    write(tmp)
    os.replace(tmp, path)


def create_work(
    work: str | os.PathLike, shape_zyx: Sequence[int], block_zyx: Sequence[int], thresholds, agglomeration: str = "rag"
) -> Path:
    """The work zarr group of a blockwise run: `fragments` and one `seg/<t>` and `filtered/<t>` array per
    threshold, chunked by block (each block job writes only its own chunk), and the `blocks/` folder of the
    per-block side files. Run once before the block jobs."""
    import zarr

    from .segment import threshold_name

    work = Path(work)
    shape = tuple(int(s) for s in shape_zyx)
    grid = block_grid(shape, block_zyx)
    chunks = tuple(s.stop - s.start for s in grid[0].core)
    group = zarr.open_group(str(work), mode="w", zarr_format=3)
    names = ["fragments"] + [f"{kind}/{threshold_name(t)}" for kind in ("seg", "filtered") for t in thresholds]
    for name in names:
        group.create_array(name, shape=shape, chunks=chunks, dtype=np.uint64, fill_value=0)
    group.attrs["srseg_blockwise"] = {
        "shape": list(shape),
        "block": list(chunks),
        "thresholds": sorted(float(t) for t in thresholds),
        "n_blocks": len(grid),
        "agglomeration": agglomeration,
    }
    (work / "blocks").mkdir(exist_ok=True)
    return work


def _work_matches(work, shape_zyx, block_zyx, thresholds, agglomeration: str = "rag") -> bool:
    """Whether `work` holds a work group of this shape, block grid, thresholds and agglomeration (one to resume)."""
    import zarr

    try:
        meta = dict(zarr.open_group(str(work), mode="r").attrs)["srseg_blockwise"]
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.GroupNotFoundError):
        return False
    chunks = tuple(s.stop - s.start for s in block_grid(shape_zyx, block_zyx)[0].core)
    return (
        meta["shape"] == [int(s) for s in shape_zyx]
        and tuple(meta["block"]) == chunks
        and meta["thresholds"] == sorted(float(t) for t in thresholds)
        and meta.get("agglomeration", "blocks") == agglomeration
    )


def _work(work):
    import zarr

    group = zarr.open_group(str(work), mode="r+")
    meta = dict(group.attrs)["srseg_blockwise"]
    return group, meta, block_grid(meta["shape"], meta["block"])


def _pass1_path(work, index: int) -> Path:
    return Path(work) / "blocks" / f"{index}.window.npz"


def _save_pass1(work, index: int, pass1: np.ndarray, seed_min_distance, boundary_threshold) -> None:
    """Pass 1's `window_fragments` of block `index` (compressed, the smallest uint dtype) for pass 2's links."""
    settings = np.asarray([seed_min_distance, boundary_threshold], np.float64)

    def write(p):
        with open(p, "wb") as fh:
            np.savez_compressed(fh, fragments=pass1.astype(label_dtype(int(pass1.max(initial=0)))), settings=settings)

    _write_atomic(_pass1_path(work, index), write)


def _load_pass1(work, index: int, fragment_settings: Mapping | None) -> np.ndarray | None:
    """The window fragments `_save_pass1` kept for block `index`, if made with `fragment_settings` (else None)."""
    path = _pass1_path(work, index)
    if fragment_settings is None or not path.exists():
        return None
    want = [
        float(fragment_settings.get("seed_min_distance", 3)),
        float(fragment_settings.get("boundary_threshold", 0.5)),
    ]
    with np.load(path) as z:
        return z["fragments"].astype(np.uint64) if z["settings"].tolist() == want else None


def zarr_fragments_job(affs, work, index: int, context_zyx, seed_min_distance=3, boundary_threshold=0.5, **fold):
    """Pass 1 for one block: its fragments chunk, `blocks/<index>.window.npz` (its `window_fragments`, which
    pass 2 reuses for its links instead of running the watershed again) and, last,
    `blocks/<index>.fragments.json` ({"n": count})."""
    group, _, grid = _work(work)
    b = grid[index]
    ctx = pass_context(context_zyx, None)
    w = b.with_context(ctx)
    a = np.asarray(_open_affs(affs)[(slice(None), *w)])
    pass1 = window_fragments(a, b, ctx, seed_min_distance, boundary_threshold, **fold)
    frag, n = block_fragments(a, b, ctx, seed_min_distance, boundary_threshold, **fold, pass1=pass1)
    group["fragments"][b.core] = frag
    _save_pass1(work, index, pass1, seed_min_distance, boundary_threshold)
    _write_atomic(Path(work) / "blocks" / f"{index}.fragments.json", lambda p: p.write_text(json.dumps({"n": n})))
    return n


def zarr_merges_job(
    affs, work, index: int, context_zyx, dim=2, merge_function="mean", fragment_settings=None, **fold
) -> int:
    """Pass 2 for one block: `blocks/<index>.merges.npz`; `fragment_settings`: pass 1's seed_min_distance and
    boundary_threshold (see `block_merges`; None: cut pieces are not joined). With the work group's
    agglomeration "rag" it holds the block's RAG statistics (`block_edges`: edges, sums, counts, links),
    with "blocks" its waterz merges (`block_merges`: edges, merge thresholds). Returns its number of edges."""
    group, meta, grid = _work(work)
    b = grid[index]
    ctx = pass_context(context_zyx, dim)
    w = b.with_context(ctx)
    a = np.asarray(_open_affs(affs)[(slice(None), *w)])
    frag = np.asarray(group["fragments"][w])
    links = {"fragment_settings": fragment_settings, "pass1": _load_pass1(work, index, fragment_settings)}
    if meta.get("agglomeration", "blocks") == "rag":
        out = block_edges(a, frag, b, ctx, dim, **fold, **links)
    else:
        edges, scores = block_merges(a, frag, b, ctx, meta["thresholds"], dim, merge_function, **fold, **links)
        out = {"edges": edges, "scores": scores}

    def write(p):
        with open(p, "wb") as fh:
            np.savez(fh, **out)

    _write_atomic(Path(work) / "blocks" / f"{index}.merges.npz", write)
    return len(out["edges"])


def zarr_luts_job(work) -> Path:
    """Pass 3a (one job, after every block's passes 1 and 2): `luts.npz` (counts, one table per threshold),
    by `rag_luts` (agglomeration "rag": the gather of the RAG statistics and the exact agglomeration) or
    `segment_luts` ("blocks")."""
    _, meta, grid = _work(work)
    blocks = Path(work) / "blocks"
    counts = [json.loads((blocks / f"{b.index}.fragments.json").read_text())["n"] for b in grid]

    def merges():
        for b in grid:
            with np.load(blocks / f"{b.index}.merges.npz") as z:
                yield z["edges"], z["scores"]

    def stats():
        for b in grid:
            with np.load(blocks / f"{b.index}.merges.npz") as z:
                yield {k: z[k] for k in ("edges", "sums", "counts", "links")}

    if meta.get("agglomeration", "blocks") == "rag":
        luts = rag_luts(counts, grid[0].budget, stats(), meta["thresholds"])
    else:
        luts = segment_luts(counts, grid[0].budget, merges(), meta["thresholds"])
    out = Path(work) / "luts.npz"

    def write(p):
        with open(p, "wb") as fh:
            np.savez(fh, counts=np.asarray(counts, np.int64), **{f"lut_{i}": luts[t] for i, t in enumerate(luts)})

    _write_atomic(out, write)
    return out


def _n_merges(work, n_fragments: int, mode: str, n_edges: int) -> int:
    """Merges: with "rag" the fragments joined at the highest threshold (from luts.npz); "blocks": the merged edges."""
    if mode != "rag":
        return n_edges
    with np.load(Path(work) / "luts.npz") as z:
        top = z[f"lut_{len(z.files) - 2}"]
    return int(n_fragments) - int(top.max(initial=0))


def zarr_relabel_job(work, index: int) -> None:
    """Pass 3b for one block: its chunk of every `seg/<t>` and `blocks/<index>.sizes.npz` (segment sizes)."""
    from .segment import threshold_name

    group, meta, grid = _work(work)
    b = grid[index]
    with np.load(Path(work) / "luts.npz") as z:
        counts = z["counts"]
        luts = [z[f"lut_{i}"] for i in range(len(meta["thresholds"]))]
    starts = fragment_starts(counts)
    frag = np.asarray(group["fragments"][b.core])
    sizes = {}
    for i, (t, lut) in enumerate(zip(meta["thresholds"], luts)):
        seg = relabel_block(frag, lut, starts, b.budget)
        group[f"seg/{threshold_name(t)}"][b.core] = seg
        ids, n = np.unique(seg, return_counts=True)
        sizes[f"ids_{i}"], sizes[f"counts_{i}"] = ids, n

    def write(p):
        with open(p, "wb") as fh:
            np.savez(fh, **sizes)

    _write_atomic(Path(work) / "blocks" / f"{index}.sizes.npz", write)


def zarr_sizes(work, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(segment IDs, voxels) of threshold number i, summed over every block's sizes file (O(segments))."""
    _, _, grid = _work(work)
    ids, counts = [], []
    for b in grid:
        with np.load(Path(work) / "blocks" / f"{b.index}.sizes.npz") as z:
            ids.append(z[f"ids_{i}"])
            counts.append(z[f"counts_{i}"])
    u, inv = np.unique(np.concatenate(ids), return_inverse=True)
    return u, np.bincount(inv.ravel(), weights=np.concatenate(counts)).astype(np.int64)


def zarr_filter_job(affs, work, index: int, context_zyx, min_size: int, dim=2, sizes=None, **fold) -> None:
    """Pass 4 for one block (min_size > 1): its chunk of every `filtered/<t>` from `seg/<t>` and global sizes."""
    from .segment import threshold_name

    group, meta, grid = _work(work)
    b = grid[index]
    ctx = pass_context(context_zyx, dim)
    w = b.with_context(ctx)
    a = np.asarray(_open_affs(affs)[(slice(None), *w)])
    for i, t in enumerate(meta["thresholds"]):
        s = sizes[i] if sizes is not None else zarr_sizes(work, i)
        seg = np.asarray(group[f"seg/{threshold_name(t)}"][w])
        group[f"filtered/{threshold_name(t)}"][b.core] = filter_small_block(seg, a, b, ctx, s, min_size, dim, **fold)
    _write_atomic(Path(work) / "blocks" / f"{index}.filtered.json", lambda p: p.write_text(json.dumps({"done": True})))


def export_ome_zarr(work, threshold: float, path, voxel_nm, offset_nm=None, filtered: bool = False, **kw) -> Path:
    """One threshold's segmentation as an OME-Zarr label volume (volumes.OmeZarrWriter, a row band at a time)."""
    from .segment import threshold_name
    from .volumes import OmeZarrWriter

    group, meta, _ = _work(work)
    arr = group[f"{'filtered' if filtered else 'seg'}/{threshold_name(threshold)}"]
    with OmeZarrWriter(path, arr.shape, np.uint64, voxel_nm, offset_nm, "labels", **kw) as w:
        w.copy_from(arr)
    return Path(path)


def _release_freed_memory() -> None:
    """Hand the heap memory the block passes freed back to the OS (glibc's malloc_trim; elsewhere nothing).

    After hundreds of blocks of numpy temporaries and zarr's decode threads, glibc keeps ~0.1 GB of
    freed arenas resident; the one-process driver would add the gather's graph on top of them.
    """
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def segment_blockwise_zarr(
    affs,
    work: str | os.PathLike,
    thresholds: Sequence[float],
    block_zyx: Sequence[int],
    context_zyx: Sequence[int],
    seed_min_distance: int = 3,
    dim: int = 2,
    merge_function: str = "mean",
    progress: bool = False,
    boundary_threshold: float = 0.5,
    min_size: int = 0,
    offsets: Sequence[Sequence[int]] | None = None,
    long_range_weight: float = 0.5,
    outputs: Mapping[float, str | os.PathLike] | None = None,
    voxel_nm: Sequence[float] | None = None,
    link_cut_fragments: bool = True,
    resume: bool = False,
    on_block=None,
    agglomeration: str = "rag",
) -> dict:
    """Blockwise segmentation of a zarr affinity array (C, z, y, x) into the work group `work`.

    Every pass holds one block + context (pass 3a: the lookup tables, one entry per fragment);
    the per-block calls (`zarr_*_job`) are what a Snakemake rule scatters, this runs them in
    order. Results: `work/seg/t<thr>` (or `work/filtered/t<thr>` with min_size > 1) and, with
    `outputs` {threshold: path.zarr} and `voxel_nm`, OME-Zarr label volumes. Returns the info dict
    (timings, counts, `arrays`: {threshold: the zarr array path of its labels}, and `computed`:
    {pass: blocks computed by this call}).

    resume: keep a work group left by an earlier, interrupted call with the same shape, block and
    thresholds, and skip every block whose pass left its marker in `work/blocks` (written after
    the block's chunk, atomically, so a kill never leaves a marker of an unfinished block); the
    lookup tables are rebuilt only if a block's merges were. on_block(pass, index): called after
    each block a pass computed ("fragments", "merges", "relabel", "filter"; tests inject a
    failure there). progress: one tqdm bar per pass on stderr (the rule log). agglomeration: "rag"
    (default; exact mean agglomeration of the global RAG) or "blocks" (waterz per block), see
    `agglomeration_mode` and `segment_blockwise`; a work group of the other kind is not resumed.
    """
    from tqdm import tqdm

    from .segment import threshold_name

    a = _open_affs(affs)
    min_size = _sizes_option(min_size)
    context = check_context(context_zyx, dim, offsets, long_range_weight)
    thresholds = sorted(float(t) for t in thresholds)
    fold = {"offsets": offsets, "long_range_weight": long_range_weight}
    mode = agglomeration_mode(agglomeration, merge_function)
    if not (resume and _work_matches(work, a.shape[1:], block_zyx, thresholds, mode)):
        create_work(work, a.shape[1:], block_zyx, thresholds, mode)
    _, _, grid = _work(work)
    blocks = Path(work) / "blocks"
    computed = {"fragments": 0, "merges": 0, "relabel": 0, "filter": 0}

    def todo(name: str, suffix: str):
        left = [b for b in grid if not (resume and (blocks / f"{b.index}.{suffix}").exists())]
        bar = tqdm(left, desc=f"{name} blocks", total=len(left), mininterval=5, disable=not progress)
        for b in bar:
            yield b
            computed[name] += 1
            if on_block is not None:
                on_block(name, b.index)

    def count(b) -> int:
        return json.loads((blocks / f"{b.index}.fragments.json").read_text())["n"]

    t0 = time.perf_counter()
    for b in todo("fragments", "fragments.json"):
        zarr_fragments_job(a, work, b.index, context, seed_min_distance, boundary_threshold, **fold)
    n = [count(b) for b in grid]
    t1 = time.perf_counter()
    link = {"seed_min_distance": seed_min_distance, "boundary_threshold": boundary_threshold}
    link = link if link_cut_fragments else None
    for b in todo("merges", "merges.npz"):
        zarr_merges_job(a, work, b.index, context, dim, merge_function, link, **fold)
    m = []
    for b in grid:
        with np.load(blocks / f"{b.index}.merges.npz") as z:
            m.append(len(z["edges"]))  # "rag": RAG edges, "blocks": merged edges
    t2 = time.perf_counter()
    if not (resume and (Path(work) / "luts.npz").exists() and not (computed["fragments"] or computed["merges"])):
        for stale in [*blocks.glob("*.sizes.npz"), *blocks.glob("*.filtered.json")]:  # they used the old tables
            stale.unlink()
        _release_freed_memory()  # the gather's graph grows with the volume: do not stack it on the blocks' leftovers
        zarr_luts_job(work)
    for b in todo("relabel", "sizes.npz"):
        zarr_relabel_job(work, b.index)
    t3 = time.perf_counter()
    kind = "seg"
    if min_size > 1:
        sizes = [zarr_sizes(work, i) for i in range(len(thresholds))]
        for b in todo("filter", "filtered.json"):
            zarr_filter_job(a, work, b.index, context, min_size, dim, sizes=sizes, **fold)
        kind = "filtered"
    t4 = time.perf_counter()
    for t, path in (outputs or {}).items():
        if voxel_nm is None:
            raise ValueError("OME-Zarr outputs need voxel_nm (z, y, x nm)")
        export_ome_zarr(work, float(t), path, voxel_nm, filtered=min_size > 1)
    return {
        "fragment_seconds": t1 - t0,
        "agglomerate_seconds": t2 - t1,
        "relabel_seconds": t3 - t2,
        "filter_seconds": t4 - t3,
        "n_fragments": int(sum(n)),
        "n_blocks": len(grid),
        "n_merges": _n_merges(work, sum(n), mode, int(sum(m))),
        "n_edges": int(sum(m)),
        "agglomeration": mode,
        "arrays": {t: str(Path(work) / kind / threshold_name(t)) for t in thresholds},
        "computed": computed,
    }


# --------------------------------------------------------------------------- rule segment, blockwise


def affinity_z_context(net) -> int:
    """Sections beyond a z-block that a 3D affinity U-Net's receptive field reaches (0 for a 2D net).

    Only its 3x3x3 convolutions see through z (one per level below the top, in the encoder and
    in the decoder; z is never pooled), so a core section sees 2 * depth - 3 sections each way.
    """
    if int(net.dim) != 3:
        return 0
    return max(0, 2 * int(net.depth) - 3)


def predict_to_zarr(
    net,
    volume,
    device,
    settings: dict,
    path,
    block_zyx: Sequence[int],
    progress: bool = False,
    resume: bool = False,
    on_block=None,
):
    """The affinities (C, z, y, x) of a lazy `volume` (srseg.volumes) in a new zarr array at `path`, chunked by
    block, predicted z-block by z-block with `srseg.affinity.predict_sections` (the model's tiles and test-time
    flips).

    resume: reuse the array an interrupted call left at `path` (same shape and chunks) and skip each z-block
    whose marker `<path>.done/<z0>` exists (written after the block's chunks). on_block("affinities", z0):
    called after each z-block predicted here.

    Each z-block is read with the sections of the whole-volume prediction's tiles and batches that reach
    into it (`affinity.prediction_window`), so every block's affinities are byte for byte those of the
    whole image, in 2D and 3D. Memory: one z-block (+ that window) of whole sections and its affinities.
    Returns (the zarr array, prediction seconds).
    """
    import zarr

    nz, ny, nx = volume.shape
    grid = block_grid(volume.shape, block_zyx)
    chunk = tuple(s.stop - s.start for s in grid[0].core)
    n_out = int(net.channels) + (1 if int(net.dim) == 2 else 0)
    done = Path(f"{path}.done")
    arr = None
    if resume and Path(path).exists():
        try:
            arr = zarr.open_array(str(path), mode="r+")
        except (FileNotFoundError, ValueError, zarr.errors.ArrayNotFoundError):
            arr = None
        if arr is not None and (arr.shape != (n_out, nz, ny, nx) or arr.chunks != (n_out, *chunk)):
            arr = None
    if arr is None:
        import shutil

        shutil.rmtree(done, ignore_errors=True)
        arr = zarr.create_array(
            str(path),
            shape=(n_out, nz, ny, nx),
            chunks=(n_out, *chunk),
            dtype=np.float32,
            fill_value=0.0,
            zarr_format=3,
            overwrite=True,
        )
    if resume:
        done.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    starts = [z0 for z0 in range(0, nz, chunk[0]) if not (resume and (done / str(z0)).exists())]
    if progress and resume and len(starts) < -(-nz // chunk[0]):
        print(f"affinities: {-(-nz // chunk[0]) - len(starts)} z-blocks already done, resumed", file=sys.stderr)
    for z0 in starts:
        z1 = min(z0 + chunk[0], nz)
        t0 = time.perf_counter()
        try:  # the whole volume's own tiles and batches: the bytes of predicting it in one piece (also in 3D)
            affs = predict_sections(net, volume, z0, z1, device, settings, progress=progress)
        except InputError as exc:
            raise InputError(f"{getattr(volume, 'source', 'the image')}: {exc}") from exc
        if getattr(device, "type", str(device)) == "cuda":
            import torch

            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        arr[:, z0:z1] = affs
        if resume:
            (done / str(z0)).write_text("")
        if on_block is not None:
            on_block("affinities", z0)
    return arr, seconds


def _slabs(arr, step: int):
    """The sections of a (z, y, x) zarr array, read one z-chunk (`step` sections) at a time."""
    for z0 in range(0, arr.shape[0], step):
        yield from np.asarray(arr[z0 : z0 + step])


def run_segment_rule(segmentation: dict, **kwargs) -> None:
    """Snakemake entry point of rule segment: `run_segment_blockwise` when
    `segmentation.blockwise.block` is set (bounded memory), else `segment.run_segment` (in memory).

    Here rather than in srseg.segment because this module builds on that one (no import cycle).
    """
    block = (segmentation.get("blockwise") or {}).get("block")
    (run_segment_blockwise if block is not None else run_segment)(segmentation=segmentation, **kwargs)


def run_segment_blockwise(
    image: str,
    model: str,
    segmentations: Sequence[str],
    segment_json: str,
    segmentation: dict | None = None,
    cache_dir: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    log: str | None = None,
    choice: str | None = None,
    agglomeration: str = "rag",
) -> None:
    """Rule segment with `segmentation.blockwise.block` set: `srseg.segment.run_segment`'s outputs in bounded memory.

    agglomeration: see `segment_blockwise_zarr` ("blocks": the per-block waterz path, for comparisons).

    Same arguments, settings and outputs (one label TIFF per threshold, same dtype rule and
    voxel size; segment.json with the same keys plus `blockwise`, `n_blocks`, `peak_rss_mb`).
    The image is read z-block by z-block (`predict_to_zarr`) into an affinity zarr in a work
    folder beside segment.json (`.blockwise.tmp`, removed at the end, also a killed run's on
    restart); `segment_blockwise_zarr` segments it; each threshold's labels are streamed into
    their TIFF section by section (`volumes.write_sections`, atomic). No stage holds more than
    one block (+ context) of the affinities, one z-block of sections, or the lookup tables.
    """
    import shutil

    import zarr

    seg_cfg, thresholds, merge_function, frag = rule_settings(segmentation, choice, segmentations)
    bw = seg_cfg["blockwise"]
    if bw["block"] is None:
        raise InputError("segmentation.blockwise.block is null: segment with srseg.segment.run_segment")
    logger = runtime.get_logger("srseg.blockwise", log)
    runtime.set_threads(threads)
    dev = runtime.resolve_device(device)
    net = load_affinity_model(model, dev)
    offsets = getattr(net, "offsets", None)
    lrw = float(frag["long_range_weight"])
    try:
        context = check_context(bw["context"], net.dim, offsets, lrw)
        block_grid((1, 1, 1), bw["block"])
    except ValueError as exc:
        raise InputError(f"segmentation.blockwise: {exc}; raise segmentation.blockwise.context / .block") from exc
    work = tmp_path(Path(segment_json).parent / ".blockwise")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        with open_volume(image) as vol:
            voxel, shape = vol.voxel_nm, vol.shape
            logger.info("segmenting %s %s blockwise (block %s) with %s on %s", image, shape, bw["block"], model, dev)
            affs, t_pred = predict_to_zarr(net, vol, dev, net.params, work / "affs.zarr", bw["block"], progress=True)
        with waterz_cache(cache_dir):
            timing = segment_blockwise_zarr(
                affs,
                work / "seg.zarr",
                thresholds,
                bw["block"],
                context,
                dim=net.dim,
                merge_function=merge_function,
                offsets=offsets,
                agglomeration=agglomeration,
                **fragment_options(frag),
            )
        arrays = timing.pop("arrays")
        step = min(int(bw["block"][0]), shape[0])
        segments = {}
        for path, t in zip(segmentations, thresholds):
            seg = zarr.open_array(arrays[t], mode="r")
            top = max((int(p.max()) for p in _slabs(seg, step)), default=0)
            ids = []

            def planes(seg=seg, ids=ids):
                for plane in _slabs(seg, step):
                    ids.append(np.unique(plane))
                    yield plane

            write_sections(path, planes(), shape, label_dtype(top), voxel)
            u = np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.uint64)
            segments[str(t)] = int(len(u) - (0 in u))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = segment_info(image, model, dev, net, shape, thresholds, merge_function, frag, choice, t_pred, timing)
    info["segments"] = segments
    info["blockwise"] = {"block": [int(b) for b in bw["block"]], "context": list(context)}
    info["affinity_z_context"] = affinity_z_context(net)
    info["peak_rss_mb"] = runtime.peak_rss_mb()
    write_json(segment_json, info)
    logger.info(
        "%d blocks; affinities %.0f voxels/s, segmentation %.0f voxels/s, peak RSS %s MiB",
        info["n_blocks"],
        info["affinity_voxels_per_second"],
        info["segmentation_voxels_per_second"],
        f"{info['peak_rss_mb']:.0f}" if info["peak_rss_mb"] is not None else "?",
    )
