"""Snakemake rule `overview_sizes` (overview.segment_jobs): the sizes gather of a scattered overview segmentation
(srseg.overview.run_overview_pass)."""

from srseg.entry import rule_log
from srseg.overview import run_overview_pass

with rule_log(snakemake) as log:
    run_overview_pass(snakemake.input.work, "sizes", log=log)
