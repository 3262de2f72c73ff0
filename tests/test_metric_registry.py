"""The metric registry: registration rules, the metrics CSVs it defines, plug-in discovery, report columns.

(The report-side test, a toy metric becoming a summary column, is in test_report.py.)
"""

import sys

import numpy as np
import pandas as pd
import pytest

import srseg.metrics as metrics
from srseg.io import InputError, write_image, write_json, write_labels
from srseg.metrics import (
    IMAGE,
    METRICS,
    SEGMENTATION,
    columns,
    image_scores,
    metric,
    segmentation_scores,
)
from srseg.report.columns import (
    column,
    headline,
    paired_test_columns,
    strategy_columns,
    summary_columns,
    variants_in,
)

IMAGE_COLUMNS = [
    "psnr",
    "ssim",
    "frc_mean",
    "frc_cutoff_nm",
    "psnr_section_range",
    "ssim_section_range",
    "psnr_norm",
    "ssim_norm",
    "frc_mean_norm",
]
SEG_COLUMNS = [
    "voi_split",
    "voi_merge",
    "voi_sum",
    "arand",
    "arand_precision",
    "arand_recall",
    "f1",
    "precision",
    "recall",
    "n_true",
    "n_pred",
]


@pytest.fixture
def registry(monkeypatch):
    """The metric registry, restored after the test (toy metrics must not leak into other tests)."""
    monkeypatch.setattr(METRICS, "_items", dict(METRICS._items))
    return METRICS


def test_built_in_metrics_and_their_order_are_the_csv_columns():
    assert columns(IMAGE) == IMAGE_COLUMNS
    assert columns(SEGMENTATION) == SEG_COLUMNS
    psnr = METRICS["psnr"]
    assert (psnr.label, psnr.unit, psnr.higher_is_better, psnr.decimals) == ("PSNR", "dB", True, 2)
    assert METRICS["voi_split"].higher_is_better is False and METRICS["n_true"].higher_is_better is None


def test_a_metric_name_is_registered_once(registry):
    with pytest.raises(ValueError, match="metric 'psnr' is registered twice"):
        metric("psnr", IMAGE, "PSNR again")(lambda pair: 0.0)
    with pytest.raises(ValueError, match="registered twice"):  # one namespace for both kinds: one section table
        metric("voi_sum", IMAGE, "VOI sum of images")(lambda pair: 0.0)
    metric("toy", IMAGE, "Toy")(lambda pair: 0.0)
    with pytest.raises(ValueError, match="metric 'toy' is registered twice"):
        metric("toy", SEGMENTATION, "Toy")(lambda pair: 0.0)


def test_bad_registrations_and_unknown_names_fail(registry):
    with pytest.raises(ValueError, match="kind 'volume'"):
        metric("toy", "volume", "Toy")(lambda pair: 0.0)
    with pytest.raises(ValueError, match="threshold"):
        metric("toy", IMAGE, "Toy", at_fixed_threshold=True)(lambda pair: 0.0)
    with pytest.raises(InputError, match="unknown metric 'psnrr'; did you mean psnr"):
        column("psnrr")


def test_report_columns_follow_the_registry_roles():
    assert [c.name for c in summary_columns()] == [
        "psnr",
        "ssim",
        "frc_mean",
        "voi_split",
        "voi_merge",
        "voi_sum",
        "arand",
        "f1",
        "f1_fixed",
    ]
    assert [c.name for c in paired_test_columns()] == ["psnr", "ssim", "voi_sum", "f1"]
    assert [c.name for c in strategy_columns()] == ["psnr", "ssim", "frc_mean", "voi_sum", "f1"]
    assert column("f1").label() == "F1 (val. thr.)" and column("f1_fixed").label(fixed_threshold=0.5) == "F1 (t=0.5)"
    assert column("voi_sum").label() == "VOI sum (bits)" and column("f1").label(plain=True) == "F1"


def test_variant_columns_3d_headline_first_and_denoised_beside_acquired():
    """The same registered metrics as a second column set: no registration, labelled in the report."""
    both = ("3d", "denoised")
    assert [c.name for c in summary_columns(both)] == [
        "psnr",
        "ssim",
        "frc_mean",
        "psnr_denoised",
        "ssim_denoised",
        "frc_mean_denoised",
        "voi_split_3d",
        "voi_merge_3d",
        "voi_sum_3d",
        "arand_3d",
        "f1_3d",
        "f1_3d_fixed",
        "voi_split",
        "voi_merge",
        "voi_sum",
        "arand",
        "f1",
        "f1_fixed",
    ]
    assert [c.name for c in paired_test_columns(("3d",))] == ["psnr", "ssim", "voi_sum_3d", "f1_3d", "voi_sum", "f1"]
    assert [c.name for c in strategy_columns(("denoised",))][:6] == [
        "psnr",
        "ssim",
        "frc_mean",
        "psnr_denoised",
        "ssim_denoised",
        "frc_mean_denoised",
    ]
    labels = {c.name: c.label(fixed_threshold=0.5) for c in summary_columns(both)}
    assert labels["voi_sum_3d"] == "VOI sum 3D (bits)" and labels["voi_sum"] == "VOI sum per section (bits)"
    assert labels["f1_3d"] == "F1 3D (val. thr.)" and labels["f1_fixed"] == "F1 per section (t=0.5)"
    assert labels["psnr_denoised"] == "PSNR vs denoised (dB)" and labels["psnr"] == "PSNR vs acquired (dB)"
    assert column("f1_3d_fixed").fixed and column("f1_3d_fixed").per_volume and column("f1_3d_fixed").base == "f1_3d"
    assert column("voi_sum", ("3d",)).label() == "VOI sum per section (bits)"
    assert column("psnr", ("3d",)).label() == "PSNR (dB)"  # the 3D variant qualifies segmentation columns only
    assert headline("voi_sum", ("3d",)).name == "voi_sum_3d" and headline("voi_sum").name == "voi_sum"
    assert headline("psnr", both).name == "psnr"
    with pytest.raises(InputError, match="unknown metric"):
        column("psnr_3d")  # no 3D variant of an image metric
    frame = pd.DataFrame({"voi_sum_3d": [np.nan, np.nan], "psnr_denoised": [1.0, np.nan], "psnr": [1.0, 2.0]})
    assert variants_in(frame) == ("denoised",)  # all-NaN 3D columns: 3D does not apply
    assert variants_in(pd.DataFrame({"voi_sum_3d_mean": [0.5]})) == ("3d",)  # summary numbers count too


def test_image_metrics_csv_gets_a_column_per_registered_metric(tmp_path, registry):
    @metric("mean_abs_error", IMAGE, "MAE", higher_is_better=False)
    def _mae(pair) -> float:
        return float(np.abs(pair.pred - pair.ref).mean())

    rng = np.random.default_rng(0)
    hr = rng.uniform(size=(2, 32, 32)).astype(np.float32)
    sr = np.clip(hr + rng.normal(0, 0.1, hr.shape), 0, 1).astype(np.float32)
    write_image(tmp_path / "sr.tif", sr, (50.0, 10.0, 10.0), "float32")
    write_image(tmp_path / "hr.tif", hr, (50.0, 10.0, 10.0), "float32")
    write_json(tmp_path / "pairs.json", {"hr_voxel_nm": [50.0, 10.0, 10.0]})
    out = tmp_path / "spec.csv"
    metrics.run_image_metrics(
        str(tmp_path / "sr.tif"),
        str(tmp_path / "hr.tif"),
        str(tmp_path / "pairs.json"),
        str(out),
        str(tmp_path / "spec_frc.csv"),
        {"border_crop": 2, "references": ["acquired"]},
        "edsr",
        "real",
        "a",
        "a",
        log=str(tmp_path / "log.txt"),
    )
    table = pd.read_csv(out)
    assert list(table.columns) == ["model", "data", "fold", "specimen", "section", *IMAGE_COLUMNS, "mean_abs_error"]
    assert table.loc[1, "mean_abs_error"] == pytest.approx(np.abs(sr[1, 2:-2, 2:-2] - hr[1, 2:-2, 2:-2]).mean())
    assert "mean_abs_error" in (tmp_path / "log.txt").read_text()  # the rule's log file receives the logger
    assert set(image_scores(sr[0], hr[0], 10.0)) == set(IMAGE_COLUMNS) | {"mean_abs_error"}


def test_seg_metrics_csv_gets_a_column_per_registered_metric(tmp_path, registry):
    @metric("n_false_splits", SEGMENTATION, "extra segments", higher_is_better=False, decimals=0)
    def _extra(pair) -> int:
        return pair.instances["n_pred"] - pair.instances["n_true"]

    truth = np.kron(np.arange(1, 5).reshape(2, 2), np.ones((8, 8), np.int64))[None].repeat(2, axis=0)
    seg = truth.copy()
    seg[:, :8, :4] = 9  # object 1 cut in two
    write_labels(tmp_path / "t0.5.tif", seg, (50.0, 10.0, 10.0))
    write_labels(tmp_path / "ref.tif", truth, (50.0, 10.0, 10.0))
    write_json(tmp_path / "ref.json", {"source": "labels"})
    write_json(tmp_path / "threshold.json", {"best_threshold": 0.5})
    out = tmp_path / "seg.csv"
    metrics.run_seg_metrics(
        [str(tmp_path / "t0.5.tif")],
        str(tmp_path / "ref.tif"),
        str(tmp_path / "ref.json"),
        str(tmp_path / "threshold.json"),
        str(out),
        {"thresholds": [0.5], "fixed_threshold": None},
        {"border_crop": 0},
        "edsr",
        "real",
        "a",
        "a",
    )
    table = pd.read_csv(out)
    assert (table["n_false_splits"] == 1).all()
    assert not table["is_fixed"].any()
    assert segmentation_scores(seg[0], truth[0])["n_false_splits"] == 1


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch, registry):
    """A metric plug-in file in an extra directory of the srseg.metrics package."""
    (tmp_path / "toy_plugin.py").write_text(
        "from srseg.metrics.registry import IMAGE, metric\n\n\n"
        "@metric('toy_plugin', IMAGE, 'Toy plug-in', unit='au')\n"
        "def _toy(pair):\n"
        "    return float(pair.pred.mean())\n"
    )
    monkeypatch.setattr(metrics, "__path__", [*metrics.__path__, str(tmp_path)])
    yield tmp_path
    sys.modules.pop("srseg.metrics.toy_plugin", None)


def test_a_new_module_in_the_package_is_a_registered_metric(plugin_dir):
    assert metrics.import_plugins() == ["srseg.metrics.toy_plugin"]
    assert columns(IMAGE) == [*IMAGE_COLUMNS, "toy_plugin"]
    assert [c.name for c in summary_columns()][3] == "toy_plugin"  # after the built-in image metrics
