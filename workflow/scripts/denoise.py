"""Snakemake `denoise` rule: denoised HR target for the `denoised` training data (srseg.denoise.run_denoise)."""
import sys

sys.stderr = open(snakemake.log[0], "a")  # noqa: F821, SIM115  tqdm + tracebacks go to the rule log

from srseg.denoise import run_denoise  # noqa: E402

run_denoise(
    hr_path=snakemake.input.hr,  # noqa: F821
    out_hr=snakemake.output.hr,  # noqa: F821
    out_json=snakemake.output.info,  # noqa: F821
    params=dict(snakemake.params.denoise),  # noqa: F821
    log_file=snakemake.log[0],  # noqa: F821
)
