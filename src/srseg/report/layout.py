"""Names of the report's outputs, importable without matplotlib/scipy (rules/report.smk reads them at DAG time)."""

TABLE_NAMES = ["summary", "per_specimen", "training_strategy", "thresholds_f1", "thresholds_voi", "paired_tests"]
TABLE_FORMATS = ["csv", "md", "tex"]
FIGURE_NAMES = ["qualitative", "segmentation_overlays", "metric_bars", "threshold_curves",
                "frc_curves", "quality_vs_segmentation", "training_curves", "alignment_qc"]
FIGURE_FORMATS = ["png", "pdf"]
