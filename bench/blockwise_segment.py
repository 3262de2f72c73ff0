"""Blockwise (zarr) vs in-memory segmentation: peak memory, wall time and their VOI difference.

A synthetic volume of Voronoi cells (drifting through z, 2-px membranes) gets noisy affinities,
written to a zarr array; then two child processes (so each peak RSS is its own) segment it:

* `inmem`: reads the whole affinity array and runs srseg.segment.segment_affinities;
* `zarr`: srseg.blockwise.segment_blockwise_zarr, one block + context at a time.

Peak RSS is the child's high-water mark (VmHWM; includes the interpreter and imports, torch
among them: `baseline_mb` is that after the imports, before any work). Prints a table and writes JSON:

    python bench/blockwise_segment.py out.json --shape 32 512 512 --block 8 128 128 --context 4 32 32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    """Peak resident memory of this process in MiB (runtime.peak_rss_mb: VmHWM, reset at exec, unlike ru_maxrss,
    which a child inherits from the parent it was forked from), else ru_maxrss."""
    from srseg.runtime import peak_rss_mb

    peak = peak_rss_mb()
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(shape, n_cells: int, dim: int, seed: int = 0, noise: float = 0.15):
    """(labels, affinities) of drifting Voronoi cells; affinities blurred + Gaussian noise (2D: z affinity 0)."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    from srseg.affinity import affinity_targets

    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    pts = rng.uniform(0, [ny, nx], (n_cells, 2))
    step = rng.normal(0, 0.7, (n_cells, 2))
    grid = np.stack([a.ravel() for a in np.mgrid[0:ny, 0:nx]], 1)
    tree_lab = [cKDTree(pts + z * step).query(grid)[1].reshape(ny, nx) + 1 for z in range(nz)]
    lab = np.stack(tree_lab)
    edge = np.zeros(lab.shape, bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :, 1:] |= lab[:, :, 1:] != lab[:, :, :-1]
    edge = ndimage.binary_dilation(edge, np.ones((1, 2, 2), bool))
    labels = np.where(edge, 0, lab).astype(np.uint64)
    affs = ndimage.gaussian_filter(affinity_targets(labels, dim), (0, 0, 1, 1))
    affs = np.clip(affs + rng.normal(0, noise, affs.shape).astype(np.float32), 0, 1).astype(np.float32)
    if dim == 2:
        affs[0] = 0.0
    return labels, affs


def child(args) -> None:
    """One measured run (in its own process); writes its labels to zarr and its numbers to args.result."""
    import zarr

    import srseg.blockwise  # noqa: F401 - imports (torch via srseg.segment) count in the baseline, not the work
    import srseg.segment  # noqa: F401

    base = rss_mb()
    opts = {"dim": args.dim, "seed_min_distance": 3}
    t0 = time.perf_counter()
    if args.mode == "inmem":
        from srseg.segment import segment_affinities

        affs = np.asarray(zarr.open_array(args.affs, mode="r")[...])
        segs, info = segment_affinities(affs, args.thresholds, **opts)
        out = zarr.open_group(args.out, mode="w")
        for t, seg in segs.items():
            out.create_array(str(t), data=seg, chunks=(1, *seg.shape[1:]))
        arrays = {str(t): f"{args.out}/{t}" for t in segs}
    else:
        from srseg.blockwise import segment_blockwise_zarr

        info = segment_blockwise_zarr(args.affs, args.out, args.thresholds, args.block, args.context, **opts)
        arrays = {str(t): p for t, p in info.pop("arrays").items()}
    wall = time.perf_counter() - t0
    result = {"mode": args.mode, "wall_s": wall, "peak_rss_mb": rss_mb(), "baseline_mb": base, "arrays": arrays}
    result.update({k: v for k, v in info.items() if isinstance(v, (int, float))})
    Path(args.result).write_text(json.dumps(result))


def voi_between(a_path: str, b_path: str) -> float:
    """VOI (split + merge, bits) of two label arrays on disk, accumulated section by section."""
    import zarr

    from srseg.metrics.segmentation import contingency_table_from_blocks, voi_from_table

    a, b = open_labels(a_path, zarr), open_labels(b_path, zarr)
    table, _, _ = contingency_table_from_blocks((np.asarray(a[z]), np.asarray(b[z])) for z in range(a.shape[0]))
    return float(sum(voi_from_table(table)))


def open_labels(path: str, zarr):
    from srseg.volumes import split_zarr

    root, inner = split_zarr(path)
    return zarr.open_array(str(root), path=inner or None, mode="r")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", help="where to write the results")
    p.add_argument("--shape", type=int, nargs=3, default=[32, 512, 512])
    p.add_argument("--block", type=int, nargs=3, default=[8, 128, 128])
    p.add_argument("--context", type=int, nargs=3, default=[4, 32, 32])
    p.add_argument("--cells", type=int, default=None, help="Voronoi cells (default: one per 40 x 40 px)")
    p.add_argument("--dim", type=int, default=3, choices=[2, 3])
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5])
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--mode", choices=["inmem", "zarr"], help=argparse.SUPPRESS)
    p.add_argument("--affs", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mode:
        child(args)
        return
    import zarr

    from srseg.segment import per_section_labels

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    cells = args.cells or max(4, args.shape[1] * args.shape[2] // 1600)
    t0 = time.perf_counter()
    labels, affs = synthetic(args.shape, cells, args.dim)
    src = zarr.open_array(
        str(work / "affs.zarr"), mode="w", shape=affs.shape, chunks=(affs.shape[0], 1, 256, 256), dtype=affs.dtype
    )
    src[...] = affs
    truth = per_section_labels(labels) if args.dim == 2 else labels
    zarr.open_array(
        str(work / "truth.zarr"), mode="w", shape=truth.shape, chunks=(1, *truth.shape[1:]), dtype=truth.dtype
    )[...] = truth
    del labels, affs, truth
    print(f"synthetic volume {args.shape}, {cells} cells, dim {args.dim}: {time.perf_counter() - t0:.1f} s", flush=True)
    runs = {}
    for mode in ("inmem", "zarr"):
        res = work / f"{mode}.json"
        cmd = [sys.executable, __file__, str(args.json), "--mode", mode, "--affs", str(work / "affs.zarr")]
        cmd += ["--out", str(work / f"{mode}.zarr"), "--result", str(res), "--dim", str(args.dim)]
        cmd += ["--thresholds", *map(str, args.thresholds), "--block", *map(str, args.block)]
        cmd += ["--context", *map(str, args.context)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs[mode] = json.loads(res.read_text())
    voi = {}
    for t in args.thresholds:
        a, b = runs["inmem"]["arrays"][str(t)], runs["zarr"]["arrays"][str(t)]
        truth = str(work / "truth.zarr")
        voi[str(t)] = {
            "blockwise_vs_inmem": voi_between(b, a),
            "inmem_vs_truth": voi_between(a, truth),
            "blockwise_vs_truth": voi_between(b, truth),
        }
    n = int(np.prod(args.shape))
    report = {
        "shape": args.shape,
        "block": args.block,
        "context": args.context,
        "dim": args.dim,
        "cells": cells,
        "thresholds": args.thresholds,
        "affinity_mb": 3 * n * 4 / 2**20,
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "arrays"} for k, v in runs.items()},
        "voi": voi,
    }
    print(f"affinities {report['affinity_mb']:.0f} MiB (float32, 3 channels)")
    print(f"{'run':<10}{'wall s':>9}{'peak RSS MiB':>14}{'baseline MiB':>14}{'peak - base':>13}{'fragments':>11}")
    for k, v in runs.items():
        v["work_mb"] = v["peak_rss_mb"] - v["baseline_mb"]
        print(
            f"{k:<10}{v['wall_s']:>9.1f}{v['peak_rss_mb']:>14.0f}{v['baseline_mb']:>14.0f}{v['work_mb']:>13.0f}"
            f"{v['n_fragments']:>11}"
        )
    print(f"{'threshold':<10}{'VOI bw-inmem':>14}{'inmem-truth':>13}{'bw-truth':>10}")
    for t, v in voi.items():
        print(f"{t:<10}{v['blockwise_vs_inmem']:>14.4f}{v['inmem_vs_truth']:>13.4f}{v['blockwise_vs_truth']:>10.4f}")
    report["runs"] = {k: {kk: vv for kk, vv in v.items() if kk != "arrays"} for k, v in runs.items()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
