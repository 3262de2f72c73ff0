"""Snakemake `train` rule: one SR model, one kind of training data, one fold (srseg.train.train_sr)."""
import sys

sys.stderr = open(snakemake.log[0], "a")  # noqa: F821, SIM115  tqdm + tracebacks go to the rule log

from srseg.train import train_sr  # noqa: E402

train_sr(
    spec=dict(snakemake.params.spec),  # noqa: F821
    lr_paths=list(snakemake.input.lr),  # noqa: F821
    hr_paths=list(snakemake.input.hr),  # noqa: F821
    out_model=snakemake.output.model,  # noqa: F821
    out_log_csv=snakemake.output.log_csv,  # noqa: F821
    out_json=snakemake.output.train_json,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
