"""Snakemake `pairs` rule: matched LR / HR crops at an integer scale (srseg.pairs.run_pairs)."""
import sys

sys.stderr = open(snakemake.log[0], "a")  # noqa: F821  tqdm + tracebacks go to the rule log

from srseg.pairs import run_pairs  # noqa: E402

run_pairs(
    lr_path=snakemake.input.lr,  # noqa: F821
    hr_path=snakemake.input.hr,  # noqa: F821
    meta_path=snakemake.input.meta,  # noqa: F821
    transform_path=snakemake.input.transform,  # noqa: F821
    out_lr=snakemake.output.lr,  # noqa: F821
    out_hr=snakemake.output.hr,  # noqa: F821
    out_json=snakemake.output.json,  # noqa: F821
    params=dict(snakemake.params.pairs),  # noqa: F821
    log_path=snakemake.log[0],  # noqa: F821
)
