# Snakemake entry point of rule `image_metrics`: one library call.
import sys

sys.stderr = open(snakemake.log[0], "a")  # tqdm + tracebacks go to the rule log

from srseg.metrics import run_image_metrics

run_image_metrics(
    sr=snakemake.input.sr,
    hr=snakemake.input.hr,
    pairs=snakemake.input.pairs,
    out_csv=snakemake.output.scores,
    out_frc=snakemake.output.frc,
    metrics=snakemake.params.metrics,
    model=snakemake.wildcards.model,
    data=snakemake.wildcards.data,
    fold=snakemake.wildcards.fold,
    specimen=snakemake.wildcards.specimen,
)
