"""Snakemake checkpoint `overview_choice`: the row that processes the whole overviews
(srseg.overview.run_overview_choice)."""

from srseg.entry import rule_log
from srseg.overview import run_overview_choice

with rule_log(snakemake) as log:
    run_overview_choice(
        out_json=snakemake.output.json,
        summary_csv=snakemake.input.summary[0] if snakemake.input.summary else None,
        model=snakemake.params.model,
        data=snakemake.params.data,
        rows=snakemake.params.rows,
        log=log,
    )
