"""The ruler's own quality, shown first in the report: real HR (the `hr` row) through the affinity network.

Every row is judged by how well the same affinity network + waterz segments its output, so the
report opens with how well that ruler segments real HR: per test specimen (its fold's
network) and agglomeration threshold, VOI split / merge / sum, adapted Rand error and F1, the
validation-chosen threshold marked; and a sentence that states the gap between the best SR
row and the ruler's own HR score (a row can only be as good as the ruler is on HR).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .collect import KEYS
from .columns import VOLUME, Column, column, headline, variants_in
from .tables import BASELINE, MISSING, UPPER_BOUND, Table, fmt_value, observations

METRICS = ("voi_split", "voi_merge", "voi_sum", "arand", "f1")


def _columns(variants) -> list[Column]:
    """The ruler's columns: each metric in its headline unit, then per section where that is 3D."""
    cols = [headline(m, variants) for m in METRICS]
    if VOLUME in tuple(variants):
        cols += [column(m) for m in ("voi_sum", "f1")]
    return cols


def _at(sub: pd.DataFrame, c: Column, keys=KEYS) -> float:
    """Mean of column `c` over the independent observations of `sub` (sections, or volumes for 3D)."""
    if sub.empty or c.name not in sub:
        return float("nan")
    values = pd.to_numeric(observations(sub, c, keys)[c.name], errors="coerce").dropna()
    return float(values.mean()) if len(values) else float("nan")


def ruler_gap(seg: pd.DataFrame) -> dict:
    """The ruler's HR score against the best SR row, at each row's validation-chosen threshold.

    {metric, hr, best_row, best, gap, relative}: the headline VOI sum (3D where scored) of the
    `hr` row and of the SR row with the lowest one (bicubic included, as an SR baseline),
    gap = best - hr (bits) and relative = gap / hr. NaN entries when a side is missing.
    """
    c = headline("voi_sum", variants_in(seg))
    chosen = seg.loc[seg["is_best"]] if "is_best" in seg else seg.iloc[:0]
    hr = _at(chosen[chosen["model"] == UPPER_BOUND], c)
    best_row, best = None, float("nan")
    for (model, data), sub in chosen[chosen["model"] != UPPER_BOUND].groupby(["model", "data"], sort=True):
        v = _at(sub, c)
        if np.isfinite(v) and (best_row is None or v < best):
            best_row, best = (model, data), v
    gap = best - hr
    return {
        "metric": c.name,
        "hr": hr,
        "best_row": best_row,
        "best": best,
        "gap": gap,
        "relative": gap / hr if np.isfinite(gap) and hr > 0 else float("nan"),
    }


def gap_sentence(seg: pd.DataFrame) -> str:
    """One sentence: how far the best SR row is from the ruler's own HR score."""
    g = ruler_gap(seg)
    c = headline("voi_sum", variants_in(seg))
    unit = "3D" if c.per_volume else "per section"
    if not np.isfinite(g["hr"]):
        return "The hr row (real HR through the ruler) has no scores, so the ruler's own quality is unknown."
    if g["best_row"] is None:
        return f"The ruler segments real HR with a VOI sum of {g['hr']:.3f} bits ({unit}); no SR row was scored."
    model, data = g["best_row"]
    row = f"{model} ({data})" if (model, data) != BASELINE else "bicubic"
    rel = f", {g['relative']:+.0%} of the ruler's own" if np.isfinite(g["relative"]) else ""
    return (
        f"The ruler segments real HR with a VOI sum of {g['hr']:.3f} bits ({unit}, at each fold's validation-chosen "
        f"threshold); the best SR row, {row}, reaches {g['best']:.3f} bits: a gap of {g['gap']:.3f} bits{rel}."
    )


def ruler_table(seg: pd.DataFrame) -> Table:
    """Per test specimen (with its fold) and threshold: the hr row's VOI split / merge / sum, ARAND and F1.

    `chosen` marks the fold's validation-chosen threshold (threshold.json); a last row per
    threshold pools every test specimen ("all"). The caption ends with `gap_sentence`.
    """
    variants = variants_in(seg)
    cols = _columns(variants)
    hr = seg[seg["model"] == UPPER_BOUND] if len(seg) else seg
    thresholds = sorted(hr["threshold"].unique()) if len(hr) else []
    keys = KEYS + ("threshold",)
    records = []
    groups = sorted(hr[["fold", "specimen"]].drop_duplicates().itertuples(index=False, name=None)) if len(hr) else []
    for fold, specimen in [*groups, ("all", "all")]:
        sub = hr if fold == "all" else hr[(hr["fold"] == fold) & (hr["specimen"] == specimen)]
        for t in thresholds:
            at = sub.loc[np.isclose(sub["threshold"], t)]
            chosen = sorted(at.loc[at["is_best"], "fold"].unique()) if "is_best" in at else []
            rec = {"specimen": specimen, "fold": fold, "threshold": float(t), "chosen": ",".join(map(str, chosen))}
            rec.update({c.name: _at(at, c, keys) for c in cols})
            records.append(rec)
    num = pd.DataFrame(records, columns=["specimen", "fold", "threshold", "chosen", *[c.name for c in cols]])
    disp = pd.DataFrame(
        {
            "Specimen": num["specimen"],
            "Fold": num["fold"],
            "Threshold": [f"{t:g}" for t in num["threshold"]],
            "Chosen": [
                "yes" if c and f != "all" else (c.replace(",", ", ") if c else MISSING)
                for c, f in zip(num["chosen"], num["fold"])
            ],
        }
    )
    bold = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    for c in cols:
        label = c.label(plain=True)
        disp[label] = [fmt_value(v, c.decimals) for v in num[c.name]]
        bold[label] = (num["chosen"] != "").to_numpy() & (num["fold"] != "all").to_numpy()
    unit = (
        "3D columns score each test volume at once, per-section columns each section"
        if VOLUME in variants
        else "each test section is scored on its own and averaged"
    )
    caption = (
        "The ruler's own quality: the real HR of each test specimen segmented by its fold's affinity network "
        f"(the hr row), at every agglomeration threshold; {unit}. Chosen (bold): the threshold that fold chose on "
        "its training specimens' validation sections, the one the summary reports; 'all' pools every test "
        f"specimen (Chosen lists the folds that chose it). {gap_sentence(seg)}"
    )
    return Table("ruler", caption, num, disp, bold, ["Specimen", "Fold", "Threshold", "Chosen"])


def ruler_figure(seg: pd.DataFrame, rows, out_dir: str | Path, dpi: int = 200) -> list[Path]:
    """VOI split, VOI merge, VOI sum and F1 of the hr row against the threshold, one line per test specimen.

    The validation-chosen threshold of each specimen's fold is marked (filled marker); a dashed
    line shows the best SR row at its own chosen thresholds, so the gap reads off the VOI sum panel.
    """
    from . import figures

    variants = variants_in(seg)
    cols = [headline(m, variants) for m in ("voi_split", "voi_merge", "voi_sum", "f1")]
    hr = seg[seg["model"] == UPPER_BOUND] if len(seg) else seg
    gap = ruler_gap(seg) if len(seg) else {"best_row": None}
    with figures.style(dpi):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), layout="constrained")
        specimens = sorted(hr[["fold", "specimen"]].drop_duplicates().itertuples(index=False, name=None))
        colors = plt.get_cmap("tab10")
        for ax, c in zip(axes, cols):
            for i, (fold, specimen) in enumerate(specimens):
                sub = hr[(hr["fold"] == fold) & (hr["specimen"] == specimen)]
                curve = observations(sub, c, KEYS + ("threshold",)).groupby("threshold")[c.name].mean()
                color = colors(i % 10)
                ax.plot(
                    curve.index,
                    curve.to_numpy(),
                    color=color,
                    marker="o",
                    markerfacecolor="white",
                    label=f"{specimen} (fold {fold})",
                )
                best = sub.loc[sub["is_best"], "threshold"].unique()
                for t in best:
                    if t in curve.index:
                        ax.plot([t], [curve[t]], marker="o", color=color, linestyle="none")
            if c.metric.name == "voi_sum" and gap["best_row"] is not None and np.isfinite(gap["best"]):
                model, data = gap["best_row"]
                ax.axhline(
                    gap["best"],
                    color="0.3",
                    linestyle="--",
                    linewidth=1,
                    label=f"best SR row: {figures.row_label(model, data)}",
                )
            if not ax.lines:
                figures._no_data(ax)
            ax.set_xlabel("agglomeration threshold")
            ax.set_ylabel(c.label(plain=True))
        handles, labels = axes[2].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside right upper", title="hr row (filled: chosen)")
        fig.suptitle("The ruler on real HR", fontsize="medium")
        return figures.save(fig, out_dir, "ruler_curves")
