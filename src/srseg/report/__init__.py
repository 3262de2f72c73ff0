"""The report stage: tables (CSV, Markdown, LaTeX), statistics and paper figures.

`run_report` reads every metrics CSV, training / inference / alignment summary
(through the schema declared in `collect`) and one example specimen's images, and writes

    <tables_dir>/{ruler, summary, per_specimen, training_strategy, thresholds_f1,
                  thresholds_voi, paired_tests, cost}.{csv, md, tex}
    <figures_dir>/{ruler_curves, qualitative, segmentation_overlays, metric_bars, threshold_curves,
                   frc_curves, quality_vs_segmentation, training_curves, alignment_qc}.{png, pdf}

The metric columns come from the metric registry (srseg.metrics.registry), with their variants
where the metrics files hold them (srseg.report.columns): whole-volume (3D) segmentation scores
as the headline beside the per-section ones, image scores against the denoised HR beside those
against the acquired HR. Run times go to the cost table only, so every other output is
byte-identical across two runs of one config.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..config import section
from ..io import InputError
from ..log import get_logger
from .layout import FIGURE_FORMATS, FIGURE_NAMES, TABLE_FORMATS, TABLE_NAMES

# pandas, scipy, matplotlib and the metrics are imported inside run_report: rules/report.smk
# imports this package at DAG-build time, and every `snakemake` call should not pay for them.

__all__ = ["run_report", "TABLE_NAMES", "TABLE_FORMATS", "FIGURE_NAMES", "FIGURE_FORMATS", "output_paths"]


def output_paths(tables_dir: str | Path, figures_dir: str | Path) -> dict[str, list[str]]:
    """Every file run_report writes (the rule's outputs)."""
    return {
        "tables": [str(Path(tables_dir) / f"{n}.{e}") for n in TABLE_NAMES for e in TABLE_FORMATS],
        "figures": [str(Path(figures_dir) / f"{n}.{e}") for n in FIGURE_NAMES for e in FIGURE_FORMATS],
    }


def run_report(
    *,
    image_csvs: Sequence[str],
    seg_csvs: Sequence[str],
    tables_dir: str | Path,
    figures_dir: str | Path,
    frc_csvs: Sequence[str] = (),
    train_jsons: Sequence[str] = (),
    train_logs: Sequence[str] = (),
    infer_jsons: Sequence[str] = (),
    align_pngs: Sequence[str] = (),
    align_jsons: Sequence[str] = (),
    example: dict | None = None,
    rows: Sequence[Sequence[str]] | None = None,
    cfg: dict | None = None,
    log: str | Path | None = None,
) -> dict:
    """Build every table and figure of the report.

    rows: (model, data) pairs in the order tables list them (`hr` goes last).
    example: the specimen shown in the qualitative figures,
    {fold, specimen, lr, hr, reference, sr: [infer tifs], seg: [segment tifs]}.
    cfg: config['report'] (missing keys take the schema's defaults). Returns the written paths.
    """
    from tqdm import tqdm

    from . import collect, figures, tables
    from .ruler import ruler_figure, ruler_table

    t0 = time.perf_counter()
    cfg = section("report", cfg)
    logger = get_logger("srseg.report", log)
    rows = [tuple(r) for r in rows] if rows else None

    # Read and validate everything before any output is written.
    image = collect.load_image_metrics(image_csvs)
    seg = collect.load_seg_metrics(seg_csvs)
    if seg.empty:
        raise InputError("no segmentation metrics rows were found; run the seg_metrics rules before the report")
    frc = collect.load_frc_curves(frc_csvs)
    train = collect.load_train_info(train_jsons)
    logs = collect.load_train_logs(train_logs)
    infer = collect.load_infer_info(infer_jsons)
    qc = collect.load_align_qc(align_pngs, align_jsons)
    sections = tables.section_table(image, seg)
    order = tables.ordered_rows(sections, rows)
    logger.info("%d table rows, %d test sections, %d segmentation rows", len(order), len(sections), len(seg))
    fixed = seg.loc[seg["is_fixed"], "threshold"].unique()
    fixed_threshold = float(fixed[0]) if len(fixed) == 1 else None

    tests = tables.paired_tests(sections, order, cfg["min_pairs"])
    summary = tables.summary_table(
        sections, train, tests, order, cfg["n_boot"], cfg["confidence"], cfg["seed"], fixed_threshold
    )
    report_tables = [
        ruler_table(seg),
        summary,
        tables.per_specimen_table(sections, order),
        tables.training_strategy_table(sections, order),
        tables.threshold_table(seg, "f1", "thresholds_f1", order),
        tables.threshold_table(seg, "voi_sum", "thresholds_voi", order),
        tables.threshold_choice_table(seg, order),
        tables.paired_tests_table(tests),
        tables.cost_table(train, infer, order),
    ]
    dpi = cfg["dpi"]
    steps = [(f"table {t.name}", lambda t=t: tables.write_table(t, tables_dir)) for t in report_tables] + [
        ("figure ruler_curves", lambda: ruler_figure(seg, order, figures_dir, dpi)),
        (
            "figure metric_bars",
            lambda: figures.metric_bars(summary.numeric, order, figures_dir, dpi, cfg["confidence"]),
        ),
        ("figure threshold_curves", lambda: figures.threshold_curves(seg, order, figures_dir, dpi)),
        ("figure frc_curves", lambda: figures.frc_curves(frc, order, figures_dir, dpi)),
        (
            "figure quality_vs_segmentation",
            lambda: figures.quality_vs_segmentation(summary.numeric, order, figures_dir, dpi, cfg["confidence"]),
        ),
        ("figure training_curves", lambda: figures.training_curves(logs, order, figures_dir, dpi)),
        ("figure alignment_qc", lambda: figures.alignment_qc(qc, figures_dir, dpi)),
        ("figures qualitative", lambda: _qualitative(example, sections, seg, summary.numeric, order, cfg, figures_dir)),
    ]
    written = {"tables": [], "figures": []}
    for name, step in tqdm(steps, desc="report", file=sys.stderr, disable=None):
        paths = step()
        written["tables" if name.startswith("table") else "figures"].extend(str(p) for p in paths)
        logger.info("%s: wrote %s", name, ", ".join(Path(p).name for p in paths))
    logger.info("report done in %.1f s", time.perf_counter() - t0)
    return written


# --------------------------------------------------------------------------- qualitative figures


def _crop_window(shape, side: int) -> tuple[slice, slice]:
    """A centred square window of `side` pixels (clipped to the image)."""
    h, w = shape
    side = min(side, h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return slice(y0, y0 + side), slice(x0, x0 + side)


def _qualitative(example, sections, seg, summary, order, cfg, out_dir) -> list[Path]:
    """Qualitative grid and segmentation overlays of one test section of one specimen."""
    import numpy as np

    from ..io import read_image, read_labels
    from . import collect, figures, tables

    if not example or not example.get("hr"):
        return figures.qualitative_grid(
            [], None, out_dir, "no example specimen", dpi=cfg["dpi"]
        ) + figures.segmentation_overlays([], None, out_dir, "no example specimen", dpi=cfg["dpi"])
    import cv2

    fold, specimen = str(example["fold"]), str(example["specimen"])
    hr, voxel, _ = read_image(example["hr"])
    lr, _, _ = read_image(example["lr"])
    sr = {}
    for path in example.get("sr", []):
        k = collect.path_keys(path, collect.KEYS)
        sr[(k["model"], k["data"])] = read_image(path)[0]
    z = hr.shape[0] // 2 if cfg["section"] is None else cfg["section"]
    if not 0 <= z < min([hr.shape[0], lr.shape[0]] + [v.shape[0] for v in sr.values()]):
        raise InputError(
            f"config key report.section = {z} is outside the {hr.shape[0]} sections of {example['hr']}; "
            "choose a smaller section or leave it empty"
        )
    # SR outputs and HR should share a shape; if not, show their common top-left area.
    h = min([hr.shape[1]] + [v.shape[1] for v in sr.values()])
    w = min([hr.shape[2]] + [v.shape[2] for v in sr.values()])
    ys, xs = _crop_window((h, w), cfg["crop_px"])
    px_nm = voxel[2] if voxel and voxel[2] else None

    def metrics_line(model, data):
        row = sections[
            (sections["model"] == model)
            & (sections["data"] == data)
            & (sections["fold"] == fold)
            & (sections["specimen"] == specimen)
            & (sections["section"] == z)
        ]
        if row.empty or not np.isfinite(row["psnr"].iloc[0]):
            return ""
        return f"\n{row['psnr'].iloc[0]:.2f} dB, SSIM {row['ssim'].iloc[0]:.3f}"

    lr_up = cv2.resize(lr[z], (hr.shape[2], hr.shape[1]), interpolation=cv2.INTER_NEAREST)
    panels = [("LR (nearest)", lr_up[ys, xs])]
    for model, data in order:
        if (model, data) in sr:
            panels.append((figures.row_label(model, data) + metrics_line(model, data), sr[(model, data)][z][ys, xs]))
    panels.append(("HR", hr[z][ys, xs]))
    title = f"{specimen} (fold {fold}), section {z}, {ys.stop - ys.start} × {xs.stop - xs.start} HR px"
    paths = figures.qualitative_grid(panels, px_nm, out_dir, title, cfg["zoom"], cfg["dpi"])

    # Segmentation overlays: bicubic, the best model by VOI sum, HR, and the reference labels.
    seg_paths = {}
    for path in example.get("seg", []):
        k = collect.path_keys(Path(path).parent, collect.KEYS)
        seg_paths.setdefault((k["model"], k["data"]), {})[float(Path(path).stem.lstrip("t"))] = path
    from .columns import headline, variants_in

    voi = f"{headline('voi_sum', variants_in(summary)).name}_mean"  # the headline unit: 3D where scored
    cand = summary[~summary["model"].isin([tables.BASELINE[0], tables.UPPER_BOUND])].dropna(subset=[voi])
    best = tuple(cand.sort_values(voi, kind="stable").iloc[0][["model", "data"]]) if len(cand) else None
    seg_panels = []
    for row, image in (
        (tables.BASELINE, sr.get(tables.BASELINE)),
        (best, sr.get(best)),
        ((tables.UPPER_BOUND, "none"), hr),
    ):
        if row is None or image is None or row not in seg_paths:
            continue
        chosen = seg[
            (seg["model"] == row[0])
            & (seg["data"] == row[1])
            & (seg["fold"] == fold)
            & (seg["specimen"] == specimen)
            & (seg["section"] == z)
            & seg["is_best"]
        ]
        thr = float(chosen["threshold"].iloc[0]) if len(chosen) else sorted(seg_paths[row])[len(seg_paths[row]) // 2]
        match = [t for t in seg_paths[row] if math.isclose(t, thr)]
        if not match:
            continue
        labels, _ = read_labels(seg_paths[row][match[0]])
        label = f"{figures.row_label(*row)} (t = {thr:g})"
        if len(chosen):
            label += f"\nVOI {chosen['voi_sum'].iloc[0]:.2f} bits, F1 {chosen['f1'].iloc[0]:.2f}"
        seg_panels.append((label, image[z][ys, xs], labels[z][ys, xs].astype(np.int64)))
    if example.get("reference") and Path(example["reference"]).exists():
        ref, _ = read_labels(example["reference"])
        seg_panels.append(("reference labels", hr[z][ys, xs], ref[z][ys, xs].astype(np.int64)))
    paths += figures.segmentation_overlays(seg_panels, px_nm, out_dir, title, cfg["dpi"])
    return paths
