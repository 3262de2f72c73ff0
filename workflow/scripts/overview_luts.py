"""Snakemake rule `overview_luts` (overview.segment_jobs): the luts gather of a scattered overview segmentation
(srseg.overview.run_overview_pass)."""

from srseg.entry import rule_log
from srseg.overview import run_overview_pass

with rule_log(snakemake) as log:
    run_overview_pass(snakemake.input.work, "luts", log=log)
