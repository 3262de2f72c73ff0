"""Snakemake `align` rule: place HR in LR (srseg.align.run_align)."""
import sys

sys.stderr = open(snakemake.log[0], "a")  # noqa: F821  tqdm + tracebacks go to the rule log

from srseg.align import run_align  # noqa: E402

run_align(
    lr_path=snakemake.input.lr,  # noqa: F821
    hr_path=snakemake.input.hr,  # noqa: F821
    meta_path=snakemake.input.meta,  # noqa: F821
    truth_path=snakemake.input.get("truth"),  # noqa: F821
    transform_path=snakemake.output.transform,  # noqa: F821
    qc_png=snakemake.output.qc_png,  # noqa: F821
    qc_json=snakemake.output.qc_json,  # noqa: F821
    params=dict(snakemake.params.align),  # noqa: F821
    log_path=snakemake.log[0],  # noqa: F821
)
