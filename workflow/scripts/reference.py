"""Snakemake rule `reference`: the labels a test specimen is scored against (srseg.reference.run_reference)."""

from srseg.entry import rule_log
from srseg.reference import run_reference

with rule_log(snakemake) as log:
    run_reference(
        output=snakemake.output.labels,
        output_json=snakemake.output.meta,
        labels=snakemake.input.get("labels"),
        threshold_json=snakemake.input.get("threshold"),
        segmentations=list(snakemake.input.get("segs", [])),
        thresholds=list(snakemake.params.thresholds or []),
        log=log,
    )
