# Image metrics (PSNR, SSIM, FRC against real HR) and segmentation metrics
# (VOI, adapted Rand, F1 against the reference labels) of one table row
# (model, training data) on one test specimen of one fold.


rule image_metrics:
    """Per-section PSNR / SSIM / FRC of the SR image against its HR pair (not for the `hr` row: HR is the reference)."""
    input:
        sr=lambda w: sr_image(w.model, w.data, w.fold, w.specimen),
        hr="results/pairs/{specimen}/hr.tif",
        pairs="results/pairs/{specimen}/pairs.json",
    output:
        scores="results/metrics/image/{model}/{data}/{fold}/{specimen}.csv",
        frc="results/metrics/image/{model}/{data}/{fold}/{specimen}_frc.csv",
    wildcard_constraints:
        model="|".join(MODELS),  # the `hr` row is the reference itself: no image metrics
    params:
        metrics=config.get("metrics", {}),
    log:
        "logs/image_metrics/{model}/{data}/{fold}/{specimen}.log",
    benchmark:
        "benchmarks/image_metrics/{model}/{data}/{fold}/{specimen}.tsv"
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/image_metrics.py"


rule seg_metrics:
    """Per-section VOI / adapted Rand / F1 of the segmentation at every threshold against the reference labels."""
    input:
        segs=expand("results/segment/{{model}}/{{data}}/{{fold}}/{{specimen}}/t{thr}.tif", thr=THRESHOLDS),
        reference="results/reference/{fold}/{specimen}.tif",
        reference_json="results/reference/{fold}/{specimen}.json",
        threshold="results/affinity/{fold}/threshold.json",
    output:
        scores="results/metrics/seg/{model}/{data}/{fold}/{specimen}.csv",
    params:
        segmentation=config["segmentation"],
        metrics=config.get("metrics", {}),
    log:
        "logs/seg_metrics/{model}/{data}/{fold}/{specimen}.log",
    benchmark:
        "benchmarks/seg_metrics/{model}/{data}/{fold}/{specimen}.tsv"
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/seg_metrics.py"
