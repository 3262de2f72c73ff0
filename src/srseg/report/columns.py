"""The metric columns of the report, read from the metric registry (srseg.metrics.registry).

A `Column` is a registered metric as the report shows it: segmentation metrics at the
threshold chosen on validation, and, for those registered `at_fixed_threshold`, a second
column `<name>_fixed` at the fixed threshold. Tables and figures ask for columns by role
(`summary_columns`, `paired_test_columns`, `strategy_columns`) or by name (`column`), so a newly
registered metric shows up without touching the report.

Variants: the metrics rules write every registered metric a second time where it applies,

- `3d`: segmentation scored on the whole volume (`voi_sum_3d`; sections linked in z). One
  observation per test volume, not per section. When present it is the headline: its
  columns come first and the per-section ones beside them, labelled "per section".
- `denoised`: image metrics against the denoised HR (`psnr_denoised`, the EMSR protocol),
  beside those against the acquired HR, labelled "vs acquired" then.

Which variants a report shows is read from the data (`variants_in`): a variant shows where
some metrics file holds a finite value of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..metrics import IMAGE, KINDS, METRICS, SEGMENTATION, Metric, of_kind

VOLUME = "3d"
DENOISED = "denoised"
VARIANTS = {VOLUME: SEGMENTATION, DENOISED: IMAGE}  # variant -> the kind of metric it exists for
QUALIFIER = {VOLUME: "3D", DENOISED: "vs denoised"}  # label of a variant column
PLAIN_QUALIFIER = {SEGMENTATION: "per section", IMAGE: "vs acquired"}  # label of a plain column beside one


@dataclass(frozen=True)
class Column:
    metric: Metric
    fixed: bool = False  # the metric at the fixed agglomeration threshold
    variant: str = ""  # "" (per section, against acquired HR), "3d" or "denoised"
    qualified: bool = False  # a plain column shown beside its variant: its label says which it is

    @property
    def base(self) -> str:
        """The column in the metrics CSV: 'voi_sum', 'voi_sum_3d' (also for the _fixed twin)."""
        return f"{self.metric.name}_{self.variant}" if self.variant else self.metric.name

    @property
    def name(self) -> str:
        return f"{self.base}_fixed" if self.fixed else self.base

    @property
    def per_volume(self) -> bool:
        """One value per test volume (repeated on its section rows), not one per section."""
        return self.variant == VOLUME

    @property
    def higher(self) -> bool | None:
        return self.metric.higher_is_better

    @property
    def decimals(self) -> int:
        return self.metric.decimals

    def label(self, unit: bool = True, fixed_threshold: float | None = None, plain: bool = False) -> str:
        """'VOI split (bits)'; 'F1 (val. thr.)' / 'F1 (t=0.5)' where a fixed-threshold twin exists;
        'VOI sum 3D', 'VOI sum per section', 'PSNR vs denoised', 'PSNR vs acquired' for variants.

        plain: without the threshold qualifier (axes that already vary the threshold).
        """
        text = self.metric.label
        if self.variant:
            text += f" {QUALIFIER[self.variant]}"
        elif self.qualified:
            text += f" {PLAIN_QUALIFIER[self.metric.kind]}"
        if self.metric.at_fixed_threshold and not plain:
            if self.fixed:
                text += f" (t={fixed_threshold:g})" if fixed_threshold is not None else " (fixed thr.)"
            else:
                text += " (val. thr.)"
        return f"{text} ({self.metric.unit})" if unit and self.metric.unit else text

    def direction(self) -> str:
        return {True: "higher is better", False: "lower is better", None: "no better direction"}[self.higher]


def _registered() -> list[Metric]:
    """Image metrics, then segmentation metrics, each in registration order."""
    return [m for kind in KINDS for m in of_kind(kind)]


def variant_columns(frame_columns: Iterable[str]) -> dict[str, list[str]]:
    """variant -> the variant columns (CSV names) a frame with `frame_columns` could hold."""
    present = set(frame_columns)
    return {v: [f"{m.name}_{v}" for m in of_kind(kind) if f"{m.name}_{v}" in present] for v, kind in VARIANTS.items()}


def variants_in(*frames) -> tuple[str, ...]:
    """The variants some frame holds a finite value of (metrics CSVs, section table, summary numbers).

    A summary frame's `<name>_mean` columns count as well as the metrics' own.
    """
    found = set()
    for frame in frames:
        if frame is None or not len(frame):
            continue
        names = {c[: -len("_mean")] if c.endswith("_mean") else c: c for c in frame.columns}
        for v, cols in variant_columns(names).items():
            for col in cols:
                values = np.asarray(frame[names[col]].to_numpy(), dtype=float)
                if np.isfinite(values).any():
                    found.add(v)
                    break
    return tuple(v for v in VARIANTS if v in found)


def _blocks(m_list: list[Metric], variants: Iterable[str], kind: str, fixed_twins: bool) -> list[Column]:
    """The columns of one kind: plain then `denoised` (image); `3d` (headline) then plain (segmentation)."""
    variant = next((v for v in variants if VARIANTS[v] == kind), None)
    plain = [Column(m, qualified=variant is not None) for m in m_list]
    extra = [Column(m, variant=variant) for m in m_list] if variant else []
    ordered = extra + plain if variant == VOLUME else plain + extra
    out = []
    for c in ordered:
        out.append(c)
        if fixed_twins and c.metric.at_fixed_threshold:
            out.append(Column(c.metric, fixed=True, variant=c.variant, qualified=c.qualified))
    return out


def _by_role(role: str, variants: Iterable[str], fixed_twins: bool = False) -> list[Column]:
    variants = tuple(variants)
    out = []
    for kind in KINDS:
        out += _blocks([m for m in of_kind(kind) if getattr(m, role)], variants, kind, fixed_twins)
    return out


def summary_columns(variants: Iterable[str] = ()) -> list[Column]:
    """Columns of the summary and per-specimen tables (a fixed-threshold twin right after its metric)."""
    return _by_role("summary", variants, fixed_twins=True)


def paired_test_columns(variants: Iterable[str] = ()) -> list[Column]:
    """Metrics tested against bicubic (Wilcoxon)."""
    return _by_role("tested", variants)


def strategy_columns(variants: Iterable[str] = ()) -> list[Column]:
    """Metrics of the training-strategy table."""
    return _by_role("strategy", variants)


def column(name: str, variants: Iterable[str] = ()) -> Column:
    """The column `name` ('f1', 'f1_fixed', 'voi_sum_3d', 'psnr_denoised'); InputError naming the nearest
    metric if unknown. `variants`: those shown, so that a plain column beside one is labelled."""
    variants = tuple(variants)
    fixed = name not in METRICS and name.endswith("_fixed")
    base = name[: -len("_fixed")] if fixed else name
    variant = ""
    if base not in METRICS:
        for v, kind in VARIANTS.items():
            stem = base[: -len(v) - 1]
            if base.endswith(f"_{v}") and stem in METRICS and METRICS[stem].kind == kind:
                base, variant = stem, v
                break
    m = METRICS.get(base, "report")
    qualified = not variant and any(VARIANTS[v] == m.kind for v in variants)
    return Column(m, fixed=fixed, variant=variant, qualified=qualified)


def headline(name: str, variants: Iterable[str] = ()) -> Column:
    """The column a figure or threshold table shows for metric `name`: its 3D variant when shown."""
    c = column(name, variants)
    if c.metric.kind == SEGMENTATION and VOLUME in tuple(variants) and not c.variant:
        return Column(c.metric, fixed=c.fixed, variant=VOLUME)
    return c
