"""Snakemake rule `degrade`: synthetic LR from paired HR (srseg.degrade.run_degrade)."""

from srseg.degrade import run_degrade
from srseg.entry import rule_log

with rule_log(snakemake) as log:
    run_degrade(
        hr_path=snakemake.input.hr,
        pairs_json=snakemake.input.pairs,
        out_lr=snakemake.output.lr,
        recipe=dict(snakemake.params.recipe),
        recipe_name=snakemake.wildcards.recipe,
        specimen=snakemake.wildcards.specimen,
        seed=int(snakemake.params.seed),
        fit_json=snakemake.input.get("fit"),  # `fitted` recipes: the fold's fitted parameters
        log=log,
    )
