# The ruler: an affinity network trained per fold on the training specimens' real HR + labels.
# Validation = their last sections, which also pick the best waterz threshold (threshold.json),
# so the test specimen is never looked at. Editing `affinity:` retrains it and re-segments.


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
    log:
        "logs/train_affinity/{fold}.log",
    benchmark:
        "benchmarks/train_affinity/{fold}.tsv"
    conda:
        "../envs/torch.yaml"
    # one thread: CPU results are then byte-identical whatever --cores is (GPU does the work on a cluster)
    threads: 1
    resources:
        **job_resources(8, 120, gpu=True),
    params:
        affinity=stage("affinity"),
        segmentation=segmentation_choice(),
        seed=config["seed"],
        code=code("srseg.ruler"),
    script:
        "../workflow/scripts/train_affinity.py"
