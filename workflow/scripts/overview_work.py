"""Snakemake checkpoint `overview_work` (overview.segment_jobs): the empty affinity array and blockwise work group
of a whole SR overview, whose json plans the affinity and block jobs (srseg.overview.run_overview_work)."""

from srseg.entry import rule_log
from srseg.overview import run_overview_work

with rule_log(snakemake) as log:
    run_overview_work(
        image=snakemake.input.image,
        model=snakemake.input.model,
        out_json=snakemake.output.json,
        threshold_json=snakemake.input.threshold,
        segmentation=dict(snakemake.params.segmentation),
        threshold=snakemake.params.overview["threshold"],
        block=snakemake.params.overview["block"],
        context=snakemake.params.overview["context"],
        blocks_z=snakemake.params.overview["blocks_z"],
        threads=snakemake.threads,
        log=log,
    )
