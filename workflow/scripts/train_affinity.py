# Snakemake entry point of rule `train_affinity`: one library call.
import sys

sys.stderr = open(snakemake.log[0], "a")  # tqdm + tracebacks go to the rule log

from srseg.affinity import run_train_affinity

run_train_affinity(
    hr=list(snakemake.input.hr),
    labels=list(snakemake.input.labels),
    model=snakemake.output.model,
    log_csv=snakemake.output.log_csv,
    train_json=snakemake.output.train_json,
    threshold_json=snakemake.output.threshold,
    params=snakemake.params.affinity,
    thresholds=snakemake.params.thresholds,
    seed_min_distance=snakemake.params.seed_min_distance,
    merge_function=snakemake.params.merge_function,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
    log=snakemake.log[0],
)
