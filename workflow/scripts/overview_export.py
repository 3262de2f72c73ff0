"""Snakemake rule `overview_export` (overview.segment_jobs): a scattered overview segmentation's labels as the
overview's OME-Zarr and json (srseg.overview.run_overview_export)."""

from srseg.entry import rule_log
from srseg.overview import run_overview_export

with rule_log(snakemake) as log:
    run_overview_export(
        snakemake.input.work,
        snakemake.output.zarr,
        snakemake.output.info,
        log=log,
        # overview.intermediates: also the affinities and fragments as OME-Zarr
        out_affinities=getattr(snakemake.output, "affinities", None),
        out_fragments=getattr(snakemake.output, "fragments", None),
    )
