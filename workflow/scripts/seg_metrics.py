"""Snakemake rule `seg_metrics`: VOI / adapted Rand / F1 of one row's segmentations (srseg.metrics.run_seg_metrics)."""

from srseg.entry import rule_log
from srseg.metrics import run_seg_metrics

with rule_log(snakemake) as log:
    run_seg_metrics(
        segmentations=list(snakemake.input.segs),
        reference=snakemake.input.reference,
        reference_json=snakemake.input.reference_json,
        threshold_json=snakemake.input.threshold,
        hr_threshold_json=snakemake.input.hr_threshold,
        segment_json=snakemake.input.segment_json,
        out_csv=snakemake.output.scores,
        segmentation=dict(snakemake.params.segmentation),
        metrics=dict(snakemake.params.metrics),
        model=snakemake.wildcards.model,
        data=snakemake.wildcards.data,
        fold=snakemake.wildcards.fold,
        specimen=snakemake.wildcards.specimen,
        log=log,
    )
