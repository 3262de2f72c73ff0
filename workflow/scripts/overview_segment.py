"""Snakemake rule `overview_segment`: affinities + blockwise segmentation of a whole SR overview at the row's
threshold, resumable from its work folder (srseg.overview.run_overview_segment)."""

from srseg.entry import rule_log
from srseg.overview import run_overview_segment

with rule_log(snakemake) as log:
    run_overview_segment(
        image=snakemake.input.image,
        model=snakemake.input.model,
        out_zarr=snakemake.output.zarr,
        out_json=snakemake.output.info,
        work=snakemake.params.work,
        threshold_json=snakemake.input.threshold,
        segmentation=dict(snakemake.params.segmentation),
        threshold=snakemake.params.overview["threshold"],
        block=snakemake.params.overview["block"],
        context=snakemake.params.overview["context"],
        # waterz JIT-compiles non-prebuilt scoring functions (witty) into a cache folder: one per job
        cache_dir=".waterz_cache/overview/{specimen}".format(**snakemake.wildcards),
        device=snakemake.config["device"],
        threads=snakemake.threads,
        log=log,
        # overview.intermediates: also the affinities and fragments as OME-Zarr
        out_affinities=getattr(snakemake.output, "affinities", None),
        out_fragments=getattr(snakemake.output, "fragments", None),
    )
