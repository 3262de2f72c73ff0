"""Result tables: numbers in CSV, the same table rendered as Markdown and LaTeX.

Each table is built once as a `Table`: a numeric frame (what goes to CSV:
separate mean / std / CI / p columns plus a `best` column naming the metrics for
which the row is best), a display frame of formatted strings ("23.10 ± 0.40")
and a boolean frame of cells to set in bold. Rendering to Markdown uses
pandas/tabulate, LaTeX uses pandas' Styler (booktabs rules, \\bfseries).

"Best" is judged on the mean at the displayed precision, so visible ties are all
marked; the `hr` row (real HR, the upper bound) never competes, and a column is
only marked when at least two rows compete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..io import InputError, atomic_path, write_csv
from . import stats
from .collect import SECTION_KEYS

# name: (label, unit, higher is better, decimals)
METRICS = {
    "psnr": ("PSNR", "dB", True, 2),
    "ssim": ("SSIM", "", True, 3),
    "frc_mean": ("FRC", "", True, 3),
    "voi_split": ("VOI split", "bits", False, 3),
    "voi_merge": ("VOI merge", "bits", False, 3),
    "voi_sum": ("VOI sum", "bits", False, 3),
    "arand": ("ARAND", "", False, 3),
    "f1": ("F1 (val. thr.)", "", True, 3),
    "f1_fixed": ("F1 (fixed thr.)", "", True, 3),
}
IMAGE_METRICS = ["psnr", "ssim", "frc_mean"]
SEG_METRICS = ["voi_split", "voi_merge", "voi_sum", "arand", "f1"]
TESTED_METRICS = ["psnr", "ssim", "voi_sum", "f1"]  # paired against bicubic
STRATEGY_METRICS = ["psnr", "ssim", "frc_mean", "voi_sum", "f1"]
THRESHOLD_METRICS = ["f1", "voi_sum"]
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


def metric_label(name: str, unit: bool = True) -> str:
    label, u, _, _ = METRICS[name]
    return f"{label} ({u})" if unit and u else label


# --------------------------------------------------------------------------- per-section data


def section_table(image: pd.DataFrame, seg: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, data, fold, specimen, section) with every metric.

    Segmentation metrics come from the threshold chosen on validation
    (`is_best`); `f1_fixed` is F1 at the fixed threshold (`is_fixed`). Rows
    without image metrics (the `hr` upper bound) get NaN there.
    """
    img = image[SECTION_KEYS + IMAGE_METRICS]
    best = seg.loc[seg["is_best"], SECTION_KEYS + SEG_METRICS]
    fixed = seg.loc[seg["is_fixed"], SECTION_KEYS + ["f1"]].rename(columns={"f1": "f1_fixed"})
    for frame, what in ((img, "image metrics"), (best, "is_best segmentation rows"), (fixed, "is_fixed segmentation rows")):
        dup = frame.duplicated(SECTION_KEYS)
        if dup.any():
            r = frame.loc[dup].iloc[0]
            raise InputError(f"results/metrics of {r['model']}/{r['data']}/{r['fold']}/{r['specimen']} have more than one "
                             f"row of {what} for section {r['section']}; rerun the metrics rule for it")
    out = img.merge(best, on=SECTION_KEYS, how="outer").merge(fixed, on=SECTION_KEYS, how="outer")
    for col in METRICS:
        out[col] = pd.to_numeric(out[col], errors="coerce")
    return out.sort_values(SECTION_KEYS, kind="stable").reset_index(drop=True)


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


def fmt_mean_std(mean, std, decimals: int) -> str:
    if mean is None or not np.isfinite(mean):
        return MISSING
    if std is None or not np.isfinite(std):
        return fmt_value(mean, decimals)
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def fmt_p(p) -> str:
    return MISSING if p is None or not np.isfinite(p) else f"{p:.2g}"


def best_mask(means, higher: bool, decimals: int, eligible=None) -> np.ndarray:
    """Rows holding the best mean at the displayed precision (ties all marked).

    Nothing is marked unless at least two eligible rows have a finite value.
    """
    v = np.round(np.asarray(means, dtype=float), decimals)
    ok = np.isfinite(v) & (np.ones_like(v, bool) if eligible is None else np.asarray(eligible, bool))
    if ok.sum() < 2:
        return np.zeros(v.shape, bool)
    best = np.max(v[ok]) if higher else np.min(v[ok])
    return ok & (v == best)


def _best_column(flags: dict[str, np.ndarray], n: int) -> list[str]:
    """The CSV `best` column: ';'-joined names of the columns a row is best in."""
    return [";".join(k for k, f in flags.items() if f[i]) for i in range(n)]


# --------------------------------------------------------------------------- tables


def summary_table(sections: pd.DataFrame, train: pd.DataFrame, infer: pd.DataFrame, tests: pd.DataFrame,
                  rows=None, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                  fixed_threshold: float | None = None) -> Table:
    """One row per (model, data): metrics as mean/std/CI over test sections pooled over folds."""
    order = ordered_rows(sections, rows)
    records = []
    for model, data in order:
        sub = sections[(sections["model"] == model) & (sections["data"] == data)]
        rec = {"model": model, "data": data, "n_sections": int(len(sub))}
        for m in METRICS:
            d = stats.describe(sub[m], n_resamples, confidence, seed)
            rec.update({f"{m}_{k}": d[k] for k in ("mean", "std", "ci_low", "ci_high")})
        for m in TESTED_METRICS:
            hit = tests[(tests["model"] == model) & (tests["data"] == data) & (tests["metric"] == m)]
            rec[f"{m}_p"] = float(hit["p_value"].iloc[0]) if len(hit) else math.nan
        tr = train[(train["model"] == model) & (train["data"] == data)]
        params = pd.to_numeric(tr["n_params"], errors="coerce").dropna()
        rec["n_params"] = float(params.max()) if len(params) else math.nan
        secs = pd.to_numeric(tr["wall_seconds"], errors="coerce").dropna()
        rec["train_minutes_mean"] = float(secs.mean() / 60) if len(secs) else math.nan
        rec["train_minutes_std"] = float(secs.std(ddof=1) / 60) if len(secs) > 1 else math.nan
        inf = infer[(infer["model"] == model) & (infer["data"] == data)]
        vps = pd.to_numeric(inf["voxels_per_second"], errors="coerce").dropna()
        rec["infer_mvox_per_s_mean"] = float(vps.mean() / 1e6) if len(vps) else math.nan
        rec["infer_mvox_per_s_std"] = float(vps.std(ddof=1) / 1e6) if len(vps) > 1 else math.nan
        # Seconds per gigavoxel: the cost of running the model on a whole dataset (DESIGN.md).
        rec["infer_s_per_gvox"] = float(1e9 / vps.mean()) if len(vps) and vps.mean() > 0 else math.nan
        records.append(rec)
    num = pd.DataFrame(records)
    eligible = (num["model"] != UPPER_BOUND).to_numpy() if len(num) else np.zeros(0, bool)
    flags = {m: best_mask(num[f"{m}_mean"], METRICS[m][2], METRICS[m][3], eligible) for m in METRICS} if len(num) else {}
    num["best"] = _best_column(flags, len(num))

    fixed_label = f"F1 (t={fixed_threshold:g})" if fixed_threshold is not None else "F1 (fixed thr.)"
    labels = {m: metric_label(m) for m in METRICS}
    labels["f1_fixed"] = fixed_label
    disp = pd.DataFrame({"Model": num.get("model", []), "Data": num.get("data", [])})
    bold = pd.DataFrame(False, index=disp.index, columns=[])
    for m, (_, _, _, dec) in METRICS.items():
        disp[labels[m]] = [fmt_mean_std(a, b, dec) for a, b in zip(num[f"{m}_mean"], num[f"{m}_std"])]
        bold[labels[m]] = flags[m] if len(num) else []
    for m in TESTED_METRICS:
        disp[f"p {METRICS[m][0].split(' (')[0]}"] = [fmt_p(p) for p in num[f"{m}_p"]]
    disp["Params"] = [MISSING if not np.isfinite(p) else f"{int(p):,}" for p in num["n_params"]]
    disp["Train (min)"] = [fmt_mean_std(a, b, 1) for a, b in zip(num["train_minutes_mean"], num["train_minutes_std"])]
    disp["Infer (Mvox/s)"] = [fmt_mean_std(a, b, 2) for a, b in zip(num["infer_mvox_per_s_mean"], num["infer_mvox_per_s_std"])]
    bold = bold.reindex(columns=disp.columns, fill_value=False)
    caption = (f"Summary over test sections pooled over folds: mean ± standard deviation (the CSV adds "
               f"{confidence:.0%} percentile-bootstrap confidence intervals). Segmentation metrics at the threshold "
               f"chosen on validation; {fixed_label} at the fixed threshold. p: two-sided Wilcoxon signed-rank test "
               f"against bicubic, paired by section ({MISSING} when fewer than 2 pairs or all differences are zero). "
               f"Bold: best per column (higher is better for PSNR, SSIM, FRC, F1; lower for VOI and ARAND), "
               f"the HR upper bound excluded.")
    return Table("summary", caption, num, disp, bold, ["Model", "Data"])


def per_specimen_table(sections: pd.DataFrame, rows=None) -> Table:
    """One row per (specimen, model, data): mean ± std over that specimen's test sections."""
    order = ordered_rows(sections, rows)
    records = []
    for specimen in sorted(sections["specimen"].unique()):
        for model, data in order:
            sub = sections[(sections["specimen"] == specimen) & (sections["model"] == model) & (sections["data"] == data)]
            if sub.empty:
                continue
            rec = {"specimen": specimen, "model": model, "data": data, "n_sections": int(len(sub))}
            for m in METRICS:
                x = sub[m].dropna()
                rec[f"{m}_mean"] = float(x.mean()) if len(x) else math.nan
                rec[f"{m}_std"] = float(x.std(ddof=1)) if len(x) > 1 else math.nan
            records.append(rec)
    cols = ["specimen", "model", "data", "n_sections"] + [f"{m}_{k}" for m in METRICS for k in ("mean", "std")]
    num = pd.DataFrame(records, columns=cols)
    flags = {m: np.zeros(len(num), bool) for m in METRICS}
    for _, idx in num.groupby("specimen", sort=False).groups.items():
        idx = np.asarray(idx)
        eligible = (num.loc[idx, "model"] != UPPER_BOUND).to_numpy()
        for m, (_, _, higher, dec) in METRICS.items():
            flags[m][idx] = best_mask(num.loc[idx, f"{m}_mean"], higher, dec, eligible)
    num["best"] = _best_column(flags, len(num))
    disp = pd.DataFrame({"Specimen": num["specimen"], "Model": num["model"], "Data": num["data"]})
    bold = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    for m, (_, _, _, dec) in METRICS.items():
        disp[metric_label(m)] = [fmt_mean_std(a, b, dec) for a, b in zip(num[f"{m}_mean"], num[f"{m}_std"])]
        bold[metric_label(m)] = flags[m]
    caption = ("Per test specimen: mean ± standard deviation over its test sections. "
               "Bold: best per column within a specimen, the HR upper bound excluded.")
    return Table("per_specimen", caption, num, disp, bold, ["Specimen", "Model", "Data"])


def training_strategy_table(sections: pd.DataFrame, rows=None) -> Table:
    """The EMSR study's Table III shape: (metric, model, training data) x specimen + all.

    Only trained models (data other than 'none') appear. Bold: best training
    data per (metric, model) and column. 'All' pools every test section.
    """
    order = [r for r in ordered_rows(sections, rows) if r[1] != "none" and r[0] != UPPER_BOUND]
    specimens = sorted(sections["specimen"].unique()) if len(sections) else []
    columns = specimens + ["all"]
    records = []
    for m in STRATEGY_METRICS:
        for model, data in order:
            sub = sections[(sections["model"] == model) & (sections["data"] == data)]
            for col in columns:
                x = (sub if col == "all" else sub[sub["specimen"] == col])[m].dropna()
                records.append({"metric": m, "model": model, "data": data, "specimen": col,
                                "mean": float(x.mean()) if len(x) else math.nan,
                                "std": float(x.std(ddof=1)) if len(x) > 1 else math.nan, "n": int(len(x))})
    num = pd.DataFrame(records, columns=["metric", "model", "data", "specimen", "mean", "std", "n"])
    num["best"] = False
    for (m, _, _), idx in num.groupby(["metric", "model", "specimen"], sort=False).groups.items():
        num.loc[idx, "best"] = best_mask(num.loc[idx, "mean"], METRICS[m][2], METRICS[m][3])

    disp_rows, bold_rows = [], []
    for m in STRATEGY_METRICS:
        label, _, higher, dec = METRICS[m]
        for model, data in order:
            sub = num[(num["metric"] == m) & (num["model"] == model) & (num["data"] == data)].set_index("specimen")
            row = {"Metric": f"{metric_label(m)} {'↑' if higher else '↓'}", "Model": model, "Data": data}
            brow = {"Metric": False, "Model": False, "Data": False}
            for col in columns:
                name = "All" if col == "all" else col
                row[name] = fmt_mean_std(sub.at[col, "mean"], sub.at[col, "std"], dec)
                brow[name] = bool(sub.at[col, "best"])
            disp_rows.append(row)
            bold_rows.append(brow)
    disp_cols = ["Metric", "Model", "Data"] + [("All" if c == "all" else c) for c in columns]
    disp = pd.DataFrame(disp_rows, columns=disp_cols)
    bold = pd.DataFrame(bold_rows, columns=disp_cols).fillna(False).astype(bool)
    caption = ("Training strategies (shape of Table III of the EMSR study): each trained model on acquired (real) "
               "pairs and on each synthetic degradation; mean ± standard deviation over the test sections of each "
               "specimen, and over all test sections. Bold: best training data per model, metric and column.")
    return Table("training_strategy", caption, num, disp, bold, ["Metric", "Model", "Data"])


def threshold_table(seg: pd.DataFrame, metric: str, rows=None) -> Table:
    """The Chalmers study's Table 4 shape: rows (model, data), columns agglomeration thresholds."""
    label, _, higher, dec = METRICS[metric]
    label = label.split(" (")[0]
    order = ordered_rows(seg, rows)
    thresholds = sorted(seg["threshold"].unique()) if len(seg) else []
    records = []
    for model, data in order:
        sub = seg[(seg["model"] == model) & (seg["data"] == data)]
        rec = {"model": model, "data": data}
        for t in thresholds:
            x = pd.to_numeric(sub.loc[np.isclose(sub["threshold"], t), metric], errors="coerce").dropna()
            rec[f"{metric}_t{t:g}_mean"] = float(x.mean()) if len(x) else math.nan
            rec[f"{metric}_t{t:g}_std"] = float(x.std(ddof=1)) if len(x) > 1 else math.nan
        records.append(rec)
    num = pd.DataFrame(records, columns=["model", "data"] + [f"{metric}_t{t:g}_{k}" for t in thresholds for k in ("mean", "std")])
    eligible = (num["model"] != UPPER_BOUND).to_numpy()
    flags = {f"t{t:g}": best_mask(num[f"{metric}_t{t:g}_mean"], higher, dec, eligible) for t in thresholds}
    num["best"] = _best_column(flags, len(num))
    disp = pd.DataFrame({"Model": num["model"], "Data": num["data"]})
    bold = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    for t in thresholds:
        col = f"t = {t:g}"
        disp[col] = [fmt_mean_std(a, b, dec) for a, b in zip(num[f"{metric}_t{t:g}_mean"], num[f"{metric}_t{t:g}_std"])]
        bold[col] = flags[f"t{t:g}"]
    unit = f" ({METRICS[metric][1]})" if METRICS[metric][1] else ""
    caption = (f"{label}{unit} for each agglomeration threshold (shape of Table 4 of the Chalmers study): mean ± "
               f"standard deviation over test sections pooled over folds. Bold: best per threshold "
               f"({'higher' if higher else 'lower'} is better), the HR upper bound excluded.")
    name = "thresholds_f1" if metric == "f1" else f"thresholds_{metric.split('_')[0]}"
    return Table(name, caption, num, disp, bold, ["Model", "Data"])


def paired_tests(sections: pd.DataFrame, rows=None, min_pairs: int = 2) -> pd.DataFrame:
    """Wilcoxon signed-rank of every (model, data) row against bicubic, per tested metric.

    q_value: Benjamini–Hochberg adjustment over all tests of the table.
    """
    records = []
    for model, data in ordered_rows(sections, rows):
        if (model, data) == BASELINE:
            continue
        for m in TESTED_METRICS:
            res = stats.paired_against(sections, m, model, data, BASELINE, min_pairs)
            records.append({"model": model, "data": data, "metric": m, **res})
    out = pd.DataFrame(records, columns=["model", "data", "metric", "n_pairs", "median_diff", "statistic", "p_value"])
    out["q_value"] = stats.bh_qvalues(out["p_value"]) if len(out) else []
    return out


def paired_tests_table(tests: pd.DataFrame) -> Table:
    disp = pd.DataFrame({
        "Model": tests["model"], "Data": tests["data"],
        "Metric": [metric_label(m) for m in tests["metric"]],
        "n": tests["n_pairs"].astype(int).astype(str),
        "Median diff.": [fmt_value(d, METRICS[m][3]) for d, m in zip(tests["median_diff"], tests["metric"])],
        "W": [fmt_value(w, 1) for w in tests["statistic"]],
        "p": [fmt_p(p) for p in tests["p_value"]],
        "q (BH)": [fmt_p(q) for q in tests["q_value"]],
    })
    caption = ("Two-sided Wilcoxon signed-rank tests of each row against bicubic, paired by (fold, specimen, section); "
               "median diff. = median of (row - bicubic); q: Benjamini–Hochberg adjusted over the whole table; "
               f"{MISSING} when fewer than 2 pairs exist or all differences are zero. Sections of one specimen are "
               "correlated, so p-values are optimistic.")
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
    styler = (disp.style.hide(axis="index")
              .format(escape="latex", subset=[c for c in table.text_columns if c in disp.columns])
              .format_index(escape="latex", axis=1)
              .apply(lambda _: css, axis=None))
    col_format = "".join("l" if c in table.text_columns else "r" for c in disp.columns)
    caption = table.caption.replace("±", r"$\pm$").replace(MISSING, "--")
    caption = caption.replace("%", r"\%").replace("_", r"\_").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")
    tex = styler.to_latex(hrules=True, convert_css=True, column_format=col_format or "l",
                          caption=caption, label=f"tab:{table.name}", position="htbp")
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
