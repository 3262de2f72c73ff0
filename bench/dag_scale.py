"""How long does Snakemake take to plan a lab-sized benchmark?

Writes a config with N specimens x M models x K training-data kinds, leave-one-out
(N folds), whose specimens point to small dummy TIFF files created in a temporary
directory (config validation checks that the files exist), copies the workflow next
to it, and times `snakemake -n` (DAG building + planning only; nothing runs).

    .venv/bin/python bench/dag_scale.py                       # 10 x 20 x 3
    .venv/bin/python bench/dag_scale.py --specimens 20 --models 30 --out dag.json

It also times bare Snakemake planning the same number of trivial jobs (one rule, one
wildcard, no config), the floor any workflow pays, and reports the ratio.

Prints the wall times and the planned job count (and writes them as JSON with --out).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from srseg.config import defaults
from srseg.io import write_image

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ("Snakefile", "rules", "workflow", "schemas", "report", "envs")


def scale_config(base: dict, data_dir: Path, n_specimens: int, n_models: int, n_data: int) -> dict:
    """The demo config with user specimens (dummy TIFFs), n_models models and n_data training-data kinds."""
    lr = np.zeros((2, 16, 16), np.float32)
    hr = np.zeros((2, 48, 48), np.float32)
    specimens = {}
    for i in range(n_specimens):
        d = data_dir / f"s{i:02d}"
        write_image(d / "lr.tif", lr, [50.0, 30.0, 30.0], "uint8")
        write_image(d / "hr.tif", hr, [50.0, 10.0, 10.0], "uint8")
        write_image(d / "labels.tif", hr, [50.0, 10.0, 10.0], "uint16")
        specimens[f"s{i:02d}"] = {
            "lr": str(d / "lr.tif"),
            "hr": str(d / "hr.tif"),
            "labels": str(d / "labels.tif"),
            "lr_voxel_nm": [50, 30, 30],
            "hr_voxel_nm": [50, 10, 10],
            "hr_offset_nm": [0, 0, 0],
        }
    cfg = dict(base)
    cfg["specimens"] = specimens
    cfg["splits"] = "leave_one_out"
    recipes = list(defaults()["degradations"])
    if n_data - 1 > len(recipes):
        raise SystemExit(f"at most {len(recipes) + 1} training-data kinds with the demo's recipes")
    cfg["train_data"] = ["real"] + recipes[: n_data - 1]
    # one untrained baseline + (n_models - 1) EDSR variants differing in a hyperparameter
    models = {"bicubic": {"arch": "bicubic"}}
    for i in range(n_models - 1):
        models[f"edsr{i:02d}"] = {
            "arch": "edsr",
            "net": {"n_feats": 8, "n_blocks": 1},
            "loss": {"l1": 1},
            "lr": 1.0e-4 * (i + 1),
        }
    cfg["models"] = models
    return cfg


TRIVIAL = """
rule all:
    input: expand("out/{i}.txt", i=range(N))

rule work:
    output: "out/{i}.txt"
    shell: "touch {output}"
"""


def plan_seconds(work: Path, repeats: int = 3) -> tuple[float, str]:
    """Best of `repeats` wall times of `snakemake -n` in `work` (best: least disturbed by other load)."""
    best, out = float("inf"), ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "2"],
            cwd=work,
            capture_output=True,
            text=True,
        )
        best = min(best, time.perf_counter() - t0)
        if res.returncode != 0:
            raise SystemExit(res.stdout[-2000:] + res.stderr[-2000:])
        out = res.stdout + res.stderr
    return best, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specimens", type=int, default=10)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--data", type=int, default=3, help="training-data kinds: real + (data-1) recipes")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    ap.add_argument("--workflow", type=Path, default=ROOT, help="checkout whose workflow is timed (default: this one)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="srseg-dag-") as tmp:
        work = Path(tmp) / "workflow"
        work.mkdir()
        for name in WORKFLOW:
            src = args.workflow / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
        base = yaml.safe_load((args.workflow / "config.yaml").read_text())
        cfg = scale_config(base, work / "raw", args.specimens, args.models, args.data)
        (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        wall, out = plan_seconds(work)
        m = re.search(r"^total\s+(\d+)", out, re.M)
        jobs = int(m.group(1)) if m else None
        bare = Path(tmp) / "bare"
        bare.mkdir()
        (bare / "Snakefile").write_text(f"N = {jobs - 1}\n" + TRIVIAL)
        bare_wall, _ = plan_seconds(bare)
    result = {
        "specimens": args.specimens,
        "models": args.models,
        "train_data": args.data,
        "folds": args.specimens,
        "jobs": jobs,
        "dry_run_seconds": round(wall, 2),
        "bare_snakemake_seconds": round(bare_wall, 2),
        "ratio": round(wall / bare_wall, 2),
    }
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
