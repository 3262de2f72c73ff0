"""Snakemake rule `fit_degradation`: a `fitted` recipe fitted to one fold's real pairs
(srseg.degrade.run_fit_degradation)."""

from srseg.degrade import run_fit_degradation
from srseg.entry import rule_log

with rule_log(snakemake) as log:
    run_fit_degradation(
        lr_paths=list(snakemake.input.lr),
        hr_paths=list(snakemake.input.hr),
        pairs_jsons=list(snakemake.input.pairs),
        out_json=snakemake.output.fit,
        recipe=dict(snakemake.params.recipe),
        recipe_name=snakemake.wildcards.recipe,
        log=log,
    )
