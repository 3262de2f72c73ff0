"""Peak memory and throughput of a stage against the volume's size: is memory flat?

    python bench/memory_scale.py --out results/bench/memory_scale.json [--stage infer|segment]
                                 [--sizes 0.25 1 4] [--section 512] [--scale 4] [--work DIR]
                                 [--in-memory-sizes 0.25] [--formats zarr tiff]
                                 [--block 8 512 512] [--context 2 32 32] [--thresholds 0.5] [--min-size 0]

For every size (GB of the stage's output) a synthetic input is made (bounded memory: section
by section or z-block by z-block) and each of the stage's paths runs on it in a fresh
subprocess, whose own peak RSS is its VmHWM (`run_child`; not os.wait4's ru_maxrss, which
carries the parent's) and whose throughput (output voxels per second of the stage's own timer,
also per CPU second where the child reports its CPU time) from the json it prints last.

* `infer`: the output is the uint8 x`--scale` SR volume (1 byte a voxel) of a synthetic LR
  stack of `--section`^2 px sections (z chosen so the output is that size); bicubic
  (`srseg.infer.run_infer`, the rule's code path) streams into an OME-Zarr and/or a TIFF;
  `in-memory` reads the whole LR, `super_resolve`s it and `write_tiff`s it.
* `segment`: the output is the uint64 label volume (8 bytes a voxel, the OME-Zarr labels the
  overview writes) of HR sections of side `--section` x `--scale` (the SR of the infer stage),
  z chosen so the labels are that size; its input, the (3, z, y, x) float32 nearest-neighbour
  affinities of a 2D network (z channel 0; 12 bytes a voxel, 1.5x the output), is made z-block
  by z-block from drifting Voronoi cells with 2-px membranes (blurred, Gaussian noise) into a
  zarr array chunked by `--block` (as `blockwise.predict_to_zarr` writes it). `blockwise`:
  `srseg.blockwise.segment_blockwise_zarr` (the overview's driver: fragments per block, RAG
  edge statistics, exact mean agglomeration `rag_luts`, relabel, OME-Zarr labels) at
  `--block` / `--context` (the overview's defaults); `in-memory`: the whole affinity array read
  and `srseg.segment.segment_affinities` on it (rule segment without segmentation.blockwise),
  its labels written by the same OME-Zarr writer. Both time reading the affinities through
  writing the labels.

`--in-memory-sizes` chooses the sizes that also run the in-memory path. Writes the json, a csv
beside it and prints a markdown table. Extend with another stage by adding a `Stage` to STAGES:
a function making its input for one size and one returning the runs (label, python code,
output voxels, output path to delete afterwards) on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from srseg.io import write_csv, write_json, write_tiff_sections  # noqa: E402


def synthetic_lr(path: Path, z: int, side: int, seed: int = 0) -> None:
    """A smooth EM-like uint8 stack (blobs + membranes-ish ridges + noise), written section by section."""
    if path.exists():
        return
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side

    def planes():
        rng = np.random.default_rng(seed)
        for k in range(z):
            ph = 0.05 * k
            base = 0.5 + 0.25 * np.sin(2 * np.pi * (6 * xx + ph)) * np.cos(2 * np.pi * (5 * yy - ph))
            ridge = np.abs(np.sin(2 * np.pi * (9 * xx + 7 * yy + ph))) < 0.08
            img = base - 0.3 * ridge + rng.normal(0, 0.03, (side, side)).astype(np.float32)
            yield np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)

    write_tiff_sections(path, planes(), (z, side, side), "uint8", [50.0, 40.0, 40.0])


def voronoi_section(points_yx: np.ndarray, side: int) -> np.ndarray:
    """Labels (side, side) int64 of the Voronoi cells of `points_yx` (wrapped into the section), 2-px membranes 0."""
    from scipy import ndimage

    iy, ix = (np.asarray(points_yx) % side).astype(np.int64).T
    seeds = np.zeros((side, side), np.int64)
    seeds[iy, ix] = np.arange(1, len(iy) + 1)
    _, (ry, rx) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    cells = seeds[ry, rx]
    edge = np.zeros(cells.shape, bool)
    edge[1:] |= cells[1:] != cells[:-1]
    edge[:, 1:] |= cells[:, 1:] != cells[:, :-1]
    return np.where(ndimage.binary_dilation(edge, np.ones((2, 2), bool)), 0, cells)


def synthetic_affinities(path: Path, z: int, side: int, block, cell_px: int = 48, noise: float = 0.15, seed=0):
    """Noisy nearest-neighbour affinities (3, z, side, side) float32 of drifting Voronoi cells (about `cell_px`
    apart) as a 2D network gives them (z channel 0), written z-block by z-block into a zarr array chunked by
    `block` (memory: one z-block); made under a temporary name, so a killed run never leaves a partial one."""
    if path.exists():
        return
    import zarr
    from scipy import ndimage

    from srseg.affinity import affinity_targets
    from srseg.volumes import tmp_path

    rng = np.random.default_rng(seed)
    n = max(1, (side // cell_px) ** 2)
    points, drift = rng.uniform(0, side, (n, 2)), rng.normal(0, 0.7, (n, 2))
    tmp = tmp_path(path)
    arr = zarr.create_array(
        str(tmp), shape=(3, z, side, side), chunks=(3, *block), dtype=np.float32, fill_value=0.0, overwrite=True
    )
    for z0 in range(0, z, block[0]):
        labels = np.stack([voronoi_section(points + k * drift, side) for k in range(z0, min(z0 + block[0], z))])
        affs = ndimage.gaussian_filter(affinity_targets(labels, dim=2), (0, 0, 1, 1))
        affs += noise * rng.standard_normal(affs.shape, dtype=np.float32)
        np.clip(affs, 0, 1, out=affs)
        affs[0] = 0.0
        arr[:, z0 : z0 + len(labels)] = affs
    os.replace(tmp, path)


#: appended to every child's code: its own peak RSS (VmHWM, kB) on stderr
HWM = (
    "\nimport sys as _sys\n"
    "print('VmHWM', [ln.split()[1] for ln in open('/proc/self/status') if 'VmHWM' in ln][0], file=_sys.stderr)\n"
)


def run_child(code: str, env: dict) -> dict:
    """Run `python -c code` in a fresh process: wall and CPU (user + system) seconds, peak RSS (bytes) of that
    process alone, its stdout.

    The peak is the child's VmHWM, which exec resets; os.wait4's ru_maxrss is not used for it: Linux carries
    the parent's high-water mark into it (the child starts on the parent's memory), so after the parent made
    a large input every child would read at least that. Output goes to temporary files, not pipes, so a
    chatty child (waterz logs every section) cannot block on a full pipe while this waits.
    """
    import tempfile

    t = time.perf_counter()
    with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        proc = subprocess.Popen([sys.executable, "-c", code + HWM], env=env, stdout=fout, stderr=ferr)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read().decode(), ferr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{err[-3000:]}")
    hwm = [ln.split()[1] for ln in err.splitlines() if ln.startswith("VmHWM ")][-1]
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_bytes": int(hwm) * 1024, "stdout": out}


# --------------------------------------------------------------------------- stages


def infer_runs(lr: Path, work: Path, size: float, args) -> list[tuple[str, str, int]]:
    """Bicubic x scale of `lr`: streamed (run_infer into OME-Zarr / TIFF) and, for some sizes, in memory."""
    z = _sections(size, args)
    n_out = z * (args.section * args.scale) ** 2
    common = (
        "import json, sys, time, torch; torch.set_num_threads(1)\n"
        "from srseg.io import write_json\n"
        f"pairs = {str(work / 'pairs.json')!r}\n"
    )
    write_json(work / "pairs.json", {"scale": args.scale, "hr_voxel_nm": [50.0, 40.0 / args.scale, 40.0 / args.scale]})
    runs = []
    for fmt in args.formats:
        out = work / f"sr_{size:g}GB.{'zarr' if fmt == 'zarr' else 'tif'}"
        code = common + (
            "from srseg.infer import run_infer\n"
            f"info = run_infer({str(lr)!r}, {str(out)!r}, {str(out) + '.json'!r}, arch_spec={{'arch': 'bicubic'}},"
            f" pairs_json=pairs, settings={{'tile': {args.tile}, 'overlap': 8}}, device='cpu')\n"
            "print(json.dumps({'compute_s': info['compute_seconds']}))\n"
        )
        runs.append((f"stream-{fmt}", code, n_out, out))
    if any(abs(size - s) < 1e-9 for s in args.in_memory_sizes):
        out = work / f"sr_{size:g}GB_inmemory.tif"
        code = common + (
            "from srseg.infer import super_resolve\nfrom srseg.io import read_image, write_tiff\n"
            "from srseg.models import build_model\n"
            f"t = time.perf_counter(); vol, vox, dtype = read_image({str(lr)!r})\n"
            f"sr = super_resolve(build_model({{'arch': 'bicubic'}}, {args.scale}), vol, {args.scale}, {args.tile}, 8,"
            " out_dtype=dtype, progress=False)\n"
            f"write_tiff({str(out)!r}, sr, [50.0, {40.0 / args.scale}, {40.0 / args.scale}])\n"
            "print(json.dumps({'compute_s': time.perf_counter() - t}))\n"
        )
        runs.append(("in-memory", code, n_out, out))
    return runs


def lr_input(work: Path, size: float, args) -> tuple[Path, str]:
    """The infer stage's input: a uint8 LR stack whose x scale SR is `size` GB."""
    z = _sections(size, args)
    lr = work / f"lr_{z}x{args.section}.tif"
    synthetic_lr(lr, z, args.section)
    return lr, f"{z}x{args.section}x{args.section}"


def affinity_input(work: Path, size: float, args) -> tuple[Path, str]:
    """The segment stage's input: affinities of HR sections whose uint64 labels are `size` GB."""
    side = args.section * args.scale
    z = _sections(size, args, 8)
    affs = work / f"affs_{z}x{side}_b{'x'.join(map(str, args.block))}.zarr"
    synthetic_affinities(affs, z, side, args.block)
    return affs, f"3x{z}x{side}x{side}"


#: the segment children's timer and last line: their compute span's wall and CPU seconds and their info dict
START = "t, c = time.perf_counter(), time.process_time()\n"
REPORT = "print(json.dumps({'compute_s': time.perf_counter() - t, 'compute_cpu_s': time.process_time() - c, **info}))\n"


def segment_runs(affs: Path, work: Path, size: float, args) -> list[tuple[str, str, int, Path]]:
    """Segmentation of `affs` at `--thresholds`: blockwise (the overview's zarr driver) and, some sizes, in memory."""
    import zarr

    shape = zarr.open_array(str(affs), mode="r").shape[1:]
    n_out = int(np.prod(shape))
    voxel = [50.0, 40.0 / args.scale, 40.0 / args.scale]
    frag = {"seed_min_distance": 3, "boundary_threshold": 0.5, "min_size": args.min_size}
    common = "import json, time, numpy as np, zarr, torch; torch.set_num_threads(1)\n"
    out = work / f"seg_{size:g}GB_blockwise"
    labels = {args.thresholds[0]: str(out / "labels.zarr")}
    runs = [
        (
            "blockwise",
            common
            + "from srseg.blockwise import segment_blockwise_zarr\n"
            + START
            + f"info = segment_blockwise_zarr({str(affs)!r}, {str(out / 'work.zarr')!r},"
            f" {args.thresholds}, {args.block}, {args.context}, dim=2, outputs={labels}, voxel_nm={voxel}, **{frag})\n"
            "info = {k: v for k, v in info.items() if isinstance(v, (int, float))}\n" + REPORT,
            n_out,
            out,
        )
    ]
    if any(abs(size - s) < 1e-9 for s in args.in_memory_sizes):
        out = work / f"seg_{size:g}GB_in-memory"
        runs.append(
            (
                "in-memory",
                common
                + "from srseg.segment import segment_affinities\nfrom srseg.volumes import write_ome_zarr\n"
                + START
                + f"affs = np.asarray(zarr.open_array({str(affs)!r}, mode='r')[...])\n"
                f"segs, info = segment_affinities(affs, {args.thresholds}, dim=2, **{frag})\n"
                f"write_ome_zarr({str(out / 'labels.zarr')!r}, segs[{args.thresholds[0]}], {voxel}, kind='labels')\n"
                + REPORT,
                n_out,
                out,
            )
        )
    return runs


@dataclass(frozen=True)
class Stage:
    """make_input(work, size GB, args) -> (input path, shape text); runs(input, work, size, args) -> [(label,
    python code, output voxels, output path)]; out_bytes: bytes an output voxel (size = output voxels x that)."""

    make_input: object
    runs: object
    out_bytes: int


STAGES = {"infer": Stage(lr_input, infer_runs, 1), "segment": Stage(affinity_input, segment_runs, 8)}


def _sections(size_gb: float, args, out_bytes: int = 1) -> int:
    return max(1, round(size_gb * 1e9 / out_bytes / (args.section * args.scale) ** 2))


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="json path; a csv with the same stem is written beside it")
    ap.add_argument("--stage", default="infer", choices=sorted(STAGES))
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1.0, 4.0], help="output GB (see above)")
    ap.add_argument("--section", type=int, default=512, help="LR section side (px)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--formats", nargs="+", default=["zarr", "tiff"], choices=["zarr", "tiff"])
    ap.add_argument("--in-memory-sizes", type=float, nargs="*", default=[0.25])
    ap.add_argument("--block", type=int, nargs=3, default=[8, 512, 512], help="segment: block z y x (HR voxels)")
    ap.add_argument("--context", type=int, nargs=3, default=[2, 32, 32], help="segment: context z y x")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5], help="segment: the first is written")
    ap.add_argument("--min-size", type=int, default=0, help="segment: size filter (0: none)")
    ap.add_argument("--work", default=None, help="scratch folder (default: beside --out)")
    ap.add_argument("--keep", action="store_true", help="keep the outputs (default: delete each after its run)")
    args = ap.parse_args(argv)

    work = Path(args.work or Path(args.out).with_suffix("")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    rows = []
    stage = STAGES[args.stage]
    for size in args.sizes:
        source, shape = stage.make_input(work, size, args)
        for label, code, n_out, out in stage.runs(source, work, size, args):
            res = run_child(code, env)
            child = json.loads(res["stdout"].strip().splitlines()[-1])
            compute, cpu = child.pop("compute_s"), child.pop("compute_cpu_s", None)
            rows.append(
                {
                    "stage": args.stage,
                    "path": label,
                    "output_gb": n_out * stage.out_bytes / 1e9,
                    "input_shape": shape,
                    "peak_rss_gb": res["peak_rss_bytes"] / 1e9,
                    "wall_s": res["wall_s"],
                    "compute_s": compute,
                    "mvox_per_s": n_out / compute / 1e6,
                    "cpu_s": res["cpu_s"],
                    **({} if cpu is None else {"compute_cpu_s": cpu, "mvox_per_cpu_s": n_out / cpu / 1e6}),
                    **{k: v for k, v in child.items() if k.endswith("_seconds") or k.startswith("n_")},
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            if not args.keep:
                _remove(out)
                _remove(Path(str(out) + ".json"))
    import pandas as pd

    df = pd.DataFrame(rows)
    summary = {}
    for label, g in df.groupby("path"):
        g = g.sort_values("output_gb")
        summary[label] = {
            "rss_largest_over_smallest": float(g["peak_rss_gb"].iloc[-1] / g["peak_rss_gb"].iloc[0]),
            "peak_rss_gb_max": float(g["peak_rss_gb"].max()),
        }
    smallest = df[df["output_gb"] == df["output_gb"].min()].set_index("path")
    if "in-memory" in smallest.index:
        for column, key in (
            ("mvox_per_s", "throughput_vs_in_memory"),
            ("mvox_per_cpu_s", "cpu_throughput_vs_in_memory"),
        ):
            if column in smallest:
                for label in smallest.index:
                    ratio = smallest.loc[label, column] / smallest.loc["in-memory", column]
                    summary.setdefault(label, {})[key] = float(ratio)
    write_json(
        args.out,
        {
            "stage": args.stage,
            "args": {k: v for k, v in vars(args).items() if k != "out"},
            "rows": rows,
            "summary": summary,
        },
    )
    write_csv(Path(args.out).with_suffix(".csv"), df)
    print(df.to_markdown(index=False, floatfmt=".3g"))
    print(json.dumps(summary, indent=2))
    return df


if __name__ == "__main__":
    main()
