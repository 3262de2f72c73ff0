"""Snakemake rule `segment`: affinities + fragments + waterz at every threshold (srseg.blockwise.run_segment_rule:
in memory, or block by block when segmentation.blockwise.block is set)."""

from srseg.blockwise import run_segment_rule
from srseg.entry import rule_log

with rule_log(snakemake) as log:
    run_segment_rule(
        image=snakemake.input.image,
        model=snakemake.input.model,
        segmentations=list(snakemake.output.segs),
        segment_json=snakemake.output.info,
        segmentation=dict(snakemake.params.segmentation),
        choice=snakemake.input.choice,
        # waterz JIT-compiles non-prebuilt scoring functions (witty) into a cache folder: one per job, no collisions
        cache_dir=".waterz_cache/{model}/{data}/{fold}/{specimen}".format(**snakemake.wildcards),
        device=snakemake.config["device"],
        threads=snakemake.threads,
        log=log,
    )
