"""End to end: the whole DAG on a tiny config, from phantom generation to the report."""

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake(workdir, *args):
    proc = subprocess.run(
        [
            SNAKEMAKE,
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(TINY),
            "--cores",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in Path(workdir, "logs").rglob("*.log"))
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stderr[-4000:]}\n{logs[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(workdir)
    return workdir


@pytest.mark.slow
def test_summary_has_every_row_with_finite_scores(finished_run):
    config = yaml.safe_load(TINY.read_text())
    summary = pd.read_csv(finished_run / "results/report/tables/summary.csv")
    rows = set(zip(summary["model"], summary["data"]))
    expected = {(m, d) for m in config["models"] if m != "bicubic" for d in config["train_data"]}
    expected |= {("bicubic", "none"), ("hr", "none")}
    assert rows == expected
    seg_cols = ["voi_split_mean", "voi_merge_mean", "voi_sum_mean", "arand_mean", "f1_mean"]
    for col in seg_cols:
        assert summary[col].map(math.isfinite).all(), col
    image_rows = summary[summary["model"] != "hr"]
    for col in ["psnr_mean", "ssim_mean", "frc_mean_mean"]:
        assert image_rows[col].map(math.isfinite).all(), col
    for ext in ("csv", "md", "tex"):
        assert (finished_run / f"results/report/tables/summary.{ext}").stat().st_size > 0
    for fig in (finished_run / "results/report/figures").glob("*.png"):
        assert fig.stat().st_size > 1000


@pytest.mark.slow
def test_finished_run_plans_nothing_and_html_report_builds(finished_run):
    proc = snakemake(finished_run, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    snakemake(finished_run, "--report", "results/report/report.html")
    assert (finished_run / "results/report/report.html").stat().st_size > 10_000
