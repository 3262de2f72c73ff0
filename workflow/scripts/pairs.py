"""Snakemake rule `pairs`: matched LR / HR crops at an integer scale (srseg.pairs.run_pairs)."""

from srseg.entry import rule_log
from srseg.pairs import run_pairs

with rule_log(snakemake) as log:
    run_pairs(
        lr_path=snakemake.input.lr,
        hr_path=snakemake.input.hr,
        meta_path=snakemake.input.meta,
        transform_path=snakemake.input.transform,
        out_lr=snakemake.output.lr,
        out_hr=snakemake.output.hr,
        out_json=snakemake.output.json,
        params=dict(snakemake.params.pairs),
        log=log,
    )
