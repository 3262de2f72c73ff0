import sys; sys.stderr = open(snakemake.log[0], "a")  # tracebacks go to the rule log

from srseg.ingest import run_ingest

run_ingest(
    lr=snakemake.params.lr,
    hr=snakemake.params.hr,
    out_lr=snakemake.output.lr,
    out_hr=snakemake.output.hr,
    out_meta=snakemake.output.meta,
    specimen=snakemake.wildcards.specimen,
    spec=snakemake.params.spec,
    phantom_meta=snakemake.input.get("meta"),
)
