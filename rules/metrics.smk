# Scores of one table row (model, training data) on one test specimen of one fold: image
# quality against real HR, and the segmentation against the reference labels.


rule image_metrics:
    """Per-section PSNR / SSIM / FRC of the SR image against its HR pair (not for the `hr` row: HR is the reference)."""
    input:
        unpack(image_metrics_inputs),
    output:
        scores="results/metrics/image/{model}/{data}/{fold}/{specimen}.csv",
        frc="results/metrics/image/{model}/{data}/{fold}/{specimen}_frc.csv",
    log:
        "logs/image_metrics/{model}/{data}/{fold}/{specimen}.log",
    benchmark:
        "benchmarks/image_metrics/{model}/{data}/{fold}/{specimen}.tsv"
    wildcard_constraints:
        model="|".join(MODELS),  # the `hr` row is the reference itself: no image metrics
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(4, 30),
    params:
        metrics=stage("metrics"),
        code=code(*METRIC_MODULES),
    script:
        "../workflow/scripts/image_metrics.py"


rule seg_metrics:
    """Per-section VOI / adapted Rand / F1 of the segmentation at every threshold against the reference labels."""
    input:
        segs=segmentations("{model}", "{data}", "{fold}", "{specimen}"),
        reference=referenced("{fold}", "{specimen}"),
        reference_json=referenced("{fold}", "{specimen}", "json"),
        # the row's own validation-chosen threshold, and the HR-chosen one as the reported alternative
        threshold=lambda w: row_threshold(w.model, w.data, w.fold),
        hr_threshold=affinity_model("{fold}", "threshold.json"),
        segment_json=segmented("{model}", "{data}", "{fold}", "{specimen}", "segment.json"),
    output:
        scores="results/metrics/seg/{model}/{data}/{fold}/{specimen}.csv",
    log:
        "logs/seg_metrics/{model}/{data}/{fold}/{specimen}.log",
    benchmark:
        "benchmarks/seg_metrics/{model}/{data}/{fold}/{specimen}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(4, 30),
    params:
        segmentation=canonical({"thresholds": THRESHOLDS, "fixed_threshold": config["segmentation"]["fixed_threshold"]}),
        metrics=canonical({"border_crop": config["metrics"]["border_crop"]}),
        code=code(*METRIC_MODULES),
    script:
        "../workflow/scripts/seg_metrics.py"
