"""Snakemake `infer` and `infer_block` rules: tiled SR of a test specimen's real LR, or of one block of its sections."""
import sys

sys.stderr = open(snakemake.log[0], "a")  # noqa: F821, SIM115  tqdm + tracebacks go to the rule log

from srseg.infer import run_infer  # noqa: E402

run_infer(
    lr_path=snakemake.input.lr,  # noqa: F821
    out_tif=snakemake.output.tif,  # noqa: F821
    out_json=snakemake.output.info,  # noqa: F821
    model_path=snakemake.input.model[0] if snakemake.input.model else None,  # noqa: F821
    arch_spec=snakemake.params.arch,  # noqa: F821
    pairs_json=snakemake.input.pairs,  # noqa: F821
    device=snakemake.params.device,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    block=int(snakemake.wildcards.block) if "block" in snakemake.wildcards.keys() else None,  # noqa: F821
    **snakemake.params.infer,  # noqa: F821
)
