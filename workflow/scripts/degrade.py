"""Snakemake `degrade` rule: synthetic LR from paired HR (srseg.degrade.run_degrade)."""
import sys

sys.stderr = open(snakemake.log[0], "a")  # noqa: F821  tracebacks go to the rule log

from srseg.degrade import run_degrade  # noqa: E402

run_degrade(
    hr_path=snakemake.input.hr,  # noqa: F821
    pairs_json=snakemake.input.pairs,  # noqa: F821
    out_lr=snakemake.output.lr,  # noqa: F821
    recipe=dict(snakemake.params.recipe),  # noqa: F821
    recipe_name=snakemake.wildcards.recipe,  # noqa: F821
    specimen=snakemake.wildcards.specimen,  # noqa: F821
    seed=int(snakemake.params.seed),  # noqa: F821
    log_path=snakemake.log[0],  # noqa: F821
)
