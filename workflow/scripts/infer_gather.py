"""Snakemake rule `infer_gather`: join the blocks of a scattered inference (srseg.infer.run_infer_gather)."""

from srseg.entry import rule_log
from srseg.infer import run_infer_gather

with rule_log(snakemake) as log:
    run_infer_gather(
        block_tifs=list(snakemake.input.tifs),
        block_jsons=list(snakemake.input.infos),
        out_tif=snakemake.output.tif,
        out_json=snakemake.output.info,
        log=log,
    )
