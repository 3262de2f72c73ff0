"""Snakemake rule `train`: one SR model, one kind of training data, one fold (srseg.training.run_train)."""

from srseg.entry import rule_log
from srseg.training import run_train

with rule_log(snakemake) as log:
    run_train(
        spec=dict(snakemake.params.spec),
        lr_paths=list(snakemake.input.lr),
        hr_paths=list(snakemake.input.hr),
        model=snakemake.output.model,
        log_csv=snakemake.output.log_csv,
        train_json=snakemake.output.train_json,
        name=snakemake.wildcards.model,
        device=snakemake.config["device"],
        threads=snakemake.threads,
        log=log,
    )
