"""Snakemake `pairs_labels` rule: labels on the paired-HR grid (srseg.pairs.run_pairs_labels)."""
import sys

sys.stderr = open(snakemake.log[0], "a")  # noqa: F821  tracebacks go to the rule log

from srseg.pairs import run_pairs_labels  # noqa: E402

run_pairs_labels(
    labels_path=snakemake.input.labels,  # noqa: F821
    transform_path=snakemake.input.transform,  # noqa: F821
    pairs_json=snakemake.input.pairs,  # noqa: F821
    out_labels=snakemake.output.labels,  # noqa: F821
)
