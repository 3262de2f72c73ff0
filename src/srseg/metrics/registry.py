"""The metric registry: every score is one function, registered with how tables show it.

    @metric("psnr", IMAGE, label="PSNR", unit="dB", decimals=2, tested=True)
    def _psnr(pair: SectionPair) -> float:
        return psnr(pair.pred, pair.ref, pair.data_range)

The name is the column of the metrics CSV that the kind's rule writes (`image_metrics`:
IMAGE, `seg_metrics`: SEGMENTATION) and the stem of the report's columns (`psnr_mean`,
...). The function takes the kind's scoring context (`image.SectionPair`,
`segmentation.LabelPair`), which computes what several metrics share (the FRC curve, the
contingency table) once. A context holds a whole 2D section today; the same functions
score a 3D volume given a context built from volumes, so a second column set (3D scores)
needs no new registration.

Roles (all optional) say where the report uses a metric: `summary` (a column of the
summary and per-specimen tables, a panel of metric_bars), `tested` (Wilcoxon against
bicubic), `strategy` (a block of the training-strategy table), `at_fixed_threshold`
(segmentation: also shown at the fixed agglomeration threshold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..registry import Registry

IMAGE = "image"
SEGMENTATION = "segmentation"
KINDS = (IMAGE, SEGMENTATION)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    fn: Callable
    label: str
    unit: str = ""
    higher_is_better: bool | None = True  # None: no better direction (a count); never marked best
    decimals: int = 3
    summary: bool = True
    tested: bool = False
    strategy: bool = False
    at_fixed_threshold: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.at_fixed_threshold and self.kind != SEGMENTATION:
            raise ValueError(f"metric {self.name!r}: only segmentation metrics have an agglomeration threshold")


METRICS: Registry[Metric] = Registry("metric")


def metric(name: str, kind: str, label: str, **options) -> Callable[[Callable], Callable]:
    """Decorator: register fn(context) -> number as metric `name` (options: the Metric fields)."""

    def add(fn: Callable) -> Callable:
        METRICS.register(name, Metric(name, kind, fn, label, **options))
        return fn

    return add


def of_kind(kind: str) -> list[Metric]:
    """The registered metrics of one kind, in registration order (the CSV column order)."""
    return [m for m in METRICS.values() if m.kind == kind]


def columns(kind: str) -> list[str]:
    return [m.name for m in of_kind(kind)]


def score(kind: str, context) -> dict:
    """Every registered metric of `kind` on one scoring context: {name: value}."""
    return {m.name: m.fn(context) for m in of_kind(kind)}
