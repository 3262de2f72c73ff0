# The ruler: an affinity network trained per fold on the training specimens' real HR + labels.
# Validation = their last sections, which also pick the best waterz threshold (threshold.json),
# so the test specimen is never looked at. Editing `affinity:` retrains it and re-segments.


def segmentation_choice():
    """The keys of `segmentation:` that shape the segmentations (not the reported fixed threshold)."""
    seg = config["segmentation"]
    return canonical({k: seg[k] for k in ("thresholds", "seed_min_distance", "merge_function")})


rule train_affinity:
    """Affinity U-Net on the fold's training specimens; best threshold chosen on their held-back sections."""
    input:
        hr=lambda w: [paired(s, "hr.tif") for s in affinity_train_specimens(w.fold)],
        labels=lambda w: [paired(s, "labels.tif") for s in affinity_train_specimens(w.fold)],
    output:
        model=affinity_model("{fold}"),
        log_csv=affinity_model("{fold}", "log.csv"),
        train_json=affinity_model("{fold}", "train.json"),
        threshold=affinity_model("{fold}", "threshold.json"),
    params:
        affinity=stage("affinity"),
        segmentation=segmentation_choice(),
        seed=config["seed"],
        code=code("srseg.ruler"),
    log:
        "logs/train_affinity/{fold}.log",
    benchmark:
        "benchmarks/train_affinity/{fold}.tsv"
    # one thread: CPU results are then byte-identical whatever --cores is (GPU does the work on a cluster)
    threads: 1
    resources:
        **job_resources(8, 120, gpu=True),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train_affinity.py"
