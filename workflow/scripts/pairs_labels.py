"""Snakemake rule `pairs_labels`: labels on the paired-HR grid (srseg.pairs.run_pairs_labels)."""

from srseg.entry import rule_log
from srseg.pairs import run_pairs_labels

with rule_log(snakemake) as log:
    run_pairs_labels(
        labels_path=snakemake.input.labels,
        transform_path=snakemake.input.transform,
        pairs_json=snakemake.input.pairs,
        out_labels=snakemake.output.labels,
        log=log,
    )
