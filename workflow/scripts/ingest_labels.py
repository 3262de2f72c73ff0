import sys; sys.stderr = open(snakemake.log[0], "a")  # tracebacks go to the rule log

from srseg.ingest import run_ingest_labels

run_ingest_labels(
    labels=snakemake.params.labels,
    hr_meta=snakemake.input.meta,
    out_labels=snakemake.output.labels,
    specimen=snakemake.wildcards.specimen,
    labels_kind=snakemake.params.get("labels_kind", "instances"),
    connectivity=snakemake.params.get("connectivity", "2d"),
)
