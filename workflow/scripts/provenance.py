"""Snakemake `provenance` rule: resolved config, package versions, git commit, hosts (srseg.provenance)."""
import sys

sys.stderr = open(snakemake.log[0], "a")  # noqa: F821, SIM115  tracebacks go to the rule log

from srseg.provenance import run_provenance  # noqa: E402

run_provenance(
    config=snakemake.params.config,  # noqa: F821
    out_json=snakemake.output.json,  # noqa: F821
    workflow_dir=snakemake.params.workflow_dir,  # noqa: F821
)
