"""Scores of a super-resolved image: image quality against real HR, and the
quality of the segmentation it yields against reference labels.

- `srseg.metrics.registry`: the metric registry. Every score is one registered
  function with its name, label, unit, direction and decimals; the metrics CSVs,
  the report's tables and figures read it (see that module).
- `srseg.metrics.image`: PSNR, SSIM (L = 1, the data range of normalised images),
  Fourier ring correlation (FRC), PSSR's affine normalisation, and the
  `image_metrics` rule's entry point (against acquired and, configured, denoised HR).
- `srseg.metrics.segmentation`: VOI split/merge, adapted Rand error, instance
  F1, all derived from one contingency table; the scoring unit (`scores_in_3d`:
  the whole volume when sections are linked, else per section); and the
  `seg_metrics` rule's entry point.

Adding a metric is one new module in this package (imported here automatically) or one
more registered function in `image.py` / `segmentation.py`.

This package imports neither torch nor waterz, so its rules run in the light
`envs/data.yaml` environment.
"""

import importlib
import pkgutil

from .image import (
    DATA_RANGE,
    DENOISED_SUFFIX,
    REFERENCES,
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
    VOLUME_SUFFIX,
    LabelPair,
    contingency_table,
    f1_from_table,
    labels_are_3d,
    rand_from_table,
    run_seg_metrics,
    scores_in_3d,
    section_mean_scores,
    segmentation_scores,
    unit_scores,
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
    "DATA_RANGE",
    "DENOISED_SUFFIX",
    "REFERENCES",
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
    "section_mean_scores",
    "unit_scores",
    "labels_are_3d",
    "scores_in_3d",
    "VOLUME_SUFFIX",
    "run_seg_metrics",
]
