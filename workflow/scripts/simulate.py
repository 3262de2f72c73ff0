"""Snakemake rule `simulate`: LR + HR acquisitions simulated from a real HR stack (srseg.simulate.run_simulate)."""

from srseg.entry import rule_log
from srseg.simulate import run_simulate

with rule_log(snakemake) as log:
    run_simulate(
        params=dict(snakemake.params.spec),
        out_lr=snakemake.output.lr,
        out_hr=snakemake.output.hr,
        out_labels=snakemake.output.labels,
        out_meta=snakemake.output.meta,
        out_truth=snakemake.output.truth,
        specimen=snakemake.wildcards.specimen,
        bit_depth=snakemake.params.bit_depth,
        threads=snakemake.threads,
        log=log,
    )
