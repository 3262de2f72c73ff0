# Align HR in LR, cut matched LR / HR pairs at an integer scale, and make synthetic
# LR from the paired HR with each degradation recipe. Each rule gets only its own
# config slice: editing `align:` reruns align and everything downstream; editing one
# recipe under `degradations:` reruns only that recipe's branch.


rule align:
    """HR placed in LR: stage offsets, SIFT + RANSAC per section, ECC refinement; QC figure and numbers."""
    input:
        unpack(align_inputs),
    output:
        transform="results/align/{specimen}/transform.json",
        qc_png=report("results/align/{specimen}/qc.png", category="Alignment"),
        qc_json="results/align/{specimen}/qc.json",
    params:
        align=config.get("align", {}),
    log:
        "logs/align/{specimen}.log",
    benchmark:
        "benchmarks/align/{specimen}.tsv"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: 2000 * attempt,
        runtime=lambda w, attempt: 10 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/align.py"


rule pairs:
    """Matched LR crop and HR resampled to exactly scale x its shape (scale = nearest integer pixel ratio)."""
    input:
        lr="results/ingest/{specimen}/lr.tif",
        hr="results/ingest/{specimen}/hr.tif",
        meta="results/ingest/{specimen}/meta.json",
        transform="results/align/{specimen}/transform.json",
    output:
        lr="results/pairs/{specimen}/lr.tif",
        hr="results/pairs/{specimen}/hr.tif",
        json="results/pairs/{specimen}/pairs.json",
    params:
        pairs=config.get("pairs", {}),
    log:
        "logs/pairs/{specimen}.log",
    benchmark:
        "benchmarks/pairs/{specimen}.tsv"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: 2000 * attempt,
        runtime=lambda w, attempt: 10 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/pairs.py"


rule pairs_labels:
    """The specimen's labels on the paired-HR grid (nearest neighbour)."""
    input:
        labels="results/ingest/{specimen}/labels.tif",
        transform="results/align/{specimen}/transform.json",
        pairs="results/pairs/{specimen}/pairs.json",
    output:
        labels="results/pairs/{specimen}/labels.tif",
    log:
        "logs/pairs_labels/{specimen}.log",
    threads: 1
    resources:
        mem_mb=lambda w, attempt: 2000 * attempt,
        runtime=lambda w, attempt: 10 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/pairs_labels.py"


rule degrade:
    """Synthetic LR from the paired HR with one recipe, on the paired LR's grid; seeded by (seed, recipe, specimen)."""
    input:
        hr="results/pairs/{specimen}/hr.tif",
        pairs="results/pairs/{specimen}/pairs.json",
    output:
        lr="results/degrade/{recipe}/{specimen}/lr.tif",
    params:
        recipe=lambda w: config["degradations"][w.recipe],
        seed=config["seed"],
    log:
        "logs/degrade/{recipe}/{specimen}.log",
    benchmark:
        "benchmarks/degrade/{recipe}/{specimen}.tsv"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: 2000 * attempt,
        runtime=lambda w, attempt: 10 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/degrade.py"
