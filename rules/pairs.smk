# Pairs: matched LR / HR crops at an integer scale (and the labels on the paired-HR grid).


rule pairs:
    """Matched LR crop and HR resampled to exactly scale x its shape (scale = nearest integer pixel ratio)."""
    input:
        lr=ingested("{specimen}", "lr.tif"),
        hr=ingested("{specimen}", "hr.tif"),
        meta=ingested("{specimen}", "meta.json"),
        transform=aligned("{specimen}", "transform.json"),
    output:
        lr=paired("{specimen}", "lr.tif"),
        hr=paired("{specimen}", "hr.tif"),
        json=paired("{specimen}", "pairs.json"),
    log:
        "logs/pairs/{specimen}.log",
    benchmark:
        "benchmarks/pairs/{specimen}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(2, 10),
    params:
        pairs=stage("pairs"),
        code=code("srseg.pairs"),
    script:
        "../workflow/scripts/pairs.py"


rule pairs_labels:
    """The specimen's labels on the paired-HR grid (nearest neighbour)."""
    input:
        labels=ingested("{specimen}", "labels.tif"),
        transform=aligned("{specimen}", "transform.json"),
        pairs=paired("{specimen}", "pairs.json"),
    output:
        labels=paired("{specimen}", "labels.tif"),
    log:
        "logs/pairs_labels/{specimen}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(2, 10),
    params:
        code=code("srseg.pairs"),
    script:
        "../workflow/scripts/pairs_labels.py"
