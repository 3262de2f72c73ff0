"""Snakemake rule `row_threshold`: one row's own agglomeration threshold (srseg.ruler.run_row_threshold)."""

from srseg.entry import rule_log
from srseg.ruler import run_row_threshold

with rule_log(snakemake) as log:
    run_row_threshold(
        lr=list(snakemake.input.lr),
        labels=list(snakemake.input.labels),
        pairs=list(snakemake.input.pairs),
        affinity_model=snakemake.input.affinity,
        out_json=snakemake.output.threshold,
        model=snakemake.input.model[0] if snakemake.input.model else None,
        arch_spec=snakemake.params.arch,
        validation=dict(snakemake.params.validation),
        segmentation=dict(snakemake.params.segmentation),
        infer=dict(snakemake.params.infer),
        device=snakemake.config["device"],
        threads=snakemake.threads,
        log=log,
    )
