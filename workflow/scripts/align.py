"""Snakemake rule `align`: place HR in LR (srseg.align.run_align)."""

from srseg.align import run_align
from srseg.entry import rule_log

with rule_log(snakemake) as log:
    run_align(
        lr_path=snakemake.input.lr,
        hr_path=snakemake.input.hr,
        meta_path=snakemake.input.meta,
        truth_path=snakemake.input.get("truth"),
        transform_path=snakemake.output.transform,
        qc_png=snakemake.output.qc_png,
        qc_json=snakemake.output.qc_json,
        params=dict(snakemake.params.align),
        log=log,
    )
