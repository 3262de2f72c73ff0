"""Snakemake rule `denoise`: denoised HR target of train_data `denoised` (srseg.denoise.run_denoise)."""

from srseg.denoise import run_denoise
from srseg.entry import rule_log

with rule_log(snakemake) as log:
    run_denoise(
        hr_path=snakemake.input.hr,
        out_hr=snakemake.output.hr,
        out_json=snakemake.output.info,
        params=dict(snakemake.params.denoise),
        log=log,
    )
