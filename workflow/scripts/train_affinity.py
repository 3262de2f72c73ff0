"""Snakemake rule `train_affinity`: the fold's affinity network and its validation-chosen threshold
(srseg.ruler.run_train_affinity)."""

from srseg.entry import rule_log
from srseg.ruler import run_train_affinity

with rule_log(snakemake) as log:
    run_train_affinity(
        hr=list(snakemake.input.hr),
        labels=list(snakemake.input.labels),
        model=snakemake.output.model,
        log_csv=snakemake.output.log_csv,
        train_json=snakemake.output.train_json,
        threshold_json=snakemake.output.threshold,
        affinity=dict(snakemake.params.affinity),
        segmentation=dict(snakemake.params.segmentation),
        validation=dict(snakemake.params.validation),
        seed=int(snakemake.params.seed),
        device=snakemake.config["device"],
        threads=snakemake.threads,
        log=log,
    )
