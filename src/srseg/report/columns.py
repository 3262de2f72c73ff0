"""The metric columns of the report, read from the metric registry (srseg.metrics.registry).

A `Column` is a registered metric as the report shows it: segmentation metrics at the
threshold chosen on validation, and, for those registered `at_fixed_threshold`, a second
column `<name>_fixed` at the fixed threshold. Tables and figures ask for columns by role
(`summary_columns`, `paired_test_columns`, `strategy_columns`) or by name (`column`), so a newly
registered metric shows up without touching the report.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..metrics import KINDS, METRICS, Metric, of_kind


@dataclass(frozen=True)
class Column:
    metric: Metric
    fixed: bool = False  # the metric at the fixed agglomeration threshold

    @property
    def name(self) -> str:
        return f"{self.metric.name}_fixed" if self.fixed else self.metric.name

    @property
    def higher(self) -> bool | None:
        return self.metric.higher_is_better

    @property
    def decimals(self) -> int:
        return self.metric.decimals

    def label(self, unit: bool = True, fixed_threshold: float | None = None, plain: bool = False) -> str:
        """'VOI split (bits)'; 'F1 (val. thr.)' / 'F1 (t=0.5)' where a fixed-threshold twin exists.

        plain: without the threshold qualifier (axes that already vary the threshold).
        """
        text = self.metric.label
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


def summary_columns() -> list[Column]:
    """Columns of the summary and per-specimen tables (a fixed-threshold twin right after its metric)."""
    out = []
    for m in _registered():
        if m.summary:
            out.append(Column(m))
            if m.at_fixed_threshold:
                out.append(Column(m, fixed=True))
    return out


def paired_test_columns() -> list[Column]:
    """Metrics tested against bicubic (Wilcoxon)."""
    return [Column(m) for m in _registered() if m.tested]


def strategy_columns() -> list[Column]:
    """Metrics of the training-strategy table."""
    return [Column(m) for m in _registered() if m.strategy]


def column(name: str) -> Column:
    """The column `name` ('f1', 'f1_fixed'); InputError naming the nearest metric if unknown."""
    if name.endswith("_fixed") and name[: -len("_fixed")] in METRICS:
        return Column(METRICS[name[: -len("_fixed")]], fixed=True)
    return Column(METRICS.get(name, "report"))
