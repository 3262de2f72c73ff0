import sys; sys.stderr = open(snakemake.log[0], "a")  # tqdm + tracebacks go to the rule log

from srseg.phantom import run_phantom

run_phantom(
    params=snakemake.params.spec,
    geometry=snakemake.params.geometry,
    out_lr=snakemake.output.lr,
    out_hr=snakemake.output.hr,
    out_labels=snakemake.output.labels,
    out_meta=snakemake.output.meta,
    out_truth=snakemake.output.truth,
    threads=snakemake.threads,
)
