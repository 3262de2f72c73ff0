"""Paper figures: one colour-blind-safe style, PNG + PDF, written atomically.

Colours follow the Okabe–Ito palette and identify the model (bicubic grey, the
HR upper bound black); line style, marker and hatch identify the training data,
so every figure reads the same way. All plotting goes through `style()` and
`save()`; figures are built with matplotlib's object API on the Agg backend.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import patheffects  # noqa: E402

from ..io import atomic_path  # noqa: E402
from . import stats  # noqa: E402
from .collect import KEYS  # noqa: E402
from .columns import DENOISED, VOLUME, column, headline, summary_columns, variants_in  # noqa: E402
from .layout import FIGURE_FORMATS  # noqa: E402
from .tables import BASELINE, UPPER_BOUND, observations  # noqa: E402

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
}
MODEL_CYCLE = [
    OKABE_ITO[k] for k in ("blue", "orange", "bluish_green", "vermillion", "reddish_purple", "sky_blue", "yellow")
]
BASELINE_COLOR = "#7F7F7F"
DATA_STYLES = [  # (linestyle, marker, hatch), by order of appearance of the training data
    ("-", "o", ""),
    ("--", "s", "//"),
    (":", "^", ".."),
    ("-.", "D", "xx"),
    ((0, (5, 1, 1, 1)), "v", "\\\\"),
]

RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.prop_cycle": matplotlib.cycler(color=MODEL_CYCLE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "legend.frameon": False,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "image.cmap": "gray",
    "image.interpolation": "nearest",
    "figure.dpi": 100,  # constrained layout fits legends; no bbox="tight" (a second draw per save)
    "svg.hashsalt": "srseg",
}


@contextlib.contextmanager
def style(dpi: int = 200):
    """The one figure style of the project (use as a context manager)."""
    with plt.rc_context({**RC, "savefig.dpi": dpi}):
        yield


# Without a date or a version string, two runs of one config write byte-identical figures.
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None, "Creator": None}}


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    """Write <name>.png and <name>.pdf atomically, with reproducible bytes (METADATA)."""
    out_dir = Path(out_dir)
    paths = []
    for ext in FIGURE_FORMATS:
        path = out_dir / f"{name}.{ext}"
        meta = METADATA[ext]
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, metadata=meta)
        paths.append(path)
    plt.close(fig)
    return paths


def row_styles(rows: Sequence[tuple[str, str]]) -> dict:
    """(model, data) -> dict(color, linestyle, marker, hatch, label), stable across figures."""
    models = list(dict.fromkeys(m for m, _ in rows))
    datas = list(dict.fromkeys(d for _, d in rows if d != "none"))
    colors, i = {}, 0
    for m in models:
        if m == BASELINE[0]:
            colors[m] = BASELINE_COLOR
        elif m == UPPER_BOUND:
            colors[m] = OKABE_ITO["black"]
        else:
            colors[m] = MODEL_CYCLE[i % len(MODEL_CYCLE)]
            i += 1
    out = {}
    for m, d in rows:
        ls, marker, hatch = ("-", "o", "") if d == "none" else DATA_STYLES[datas.index(d) % len(DATA_STYLES)]
        out[(m, d)] = {"color": colors[m], "linestyle": ls, "marker": marker, "hatch": hatch, "label": row_label(m, d)}
    return out


def row_label(model: str, data: str) -> str:
    if model == UPPER_BOUND:
        return "HR (upper bound)"
    return model if data == "none" else f"{model} / {data}"


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _axis_label(metric: str, at_threshold: bool = False, variants=()) -> str:
    """'VOI split (bits), lower is better'; at_threshold drops the '(val. thr.)' of F1."""
    c = column(metric, variants)
    return f"{c.label(plain=at_threshold)}, {c.direction()}"


def _over(variants) -> str:
    return "test sections (3D: test volumes)" if VOLUME in variants else "test sections"


# --------------------------------------------------------------------------- quantitative figures


def metric_bars(summary: pd.DataFrame, rows, out_dir, dpi: int = 200, confidence: float = 0.95) -> list[Path]:
    """Bar chart per summary metric, grouped by training data, error bars = bootstrap CI; HR as a dashed line.

    Variant columns (3D, vs denoised HR) are panels of their own, beside the plain ones.
    """
    styles = row_styles(rows)
    cand = [r for r in rows if r[0] != UPPER_BOUND]
    datas = list(dict.fromkeys(d for _, d in cand))
    variants = variants_in(summary)
    metrics = [c.name for c in summary_columns(variants) if not c.fixed]
    ncols = 4
    nrows = max(1, math.ceil(len(metrics) / ncols))
    with style(dpi):
        fig, axes = plt.subplots(nrows, ncols, figsize=(11, 2.6 * nrows), squeeze=False, layout="constrained")
        for ax in axes.flat[len(metrics) :]:
            ax.set_axis_off()
        for ax, m in zip(axes.flat, metrics):
            width = 0.8 / max(1, max((sum(1 for r in cand if r[1] == d) for d in datas), default=1))
            plotted = False
            for gi, d in enumerate(datas):
                group = [r for r in cand if r[1] == d]
                for bi, r in enumerate(group):
                    row = summary[(summary["model"] == r[0]) & (summary["data"] == r[1])]
                    if row.empty or not np.isfinite(row[f"{m}_mean"].iloc[0]):
                        continue
                    mean, lo, hi = (float(row[f"{m}_{k}"].iloc[0]) for k in ("mean", "ci_low", "ci_high"))
                    x = gi + (bi - (len(group) - 1) / 2) * width
                    err = None if not (np.isfinite(lo) and np.isfinite(hi)) else [[mean - lo], [hi - mean]]
                    st = styles[r]
                    ax.bar(
                        x,
                        mean,
                        width * 0.92,
                        yerr=err,
                        color=st["color"],
                        hatch=st["hatch"],
                        edgecolor="white",
                        linewidth=0.5,
                        capsize=2,
                        error_kw={"elinewidth": 0.8},
                    )
                    plotted = True
            hr = summary[summary["model"] == UPPER_BOUND]
            if len(hr) and np.isfinite(hr[f"{m}_mean"].iloc[0]):
                ax.axhline(float(hr[f"{m}_mean"].iloc[0]), color="black", linestyle="--", linewidth=1)
            if not plotted:
                _no_data(ax)
            else:
                ax.set_xticks(range(len(datas)), datas)
                ax.set_xlabel("training data")
                ax.grid(axis="x", visible=False)
            c = column(m, variants)
            ax.set_ylabel(f"{c.label()}\n{c.direction()}")  # two lines: variant labels are long
            vals = summary[f"{m}_mean"].to_numpy(float)
            if column(m).metric.name == "psnr" and np.isfinite(vals).any():  # PSNR bars from 0 hide the differences
                lo = np.nanmin(summary[f"{m}_ci_low"].fillna(summary[f"{m}_mean"]).to_numpy(float))
                ax.set_ylim(bottom=max(0.0, math.floor(lo - 1)))
        models = list(dict.fromkeys(r[0] for r in cand))
        handles = [
            plt.Rectangle((0, 0), 1, 1, color=styles[next(r for r in cand if r[0] == m)]["color"]) for m in models
        ]
        labels = list(models)
        for d in [d for d in datas if d != "none"]:  # hatch = training data
            st = styles[next(r for r in cand if r[1] == d)]
            handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="0.3", hatch=st["hatch"]))
            labels.append(f"data: {d}")
        if len(summary[summary["model"] == UPPER_BOUND]):
            handles.append(plt.Line2D([], [], color="black", linestyle="--"))
            labels.append("HR (upper bound)")
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(len(labels), 6) or 1,
            title=f"error bars: {confidence:.0%} bootstrap CI over {_over(variants)}",
        )
        return save(fig, out_dir, "metric_bars")


def threshold_curves(seg: pd.DataFrame, rows, out_dir, dpi: int = 200) -> list[Path]:
    """VOI split, VOI merge and F1 against the agglomeration threshold, one line per (model, data).

    In the headline unit: whole volumes (3D) where 3D scores exist, else sections.
    """
    styles = row_styles(rows)
    variants = variants_in(seg)
    cols = [headline(m, variants) for m in ("voi_split", "voi_merge", "f1")]
    with style(dpi):
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), layout="constrained")
        for ax, c in zip(axes, cols):
            m = c.name
            for r in rows:
                sub = seg[(seg["model"] == r[0]) & (seg["data"] == r[1])]
                if sub.empty:
                    continue
                curve = observations(sub, c, KEYS + ("threshold",)).groupby("threshold")[m].mean()
                st = styles[r]
                ax.plot(
                    curve.index,
                    curve.to_numpy(),
                    color=st["color"],
                    linestyle=st["linestyle"],
                    marker=st["marker"],
                    label=st["label"],
                )
            if not ax.lines:
                _no_data(ax)
            ax.set_xlabel("agglomeration threshold")
            ax.set_ylabel(_axis_label(m, at_threshold=True, variants=variants))
        handles, labels = axes[0].get_legend_handles_labels()
        over = "test volumes" if cols[0].per_volume else "test sections"
        if handles:
            fig.legend(handles, labels, loc="outside right upper", title=f"mean over {over}")
        return save(fig, out_dir, "threshold_curves")


def frc_curves(frc: pd.DataFrame, rows, out_dir, dpi: int = 200, n_points: int = 128) -> list[Path]:
    """Mean FRC curve per (model, data): section curves interpolated onto one frequency grid."""
    styles = row_styles(rows)
    with style(dpi):
        fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
        if len(frc):
            # Specimens may differ in size and so in ring frequencies: use the range all curves cover.
            per_curve = frc.groupby(["model", "data", "fold", "specimen", "section"])["frequency_per_nm"]
            f_max = float(per_curve.max().min())
            grid = np.linspace(0, f_max, n_points)
            for r in rows:
                sub = frc[(frc["model"] == r[0]) & (frc["data"] == r[1])]
                if sub.empty:
                    continue
                curves = [
                    np.interp(grid, g["frequency_per_nm"].to_numpy(float), g["frc"].to_numpy(float))
                    for _, g in sub.sort_values("frequency_per_nm").groupby(["fold", "specimen", "section"])
                ]
                st = styles[r]
                ax.plot(grid, np.mean(curves, axis=0), color=st["color"], linestyle=st["linestyle"], label=st["label"])
            ax.axhline(1 / 7, color="0.3", linestyle=":", linewidth=1, label="1/7 threshold")
            ax.set_xlim(0, f_max)
            ax.legend(loc="upper right")
        else:
            _no_data(ax)
        ax.set_xlabel("spatial frequency (nm$^{-1}$)")
        ax.set_ylabel("Fourier ring correlation (–)")
        ax.set_title("FRC of SR against HR, mean over test sections")
        return save(fig, out_dir, "frc_curves")


def quality_vs_segmentation(
    summary: pd.DataFrame, rows, out_dir, dpi: int = 200, confidence: float = 0.95
) -> list[Path]:
    """Does image quality predict segmentation? PSNR / SSIM against VOI sum, one point per (model, data).

    VOI sum in its headline unit (3D where present); PSNR / SSIM against the acquired HR and,
    where scored, against the denoised HR (two more panels).
    """
    styles = row_styles(rows)
    cand = summary[summary["model"] != UPPER_BOUND]
    variants = variants_in(summary)
    voi = headline("voi_sum", variants).name
    xs = ["psnr", "ssim"] + ([f"psnr_{DENOISED}", f"ssim_{DENOISED}"] if DENOISED in variants else [])
    with style(dpi):
        fig, axes = plt.subplots(1, len(xs), figsize=(4.5 * len(xs), 3.8), layout="constrained", squeeze=False)
        axes = axes[0]
        for ax, m in zip(axes, xs):
            for _, row in cand.iterrows():
                x, y = row[f"{m}_mean"], row[f"{voi}_mean"]
                if not (np.isfinite(x) and np.isfinite(y)):
                    continue
                st = styles[(row["model"], row["data"])]
                xerr = (
                    [[x - row[f"{m}_ci_low"]], [row[f"{m}_ci_high"] - x]] if np.isfinite(row[f"{m}_ci_low"]) else None
                )
                yerr = (
                    [[y - row[f"{voi}_ci_low"]], [row[f"{voi}_ci_high"] - y]]
                    if np.isfinite(row[f"{voi}_ci_low"])
                    else None
                )
                ax.errorbar(
                    x,
                    y,
                    xerr=xerr,
                    yerr=yerr,
                    color=st["color"],
                    marker=st["marker"],
                    markersize=6,
                    linestyle="none",
                    elinewidth=0.8,
                    capsize=2,
                    label=st["label"],
                )
            rho = stats.spearman(cand[f"{m}_mean"], cand[f"{voi}_mean"])
            ax.set_title(
                f"Spearman ρ = {rho:.2f} (n = {int(np.isfinite(cand[f'{m}_mean']).sum())})"
                if np.isfinite(rho)
                else "Spearman ρ: fewer than 3 rows"
            )
            if not ax.lines:
                _no_data(ax)
            ax.set_xlabel(_axis_label(m, variants=variants))
            ax.set_ylabel(_axis_label(voi, variants=variants))
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside right upper", title=f"error bars: {confidence:.0%} CI")
        return save(fig, out_dir, "quality_vs_segmentation")


def training_curves(logs: pd.DataFrame, rows, out_dir, dpi: int = 200, smooth: int = 0) -> list[Path]:
    """Training loss (smoothed), validation L1 and validation PSNR against step, mean over folds."""
    styles = row_styles(rows)
    with style(dpi):
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
        for r in rows:
            sub = logs[(logs["model"] == r[0]) & (logs["data"] == r[1])]
            if sub.empty:
                continue
            st = styles.get(r) or row_styles([r])[r]
            train = sub.groupby("step")["loss"].mean().dropna()
            # Per-step losses are noisy: a rolling mean over ~2 % of the run shows the trend.
            window = smooth or max(1, len(train) // 50)
            axes[0].plot(
                train.index,
                train.rolling(window, min_periods=1).mean(),
                color=st["color"],
                linestyle=st["linestyle"],
                label=st["label"],
            )
            for ax, col in ((axes[1], "val_l1"), (axes[2], "val_psnr")):
                val = sub.dropna(subset=[col]).groupby("step")[col].mean()
                if len(val):
                    ax.plot(
                        val.index,
                        val.to_numpy(),
                        color=st["color"],
                        linestyle=st["linestyle"],
                        marker=st["marker"],
                        label=st["label"],
                    )
        labels = ["training loss, rolling mean (–)", "validation L1 loss (–)", "validation PSNR (dB)"]
        for ax, what in zip(axes, labels):
            if not ax.lines:
                _no_data(ax, "no trained models" if logs.empty else "not logged")
                continue
            ax.set_xlabel("training step")
            ax.set_ylabel(what)
            if "PSNR" not in what and all(np.nanmin(line.get_ydata()) > 0 for line in ax.lines):
                ax.set_yscale("log")
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside right upper", title="mean over folds")
        return save(fig, out_dir, "training_curves")


def alignment_qc(qc: list[dict], out_dir, dpi: int = 200, ncols: int = 3) -> list[Path]:
    """Montage of the align stage's qc.png files, titled with their match statistics."""
    with style(dpi):
        n = max(1, len(qc))
        ncols = min(ncols, n)
        nrows = math.ceil(n / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.6 * nrows), squeeze=False, layout="constrained")
        for ax in axes.flat:
            ax.set_axis_off()
        for ax, entry in zip(axes.flat, qc):
            if entry.get("png") and Path(entry["png"]).exists():
                ax.imshow(mpimg.imread(entry["png"]), interpolation="antialiased")
            parts = [entry["specimen"]]
            if np.isfinite(entry.get("n_inliers", math.nan)):
                parts.append(f"{int(entry['n_inliers'])}/{int(entry.get('n_matches', 0) or 0)} inliers")
            if np.isfinite(entry.get("residual_px", math.nan)):
                parts.append(f"residual {entry['residual_px']:.2f} px")
            if np.isfinite(entry.get("error_px", math.nan)):
                parts.append(f"error {entry['error_px']:.2f} px")
            ax.set_title(" · ".join(parts))
        if not qc:
            _no_data(axes.flat[0], "no alignment QC")
        return save(fig, out_dir, "alignment_qc")


# --------------------------------------------------------------------------- qualitative figures


def _scale_bar(ax, px_nm: float | None, shape: tuple[int, int]) -> None:
    """A white scale bar (black outline, readable on any grey) of a round length near a quarter of the crop."""
    if not px_nm or not np.isfinite(px_nm):
        return
    height_px, width_px = shape[:2]
    target = width_px * px_nm / 4
    nice = [v for v in (10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000) if v <= target]
    length = nice[-1] if nice else target
    label = f"{length / 1000:g} µm" if length >= 1000 else f"{length:g} nm"
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    x0, y = 0.05 * width_px, 0.92 * height_px  # image coordinates: the lower-left corner
    ax.plot(
        [x0, x0 + length / px_nm],
        [y, y],
        color="white",
        linewidth=3,
        solid_capstyle="butt",
        path_effects=[patheffects.withStroke(linewidth=4.5, foreground="black")],
    )
    ax.text(x0, y - 0.03 * height_px, label, color="white", ha="left", va="bottom", path_effects=outline)


def _zoom_box(shape, zoom: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the zoomed region: lower-left part of the crop, clear of the inset."""
    h, w = shape
    zh, zw = max(4, int(h * zoom)), max(4, int(w * zoom))
    cy, cx = int(h * 0.68), int(w * 0.3)
    y0, x0 = min(max(0, cy - zh // 2), h - zh), min(max(0, cx - zw // 2), w - zw)
    return y0, y0 + zh, x0, x0 + zw


def _panel(ax, img, title, px_nm, zoom, cmap="gray", vmin=0.0, vmax=1.0) -> None:
    ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if zoom:
        y0, y1, x0, x1 = _zoom_box(img.shape[:2], zoom)
        ins = ax.inset_axes([0.56, 0.56, 0.42, 0.42])
        ins.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ins.set_xlim(x0 - 0.5, x1 - 0.5)
        ins.set_ylim(y1 - 0.5, y0 - 0.5)
        ins.set_xticks([])
        ins.set_yticks([])
        ins.grid(False)
        for spine in ins.spines.values():
            spine.set_visible(True)
            spine.set_edgecolor(OKABE_ITO["orange"])
            spine.set_linewidth(1.2)
        ax.indicate_inset_zoom(ins, edgecolor=OKABE_ITO["orange"], alpha=1.0)
    _scale_bar(ax, px_nm, img.shape)
    ax.set_xlim(-0.5, img.shape[1] - 0.5)  # the scale bar must not widen the view
    ax.set_ylim(img.shape[0] - 0.5, -0.5)


def qualitative_grid(
    panels: list[tuple[str, np.ndarray]],
    px_nm: float | None,
    out_dir,
    title: str,
    zoom: float = 0.25,
    dpi: int = 200,
    max_cols: int = 5,
) -> list[Path]:
    """The same crop for LR (nearest-upscaled), bicubic, each model and HR, with a zoomed inset."""
    with style(dpi):
        n = max(1, len(panels))
        ncols = min(max_cols, math.ceil(math.sqrt(n)))  # near-square grid
        nrows = math.ceil(n / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, 3.1 * nrows), squeeze=False, layout="constrained")
        for ax in axes.flat:
            ax.set_axis_off()
        for ax, (name, img) in zip(axes.flat, panels):
            ax.set_axis_on()
            _panel(ax, img, name, px_nm, zoom)
        fig.suptitle(title)
        return save(fig, out_dir, "qualitative")


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """Labels coloured over the grey image (Okabe–Ito colours cycled), boundaries in white."""
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    colors = [matplotlib.colors.to_rgb(c) for c in MODEL_CYCLE]
    rgb = label2rgb(
        labels, image=image, colors=colors, alpha=alpha, bg_label=0, bg_color=None, kind="overlay", image_alpha=1.0
    )
    rgb[find_boundaries(labels, mode="inner")] = 1.0
    return np.clip(rgb, 0, 1)


def segmentation_overlays(
    panels: list[tuple[str, np.ndarray, np.ndarray]], px_nm: float | None, out_dir, title: str, dpi: int = 200
) -> list[Path]:
    """Segmentations (bicubic, best model, HR, reference) over their images, same crop as the grid."""
    with style(dpi):
        n = max(1, len(panels))
        fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.3), squeeze=False, layout="constrained")
        for ax, (name, img, lab) in zip(axes.flat, panels):
            _panel(ax, overlay(img, lab), name, px_nm, zoom=0)
        if not panels:
            _no_data(axes.flat[0], "no segmentations")
        fig.suptitle(title)
        return save(fig, out_dir, "segmentation_overlays")
