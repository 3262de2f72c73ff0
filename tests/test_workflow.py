"""End to end: the whole DAG on a tiny config, from phantom generation to the report."""

import json
import math

import pandas as pd
import pytest
from helpers import CONFIGS, load_config, run_snakemake

from srseg.config import resolve

TINY = CONFIGS / "tiny.yaml"


def snakemake(workdir, *args):
    return run_snakemake(workdir, "--cores", "2", *args, config=TINY)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(workdir)
    return workdir


@pytest.mark.slow
def test_summary_has_every_row_with_finite_scores(finished_run):
    config = resolve(load_config("tiny"))
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


@pytest.mark.slow
def test_two_runs_of_one_config_give_identical_tables_and_figures(finished_run, tmp_path_factory):
    """Everything but the cost table (wall-clock timings) is byte-identical across two runs on one machine."""
    again = tmp_path_factory.mktemp("tiny_run_again")
    snakemake(again)
    outputs = sorted(p.relative_to(finished_run) for p in (finished_run / "results/report").rglob("*.*"))
    compared = [p for p in outputs if p.suffix in (".csv", ".md", ".tex", ".png", ".pdf") and p.stem != "cost"]
    assert len(compared) > 20
    differ = [str(p) for p in compared if (finished_run / p).read_bytes() != (again / p).read_bytes()]
    assert not differ, f"not reproducible: {differ}"


@pytest.mark.slow
def test_ome_zarr_sr_outputs_flow_through_the_image_metrics(tmp_path):
    """infer.format: ome-zarr writes SR volumes as OME-Zarr folders that the next stages read."""
    run_snakemake(
        tmp_path,
        "results/metrics/image/bicubic/none/gamma/gamma.csv",
        "--cores",
        "2",
        "--config",
        "infer={format: ome-zarr}",
        config=TINY,
    )
    from srseg.volumes import open_volume

    sr = open_volume(tmp_path / "results/infer/bicubic/none/gamma/gamma.zarr")
    pairs = json.loads((tmp_path / "results/pairs/gamma/pairs.json").read_text())
    assert sr.format == "ome-zarr" and sr.voxel_nm == pytest.approx(pairs["hr_voxel_nm"])  # true scale
    scores = pd.read_csv(tmp_path / "results/metrics/image/bicubic/none/gamma/gamma.csv")
    assert scores["psnr"].map(math.isfinite).all()


@pytest.mark.slow
def test_snakemake_overview_super_resolves_and_segments_the_whole_lr_overview(finished_run):
    """`snakemake overview` on the finished run: the summary's best row on gamma's whole LR, as OME-Zarr
    (scattered over 2 inference jobs, segmented in 2 x 2 x 2 blocks)."""
    import time

    import tifffile
    import zarr

    from srseg.volumes import open_volume

    t0 = time.perf_counter()
    overview = ("--config", "overview={blocks_z: 2, block: [2, 128, 128], intermediates: true}")
    snakemake(finished_run, "overview", *overview)
    seconds = time.perf_counter() - t0
    out = finished_run / "results/overview"
    choice = json.loads((out / "choice.json").read_text())
    summary = pd.read_csv(finished_run / "results/report/tables/summary.csv")
    cand = summary[summary["model"] != "hr"]
    best = cand.loc[cand[choice["by"]].idxmin()]
    assert (choice["model"], choice["data"]) == (best["model"], best["data"])
    lr = tifffile.imread(finished_run / "results/ingest/gamma/lr.tif")
    pairs = json.loads((finished_run / "results/pairs/gamma/pairs.json").read_text())
    sr, seg = open_volume(out / "gamma/sr.zarr"), open_volume(out / "gamma/segmentation.zarr")
    s = pairs["scale"]
    assert sr.shape == seg.shape == (lr.shape[0], lr.shape[1] * s, lr.shape[2] * s)  # the whole overview, not the field
    assert sr.voxel_nm == seg.voxel_nm == pytest.approx(pairs["hr_voxel_nm"])
    assert sr.offset_nm == seg.offset_nm
    info = json.loads((out / "gamma/segmentation.json").read_text())
    row = finished_run / f"results/threshold/{choice['model']}/{choice['data']}/gamma.json"
    threshold = json.loads(row.read_text())
    assert info["n_blocks"] == 8 and json.loads((out / "gamma/sr.json").read_text())["blocks_z"] == 2
    assert info["threshold"] == threshold["best_threshold"] and info["fragments"] == threshold["fragments"]
    assert seg.read().max() > 1 and not (out / "gamma/work").exists()
    assert "blocks" in (finished_run / "logs/overview_segment/gamma.log").read_text()  # tqdm progress in the log
    models = pytest.importorskip("ome_zarr_models")
    for name in ("sr", "segmentation", "affinities", "fragments"):  # the last two: overview.intermediates
        models.open_ome_zarr(zarr.open_group(str(out / f"gamma/{name}.zarr"), mode="r"))
    proc = snakemake(finished_run, "overview", "-n", *overview)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    print(f"snakemake overview: {seconds:.1f} s, LR {lr.shape} -> SR/segmentation {sr.shape}")


@pytest.mark.slow
def test_overview_segment_jobs_scatter_the_segmentation_over_one_job_per_block_and_pass(finished_run):
    """overview.segment_jobs: checkpoint overview_work, 2 affinity jobs (overview.blocks_z: one per z-block
    here), then one fragments / edges / relabel / filter job per block (4 here) and the gathers, into the same
    labels as the one-job overview_segment."""
    import collections
    import shutil
    import time

    import numpy as np

    from srseg.volumes import open_volume

    out = finished_run / "results/overview/gamma"
    one = ("--config", "overview={blocks_z: 2, block: [2, 128, 256]}")
    t0 = time.perf_counter()
    snakemake(finished_run, "overview", *one)
    one_seconds = time.perf_counter() - t0
    expected = open_volume(out / "segmentation.zarr").read()
    shutil.rmtree(out / "segmentation.zarr")
    (out / "segmentation.json").unlink()
    jobs = ("--config", "overview={blocks_z: 2, block: [2, 128, 256], segment_jobs: true}")
    t0 = time.perf_counter()
    proc = snakemake(finished_run, "overview", *jobs)
    seconds = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    ran = collections.Counter(line.split()[1].rstrip(":") for line in log.splitlines() if line.startswith("localrule "))
    assert ran["overview_affinities_block"] == 2, ran  # the affinities scattered over z: one GPU job each
    for rule in ("overview_fragments_block", "overview_edges_block", "overview_relabel_block"):
        assert ran[rule] == 4, ran  # one job per block
    assert ran["overview_luts"] == ran["overview_export"] == 1 and "overview_segment" not in log
    assert log.count("checkpoint overview_work:") == 1  # the work arrays and the plan, no GPU
    info = json.loads((out / "segmentation.json").read_text())
    assert info["n_blocks"] == 4 and info["segment_jobs"] and len(info["affinity_jobs"]) == 2
    labels = open_volume(out / "segmentation.zarr").read()
    assert labels.max() > 1 and np.array_equal(labels, expected)
    proc = snakemake(finished_run, "overview", "-n", *jobs)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    print(
        f"snakemake overview: one segmentation job (after the SR) {one_seconds:.1f} s; segment_jobs "
        f"({sum(ran.values()) - ran['overview'] + 1} jobs: 2 affinity jobs, 4 blocks) {seconds:.1f} s"
    )
