"""Result tables: numbers in CSV, the same table rendered as Markdown and LaTeX.

Each table is built once as a `Table`: a numeric frame (what goes to CSV:
separate mean / std / CI / p columns plus a `best` column naming the metrics for
which the row is best), a display frame of formatted strings ("23.10 ± 0.40")
and a boolean frame of cells to set in bold. Rendering to Markdown uses
pandas/tabulate, LaTeX uses pandas' Styler (booktabs rules, \\bfseries).

"Best" is judged on the mean at the displayed precision, so visible ties are all
marked; the `hr` row (real HR, the upper bound) never competes, and a column is
only marked when at least two rows compete.

Whole-volume (3D) segmentation columns are repeated on every section row of their
volume; they are counted once per test volume (`observations`): means, standard
deviations, intervals and paired tests over test volumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import InputError, atomic_path, write_csv
from ..metrics import IMAGE, SEGMENTATION
from . import stats
from .collect import KEYS, SECTION_KEYS
from .columns import (
    VOLUME,
    Column,
    column,
    headline,
    paired_test_columns,
    strategy_columns,
    summary_columns,
    variants_in,
)

BASELINE = ("bicubic", "none")
UPPER_BOUND = "hr"

MISSING = "–"


@dataclass
class Table:
    name: str
    caption: str
    numeric: pd.DataFrame
    display: pd.DataFrame
    bold: pd.DataFrame = field(default=None)
    text_columns: list = field(default_factory=list)

    def __post_init__(self):
        if self.bold is None:
            self.bold = pd.DataFrame(False, index=self.display.index, columns=self.display.columns)


# --------------------------------------------------------------------------- per-section data


def table_columns(variants=()) -> list[Column]:
    """Every column some table shows (summary, tested and strategy roles), each once."""
    seen = {}
    for c in summary_columns(variants) + paired_test_columns(variants) + strategy_columns(variants):
        seen.setdefault(c.name, c)
    return list(seen.values())


def observations(frame: pd.DataFrame, c: Column, keys=KEYS) -> pd.DataFrame:
    """The rows of `frame` that are independent observations of column `c`.

    Sections as they are; for a whole-volume (3D) column one row per `keys` (a test volume;
    add "threshold" for the segmentation rows), holding its value (the first finite one).
    """
    if not c.per_volume:
        return frame
    if frame.empty:
        return frame[list(keys) + [c.name]]
    return frame.groupby(list(keys), sort=True, as_index=False)[[c.name]].first()


def section_table(image: pd.DataFrame, seg: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, data, fold, specimen, section) with every summary column.

    Segmentation metrics come from the threshold chosen on validation (`is_best`);
    `<name>_fixed` columns from the fixed threshold (`is_fixed`). Rows without image
    metrics (the `hr` upper bound) get NaN there. Variant columns (`_3d`, `_denoised`)
    are included where the metrics files hold them.
    """
    keys = list(SECTION_KEYS)
    cols = table_columns(variants_in(image, seg))
    img = image[keys + [c.name for c in cols if c.metric.kind == IMAGE]]
    best = seg.loc[seg["is_best"], keys + [c.name for c in cols if c.metric.kind == SEGMENTATION and not c.fixed]]
    fixed = seg.loc[seg["is_fixed"], keys + [c.base for c in cols if c.fixed]]
    fixed = fixed.rename(columns={c.base: c.name for c in cols if c.fixed})
    for frame, what in (
        (img, "image metrics"),
        (best, "is_best segmentation rows"),
        (fixed, "is_fixed segmentation rows"),
    ):
        dup = frame.duplicated(keys)
        if dup.any():
            r = frame.loc[dup].iloc[0]
            raise InputError(
                f"results/metrics of {r['model']}/{r['data']}/{r['fold']}/{r['specimen']} have more than one "
                f"row of {what} for section {r['section']}; rerun the metrics rule for it"
            )
    out = img.merge(best, on=keys, how="outer").merge(fixed, on=keys, how="outer")
    for c in cols:
        out[c.name] = pd.to_numeric(out[c.name], errors="coerce")
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def ordered_rows(frame: pd.DataFrame, rows: Sequence[Sequence[str]] | None = None) -> list[tuple[str, str]]:
    """(model, data) rows in config order (`rows`), then any others; `hr` last."""
    present = list(dict.fromkeys(zip(frame["model"], frame["data"])))
    order = [tuple(r) for r in rows] if rows else []
    if not order:
        order = sorted(present, key=lambda r: (r != BASELINE, r[0] == UPPER_BOUND, r))
    out = [r for r in order if r in present] + [r for r in present if r not in order]
    return sorted(out, key=lambda r: r[0] == UPPER_BOUND)  # stable: hr last


# --------------------------------------------------------------------------- formatting helpers


def fmt_value(x, decimals: int) -> str:
    return MISSING if x is None or not np.isfinite(x) else f"{x:.{decimals}f}"


def fmt_count(x) -> str:
    """1,234,567 (parameters, steps)."""
    return MISSING if x is None or not np.isfinite(x) else f"{int(x):,}"


def fmt_mean_std(mean, std, decimals: int) -> str:
    if mean is None or not np.isfinite(mean):
        return MISSING
    if std is None or not np.isfinite(std):
        return fmt_value(mean, decimals)
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def fmt_p(p) -> str:
    """Two significant digits (p-values, and numbers spanning orders of magnitude)."""
    return MISSING if p is None or not np.isfinite(p) else f"{p:.2g}"


def best_mask(means, higher: bool | None, decimals: int, eligible=None) -> np.ndarray:
    """Rows holding the best mean at the displayed precision (ties all marked).

    Nothing is marked unless at least two eligible rows have a finite value, or when
    `higher` is None.
    """
    v = np.round(np.asarray(means, dtype=float), decimals)
    if higher is None:  # a metric without a better direction (a count) never wins
        return np.zeros(v.shape, bool)
    ok = np.isfinite(v) & (np.ones_like(v, bool) if eligible is None else np.asarray(eligible, bool))
    if ok.sum() < 2:
        return np.zeros(v.shape, bool)
    best = np.max(v[ok]) if higher else np.min(v[ok])
    return ok & (v == best)


def _best_column(flags: dict[str, np.ndarray], n: int) -> list[str]:
    """The CSV `best` column: ';'-joined names of the columns a row is best in."""
    return [";".join(k for k, f in flags.items() if f[i]) for i in range(n)]


# --------------------------------------------------------------------------- tables


def _mean_std(x: pd.Series) -> tuple[float, float]:
    x = pd.to_numeric(x, errors="coerce").dropna()
    return (float(x.mean()) if len(x) else math.nan), (float(x.std(ddof=1)) if len(x) > 1 else math.nan)


def _units_sentence(variants) -> str:
    """What the variant columns are (captions), '' without variants."""
    parts = []
    if VOLUME in variants:
        parts.append(
            "Segmentation metrics marked 3D score each test volume at once (objects followed through z; mean ± "
            "standard deviation over test volumes), those marked per section each section on its own"
        )
    if "denoised" in variants:
        parts.append(
            "image metrics marked vs denoised are against the denoised HR (the EMSR protocol), those marked vs "
            "acquired against the acquired HR"
        )
    return ("; ".join(parts) + ". ") if parts else ""


def _direction_sentence(cols: list[Column]) -> str:
    """'higher is better for PSNR, SSIM; lower for VOI split, ...' from the registry."""
    names = {d: list(dict.fromkeys(c.metric.label for c in cols if c.higher is d)) for d in (True, False)}
    parts = [
        f"{word} for {', '.join(names[d])}" for d, word in ((True, "higher is better"), (False, "lower")) if names[d]
    ]
    return "; ".join(parts)


def summary_table(
    sections: pd.DataFrame,
    train: pd.DataFrame,
    tests: pd.DataFrame,
    rows=None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    fixed_threshold: float | None = None,
) -> Table:
    """One row per (model, data): every summary column as mean/std/CI over test sections pooled over folds.

    Only reproducible numbers: the run-time costs are the cost table's.
    """
    order = ordered_rows(sections, rows)
    variants = variants_in(sections)
    cols, tested = summary_columns(variants), paired_test_columns(variants)
    records = []
    for model, data in order:
        sub = sections[(sections["model"] == model) & (sections["data"] == data)]
        n_volumes = int(len(sub[["fold", "specimen"]].drop_duplicates()))
        rec = {"model": model, "data": data, "n_sections": int(len(sub)), "n_volumes": n_volumes}
        for c in cols:
            d = stats.describe(observations(sub, c)[c.name], n_resamples, confidence, seed)
            rec.update({f"{c.name}_{k}": d[k] for k in ("mean", "std", "ci_low", "ci_high")})
        for c in tested:
            hit = tests[(tests["model"] == model) & (tests["data"] == data) & (tests["metric"] == c.name)]
            rec[f"{c.name}_p"] = float(hit["p_value"].iloc[0]) if len(hit) else math.nan
        params = pd.to_numeric(
            train.loc[(train["model"] == model) & (train["data"] == data), "parameters"], errors="coerce"
        ).dropna()
        rec["n_params"] = float(params.max()) if len(params) else math.nan
        records.append(rec)
    num = pd.DataFrame(records)
    eligible = (num["model"] != UPPER_BOUND).to_numpy() if len(num) else np.zeros(0, bool)
    flags = {c.name: best_mask(num[f"{c.name}_mean"], c.higher, c.decimals, eligible) if len(num) else [] for c in cols}
    num["best"] = _best_column(flags, len(num))

    disp = pd.DataFrame({"Model": num.get("model", []), "Data": num.get("data", [])})
    bold = pd.DataFrame(False, index=disp.index, columns=[])
    for c in cols:
        label = c.label(fixed_threshold=fixed_threshold)
        disp[label] = [fmt_mean_std(a, b, c.decimals) for a, b in zip(num[f"{c.name}_mean"], num[f"{c.name}_std"])]
        bold[label] = flags[c.name]
    for c in tested:
        disp[f"p {c.label(unit=False, plain=True)}"] = [fmt_p(p) for p in num[f"{c.name}_p"]]
    disp["Params"] = [fmt_count(p) for p in num["n_params"]]
    bold = bold.reindex(columns=disp.columns, fill_value=False)
    fixed = [c.label(unit=False, fixed_threshold=fixed_threshold) for c in cols if c.fixed]
    caption = (
        f"Summary over test sections pooled over folds: mean ± standard deviation (the CSV adds "
        f"{confidence:.0%} percentile-bootstrap confidence intervals). {_units_sentence(variants)}"
        f"PSNR and SSIM with L = 1, the data range of the normalised images. Segmentation metrics at the "
        f"threshold chosen on validation" + (f"; {', '.join(fixed)} at the fixed threshold" if fixed else "") + ". "
        f"p: two-sided Wilcoxon signed-rank test against bicubic, paired by section (3D: by test volume; "
        f"{MISSING} when fewer "
        f"than 2 pairs or all differences are zero). Params: trainable parameters. Bold: best per column "
        f"({_direction_sentence(cols)}), the HR upper bound excluded. Run times are in the cost table."
    )
    return Table("summary", caption, num, disp, bold, ["Model", "Data"])


def cost_table(train: pd.DataFrame, infer: pd.DataFrame, rows=None) -> Table:
    """One row per trained or inferred (model, data): parameters, training time and inference speed.

    Wall-clock numbers differ between two runs of one config; they live here so that every
    other table is byte-identical across runs.
    """
    present = pd.concat([train[["model", "data"]], infer[["model", "data"]]], ignore_index=True)
    order = ordered_rows(present, rows)
    records = []
    for model, data in order:
        tr = train[(train["model"] == model) & (train["data"] == data)]
        inf = infer[(infer["model"] == model) & (infer["data"] == data)]
        params = pd.to_numeric(tr["parameters"], errors="coerce").dropna()
        minutes = _mean_std(pd.to_numeric(tr["train_seconds_total"], errors="coerce") / 60)
        vps = pd.to_numeric(inf["voxels_per_s"], errors="coerce").dropna()
        mvox = _mean_std(vps / 1e6)
        records.append(
            {
                "model": model,
                "data": data,
                "train_device": ";".join(sorted(set(map(str, tr["device"])))),
                "n_params": float(params.max()) if len(params) else math.nan,
                "steps": float(pd.to_numeric(tr["steps"], errors="coerce").max()) if len(tr) else math.nan,
                "train_minutes_mean": minutes[0],
                "train_minutes_std": minutes[1],
                "steps_per_s_mean": _mean_std(tr["steps_per_s"])[0],
                "infer_device": ";".join(sorted(set(map(str, inf["device"])))),
                "infer_mvox_per_s_mean": mvox[0],
                "infer_mvox_per_s_std": mvox[1],
                # Seconds per gigavoxel: the cost of running the model on a whole dataset (DESIGN.md).
                "infer_s_per_gvox": float(1e9 / vps.mean()) if len(vps) and vps.mean() > 0 else math.nan,
                "infer_compute_s_total": float(pd.to_numeric(inf["compute_seconds"], errors="coerce").sum())
                if len(inf)
                else math.nan,
            }
        )
    num = pd.DataFrame(
        records,
        columns=[
            "model",
            "data",
            "train_device",
            "n_params",
            "steps",
            "train_minutes_mean",
            "train_minutes_std",
            "steps_per_s_mean",
            "infer_device",
            "infer_mvox_per_s_mean",
            "infer_mvox_per_s_std",
            "infer_s_per_gvox",
            "infer_compute_s_total",
        ],
    )
    disp = pd.DataFrame(
        {
            "Model": num["model"],
            "Data": num["data"],
            "Params": [fmt_count(p) for p in num["n_params"]],
            "Steps": [fmt_count(p) for p in num["steps"]],
            "Train device": [d or MISSING for d in num["train_device"]],
            "Train (min)": [fmt_mean_std(a, b, 1) for a, b in zip(num["train_minutes_mean"], num["train_minutes_std"])],
            "Steps/s": [fmt_value(v, 1) for v in num["steps_per_s_mean"]],
            "Infer device": [d or MISSING for d in num["infer_device"]],
            "Infer (Mvox/s)": [
                fmt_mean_std(a, b, 2) for a, b in zip(num["infer_mvox_per_s_mean"], num["infer_mvox_per_s_std"])
            ],
            "Infer (s/Gvox)": [fmt_value(v, 0) for v in num["infer_s_per_gvox"]],
            "Infer compute (s)": [fmt_p(v) for v in num["infer_compute_s_total"]],  # 2 significant digits
        }
    )
    caption = (
        "Computational cost: trainable parameters and training steps; training wall time over all resumed runs "
        "(minutes, mean ± standard deviation over folds) and training steps per second; inference throughput "
        "(megavoxels of SR output per second of compute, mean ± standard deviation over test specimens), "
        "seconds per gigavoxel and total inference compute time. Times depend on the machine and its load, "
        "so this is the one table that differs between two runs of the same config."
    )
    return Table("cost", caption, num, disp, None, ["Model", "Data", "Train device", "Infer device"])


def per_specimen_table(sections: pd.DataFrame, rows=None) -> Table:
    """One row per (specimen, model, data): mean ± std over that specimen's test sections."""
    order = ordered_rows(sections, rows)
    variants = variants_in(sections)
    cols = summary_columns(variants)
    records = []
    for specimen in sorted(sections["specimen"].unique()):
        for model, data in order:
            sub = sections[
                (sections["specimen"] == specimen) & (sections["model"] == model) & (sections["data"] == data)
            ]
            if sub.empty:
                continue
            rec = {"specimen": specimen, "model": model, "data": data, "n_sections": int(len(sub))}
            for c in cols:
                rec[f"{c.name}_mean"], rec[f"{c.name}_std"] = _mean_std(observations(sub, c)[c.name])
            records.append(rec)
    names = ["specimen", "model", "data", "n_sections"] + [f"{c.name}_{k}" for c in cols for k in ("mean", "std")]
    num = pd.DataFrame(records, columns=names)
    flags = {c.name: np.zeros(len(num), bool) for c in cols}
    for _, idx in num.groupby("specimen", sort=False).groups.items():
        idx = np.asarray(idx)
        eligible = (num.loc[idx, "model"] != UPPER_BOUND).to_numpy()
        for c in cols:
            flags[c.name][idx] = best_mask(num.loc[idx, f"{c.name}_mean"], c.higher, c.decimals, eligible)
    num["best"] = _best_column(flags, len(num))
    disp = pd.DataFrame({"Specimen": num["specimen"], "Model": num["model"], "Data": num["data"]})
    bold = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    for c in cols:
        disp[c.label()] = [fmt_mean_std(a, b, c.decimals) for a, b in zip(num[f"{c.name}_mean"], num[f"{c.name}_std"])]
        bold[c.label()] = flags[c.name]
    caption = (
        f"Per test specimen: mean ± standard deviation over its test sections (3D columns: the volume's score, "
        f"mean over folds testing it). {_units_sentence(variants)}"
        "Bold: best per column within a specimen, the HR upper bound excluded."
    )
    return Table("per_specimen", caption, num, disp, bold, ["Specimen", "Model", "Data"])


def _arrow(c: Column) -> str:
    return {True: "↑", False: "↓", None: ""}[c.higher]


def training_strategy_table(sections: pd.DataFrame, rows=None) -> Table:
    """The EMSR study's Table III shape: (metric, model, training data) x specimen + all.

    Only trained models (data other than 'none') appear. Bold: best training
    data per (metric, model) and column. 'All' pools every test section.
    """
    order = [r for r in ordered_rows(sections, rows) if r[1] != "none" and r[0] != UPPER_BOUND]
    variants = variants_in(sections)
    cols = strategy_columns(variants)
    specimens = sorted(sections["specimen"].unique()) if len(sections) else []
    where = specimens + ["all"]
    records = []
    for c in cols:
        for model, data in order:
            sub = sections[(sections["model"] == model) & (sections["data"] == data)]
            for spec in where:
                x = observations(sub if spec == "all" else sub[sub["specimen"] == spec], c)[c.name].dropna()
                mean, std = _mean_std(x)
                records.append(
                    {
                        "metric": c.name,
                        "model": model,
                        "data": data,
                        "specimen": spec,
                        "mean": mean,
                        "std": std,
                        "n": int(len(x)),
                    }
                )
    num = pd.DataFrame(records, columns=["metric", "model", "data", "specimen", "mean", "std", "n"])
    num["best"] = False
    for (m, _, _), idx in num.groupby(["metric", "model", "specimen"], sort=False).groups.items():
        num.loc[idx, "best"] = best_mask(num.loc[idx, "mean"], column(m, variants).higher, column(m).decimals)

    disp_rows, bold_rows = [], []
    for c in cols:
        for model, data in order:
            sub = num[(num["metric"] == c.name) & (num["model"] == model) & (num["data"] == data)].set_index("specimen")
            row = {"Metric": f"{c.label()} {_arrow(c)}".strip(), "Model": model, "Data": data}
            brow = {"Metric": False, "Model": False, "Data": False}
            for spec in where:
                name = "All" if spec == "all" else spec
                row[name] = fmt_mean_std(sub.at[spec, "mean"], sub.at[spec, "std"], c.decimals)
                brow[name] = bool(sub.at[spec, "best"])
            disp_rows.append(row)
            bold_rows.append(brow)
    disp_cols = ["Metric", "Model", "Data"] + [("All" if c == "all" else c) for c in where]
    disp = pd.DataFrame(disp_rows, columns=disp_cols)
    bold = pd.DataFrame(bold_rows, columns=disp_cols).fillna(False).astype(bool)
    caption = (
        "Training strategies (shape of Table III of the EMSR study): each trained model on acquired (real) "
        "pairs and on each synthetic degradation; mean ± standard deviation over the test sections of each "
        f"specimen, and over all test sections (3D: over test volumes). {_units_sentence(variants)}"
        "Bold: best training data per model, metric and column."
    )
    return Table("training_strategy", caption, num, disp, bold, ["Metric", "Model", "Data"])


def threshold_table(seg: pd.DataFrame, metric: str, name: str, rows=None) -> Table:
    """The Chalmers study's Table 4 shape: rows (model, data), columns agglomeration thresholds.

    `metric` in its headline unit: the whole volume (`<metric>_3d`) where 3D scores exist, else per
    section; the CSV columns are named after it (`voi_sum_3d_t0.5_mean`).
    """
    variants = variants_in(seg)
    c = headline(metric, variants)
    metric = c.name
    order = ordered_rows(seg, rows)
    thresholds = sorted(seg["threshold"].unique()) if len(seg) else []
    records = []
    for model, data in order:
        sub = seg[(seg["model"] == model) & (seg["data"] == data)]
        rec = {"model": model, "data": data}
        for t in thresholds:
            at = observations(sub.loc[np.isclose(sub["threshold"], t)], c)
            rec[f"{metric}_t{t:g}_mean"], rec[f"{metric}_t{t:g}_std"] = _mean_std(at[metric])
        records.append(rec)
    num = pd.DataFrame(
        records, columns=["model", "data"] + [f"{metric}_t{t:g}_{k}" for t in thresholds for k in ("mean", "std")]
    )
    eligible = (num["model"] != UPPER_BOUND).to_numpy()
    flags = {f"t{t:g}": best_mask(num[f"{metric}_t{t:g}_mean"], c.higher, c.decimals, eligible) for t in thresholds}
    num["best"] = _best_column(flags, len(num))
    disp = pd.DataFrame({"Model": num["model"], "Data": num["data"]})
    bold = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    for t in thresholds:
        col = f"t = {t:g}"
        disp[col] = [
            fmt_mean_std(a, b, c.decimals) for a, b in zip(num[f"{metric}_t{t:g}_mean"], num[f"{metric}_t{t:g}_std"])
        ]
        bold[col] = flags[f"t{t:g}"]
    over = "test volumes (each scored at once, 3D)" if c.per_volume else "test sections"
    caption = (
        f"{c.label(plain=True)} for each agglomeration threshold (shape of Table 4 of the Chalmers study): mean ± "
        f"standard deviation over {over} pooled over folds. Bold: best per threshold "
        f"({c.direction()}), the HR upper bound excluded."
    )
    return Table(name, caption, num, disp, bold, ["Model", "Data"])


def threshold_choice_table(seg: pd.DataFrame, rows=None) -> Table:
    """Each row's own validation-chosen threshold against the one chosen on real HR (the alternative).

    Per (model, data): the thresholds each fold chose (own / HR), and the headline VOI sum and
    F1 at each, mean over test volumes (3D) or sections, pooled over folds.
    """
    variants = variants_in(seg)
    cols = [headline("voi_sum", variants), headline("f1", variants)]
    records = []
    for model, data in ordered_rows(seg, rows):
        sub = seg[(seg["model"] == model) & (seg["data"] == data)]
        rec = {"model": model, "data": data}
        for flag, tag in (("is_best", "own"), ("is_hr_best", "hr")):
            chosen = sub.loc[sub[flag]].groupby("fold")["threshold"].first()
            rec[f"threshold_{tag}"] = " / ".join(f"{t:g}" for t in chosen.sort_index())
            for c in cols:
                rec[f"{c.name}_{tag}"] = _mean_std(observations(sub.loc[sub[flag]], c)[c.name])[0]
        records.append(rec)
    names = [f"{c.name}_{tag}" for tag in ("own", "hr") for c in cols]
    num = pd.DataFrame(records, columns=["model", "data", "threshold_own", "threshold_hr", *names])
    disp = pd.DataFrame(
        {
            "Model": num["model"],
            "Data": num["data"],
            "Threshold (own)": num["threshold_own"],
            "Threshold (HR)": num["threshold_hr"],
        }
    )
    for tag, what in (("own", "own thr."), ("hr", "HR thr.")):
        for c in cols:
            disp[f"{c.label(plain=True)} ({what})"] = [fmt_value(v, c.decimals) for v in num[f"{c.name}_{tag}"]]
    caption = (
        "Agglomeration thresholds: each row's own, chosen on its super-resolution of the training specimens' "
        "validation sections (per fold, fold order), against the one chosen on their real HR; headline scores "
        "of the test specimens at each (mean over test volumes or sections, pooled over folds). The summary "
        "uses each row's own threshold."
    )
    return Table("threshold_choice", caption, num, disp, None, ["Model", "Data", "Threshold (own)", "Threshold (HR)"])


def paired_tests(sections: pd.DataFrame, rows=None, min_pairs: int = 2) -> pd.DataFrame:
    """Wilcoxon signed-rank of every (model, data) row against bicubic, per tested metric.

    q_value: Benjamini–Hochberg adjustment over all tests of the table.
    """
    records = []
    tested = paired_test_columns(variants_in(sections))
    units = {c.name: observations(sections, c) for c in tested}  # 3D: one row per test volume
    for model, data in ordered_rows(sections, rows):
        if (model, data) == BASELINE:
            continue
        for c in tested:
            keys = ["fold", "specimen"] if c.per_volume else None
            res = stats.paired_against(units[c.name], c.name, model, data, BASELINE, min_pairs, keys)
            records.append({"model": model, "data": data, "metric": c.name, **res})
    out = pd.DataFrame(records, columns=["model", "data", "metric", "n_pairs", "median_diff", "statistic", "p_value"])
    out["q_value"] = stats.bh_qvalues(out["p_value"]) if len(out) else []
    return out


def paired_tests_table(tests: pd.DataFrame) -> Table:
    variants = tuple(dict.fromkeys(column(m).variant for m in tests["metric"] if column(m).variant))
    disp = pd.DataFrame(
        {
            "Model": tests["model"],
            "Data": tests["data"],
            "Metric": [column(m, variants).label() for m in tests["metric"]],
            "n": tests["n_pairs"].astype(int).astype(str),
            "Median diff.": [fmt_value(d, column(m).decimals) for d, m in zip(tests["median_diff"], tests["metric"])],
            "W": [fmt_value(w, 1) for w in tests["statistic"]],
            "p": [fmt_p(p) for p in tests["p_value"]],
            "q (BH)": [fmt_p(q) for q in tests["q_value"]],
        }
    )
    tested = ", ".join(dict.fromkeys(c.metric.label for c in paired_test_columns()))
    caption = (
        f"Two-sided Wilcoxon signed-rank tests of each row against bicubic ({tested}), paired by (fold, "
        "specimen, section), 3D scores by (fold, specimen); median diff. = median of (row - bicubic); "
        "q: Benjamini–Hochberg adjusted over the "
        f"whole table; {MISSING} when fewer than 2 pairs exist or all differences are zero. Sections of one "
        "specimen are correlated, so p-values are optimistic."
    )
    return Table("paired_tests", caption, tests, disp, None, ["Model", "Data", "Metric"])


# --------------------------------------------------------------------------- rendering


def to_markdown(table: Table) -> str:
    """Markdown: caption line, then a pipe table with **bold** best cells."""
    disp = table.display.copy()
    for col in disp.columns:
        mask = table.bold[col].to_numpy(bool) if col in table.bold else np.zeros(len(disp), bool)
        disp[col] = [f"**{v}**" if b and v != MISSING else v for v, b in zip(disp[col], mask)]
    body = disp.to_markdown(index=False, disable_numparse=True) if len(disp.columns) else ""
    return f"**{table.name}.** {table.caption}\n\n{body}\n"


def to_latex(table: Table) -> str:
    """LaTeX (booktabs): text columns escaped, best cells \\bfseries; needs \\usepackage{booktabs}."""
    disp = table.display.copy()
    num_cols = [c for c in disp.columns if c not in table.text_columns]
    for col in num_cols:  # our own number strings: only ± and the dash need LaTeX spelling
        disp[col] = [v.replace(" ± ", r" $\pm$ ").replace(MISSING, "--") for v in disp[col]]
    css = pd.DataFrame("", index=disp.index, columns=disp.columns)
    for col in disp.columns:
        if col in table.bold:
            css.loc[table.bold[col].to_numpy(bool), col] = "font-weight: bold;"
    styler = (
        disp.style.hide(axis="index")
        .format(escape="latex", subset=[c for c in table.text_columns if c in disp.columns])
        .format_index(escape="latex", axis=1)
        .apply(lambda _: css, axis=None)
    )
    col_format = "".join("l" if c in table.text_columns else "r" for c in disp.columns)
    caption = table.caption.replace("±", r"$\pm$").replace(MISSING, "--")
    caption = caption.replace("%", r"\%").replace("_", r"\_").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")
    tex = styler.to_latex(
        hrules=True,
        convert_css=True,
        column_format=col_format or "l",
        caption=caption,
        label=f"tab:{table.name}",
        position="htbp",
    )
    return tex.replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")


def write_table(table: Table, out_dir: str | Path) -> list[Path]:
    """Write <name>.csv (numeric), <name>.md and <name>.tex atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / f"{table.name}.csv", table.numeric)
    paths = [out_dir / f"{table.name}.csv"]
    for ext, text in (("md", to_markdown(table)), ("tex", to_latex(table))):
        path = out_dir / f"{table.name}.{ext}"
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
