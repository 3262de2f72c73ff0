"""Snakemake rule `overview_relabel_block` (overview.segment_jobs): pass relabel of one block of a scattered overview
segmentation (srseg.overview.run_overview_pass)."""

from srseg.entry import rule_log
from srseg.overview import run_overview_pass

with rule_log(snakemake) as log:
    run_overview_pass(snakemake.input.work, "relabel", int(snakemake.wildcards.block), log=log)
