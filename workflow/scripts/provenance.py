"""Snakemake rule `provenance`: resolved config, package versions, git commit, hosts
(srseg.provenance.run_provenance)."""

from srseg.entry import rule_log
from srseg.provenance import run_provenance

with rule_log(snakemake) as log:
    run_provenance(
        config=dict(snakemake.params.config),
        out_json=snakemake.output.json,
        workflow_dir=snakemake.params.workflow_dir,
        log=log,
    )
