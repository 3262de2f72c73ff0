"""Snakemake `infer` rule when infer.blocks_z > 1: join the blocks (srseg.infer.run_gather_blocks)."""
import sys

sys.stderr = open(snakemake.log[0], "a")  # noqa: F821, SIM115  tracebacks go to the rule log

from srseg.infer import run_gather_blocks  # noqa: E402

run_gather_blocks(
    block_tifs=list(snakemake.input.tifs),  # noqa: F821
    block_jsons=list(snakemake.input.infos),  # noqa: F821
    out_tif=snakemake.output.tif,  # noqa: F821
    out_json=snakemake.output.info,  # noqa: F821
)
