"""End to end on real EM (ISBI 2012): simulate -> ingest -> align -> ... -> report.

Runs config/isbi.yaml downsized (256 x 256 crop, 3 pseudo-specimens of 4 sections,
bicubic + a tiny SRCNN, a few training steps) in a temporary copy of the workflow, and
checks that the report has every configured model, bicubic and the hr upper bound with
finite segmentation scores (and finite image scores for every SR row), and that the
alignment found the simulator's true transform. The full config/isbi.yaml run is for
the README numbers: `snakemake --configfile config/isbi.yaml --cores 2`.
Skipped, with the reason, when the ISBI data folder is absent.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from srseg.io import read_json

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(os.environ.get("WORKFLOW_SRC", ROOT))  # the workflow copied (default: this checkout)
ISBI = ROOT / "config" / "isbi.yaml"
DATA = ROOT.parent / "shared" / "data" / "isbi2012"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DATA / "raw.tif").is_file(),
        reason=f"ISBI 2012 data not found at {DATA}: real-data integration test skipped",
    ),
]


def small_isbi_config() -> dict:
    cfg = yaml.safe_load(ISBI.read_text())
    tiny = yaml.safe_load((ROOT / "tests" / "slurm" / "tiny_config.yaml").read_text())
    for i, spec in enumerate(cfg["specimens"].values()):
        sim = spec["simulate"]
        sim["source"] = str((ROOT / sim["source"]).resolve())
        sim["labels"] = str((ROOT / sim["labels"]).resolve())
        sim["sections"] = [4 * i, 4 * i + 4]
        sim["crop"] = [0, 256, 0, 256]
    # CPU-minute models and training: the structure of the run, not its numbers
    for key in ("training", "infer", "affinity", "segmentation", "metrics", "report", "degradations", "align"):
        cfg[key] = tiny[key]
    cfg["models"] = {"bicubic": {"arch": "bicubic"}, "srcnn": tiny["models"]["srcnn"]}
    cfg["train_data"] = ["real"]
    return cfg


def test_isbi_workflow_end_to_end(tmp_path):
    for name in ("Snakefile", "rules", "workflow", "schemas", "report", "envs"):
        src = SRC / name
        if src.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    cfg = small_isbi_config()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2"],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    for s in cfg["specimens"]:
        qc = read_json(tmp_path / "results" / "align" / s / "qc.json")
        assert qc["error_px_max"] <= 0.25, (s, qc["error_px_max"])  # the simulator's truth recovered

    table = pd.read_csv(tmp_path / "results" / "report" / "tables" / "summary.csv")
    rows = set(zip(table["model"], table["data"]))
    assert rows == {("bicubic", "none"), ("srcnn", "real"), ("hr", "none")}
    seg = ("voi_split_mean", "voi_merge_mean", "arand_mean", "f1_mean")
    image = ("psnr_mean", "ssim_mean", "frc_mean_mean")
    for _, row in table.iterrows():
        assert all(math.isfinite(row[c]) for c in seg), row.to_dict()
        if row["model"] != "hr":  # hr is the reference its image metrics are computed against
            assert all(math.isfinite(row[c]) for c in image), row.to_dict()
