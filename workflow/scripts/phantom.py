"""Snakemake rule `phantom`: one generated demo specimen (srseg.phantom.run_phantom)."""

from srseg.entry import rule_log
from srseg.phantom import run_phantom

with rule_log(snakemake) as log:
    run_phantom(
        params=dict(snakemake.params.spec),
        geometry=dict(snakemake.params.geometry),
        out_lr=snakemake.output.lr,
        out_hr=snakemake.output.hr,
        out_labels=snakemake.output.labels,
        out_meta=snakemake.output.meta,
        out_truth=snakemake.output.truth,
        threads=snakemake.threads,
        log=log,
    )
