"""Tests of the report stage on a small synthetic results/ tree.

The tree mimics what the upstream rules write (DESIGN.md layout): 2 folds
(leave-one-specimen-out over 2 specimens) x 3 trained models x 2 training data
x 4 test sections, plus the bicubic baseline and the HR upper bound. Metric
columns the tree does not know (a registered toy metric) get random values. The
segmentation CSVs hold whole-volume (3D) scores, one per volume and threshold repeated
on its section rows; the image CSVs hold scores against a denoised HR as well.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from srseg.io import InputError, read_json, write_image, write_json, write_labels
from srseg.metrics import IMAGE, METRICS, SEGMENTATION, columns, metric
from srseg.report import (
    FIGURE_FORMATS,
    FIGURE_NAMES,
    TABLE_FORMATS,
    TABLE_NAMES,
    output_paths,
    run_report,
)
from srseg.report.stats import bh_qvalues, describe, paired_wilcoxon

SPECIMENS = ["alpha", "beta"]
FOLDS = {"alpha": ["alpha"], "beta": ["beta"]}  # fold name -> test specimens
TRAINED = ["srcnn", "edsr", "emsr"]
DATA = ["real", "blur_noise"]
THRESHOLDS = [0.3, 0.5, 0.7]
N_SECTIONS = 4
ROWS = [("bicubic", "none")] + [(m, d) for m in TRAINED for d in DATA] + [("hr", "none")]
FAST = {"n_boot": 200, "dpi": 50, "crop_px": 32, "seed": 3}

# Means that decide the winners: edsr/real has the best PSNR, emsr/blur_noise the best
# (lowest) VOI sum among SR rows; hr has an even lower VOI but must never be marked.
PSNR = {
    ("bicubic", "none"): 20.0,
    ("srcnn", "real"): 21.0,
    ("srcnn", "blur_noise"): 20.5,
    ("edsr", "real"): 24.0,
    ("edsr", "blur_noise"): 22.0,
    ("emsr", "real"): 23.0,
    ("emsr", "blur_noise"): 22.5,
}
VOI = {
    ("bicubic", "none"): 2.0,
    ("srcnn", "real"): 1.8,
    ("srcnn", "blur_noise"): 1.9,
    ("edsr", "real"): 1.5,
    ("edsr", "blur_noise"): 1.6,
    ("emsr", "real"): 1.4,
    ("emsr", "blur_noise"): 1.1,
    ("hr", "none"): 0.5,
}


def _tree(root: Path, seed: int = 0) -> dict:
    """Write the synthetic inputs; return run_report's keyword arguments."""
    rng = np.random.default_rng(seed)
    res = root / "results"
    image_csvs, frc_csvs, seg_csvs, infer_jsons = [], [], [], []
    for model, data in ROWS:
        for fold, tests in FOLDS.items():
            for specimen in tests:
                key = dict(model=model, data=data, fold=fold, specimen=specimen)
                sections = np.arange(N_SECTIONS)
                if model != "hr":
                    img = pd.DataFrame(
                        {
                            **key,
                            "section": sections,
                            "psnr": PSNR[(model, data)] + rng.normal(0, 0.5, N_SECTIONS),
                            "ssim": 0.5 + PSNR[(model, data)] / 100 + rng.normal(0, 0.01, N_SECTIONS),
                            "frc_mean": 0.2 + rng.uniform(0, 0.1, N_SECTIONS),
                            "frc_cutoff_nm": 40.0,
                            "psnr_norm": 0.0,
                            "ssim_norm": 0.0,
                            "frc_mean_norm": 0.0,
                        }
                    )
                    for name in [n for n in columns(IMAGE) if n not in img]:
                        img[name] = rng.uniform(0, 1, N_SECTIONS)
                    # against the denoised HR: every row a bit higher, noise no longer the ceiling
                    img["psnr_denoised"] = img["psnr"] + 2.0 + rng.normal(0, 0.2, N_SECTIONS)
                    img["ssim_denoised"] = img["ssim"] + 0.05
                    for name in [n for n in columns(IMAGE) if f"{n}_denoised" not in img]:
                        img[f"{name}_denoised"] = rng.uniform(0, 1, N_SECTIONS)
                    path = res / "metrics/image" / model / data / fold / f"{specimen}.csv"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    img.sample(frac=1, random_state=1).to_csv(path, index=False)  # row order must not matter
                    image_csvs.append(str(path))
                    freq = np.linspace(0, 0.05, 12)
                    frc = pd.DataFrame(
                        [
                            {"section": s, "frequency_per_nm": f, "frc": math.exp(-f * 40 * (1 + s / 10))}
                            for s in sections
                            for f in freq
                        ]
                    )
                    path = res / "metrics/image" / model / data / fold / f"{specimen}_frc.csv"
                    frc.to_csv(path, index=False)
                    frc_csvs.append(str(path))
                    path = res / "infer" / model / data / fold / f"{specimen}.json"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    vps = 2e6 if model == "bicubic" else 5e5
                    path.write_text(
                        json.dumps(
                            {"voxels_per_s": vps, "compute_seconds": 36 * 36 * 4 / vps, "device": "cpu", "seconds": 1.0}
                        )
                    )
                    infer_jsons.append(str(path))
                seg_rows = []
                best_t = 0.3 if model == "edsr" else 0.5
                # one whole-volume score per threshold: per-section VOI plus the z-splits sections hide
                voi3d = {t: VOI[(model, data)] + 1.0 + abs(t - best_t) + rng.normal(0, 0.02) for t in THRESHOLDS}
                for s in sections:
                    for t in THRESHOLDS:
                        voi = VOI[(model, data)] + abs(t - best_t) + rng.normal(0, 0.05)
                        f1 = max(0.0, 1 - voi / 3 + rng.normal(0, 0.02))
                        seg_rows.append(
                            {
                                **key,
                                "section": s,
                                "threshold": t,
                                "voi_split": voi * 0.4,
                                "voi_merge": voi * 0.6,
                                "voi_sum": voi,
                                "arand": voi / 5,
                                "arand_precision": 0.9,
                                "arand_recall": 0.8,
                                "f1": f1,
                                "precision": f1,
                                "recall": f1,
                                "n_true": 30,
                                "n_pred": 28,
                                "voi_split_3d": voi3d[t] * 0.7,
                                "voi_merge_3d": voi3d[t] * 0.3,
                                "voi_sum_3d": voi3d[t],
                                "arand_3d": voi3d[t] / 5,
                                "f1_3d": max(0.0, 1 - voi3d[t] / 4),
                                "reference": "hr_segmentation",
                                "is_best": t == best_t,
                                "is_hr_best": t == 0.5,  # the HR-chosen alternative
                                "is_fixed": t == 0.5,
                            }
                        )
                path = res / "metrics/seg" / model / data / fold / f"{specimen}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                seg_frame = pd.DataFrame(seg_rows)
                for name in [n for n in columns(SEGMENTATION) if n not in seg_frame]:
                    seg_frame[name] = rng.uniform(0, 1, len(seg_frame))
                for name in [f"{n}_3d" for n in columns(SEGMENTATION) if f"{n}_3d" not in seg_frame]:
                    seg_frame[name] = seg_frame["threshold"].map({t: rng.uniform(0, 1) for t in THRESHOLDS})
                seg_frame.to_csv(path, index=False)
                seg_csvs.append(str(path))
    train_jsons, train_logs = [], []
    for model in TRAINED:
        for data in DATA:
            for fold in FOLDS:
                d = res / "train" / model / data / fold
                d.mkdir(parents=True, exist_ok=True)
                (d / "train.json").write_text(
                    json.dumps(
                        {
                            "parameters": 1000 * (TRAINED.index(model) + 1),
                            "steps": 40,
                            "arch": model,
                            "train_seconds_total": 60.0 + 30 * (fold == "beta"),
                            "wall_seconds_this_run": 1.0,
                            "steps_per_s": 5.0,
                            "device": "cpu",
                        }
                    )
                )
                steps = np.arange(1, 41)
                val = steps % 10 == 0  # train.py's log.csv: validation columns empty between validations
                log = pd.DataFrame(
                    {
                        "step": steps,
                        "loss": 1.0 / steps + 0.01,
                        "l1": 1.0 / steps,
                        "lr": 1e-3,
                        "val_l1": np.where(val, 1.0 / steps + 0.02, np.nan),
                        "val_psnr": np.where(val, 20 + np.log(steps), np.nan),
                        "seconds": steps * 0.1,
                    }
                )
                log.to_csv(d / "log.csv", index=False)
                train_jsons.append(str(d / "train.json"))
                train_logs.append(str(d / "log.csv"))
    align_pngs, align_jsons = [], []
    import matplotlib.pyplot as plt

    for specimen in SPECIMENS:
        d = res / "align" / specimen
        d.mkdir(parents=True, exist_ok=True)
        plt.imsave(d / "qc.png", rng.uniform(size=(20, 30)), cmap="gray")
        (d / "qc.json").write_text(json.dumps({"n_matches": 50, "n_inliers": 40, "residual_px": 0.7}))
        align_pngs.append(str(d / "qc.png"))
        align_jsons.append(str(d / "qc.json"))
    # Example specimen images: LR 12x12, HR/SR 36x36 (scale 3), 4 sections.
    fold = specimen = "alpha"
    hr = np.clip(
        0.5
        + 0.3 * np.sin(np.arange(36)[None, None] / 3.0) * np.cos(np.arange(36)[None, :, None] / 4.0)
        + rng.normal(0, 0.02, (N_SECTIONS, 36, 36)),
        0,
        1,
    ).astype(np.float32)
    lr = hr.reshape(N_SECTIONS, 12, 3, 12, 3).mean(axis=(2, 4))
    vox = [50.0, 10.0, 10.0]
    pairs = res / "pairs" / specimen
    write_image(pairs / "hr.tif", hr, vox)
    write_image(pairs / "lr.tif", lr, [50.0, 30.0, 30.0])
    labels = (np.arange(36)[None, :, None] // 9) * 4 + (np.arange(36)[None, None, :] // 9) + 1
    labels = np.broadcast_to(labels, hr.shape).astype(np.uint16)
    write_labels(res / "reference" / fold / f"{specimen}.tif", labels, vox)
    sr, seg = [], []
    for model, data in ROWS:
        if model != "hr":
            path = res / "infer" / model / data / fold / f"{specimen}.tif"
            write_image(path, np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1), vox)
            sr.append(str(path))
        for t in THRESHOLDS:
            path = res / "segment" / model / data / fold / specimen / f"t{t}.tif"
            write_labels(path, labels, vox)
            seg.append(str(path))
    example = {
        "fold": fold,
        "specimen": specimen,
        "lr": str(pairs / "lr.tif"),
        "hr": str(pairs / "hr.tif"),
        "reference": str(res / "reference" / fold / f"{specimen}.tif"),
        "sr": sr,
        "seg": seg,
    }
    return dict(
        image_csvs=image_csvs,
        seg_csvs=seg_csvs,
        frc_csvs=frc_csvs,
        train_jsons=train_jsons,
        train_logs=train_logs,
        infer_jsons=infer_jsons,
        align_pngs=align_pngs,
        align_jsons=align_jsons,
        example=example,
        rows=ROWS,
        tables_dir=str(res / "report/tables"),
        figures_dir=str(res / "report/figures"),
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    kwargs = _tree(root)
    written = run_report(**kwargs, cfg=FAST, log=str(root / "report.log"))
    declared = output_paths(kwargs["tables_dir"], kwargs["figures_dir"])  # what rules/report.smk declares
    assert {k: sorted(v) for k, v in written.items()} == {k: sorted(v) for k, v in declared.items()}
    return root, kwargs


def _concat(paths) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in paths], ignore_index=True)


def _best_sections(kwargs) -> pd.DataFrame:
    seg = _concat(kwargs["seg_csvs"])
    return seg[seg["is_best"]]


def test_every_table_in_three_formats_with_one_row_per_model_and_data(report):
    root, kwargs = report
    tables = Path(kwargs["tables_dir"])
    for name in TABLE_NAMES:
        for ext in TABLE_FORMATS:
            assert (tables / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
    summary = pd.read_csv(tables / "summary.csv", keep_default_na=False, na_values=[""])
    assert list(zip(summary["model"], summary["data"])) == ROWS  # config order, hr last
    assert (summary["n_sections"] == N_SECTIONS * len(FOLDS)).all()
    md = (tables / "summary.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == len(ROWS) + 1  # header + rows
    tex = (tables / "summary.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "blur\\_noise" in tex  # text cells are LaTeX-escaped
    for name in ["thresholds_f1", "thresholds_voi"]:
        t = pd.read_csv(tables / f"{name}.csv", keep_default_na=False, na_values=[""])
        assert list(zip(t["model"], t["data"])) == ROWS
    per = pd.read_csv(tables / "per_specimen.csv", keep_default_na=False, na_values=[""])
    assert len(per) == len(ROWS) * len(SPECIMENS)


def test_summary_numbers_equal_independent_computation(report):
    _, kwargs = report
    summary = pd.read_csv(Path(kwargs["tables_dir"]) / "summary.csv", keep_default_na=False, na_values=[""])
    image = _concat(kwargs["image_csvs"])
    best = _best_sections(kwargs)
    seg = _concat(kwargs["seg_csvs"])
    row = summary[(summary["model"] == "emsr") & (summary["data"] == "real")].iloc[0]
    x = (
        image[(image["model"] == "emsr") & (image["data"] == "real")]
        .sort_values(["fold", "specimen", "section"])["psnr"]
        .to_numpy()
    )
    assert row["psnr_mean"] == pytest.approx(np.mean(x))
    assert row["psnr_std"] == pytest.approx(np.std(x, ddof=1))
    ci = stats.bootstrap(
        (x,), np.mean, n_resamples=FAST["n_boot"], method="percentile", rng=np.random.default_rng(FAST["seed"])
    ).confidence_interval
    assert (row["psnr_ci_low"], row["psnr_ci_high"]) == pytest.approx((ci.low, ci.high))
    assert row["psnr_ci_low"] < row["psnr_mean"] < row["psnr_ci_high"]
    v = best[(best["model"] == "emsr") & (best["data"] == "real")]["voi_sum"].to_numpy()
    assert row["voi_sum_mean"] == pytest.approx(np.mean(v)) and row["voi_sum_std"] == pytest.approx(np.std(v, ddof=1))
    f = seg[(seg["model"] == "emsr") & (seg["data"] == "real") & seg["is_fixed"]]["f1"].to_numpy()
    assert row["f1_fixed_mean"] == pytest.approx(np.mean(f))
    # hr: segmentation only, no image metrics; costs from train.json / infer json
    hr = summary[summary["model"] == "hr"].iloc[0]
    assert math.isnan(hr["psnr_mean"]) and hr["voi_sum_mean"] == pytest.approx(
        best[best["model"] == "hr"]["voi_sum"].mean()
    )
    edsr = summary[(summary["model"] == "edsr") & (summary["data"] == "real")].iloc[0]
    assert edsr["n_params"] == 2000


def test_cost_table_holds_every_timing_and_summary_none(report):
    _, kwargs = report
    tables = Path(kwargs["tables_dir"])
    summary = pd.read_csv(tables / "summary.csv")
    timing = ("minutes", "seconds", "_s_", "per_s", "mvox", "gvox", "device")
    assert not [c for c in summary.columns if any(t in c for t in timing)]
    assert "Train" not in (tables / "summary.md").read_text().splitlines()[2]
    cost = pd.read_csv(tables / "cost.csv", keep_default_na=False, na_values=[""]).set_index(["model", "data"])
    assert list(cost.index) == ROWS[:-1]  # hr has neither training nor inference
    edsr = cost.loc[("edsr", "real")]
    assert edsr["n_params"] == 2000 and edsr["steps"] == 40 and edsr["train_device"] == "cpu"
    assert edsr["train_minutes_mean"] == pytest.approx(75 / 60)  # folds: 60 s and 90 s
    assert edsr["steps_per_s_mean"] == pytest.approx(5.0)
    assert edsr["infer_mvox_per_s_mean"] == pytest.approx(0.5)
    assert edsr["infer_s_per_gvox"] == pytest.approx(2000)
    assert edsr["infer_compute_s_total"] == pytest.approx(2 * 36 * 36 * 4 / 5e5)
    bicubic = cost.loc[("bicubic", "none")]
    assert math.isnan(bicubic["train_minutes_mean"]) and bicubic["infer_mvox_per_s_mean"] == pytest.approx(2.0)
    md = (tables / "cost.md").read_text()
    assert "Train (min)" in md and "Infer (s/Gvox)" in md


def test_best_marker_on_the_right_row(report):
    _, kwargs = report
    tables = Path(kwargs["tables_dir"])
    summary = pd.read_csv(tables / "summary.csv", keep_default_na=False, na_values=[""])
    best = {
        r: set(b.split(";")) if isinstance(b, str) else set()
        for r, b in zip(zip(summary["model"], summary["data"]), summary["best"])
    }
    assert "psnr" in best[("edsr", "real")]  # higher is better
    assert "voi_sum" in best[("emsr", "blur_noise")]  # lower is better, hr (lower still) excluded
    assert not best[("hr", "none")]
    assert sum("psnr" in b for b in best.values()) == 1
    md = (tables / "summary.md").read_text().splitlines()
    edsr_line = next(line for line in md if line.startswith("| edsr ") and "| real " in line)
    psnr_mean = summary.set_index(["model", "data"]).loc[("edsr", "real"), "psnr_mean"]
    assert f"**{psnr_mean:.2f} ±" in edsr_line
    hr_line = next(line for line in md if line.startswith("| hr "))
    assert "**" not in hr_line
    tex = (tables / "summary.tex").read_text()
    emsr_bn = next(line for line in tex.splitlines() if line.startswith("emsr & blur\\_noise"))
    assert "\\bfseries" in emsr_bn
    # threshold table: lower VOI is better, best row per threshold among SR rows
    thr = pd.read_csv(tables / "thresholds_voi.csv", keep_default_na=False, na_values=[""])
    winner = thr[thr["model"] != "hr"].sort_values("voi_sum_3d_t0.5_mean").iloc[0]  # the headline unit: 3D
    assert "t0.5" in winner["best"].split(";")
    # training strategy: best data per (metric, model, specimen)
    strat = pd.read_csv(tables / "training_strategy.csv", keep_default_na=False, na_values=[""])
    sub = strat[(strat["metric"] == "psnr") & (strat["model"] == "edsr") & (strat["specimen"] == "all")]
    assert sub.loc[sub["best"], "data"].tolist() == ["real"]


def test_wilcoxon_p_equals_scipy_on_paired_sections(report):
    _, kwargs = report
    tables = Path(kwargs["tables_dir"])
    image = _concat(kwargs["image_csvs"])
    keys = ["fold", "specimen", "section"]
    a = image[(image["model"] == "srcnn") & (image["data"] == "blur_noise")][keys + ["psnr"]]
    b = image[image["model"] == "bicubic"][keys + ["psnr"]]
    paired = a.merge(b, on=keys, suffixes=("", "_b"))
    expected = stats.wilcoxon(paired["psnr"], paired["psnr_b"]).pvalue
    summary = pd.read_csv(tables / "summary.csv", keep_default_na=False, na_values=[""])
    got = summary[(summary["model"] == "srcnn") & (summary["data"] == "blur_noise")]["psnr_p"].iloc[0]
    assert got == pytest.approx(expected)
    tests = pd.read_csv(tables / "paired_tests.csv", keep_default_na=False, na_values=[""])
    t = tests[(tests["model"] == "srcnn") & (tests["data"] == "blur_noise") & (tests["metric"] == "psnr")].iloc[0]
    assert t["p_value"] == pytest.approx(expected) and t["n_pairs"] == len(paired)
    assert t["median_diff"] == pytest.approx(np.median(paired["psnr"] - paired["psnr_b"]))
    # hr has no image metrics: no pairs, p = NaN; its VOI test exists
    hr = tests[tests["model"] == "hr"].set_index("metric")
    assert math.isnan(hr.loc["psnr", "p_value"]) and hr.loc["psnr", "n_pairs"] == 0
    assert hr.loc["voi_sum", "p_value"] < 0.01
    assert not ((tests["model"] == "bicubic").any())


def test_paired_wilcoxon_degenerate_cases_give_nan():
    assert math.isnan(paired_wilcoxon([1, 2, 3], [1, 2, 3])["p_value"])  # all differences zero
    assert math.isnan(paired_wilcoxon([1.0], [0.0])["p_value"])  # one pair
    r = paired_wilcoxon([1, 2, np.nan, 4, 7], [0, 1, 5, 2, 3])  # the NaN pair is dropped
    assert r["n_pairs"] == 4
    assert r["p_value"] == pytest.approx(stats.wilcoxon([1, 2, 4, 7], [0, 1, 2, 3]).pvalue)
    q = bh_qvalues([0.01, np.nan, 0.04])
    assert math.isnan(q[1]) and q[0] == pytest.approx(0.02) and q[2] == pytest.approx(0.04)
    d = describe([3.0])
    assert d["mean"] == 3.0 and math.isnan(d["std"]) and math.isnan(d["ci_low"])
    d = describe([2.0, 2.0, 2.0])
    assert (d["ci_low"], d["ci_high"]) == (2.0, 2.0)


def test_figures_written_as_png_and_pdf(report):
    _, kwargs = report
    figs = Path(kwargs["figures_dir"])
    for name in FIGURE_NAMES:
        for ext in FIGURE_FORMATS:
            data = (figs / f"{name}.{ext}").read_bytes()
            assert data[:4] == (b"\x89PNG" if ext == "png" else b"%PDF"), f"{name}.{ext}"
            assert len(data) > 2000, f"{name}.{ext} looks empty"


def _retime(kwargs, factor: float) -> None:
    """What a second run of one config changes: every wall-clock number."""
    for path in kwargs["train_jsons"] + kwargs["infer_jsons"]:
        info = read_json(path)
        for key in (
            "train_seconds_total",
            "wall_seconds_this_run",
            "steps_per_s",
            "voxels_per_s",
            "compute_seconds",
            "seconds",
        ):
            if key in info:
                info[key] *= factor
        write_json(path, info)
    for path in kwargs["train_logs"]:
        log = pd.read_csv(path)
        log["seconds"] *= factor
        log.to_csv(path, index=False)


def _moved(kwargs, old: Path, new: Path):
    """run_report's arguments with every path under `old` moved under `new`."""

    def move(v):
        if isinstance(v, str) and v.startswith(str(old)):
            return str(new / Path(v).relative_to(old))
        if isinstance(v, list):
            return [move(x) for x in v]
        return {k: move(x) for k, x in v.items()} if isinstance(v, dict) else v

    return move(kwargs)


def test_two_runs_differing_only_in_run_times_give_identical_bytes(report, tmp_path):
    """Every table but cost, and every figure, is byte-identical across two runs of one config."""
    root, kwargs = report
    shutil.copytree(root / "results", tmp_path / "results", ignore=shutil.ignore_patterns("report"))
    again = _moved(kwargs, root, tmp_path)
    _retime(again, 1.7)
    run_report(**again, cfg=FAST)
    first = output_paths(kwargs["tables_dir"], kwargs["figures_dir"])
    second = output_paths(again["tables_dir"], again["figures_dir"])
    for a, b in zip(first["tables"] + first["figures"], second["tables"] + second["figures"]):
        same = Path(a).read_bytes() == Path(b).read_bytes()
        assert same != Path(a).name.startswith("cost."), Path(a).name  # cost differs, nothing else


def test_bad_input_fails_early_without_outputs(tmp_path):
    kwargs = _tree(tmp_path)
    broken = Path(kwargs["seg_csvs"][3])
    pd.read_csv(broken).drop(columns=["voi_sum"]).to_csv(broken, index=False)
    with pytest.raises(InputError, match=r"voi_sum.*rerun the seg_metrics rule"):
        run_report(**kwargs, cfg=FAST)
    assert not Path(kwargs["tables_dir"]).exists() and not Path(kwargs["figures_dir"]).exists()
    pd.read_csv(kwargs["seg_csvs"][3]).assign(voi_sum=1.0).drop(columns=["voi_sum_3d"]).to_csv(broken, index=False)
    with pytest.raises(InputError, match=r"lacks 'voi_sum_3d'; rerun the seg_metrics rule"):  # a CSV of before 3D
        run_report(**kwargs, cfg=FAST)
    with pytest.raises(InputError, match="report.n_bootstrap"):
        run_report(**kwargs, cfg={"n_bootstrap": 10})
    with pytest.raises(InputError, match="report.confidence"):
        run_report(**kwargs, cfg={"confidence": 95})


@pytest.mark.parametrize(
    "files, key, rule",
    [
        ("train_jsons", "train_seconds_total", "train"),
        ("train_jsons", "parameters", "train"),
        ("infer_jsons", "voxels_per_s", "infer"),
        ("infer_jsons", "device", "infer"),
        ("align_jsons", "residual_px", "align"),
    ],
)
def test_producer_json_missing_a_declared_key_names_file_and_key(tmp_path, files, key, rule):
    kwargs = _tree(tmp_path)
    path = kwargs[files][1]
    info = read_json(path)
    del info[key]
    write_json(path, info)
    with pytest.raises(InputError, match=rf"{re.escape(str(path))}: .* lacks '{key}'; rerun the {rule} rule"):
        run_report(**kwargs, cfg=FAST)
    assert not Path(kwargs["tables_dir"]).exists()


def test_training_log_missing_a_declared_column_names_file_and_column(tmp_path):
    kwargs = _tree(tmp_path)
    path = kwargs["train_logs"][0]
    pd.read_csv(path).drop(columns=["val_l1"]).to_csv(path, index=False)
    with pytest.raises(InputError, match=rf"{re.escape(str(path))}: training log lacks 'val_l1'; rerun the train rule"):
        run_report(**kwargs, cfg=FAST)


def test_null_values_and_optional_keys_read_as_nan(tmp_path):
    from srseg.report import collect

    kwargs = _tree(tmp_path)
    write_json(kwargs["align_jsons"][0], {**read_json(kwargs["align_jsons"][0]), "error_px": 0.25})
    qc = collect.load_align_qc(kwargs["align_pngs"], kwargs["align_jsons"])
    assert qc[0]["error_px"] == 0.25 and math.isnan(qc[1]["error_px"])  # error_px: optional
    write_json(kwargs["infer_jsons"][0], {**read_json(kwargs["infer_jsons"][0]), "voxels_per_s": None})
    assert math.isnan(collect.load_infer_info(kwargs["infer_jsons"])["voxels_per_s"].iloc[0])


@pytest.fixture
def toy_metric(monkeypatch):
    """A toy image metric, registered for one test only (the registry is restored afterwards)."""
    monkeypatch.setattr(METRICS, "_items", dict(METRICS._items))

    @metric("toy", IMAGE, "Toy", unit="au", decimals=1, higher_is_better=False, tested=True)
    def _toy(pair) -> float:
        return float(np.abs(pair.pred - pair.ref).mean())

    return "toy"


def test_a_registered_metric_becomes_a_column_of_every_metric_table(tmp_path, toy_metric):
    kwargs = _tree(tmp_path)  # its image CSVs get a column per registered metric
    run_report(**kwargs, cfg=FAST)
    tables = Path(kwargs["tables_dir"])
    image = _concat(kwargs["image_csvs"])
    summary = pd.read_csv(tables / "summary.csv", keep_default_na=False, na_values=[""])
    row = summary[(summary["model"] == "edsr") & (summary["data"] == "real")].iloc[0]
    x = image[(image["model"] == "edsr") & (image["data"] == "real")]["toy"]
    assert row["toy_mean"] == pytest.approx(x.mean()) and {"toy_ci_low", "toy_ci_high", "toy_p"} <= set(summary)
    md = (tables / "summary.md").read_text()
    # the tree scores against denoised HR too: the toy metric gets its twin, both labelled
    assert "Toy vs acquired (au)" in md and "p Toy vs acquired" in md and "Toy vs denoised (au)" in md
    per = pd.read_csv(tables / "per_specimen.csv")
    assert "toy_mean" in per and "Toy vs acquired (au)" in (tables / "per_specimen.md").read_text()
    tests = pd.read_csv(tables / "paired_tests.csv")
    assert (tests["metric"] == "toy").sum() == (tests["metric"] == "toy_denoised").sum() == len(ROWS) - 1
    # metrics CSVs written before the metric existed: the report says which rule to rerun
    path = Path(kwargs["image_csvs"][0])
    pd.read_csv(path).drop(columns=["toy"]).to_csv(path, index=False)
    with pytest.raises(
        InputError, match=rf"{re.escape(str(path))}: image-metrics CSV lacks 'toy'; rerun the image_metrics rule"
    ):
        run_report(**kwargs, cfg=FAST)


def test_3d_scores_are_the_headline_counted_once_per_test_volume(report):
    _, kwargs = report
    tables = Path(kwargs["tables_dir"])
    summary = pd.read_csv(tables / "summary.csv", keep_default_na=False, na_values=[""])
    best = _best_sections(kwargs)
    sub = best[(best["model"] == "emsr") & (best["data"] == "real")]
    per_volume = sub.groupby(["fold", "specimen"])["voi_sum_3d"].first().to_numpy()
    assert len(per_volume) == 2 and (sub.groupby(["fold", "specimen"])["voi_sum_3d"].nunique() == 1).all()
    row = summary[(summary["model"] == "emsr") & (summary["data"] == "real")].iloc[0]
    assert row["n_volumes"] == 2 and row["n_sections"] == 2 * N_SECTIONS
    assert row["voi_sum_3d_mean"] == pytest.approx(per_volume.mean())
    assert row["voi_sum_3d_std"] == pytest.approx(np.std(per_volume, ddof=1))  # over volumes, not 8 sections
    assert row["voi_sum_mean"] == pytest.approx(sub["voi_sum"].mean())  # the per-section set stays
    winner = summary.set_index(["model", "data"]).loc[("emsr", "blur_noise"), "best"].split(";")
    assert "voi_sum_3d" in winner
    header = (tables / "summary.md").read_text().splitlines()[2]
    assert header.index("VOI sum 3D (bits)") < header.index("VOI sum per section (bits)")
    assert "F1 3D (val. thr.)" in header and "F1 per section (t=0.5)" in header and "p VOI sum 3D" in header
    assert "3D score each test volume at once" in (tables / "summary.md").read_text()
    # paired tests: 3D scores pair test volumes (fold, specimen), per-section scores pair sections
    tests = pd.read_csv(tables / "paired_tests.csv", keep_default_na=False, na_values=[""])
    t = tests[(tests["model"] == "emsr") & (tests["data"] == "real")].set_index("metric")
    assert t.loc["voi_sum_3d", "n_pairs"] == 2 and t.loc["voi_sum", "n_pairs"] == 2 * N_SECTIONS
    # threshold table in the headline unit, one value per volume
    thr = pd.read_csv(tables / "thresholds_voi.csv", keep_default_na=False, na_values=[""])
    seg = _concat(kwargs["seg_csvs"])
    at = seg[(seg["model"] == "emsr") & (seg["data"] == "real") & np.isclose(seg["threshold"], 0.7)]
    expected = at.groupby(["fold", "specimen"])["voi_sum_3d"].first().mean()
    got = thr[(thr["model"] == "emsr") & (thr["data"] == "real")]["voi_sum_3d_t0.7_mean"].iloc[0]
    assert got == pytest.approx(expected)
    assert "test volumes" in (tables / "thresholds_voi.md").read_text()


def test_scores_against_denoised_hr_sit_beside_those_against_acquired_hr(report):
    _, kwargs = report
    tables = Path(kwargs["tables_dir"])
    summary = pd.read_csv(tables / "summary.csv", keep_default_na=False, na_values=[""])
    image = _concat(kwargs["image_csvs"])
    row = summary[(summary["model"] == "srcnn") & (summary["data"] == "real")].iloc[0]
    sub = image[(image["model"] == "srcnn") & (image["data"] == "real")]
    assert row["psnr_denoised_mean"] == pytest.approx(sub["psnr_denoised"].mean())
    assert row["psnr_mean"] == pytest.approx(sub["psnr"].mean())
    header = (tables / "summary.md").read_text().splitlines()[2]
    assert header.index("PSNR vs acquired (dB)") < header.index("PSNR vs denoised (dB)")
    strat = pd.read_csv(tables / "training_strategy.csv")
    assert {"psnr", "psnr_denoised", "voi_sum_3d", "voi_sum"} <= set(strat["metric"])
    tests = pd.read_csv(tables / "paired_tests.csv")
    assert (tests["metric"] == "psnr_denoised").sum() == len(ROWS) - 1


def test_without_3d_or_denoised_scores_the_tables_keep_their_plain_columns(tmp_path):
    """A 2D benchmark (3D columns all NaN) scored against acquired HR only: no variant columns or labels."""
    from srseg.report import collect, tables

    kwargs = _tree(tmp_path)
    for path in kwargs["seg_csvs"]:
        frame = pd.read_csv(path)
        frame[[c for c in frame.columns if c.endswith("_3d")]] = np.nan
        frame.to_csv(path, index=False)
    for path in kwargs["image_csvs"]:
        frame = pd.read_csv(path)
        frame.drop(columns=[c for c in frame.columns if c.endswith("_denoised")]).to_csv(path, index=False)
    seg = collect.load_seg_metrics(kwargs["seg_csvs"])
    sections = tables.section_table(collect.load_image_metrics(kwargs["image_csvs"]), seg)
    assert not [c for c in sections.columns if c.endswith(("_3d", "_denoised"))]
    tests = tables.paired_tests(sections, ROWS)
    summary = tables.summary_table(sections, collect.load_train_info(kwargs["train_jsons"]), tests, ROWS, 50)
    header = tables.to_markdown(summary).splitlines()[2]
    assert "VOI sum (bits)" in header and "PSNR (dB)" in header and "3D" not in header and "denoised" not in header
    assert "voi_sum_t0.5_mean" in tables.threshold_table(seg, "voi_sum", "thresholds_voi", ROWS).numeric
