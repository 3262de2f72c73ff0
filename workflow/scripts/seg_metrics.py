# Snakemake entry point of rule `seg_metrics`: one library call.
import sys

sys.stderr = open(snakemake.log[0], "a")  # tqdm + tracebacks go to the rule log

from srseg.metrics import run_seg_metrics

run_seg_metrics(
    segmentations=list(snakemake.input.segs),
    reference=snakemake.input.reference,
    reference_json=snakemake.input.reference_json,
    threshold_json=snakemake.input.threshold,
    out_csv=snakemake.output.scores,
    segmentation=snakemake.params.segmentation,
    metrics=snakemake.params.metrics,
    model=snakemake.wildcards.model,
    data=snakemake.wildcards.data,
    fold=snakemake.wildcards.fold,
    specimen=snakemake.wildcards.specimen,
)
