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

import pandas as pd
import pytest
import yaml
from helpers import ISBI_DATA, ROOT, copy_workflow, load_config, run_snakemake

from srseg.io import read_json

ISBI = ROOT / "config" / "isbi.yaml"
# the sections the tiny config (tests/configs/tiny_slurm.yaml) sets for the whole run, defaults where it sets none
TINY_SECTIONS = ("training", "infer", "affinity", "segmentation", "metrics", "report", "degradations", "align")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (ISBI_DATA / "raw.tif").is_file(),
        reason=f"ISBI 2012 data not found at {ISBI_DATA}: real-data integration test skipped",
    ),
]


def small_isbi_config() -> dict:
    cfg = yaml.safe_load(ISBI.read_text())
    tiny = load_config("tiny_slurm")
    for i, spec in enumerate(cfg["specimens"].values()):
        sim = spec["simulate"]
        sim["source"] = str((ROOT / sim["source"]).resolve())
        sim["labels"] = str((ROOT / sim["labels"]).resolve())
        sim["sections"], sim["min_gap_sections"] = [5 * i, 5 * i + 4], 1
        sim["crop"] = [0, 256, 0, 256]
    # CPU-minute models and training: the structure of the run, not its numbers
    for key in TINY_SECTIONS:
        cfg.pop(key, None)
        if key in tiny:
            cfg[key] = tiny[key]
    cfg["models"] = {"bicubic": {"arch": "bicubic"}, "srcnn": tiny["models"]["srcnn"]}
    cfg["train_data"] = ["real"]
    return cfg


def test_isbi_workflow_end_to_end(tmp_path):
    copy_workflow(tmp_path)
    cfg = small_isbi_config()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_snakemake(tmp_path, "--cores", "2", snakefile=tmp_path / "Snakefile", env={"OMP_NUM_THREADS": "1"})

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
