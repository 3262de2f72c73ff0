import sys; sys.stderr = open(snakemake.log[0], "a")  # tqdm + tracebacks go to the rule log

from srseg.simulate import run_simulate

run_simulate(
    params=dict(snakemake.params.spec),
    out_lr=snakemake.output.lr,
    out_hr=snakemake.output.hr,
    out_labels=snakemake.output.labels,
    out_meta=snakemake.output.meta,
    out_truth=snakemake.output.truth,
    specimen=snakemake.wildcards.specimen,
    threads=snakemake.threads,
)
