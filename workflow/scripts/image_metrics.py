"""Snakemake rule `image_metrics`: PSNR / SSIM / FRC of one SR volume (srseg.metrics.run_image_metrics)."""

from srseg.entry import rule_log
from srseg.metrics import run_image_metrics

with rule_log(snakemake) as log:
    run_image_metrics(
        sr=snakemake.input.sr,
        hr=snakemake.input.hr,
        pairs=snakemake.input.pairs,
        denoised=snakemake.input.get("denoised"),
        out_csv=snakemake.output.scores,
        out_frc=snakemake.output.frc,
        metrics=dict(snakemake.params.metrics),
        model=snakemake.wildcards.model,
        data=snakemake.wildcards.data,
        fold=snakemake.wildcards.fold,
        specimen=snakemake.wildcards.specimen,
        log=log,
    )
