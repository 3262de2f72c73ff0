# Snakemake entry point of rule `segment`: one library call.
import sys

sys.stderr = open(snakemake.log[0], "a")  # tqdm + tracebacks go to the rule log

from srseg.segment import run_segment

seg = snakemake.params.segmentation
run_segment(
    image=snakemake.input.image,
    model=snakemake.input.model,
    segmentations=list(snakemake.output.segs),
    segment_json=snakemake.output.info,
    thresholds=seg["thresholds"],
    seed_min_distance=seg["seed_min_distance"],
    merge_function=seg.get("merge_function", "mean"),
    device=snakemake.params.device,
    cache_dir=snakemake.params.cache,
    threads=snakemake.threads,
    log=snakemake.log[0],
)
