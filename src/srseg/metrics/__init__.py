"""Scores of a super-resolved image: image quality against real HR, and the
quality of the segmentation it yields against reference labels.

- `srseg.metrics.registry`: the metric registry. Every score is one registered
  function with its name, label, unit, direction and decimals; the metrics CSVs,
  the report's tables and figures read it (see that module).
- `srseg.metrics.image`: PSNR, SSIM, Fourier ring correlation (FRC), PSSR's
  affine normalisation, and the `image_metrics` rule's entry point.
- `srseg.metrics.segmentation`: VOI split/merge, adapted Rand error, instance
  F1, all derived from one contingency table, and the `seg_metrics` rule's
  entry point.

Adding a metric is one new module in this package (imported here automatically) or one
more registered function in `image.py` / `segmentation.py`.

This package imports neither torch nor waterz, so its rules run in the light
`envs/data.yaml` environment.
"""

import importlib
import pkgutil

from .image import (
    SectionPair,
    frc_curve,
    frc_summary,
    image_scores,
    normalize_to_reference,
    psnr,
    run_image_metrics,
    ssim,
)
from .registry import (
    IMAGE,
    KINDS,
    METRICS,
    SEGMENTATION,
    Metric,
    columns,
    metric,
    of_kind,
    score,
)
from .segmentation import (
    LabelPair,
    contingency_table,
    f1_from_table,
    rand_from_table,
    run_seg_metrics,
    segmentation_scores,
    voi_from_table,
)

BUILT_IN = ("image", "registry", "segmentation")


def import_plugins() -> list[str]:
    """Import every other module of this package: each is a metric plug-in (one file per new metric).

    The built-in modules register first (their order is the CSV column order); plug-ins
    follow by file name. Returns the plug-in modules' names.
    """
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name not in BUILT_IN)
    return [importlib.import_module(f"{__name__}.{name}").__name__ for name in names]


PLUGINS = import_plugins()

__all__ = [
    "METRICS",
    "Metric",
    "metric",
    "of_kind",
    "columns",
    "score",
    "IMAGE",
    "SEGMENTATION",
    "KINDS",
    "PLUGINS",
    "import_plugins",
    "SectionPair",
    "psnr",
    "ssim",
    "frc_curve",
    "frc_summary",
    "image_scores",
    "normalize_to_reference",
    "run_image_metrics",
    "LabelPair",
    "contingency_table",
    "voi_from_table",
    "rand_from_table",
    "f1_from_table",
    "segmentation_scores",
    "run_seg_metrics",
]
