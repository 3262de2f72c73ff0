"""Affinities -> neuron segmentation: seeded watershed fragments + waterz agglomeration.

Pipeline (the Chalmers study's, as in funkelab lsd):
0. long-range affinities (channels 3.. of the ruler's output, offsets along one axis) are
   folded into the nearest-neighbour ones: the edge between p - e_d and p gets
   (1 - w) x its own affinity + w x the mean of the long-range affinities whose pairs span
   it (`long_range_weight` w), so a gap in a membrane that the short affinities miss is
   still seen from further away. Diagonal offsets are learned but not folded;
1. boundary = 1 - mean(y, x affinities), per section;
2. seeds = maxima of the distance transform of the cell interior (boundary <
   `boundary_threshold`), at least `seed_min_distance` pixels apart, at least one per
   interior component;
3. fragments = watershed of (boundary - distance) from the seeds over the whole
   section (every voxel gets a fragment, so no unlabelled holes in cells);
4. waterz merges fragments in order of mean affinity (scoring function
   OneMinus<MeanAffinity>): threshold t merges every pair whose boundary has
   mean affinity > 1 - t, so higher thresholds give fewer, larger segments;
5. size filter: segments of fewer than `min_size` voxels are flooded by their neighbours
   across the boundary map (0: off).

`segmentation:` values given as lists are candidates: `choose_threshold` segments the
validation sections with every combination and keeps the one (and the threshold) with the
lowest VOI; threshold.json records it under `fragments`, and rule segment uses it.

In 2D mode (z affinity 0) each section is agglomerated on its own, so nothing
merges across z and segment IDs are unique per section. The scoring unit is one
rule, `srseg.metrics.scores_in_3d(dim, labels)`, shared with the seg_metrics rule:
the whole volume when the segmentation is 3D or the labels link sections (then a
2D segmentation's z-splits count, as they should), else the mean over sections.
The threshold is chosen in that unit, so it is the one the tables report in.

waterz compiles C++ at run time only for scoring functions that are not
shipped prebuilt (mean affinity and the histogram quantiles are prebuilt).
That compile goes through `witty`, whose cache directory is the environment
variable WITTY_CACHE_DIR (default ~/.cache/witty); witty's lock is per process,
so `waterz_cache()` points it at a per-job folder to keep parallel cluster jobs
from writing the same module at once.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import relabel_sequential, watershed
from tqdm import tqdm

from . import runtime
from .affinity import load_affinity_model, predict
from .config import section
from .io import InputError, read_json, write_json, write_labels
from .metrics import scores_in_3d, unit_scores
from .ruler_spec import NEAREST
from .volumes import read_image
from .waterz_scoring import scoring_function


def threshold_name(t: float) -> str:
    """File stem of the segmentation at threshold t: 0.5 -> 't0.5' (Python's shortest float repr)."""
    return f"t{float(t)}"


def check_affinities(affs: np.ndarray) -> np.ndarray:
    """Affinities must be (3 + long range, z, y, x) and finite; returned as C-contiguous float32 in [0, 1]."""
    affs = np.asarray(affs)
    if affs.ndim != 4 or affs.shape[0] < 3:
        raise InputError(
            f"affinities must have shape (3 + long range, z, y, x), got {affs.shape}; predict them with srseg.affinity"
        )
    if not np.all(np.isfinite(affs)):
        raise InputError(
            "affinities contain NaN or infinite values; the affinity network or its input image "
            "is broken (check the image for NaN)"
        )
    return np.ascontiguousarray(np.clip(affs, 0.0, 1.0), dtype=np.float32)


def _crossing_mean(aff: np.ndarray, axis: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum, count) per nearest-neighbour edge along `axis` of the offset-k affinities whose pairs span it.

    Offset -k (k > 0): aff[q] pairs q with q - k, valid for q >= k; the edge (p - 1, p) is
    spanned by q in [p, p + k - 1]. Offset +k: aff[q] pairs q with q + k, valid for q < n - k;
    spanned by q in [p - k, p - 1]. Edge p = 0 (no predecessor) gets count 0.
    """
    n = aff.shape[axis]
    idx = np.arange(n).reshape([-1 if a == axis else 1 for a in range(aff.ndim)])
    kk = abs(k)
    valid = (idx >= kk) if k < 0 else (idx < n - kk)
    valid = np.broadcast_to(valid, aff.shape)
    cs = np.cumsum(np.where(valid, aff, 0.0), axis=axis, dtype=np.float64)
    cc = np.cumsum(valid, axis=axis, dtype=np.float64)
    zero = np.zeros_like(np.take(cs, [0], axis=axis))
    cs, cc = np.concatenate([zero, cs], axis=axis), np.concatenate([zero, cc], axis=axis)  # prefix sums, n + 1
    p = np.arange(n)
    lo, hi = (p, np.minimum(p + kk, n)) if k < 0 else (np.maximum(p - kk, 0), p)
    total = np.take(cs, hi, axis=axis) - np.take(cs, lo, axis=axis)
    count = np.take(cc, hi, axis=axis) - np.take(cc, lo, axis=axis)
    first = [slice(None)] * aff.ndim
    first[axis] = slice(0, 1)
    count[tuple(first)] = 0
    return total, count


def fold_long_range(
    affs: np.ndarray, offsets: Sequence[Sequence[int]] | None = None, weight: float = 0.5
) -> np.ndarray:
    """Nearest-neighbour affinities (3, z, y, x) with the long-range channels folded in (see the module docstring).

    `offsets` are the channels' offsets (srseg.ruler_spec.offsets; None: the first 3 are the
    nearest neighbours and there is nothing to fold). Only offsets along one axis are folded;
    an edge no long-range pair spans keeps its own affinity.
    """
    affs = np.asarray(affs, np.float32)
    nn = affs[:3]
    if offsets is None or len(offsets) <= 3 or weight <= 0:
        return np.ascontiguousarray(nn)
    if [list(o) for o in offsets[:3]] != NEAREST or len(offsets) != affs.shape[0]:
        raise InputError(
            f"affinities have {affs.shape[0]} channels for offsets {list(offsets)}; the first three must be "
            f"the nearest neighbours {NEAREST}"
        )
    out = nn.copy()
    for d in range(3):
        sums, counts = 0.0, 0
        for c, o in enumerate(offsets[3:], start=3):
            if sum(1 for v in o if v) != 1 or not o[d]:
                continue
            total, count = _crossing_mean(affs[c], d, int(o[d]))
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            sums = sums + np.nan_to_num(mean)
            counts = counts + np.isfinite(mean)
        if isinstance(counts, np.ndarray):
            far = np.where(counts > 0, sums / np.maximum(counts, 1), nn[d])
            out[d] = np.where(counts > 0, (1 - weight) * nn[d] + weight * far, nn[d])
    return np.ascontiguousarray(out, dtype=np.float32)


def per_section_labels(labels: np.ndarray) -> np.ndarray:
    """Make IDs unique per section (0 stays 0): 3D labels as a 2D segmentation would label them."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.uint64)
    offset = 0
    for z in range(labels.shape[0]):
        rel, _, _ = relabel_sequential(labels[z].astype(np.uint64))
        out[z] = np.where(rel > 0, rel + offset, 0)
        offset += int(rel.max())
    return out


# --------------------------------------------------------------------------- fragments


def section_fragments(affs_yx: np.ndarray, seed_min_distance: int = 3, boundary_threshold: float = 0.5) -> np.ndarray:
    """Seeded watershed fragments (y, x) uint64 of one section from its (y, x) affinities (2, y, x).

    Every interior component (boundary < threshold) gets at least one seed, so
    two cells separated by a closed boundary are never one fragment. A section
    with no interior at all is a single fragment (well defined, not an error).
    """
    boundary = 1.0 - affs_yx.mean(axis=0)
    interior = boundary < boundary_threshold
    distance = ndimage.distance_transform_edt(interior).astype(np.float32)
    components, n = ndimage.label(interior)
    if n == 0:
        return np.ones(boundary.shape, np.uint64)
    peaks = peak_local_max(
        distance, min_distance=max(1, int(seed_min_distance)), labels=components, exclude_border=False
    )
    markers = np.zeros(boundary.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # components peak_local_max gave no seed (tiny or flat ones): seed at their distance maximum
    seeded = np.unique(components[markers > 0])
    missing = np.setdiff1d(np.arange(1, n + 1), seeded)
    if len(missing):
        positions = ndimage.maximum_position(distance, components, missing)
        top = markers.max()
        for i, pos in enumerate(positions):
            markers[pos] = top + 1 + i
    # flood (boundary - distance): interiors from their centre, boundaries last
    landscape = boundary - distance
    return watershed(landscape, markers).astype(np.uint64)


def fragments_from_affinities(
    affs: np.ndarray, seed_min_distance: int = 3, boundary_threshold: float = 0.5, progress: bool = False
) -> np.ndarray:
    """Fragments (z, y, x) uint64, per section, IDs unique over the volume, 1..n."""
    affs = check_affinities(affs)
    out = np.zeros(affs.shape[1:], np.uint64)
    offset = 0
    for z in tqdm(range(affs.shape[1]), desc="fragments", unit="section", disable=not progress, mininterval=2):
        frag = section_fragments(affs[1:3, z], seed_min_distance, boundary_threshold)
        out[z] = frag + np.uint64(offset)
        offset += int(frag.max())
    return out


# --------------------------------------------------------------------------- agglomeration


@contextlib.contextmanager
def waterz_cache(cache_dir: str | os.PathLike | None):
    """Point witty's JIT cache (WITTY_CACHE_DIR) at `cache_dir` for the duration, if given."""
    if cache_dir is None:
        yield
        return
    old = os.environ.get("WITTY_CACHE_DIR")  # witty creates the folder only if it compiles something
    os.environ["WITTY_CACHE_DIR"] = str(Path(cache_dir).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("WITTY_CACHE_DIR", None)
        else:
            os.environ["WITTY_CACHE_DIR"] = old


@contextlib.contextmanager
def _c_stdout_to_stderr():
    """waterz prints progress with std::cout; send file descriptor 1 to stderr (the rule log) meanwhile."""
    try:
        target = sys.stderr.fileno()
        sys.stdout.flush()
        saved = os.dup(1)
    except (AttributeError, OSError, ValueError):  # stderr without a descriptor (pytest capture): leave as is
        yield
        return
    try:
        os.dup2(target, 1)
        yield
    finally:
        try:
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - nothing to do about a broken stdout here
            pass
        os.dup2(saved, 1)
        os.close(saved)


def _waterz(affs, fragments, thresholds, scoring):
    import waterz

    with _c_stdout_to_stderr():
        # waterz reuses one buffer for every threshold: copy each result
        return [
            np.array(seg, dtype=np.uint64, copy=True)
            for seg in waterz.agglomerate(
                affs,
                list(thresholds),
                fragments=np.ascontiguousarray(fragments, dtype=np.uint64),
                scoring_function=scoring,
            )
        ]


def agglomerate(
    affs: np.ndarray,
    fragments: np.ndarray,
    thresholds: Sequence[float],
    dim: int = 2,
    merge_function: str = "mean",
    progress: bool = False,
) -> dict[float, np.ndarray]:
    """One label volume (z, y, x) uint64 per threshold, from affinities and fragments.

    dim=2: each section is agglomerated alone (z affinities ignored), IDs made
    unique over the volume; dim=3: one waterz run over the whole volume, merging
    across sections through the z affinities.
    """
    affs = check_affinities(affs)[:3]
    fragments = np.asarray(fragments)
    if fragments.shape != affs.shape[1:]:
        raise InputError(
            f"fragments have shape {fragments.shape} but affinities {affs.shape[1:]}; "
            "compute them from the same affinities"
        )
    thresholds = sorted(float(t) for t in thresholds)
    scoring = scoring_function(merge_function)
    if dim == 3:
        frag, _, _ = relabel_sequential(fragments.astype(np.uint64))
        segs = _waterz(affs, frag, thresholds, scoring)
        return {t: relabel_sequential(s)[0] for t, s in zip(thresholds, segs)}
    out = {t: np.zeros(fragments.shape, np.uint64) for t in thresholds}
    offsets = {t: 0 for t in thresholds}
    for z in tqdm(range(affs.shape[1]), desc="agglomeration", unit="section", disable=not progress, mininterval=2):
        frag, _, _ = relabel_sequential(fragments[z : z + 1].astype(np.uint64))  # waterz sizes arrays by the max ID
        section_affs = affs[:, z : z + 1].copy()
        section_affs[0] = 0.0
        for t, seg in zip(thresholds, _waterz(section_affs, frag, thresholds, scoring)):
            seg, _, _ = relabel_sequential(seg)
            out[t][z] = np.where(seg > 0, seg + np.uint64(offsets[t]), 0)[0]
            offsets[t] += int(seg.max())
    return out


def boundary_map(affs: np.ndarray, dim: int = 2) -> np.ndarray:
    """1 - mean nearest-neighbour affinity per voxel: of (y, x) in 2D, of (z, y, x) in 3D."""
    return 1.0 - affs[1:3].mean(axis=0) if dim == 2 else 1.0 - affs[:3].mean(axis=0)


def oracle_agglomeration(fragments: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The best merge of `fragments` that knows the truth: each fragment joins the truth cell it overlaps most.

    An upper bound for any agglomeration of these fragments, to tell a ruler's errors apart:
    what an agglomeration scores below it was lost by merging in the wrong order, what it
    scores below perfect was already in the fragments (a fragment across two cells).
    Overlap counts truth foreground only (label 0, membrane, is no cell to join); a fragment
    with no foreground keeps an ID of its own above every truth ID. Same shape as the inputs;
    per section or whole volume alike (the fragments' IDs decide what is one fragment).
    Written here because no library scores a fragment oracle (waterz, lsd evaluate the merges).
    """
    fragments, truth = np.asarray(fragments), np.asarray(truth)
    if fragments.shape != truth.shape:
        raise ValueError(f"fragments {fragments.shape} and truth {truth.shape} differ in shape")
    ids, inverse = np.unique(fragments.ravel(), return_inverse=True)
    labels = truth.ravel().astype(np.int64)
    fg = labels > 0
    owner = np.arange(len(ids), dtype=np.int64) + int(labels.max()) + 1
    if not fg.any():
        return owner[inverse].reshape(fragments.shape).astype(np.uint64)
    # (fragment, truth label) overlap counts, then the largest per fragment
    pairs, counts = np.unique(np.stack([inverse[fg], labels[fg]]), axis=1, return_counts=True)
    order = np.lexsort((counts, pairs[0]))
    last = np.r_[pairs[0][order][1:] != pairs[0][order][:-1], True]
    owner[pairs[0][order][last]] = pairs[1][order][last]
    return owner[inverse].reshape(fragments.shape).astype(np.uint64)


def filter_small(seg: np.ndarray, boundary: np.ndarray, min_size: int, dim: int = 2) -> np.ndarray:
    """Segments of fewer than `min_size` voxels flooded by their neighbours across `boundary` (0 or 1: as is).

    2D: sizes and flooding per section (IDs are unique per section); 3D: over the volume. A
    section (volume) whose segments are all small is left as it is.
    """
    if min_size <= 1:
        return seg
    sizes = np.bincount(seg.ravel().astype(np.int64))
    small = sizes[seg] < min_size
    if not small.any():
        return seg
    keep = np.where(small, 0, seg)
    out = seg.copy()
    units = [(slice(z, z + 1),) for z in range(seg.shape[0])] if dim == 2 else [(slice(None),)]
    for u in units:
        if not small[u].any() or not keep[u].any():
            continue
        out[u] = watershed(boundary[u], keep[u].astype(np.int64)).astype(seg.dtype)
    return out


def segment_affinities(
    affs: np.ndarray,
    thresholds: Sequence[float],
    seed_min_distance: int = 3,
    dim: int = 2,
    merge_function: str = "mean",
    progress: bool = False,
    boundary_threshold: float = 0.5,
    min_size: int | Sequence[int] = 0,
    offsets: Sequence[Sequence[int]] | None = None,
    long_range_weight: float = 0.5,
) -> tuple[dict, dict]:
    """Fragments + agglomeration (+ size filter): ({threshold: labels}, timings in seconds and fragment count).

    `affs` has the channels of `offsets` (None: the 3 nearest neighbours); long-range ones are
    folded in first (`fold_long_range`). With a list of `min_size` values the result is
    {min_size: {threshold: labels}} (one agglomeration, filtered once per value).
    """
    t0 = time.perf_counter()
    nn = fold_long_range(check_affinities(affs), offsets, long_range_weight)
    fragments = fragments_from_affinities(nn, seed_min_distance, boundary_threshold, progress=progress)
    t1 = time.perf_counter()
    segs = agglomerate(nn, fragments, thresholds, dim, merge_function, progress=progress)
    t2 = time.perf_counter()
    boundary = boundary_map(nn, dim)
    sizes = list(min_size) if isinstance(min_size, (list, tuple)) else [int(min_size)]
    filtered = {m: {t: filter_small(seg, boundary, int(m), dim) for t, seg in segs.items()} for m in sizes}
    t3 = time.perf_counter()
    timing = {
        "fragment_seconds": t1 - t0,
        "agglomerate_seconds": t2 - t1,
        "filter_seconds": t3 - t2,
        "n_fragments": int(fragments.max()),
    }
    return (filtered if isinstance(min_size, (list, tuple)) else filtered[sizes[0]]), timing


# --------------------------------------------------------------------------- fragment settings and threshold choice

FRAGMENT_KEYS = ("seed_min_distance", "boundary_threshold", "long_range_weight")
TUNED_KEYS = (*FRAGMENT_KEYS, "min_size")


def fragment_options(fragments: Mapping) -> dict:
    """The keyword arguments of `segment_affinities` / `blockwise.segment_blockwise_zarr` for one chosen
    `fragments` entry (threshold.json's or `default_fragments`'), each tuned key with its type."""
    return {
        "seed_min_distance": int(fragments["seed_min_distance"]),
        "boundary_threshold": float(fragments["boundary_threshold"]),
        "min_size": int(fragments["min_size"]),
        "long_range_weight": float(fragments["long_range_weight"]),
    }


def _candidates(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def fragment_candidates(segmentation: dict) -> list[dict]:
    """Every combination of the `segmentation:` candidates (seed distance, boundary threshold, long-range weight).

    In the order of the lists, first key slowest; `min_size` is tried inside each (it needs no new fragments).
    """
    seg = section("segmentation", segmentation)
    lists = [_candidates(seg[k]) for k in FRAGMENT_KEYS]
    return [dict(zip(FRAGMENT_KEYS, combo)) for combo in itertools.product(*lists)]


def default_fragments(segmentation: dict) -> dict:
    """The first candidate of each tuned key: what rule segment uses without a choice (threshold.json)."""
    seg = section("segmentation", segmentation)
    return {k: _candidates(seg[k])[0] for k in TUNED_KEYS}


def pick_best_threshold(scores: Mapping[str, Mapping[float, Mapping[str, float]]], criterion: str = "voi_sum"):
    """(best threshold, mean scores per threshold) from {specimen: {threshold: scores}}.

    Lowest mean `criterion` over specimens wins; ties go to the lowest threshold.
    """
    thresholds = sorted({float(t) for per in scores.values() for t in per})
    if not thresholds:
        raise InputError("no validation scores to choose a threshold from; check segmentation.thresholds")
    mean = {}
    for t in thresholds:
        keys = set.intersection(*(set(per[t]) for per in scores.values()))
        mean[t] = {
            k: float(np.mean([per[t][k] for per in scores.values()]))
            for k in sorted(keys)
            if all(np.isscalar(per[t][k]) for per in scores.values())
        }
    best = min(thresholds, key=lambda t: (mean[t][criterion], t))
    return best, mean


def choose_threshold(
    predict: Callable[[np.ndarray], np.ndarray],
    validation: Mapping[str, tuple[np.ndarray, np.ndarray]],
    thresholds: Sequence[float],
    seed_min_distance: int | Sequence[int] = 3,
    dim: int = 2,
    merge_function: str = "mean",
    criterion: str = "voi_sum",
    segmentation: dict | None = None,
    offsets: Sequence[Sequence[int]] | None = None,
) -> dict:
    """Segment each specimen's validation image at every threshold and fragment setting; pick the best.

    Returns threshold.json's content: `best_threshold`, `fragments` (the chosen seed distance,
    boundary threshold, long-range weight and size filter), the mean and per-specimen scores
    per threshold at those fragment settings, and every candidate's best score (`candidates`).
    `segmentation` is the `segmentation:` slice (its list values are candidates); without it
    only `seed_min_distance` is used, with no size filter. `validation` maps specimen ->
    (image, labels) of held-back sections only; the test specimen never enters, so the
    reported best threshold is not tuned on the data it is reported for. Each specimen is
    scored in the unit the tables report (`scores_in_3d(dim, labels)`): the whole validation
    volume when the segmentation or the labels are 3D, else the mean over its sections;
    `in_3d` records which. The validation sections are scored whole: `metrics.border_crop`,
    which the tables apply, is not cut from them (the ruler predicts the whole field, edges
    included, and a choice made without its edge pixels did no better on ISBI). Ties go to
    the lowest threshold, then to the earlier candidate.
    """
    if segmentation is None:
        segmentation = {"seed_min_distance": seed_min_distance, "min_size": 0, "merge_function": merge_function}
    seg_cfg = section("segmentation", segmentation)
    sizes = [int(m) for m in _candidates(seg_cfg["min_size"])]
    affs = {name: predict(image) for name, (image, _) in validation.items()}
    in_3d = {name: scores_in_3d(dim, labels) for name, (_, labels) in validation.items()}
    best, tried = None, []
    for frag in fragment_candidates(seg_cfg):
        per_size = {m: {} for m in sizes}
        for name, (_, labels) in validation.items():
            segs, _ = segment_affinities(
                affs[name],
                thresholds,
                int(frag["seed_min_distance"]),
                dim,
                merge_function,
                boundary_threshold=float(frag["boundary_threshold"]),
                min_size=sizes,
                offsets=offsets,
                long_range_weight=float(frag["long_range_weight"]),
            )
            for m in sizes:
                per_size[m][name] = {t: unit_scores(seg, labels, in_3d[name]) for t, seg in segs[m].items()}
        for m in sizes:
            t, mean = pick_best_threshold(per_size[m], criterion)
            entry = {**frag, "min_size": m}
            tried.append({**entry, "best_threshold": t, criterion: mean[t][criterion]})
            if best is None or mean[t][criterion] < best[0] - 1e-12:
                best = (mean[t][criterion], t, entry, mean, per_size[m])
    _, t, entry, mean, per_specimen = best
    return {
        "best_threshold": t,
        "criterion": criterion,
        "fragments": entry,
        "in_3d": in_3d,
        "scores": {str(k): v for k, v in mean.items()},
        "per_specimen": {n: {str(k): v for k, v in per.items()} for n, per in per_specimen.items()},
        "candidates": tried,
    }


# --------------------------------------------------------------------------- rule entry points


def rule_settings(
    segmentation: dict | None, choice: str | None, segmentations: Sequence[str]
) -> tuple[dict, list[float], str, dict]:
    """(the `segmentation:` slice, sorted thresholds, merge function, fragment settings) of rule segment,
    with its outputs checked against the thresholds (`run_segment`'s docstring)."""
    seg_cfg = section("segmentation", segmentation)
    thresholds = [float(t) for t in sorted(seg_cfg["thresholds"])]
    frag = default_fragments(seg_cfg)
    if choice is not None:
        chosen = read_json(choice).get("fragments")
        if chosen is None or any(k not in chosen for k in TUNED_KEYS):
            raise InputError(f"{choice}: no complete `fragments` entry ({', '.join(TUNED_KEYS)}); rerun the rule")
        frag = {k: chosen[k] for k in TUNED_KEYS}
    if len(segmentations) != len(thresholds):
        raise InputError(
            f"rule segment: {len(segmentations)} outputs for {len(thresholds)} thresholds; "
            "declare one t<thr>.tif per segmentation.thresholds entry"
        )
    for path, t in zip(segmentations, thresholds):
        if Path(path).stem != threshold_name(t):
            raise InputError(
                f"rule segment: output {path} does not match threshold {t}; name it {threshold_name(t)}.tif"
            )
    return seg_cfg, thresholds, seg_cfg["merge_function"], frag


def segment_info(image, model, dev, net, shape, thresholds, merge_function, frag, choice, t_pred, timing) -> dict:
    """segment.json's content common to the in-memory and the blockwise path (`segments` aside)."""
    n = int(np.prod(shape))
    seg_s = timing["fragment_seconds"] + timing["agglomerate_seconds"]
    return {
        "image": str(image),
        "model": str(model),
        "device": str(dev),
        "dim": net.dim,
        "shape": list(shape),
        "voxels": n,
        "thresholds": thresholds,
        "merge_function": merge_function,
        "fragments": frag,
        "fragments_from": str(choice) if choice else "first candidates of segmentation:",
        "offsets": getattr(net, "offsets", None),
        "ids": "unique per section" if net.dim == 2 else "3D (linked through z)",
        "affinity_seconds": t_pred,
        "affinity_voxels_per_second": n / max(t_pred, 1e-9),
        **timing,
        "segmentation_voxels_per_second": n / max(seg_s, 1e-9),
        "agglomeration_voxels_per_second": n / max(timing["agglomerate_seconds"], 1e-9),
    }


def run_segment(
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
) -> None:
    """Snakemake entry point of rule segment: affinities of one image, one label TIFF per threshold, throughput json.

    `segmentation` is the `segmentation:` slice (thresholds, merge_function, fragment
    candidates); `choice` the row's threshold json (rule row_threshold's, threshold.json for
    the `hr` row), whose `fragments` entry holds the seed distance, boundary threshold,
    long-range weight and size filter chosen on the validation sections (None: the first
    candidate of each). `segmentations` are the output paths in the order of the sorted
    thresholds. Prediction tiles are those the affinity model was trained with.

    The whole image and its affinities are held in memory. With `segmentation.blockwise.block`
    set, the rule runs `srseg.blockwise.run_segment_blockwise` instead (bounded memory; it needs
    srseg.blockwise, which imports this module, so the rule's script chooses); called here with a
    block this refuses (InputError) rather than silently ignore it.
    """
    seg_cfg, thresholds, merge_function, frag = rule_settings(segmentation, choice, segmentations)
    if seg_cfg["blockwise"]["block"] is not None:
        raise InputError(
            "segmentation.blockwise.block is set: segment with srseg.blockwise.run_segment_blockwise "
            "(or set it to null for the in-memory path)"
        )
    logger = runtime.get_logger("srseg.segment", log)
    runtime.set_threads(threads)
    vol, voxel, _ = read_image(image)
    if not np.all(np.isfinite(vol)):
        raise InputError(f"{image}: the image contains NaN or infinite values; fix the upstream output")
    dev = runtime.resolve_device(device)
    net = load_affinity_model(model, dev)
    p = net.params
    logger.info("segmenting %s %s with %s on %s", image, vol.shape, model, dev)

    t0 = time.perf_counter()
    affs = predict(net, vol, dev, p, progress=True)
    if dev.type == "cuda":
        import torch

        torch.cuda.synchronize()
    t_pred = time.perf_counter() - t0
    with waterz_cache(cache_dir):
        segs, timing = segment_affinities(
            affs,
            thresholds,
            dim=net.dim,
            merge_function=merge_function,
            progress=True,
            offsets=getattr(net, "offsets", None),
            **fragment_options(frag),
        )
    for path, t in zip(segmentations, thresholds):
        write_labels(path, segs[t], voxel)
    info = segment_info(image, model, dev, net, vol.shape, thresholds, merge_function, frag, choice, t_pred, timing)
    info["segments"] = {str(t): int(len(np.unique(segs[t])) - (0 in segs[t])) for t in thresholds}
    info["blockwise"] = seg_cfg["blockwise"]
    info["peak_rss_mb"] = runtime.peak_rss_mb()
    write_json(segment_json, info)
    logger.info(
        "affinities %.0f voxels/s, segmentation %.0f voxels/s, peak RSS %s MiB",
        info["affinity_voxels_per_second"],
        info["segmentation_voxels_per_second"],
        f"{info['peak_rss_mb']:.0f}" if info["peak_rss_mb"] is not None else "?",
    )
