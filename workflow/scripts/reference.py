# Snakemake entry point of rule `reference`: one library call.
import sys

sys.stderr = open(snakemake.log[0], "a")  # tqdm + tracebacks go to the rule log

from srseg.segment import run_reference

run_reference(
    output=snakemake.output.labels,
    output_json=snakemake.output.meta,
    labels=snakemake.input.get("labels"),
    threshold_json=snakemake.input.get("threshold"),
    segmentations=list(snakemake.input.get("segs", [])),
    thresholds=snakemake.params.thresholds,
    log=snakemake.log[0],
)
