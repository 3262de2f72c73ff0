"""Snakemake rules `overview_infer` and `overview_infer_block`: SR of a specimen's whole LR overview, or of one
block of its sections, with the overview row (srseg.overview.run_overview_infer)."""

from srseg.entry import rule_log
from srseg.overview import run_overview_infer

with rule_log(snakemake) as log:
    run_overview_infer(
        choice=snakemake.input.choice,
        lr_path=snakemake.input.lr,
        out_zarr=snakemake.output.tif,
        out_json=snakemake.output.info,
        pairs_json=snakemake.input.pairs,
        model_path=snakemake.input.model[0] if snakemake.input.model else None,
        arch_specs=dict(snakemake.params.arch),
        settings=dict(snakemake.params.infer),
        blocks_z=snakemake.params.blocks_z,
        block=int(snakemake.wildcards.block) if "block" in snakemake.wildcards.keys() else None,
        device=snakemake.config["device"],
        threads=snakemake.threads,
        log=log,
    )
