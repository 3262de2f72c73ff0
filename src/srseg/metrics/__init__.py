"""Scores of a super-resolved image: image quality against real HR, and the
quality of the segmentation it yields against reference labels.

- `srseg.metrics.image`: PSNR, SSIM, Fourier ring correlation (FRC), PSSR's
  affine normalisation, and the `image_metrics` rule's entry point.
- `srseg.metrics.segmentation`: VOI split/merge, adapted Rand error, instance
  F1, all derived from one contingency table, and the `seg_metrics` rule's
  entry point.

This package imports neither torch nor waterz, so its rules run in the light
`envs/data.yaml` environment.
"""

from .image import (
    frc_curve,
    frc_summary,
    image_scores,
    normalize_to_reference,
    psnr,
    run_image_metrics,
    ssim,
)
from .segmentation import (
    contingency_table,
    f1_from_table,
    rand_from_table,
    run_seg_metrics,
    segmentation_scores,
    voi_from_table,
)

__all__ = [
    "psnr", "ssim", "frc_curve", "frc_summary", "image_scores", "normalize_to_reference",
    "run_image_metrics", "contingency_table", "voi_from_table", "rand_from_table",
    "f1_from_table", "segmentation_scores", "run_seg_metrics",
]
