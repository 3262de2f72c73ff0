"""Snakemake rule `overview_affinities_block` (overview.segment_jobs): the affinities of one run of z-blocks of a
scattered overview segmentation, one GPU (srseg.overview.run_overview_affinities)."""

from srseg.entry import rule_log
from srseg.overview import run_overview_affinities

with rule_log(snakemake) as log:
    run_overview_affinities(
        snakemake.input.work,
        int(snakemake.wildcards.block),
        device=snakemake.config["device"],
        threads=snakemake.threads,
        log=log,
    )
