"""Snakemake rule `ingest_labels`: instance labels on the HR grid (srseg.ingest.run_ingest_labels)."""

from srseg.entry import rule_log
from srseg.ingest import run_ingest_labels

with rule_log(snakemake) as log:
    run_ingest_labels(
        labels=snakemake.params.labels,
        hr_meta=snakemake.input.meta,
        out_labels=snakemake.output.labels,
        specimen=snakemake.wildcards.specimen,
        labels_kind=snakemake.params.labels_kind,
        connectivity=snakemake.params.connectivity,
        min_area_nm2=snakemake.params.min_area_nm2,
        log=log,
    )
