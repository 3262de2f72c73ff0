"""Names of the report's outputs, importable without matplotlib/scipy (rules/report.smk reads them at DAG time).

`cost` holds every wall-clock number (training time, inference speed); every other table
and figure is byte-identical across two runs of one config on one machine.
"""

TABLE_NAMES = [
    "ruler",  # first: the ruler's own quality on real HR (srseg.report.ruler)
    "summary",
    "per_specimen",
    "training_strategy",
    "thresholds_f1",
    "thresholds_voi",
    "threshold_choice",
    "paired_tests",
    "cost",
]
TABLE_FORMATS = ["csv", "md", "tex"]
FIGURE_NAMES = [
    "ruler_curves",  # first: the ruler on real HR against the threshold
    "qualitative",
    "segmentation_overlays",
    "metric_bars",
    "threshold_curves",
    "frc_curves",
    "quality_vs_segmentation",
    "training_curves",
    "alignment_qc",
]
FIGURE_FORMATS = ["png", "pdf"]
