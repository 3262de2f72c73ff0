"""Snakemake rules `infer` and `infer_block`: tiled SR of a test specimen's real LR, or of one block
of it (srseg.infer.run_infer)."""

from srseg.entry import rule_log
from srseg.infer import run_infer

with rule_log(snakemake) as log:
    run_infer(
        lr_path=snakemake.input.lr,
        out_tif=snakemake.output.tif,
        out_json=snakemake.output.info,
        model_path=snakemake.input.model[0] if snakemake.input.model else None,
        arch_spec=snakemake.params.arch,
        pairs_json=snakemake.input.pairs,
        settings=dict(snakemake.params.infer),
        block=int(snakemake.wildcards.block) if "block" in snakemake.wildcards.keys() else None,
        device=snakemake.config["device"],
        threads=snakemake.threads,
        log=log,
    )
