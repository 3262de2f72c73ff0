"""Peak memory and throughput of a stage against the volume's size: is memory flat?

    python bench/memory_scale.py --out results/bench/memory_scale.json [--stage infer]
                                 [--sizes 0.25 1 4] [--section 512] [--scale 4] [--work DIR]
                                 [--in-memory-sizes 0.25] [--formats zarr tiff]

For every size (GB of output) a synthetic LR volume of `--section`^2 px uint8 sections is
made (section by section; z chosen so the x`--scale` output is that size) and the stage
runs on it in a fresh subprocess, whose own peak RSS comes from os.wait4 (ru_maxrss of that
child alone) and whose throughput from the stage's json. Stage `infer` runs bicubic
(`srseg.infer.run_infer`, the rule's code path) streaming into an OME-Zarr and/or a TIFF;
`--in-memory-sizes` also runs the in-memory path (read the whole LR, `super_resolve` the
whole volume, `write_tiff` it) for comparison. Writes the json, a csv beside it and prints
a markdown table. Extend with another stage by adding a function to STAGES that returns
the runs (label, python code, output voxels) for one input volume.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
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


def run_child(code: str, env: dict) -> dict:
    """Run `python -c code` in a fresh process: wall seconds, peak RSS (bytes) of that process alone, rc."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{err[-3000:]}")
    return {"wall_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024, "stdout": out}


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


#: stage name -> function(lr path, work dir, size GB, args) -> [(label, python code, output voxels, output path)]
STAGES = {"infer": infer_runs}


def _sections(size_gb: float, args) -> int:
    return max(1, round(size_gb * 1e9 / (args.section * args.scale) ** 2))


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
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1.0, 4.0], help="output GB")
    ap.add_argument("--section", type=int, default=512, help="LR section side (px)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--formats", nargs="+", default=["zarr", "tiff"], choices=["zarr", "tiff"])
    ap.add_argument("--in-memory-sizes", type=float, nargs="*", default=[0.25])
    ap.add_argument("--work", default=None, help="scratch folder (default: beside --out)")
    ap.add_argument("--keep", action="store_true", help="keep the outputs (default: delete each after its run)")
    args = ap.parse_args(argv)

    work = Path(args.work or Path(args.out).with_suffix("")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    rows = []
    for size in args.sizes:
        z = _sections(size, args)
        lr = work / f"lr_{z}x{args.section}.tif"
        synthetic_lr(lr, z, args.section)
        for label, code, n_out, out in STAGES[args.stage](lr, work, size, args):
            res = run_child(code, env)
            compute = json.loads(res["stdout"].strip().splitlines()[-1])["compute_s"]
            rows.append(
                {
                    "stage": args.stage,
                    "path": label,
                    "output_gb": n_out / 1e9,
                    "lr_shape": f"{z}x{args.section}x{args.section}",
                    "peak_rss_gb": res["peak_rss_bytes"] / 1e9,
                    "wall_s": res["wall_s"],
                    "compute_s": compute,
                    "mvox_per_s": n_out / compute / 1e6,
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
    smallest = df[df["output_gb"] == df["output_gb"].min()].set_index("path")["mvox_per_s"]
    if "in-memory" in smallest:
        for label in smallest.index:
            summary.setdefault(label, {})["throughput_vs_in_memory"] = float(smallest[label] / smallest["in-memory"])
    write_json(
        args.out, {"stage": args.stage, "section": args.section, "scale": args.scale, "rows": rows, "summary": summary}
    )
    write_csv(Path(args.out).with_suffix(".csv"), df)
    print(df.to_markdown(index=False, floatfmt=".3g"))
    print(json.dumps(summary, indent=2))
    return df


if __name__ == "__main__":
    main()
