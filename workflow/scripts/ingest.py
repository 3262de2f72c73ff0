"""Snakemake rule `ingest`: validated LR / HR stacks and meta.json (srseg.ingest.run_ingest)."""

from srseg.entry import rule_log
from srseg.ingest import run_ingest

with rule_log(snakemake) as log:
    run_ingest(
        lr=snakemake.params.lr,
        hr=snakemake.params.hr,
        out_lr=snakemake.output.lr,
        out_hr=snakemake.output.hr,
        out_meta=snakemake.output.meta,
        specimen=snakemake.wildcards.specimen,
        spec=dict(snakemake.params.spec),
        phantom_meta=snakemake.input.get("meta"),
        log=log,
    )
