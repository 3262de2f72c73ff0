# The ruler: an affinity network trained per fold on the training specimens' real HR + labels,
# and the agglomeration thresholds it segments with. The training specimens' validation
# sections (config `validation:`; no network trains on them) pick the thresholds: on real HR
# (threshold.json, the reported alternative and the `hr` row's) and, for every SR row, on
# that row's own output (results/threshold/...). The test specimen is never looked at.


rule train_affinity:
    """Affinity U-Net on the fold's training specimens; best threshold chosen on their held-back sections."""
    input:
        hr=lambda w: [paired(s, "hr.tif") for s in affinity_train_specimens(w.fold)],
        labels=lambda w: [paired(s, "labels.tif") for s in affinity_train_specimens(w.fold)],
        ruler=lab_ruler,
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
        validation=stage("validation"),
        segmentation=segmentation_choice(),
        seed=config["seed"],
        code=code("srseg.ruler"),
    script:
        "../workflow/scripts/train_affinity.py"


rule row_threshold:
    """One row's own threshold: its SR of the training specimens' validation sections, segmented at every threshold."""
    input:
        lr=lambda w: [paired(s, "lr.tif") for s in affinity_train_specimens(w.fold)],
        labels=lambda w: [paired(s, "labels.tif") for s in affinity_train_specimens(w.fold)],
        pairs=lambda w: [paired(s, "pairs.json") for s in affinity_train_specimens(w.fold)],
        affinity=affinity_model("{fold}"),
        model=model_file,
    output:
        threshold=row_threshold("{model}", "{data}", "{fold}"),
    log:
        "logs/row_threshold/{model}/{data}/{fold}.log",
    benchmark:
        "benchmarks/row_threshold/{model}/{data}/{fold}.tsv"
    wildcard_constraints:
        model="|".join(MODELS),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        **job_resources(8, 60, gpu=True),
    params:
        validation=stage("validation"),
        segmentation=segmentation_choice(),
        infer=stage("infer"),
        arch=lambda w: model_params(w.model) if w.model in UNTRAINED else None,
        code=lambda w: model_code(w.model, "srseg.ruler"),
    script:
        "../workflow/scripts/row_threshold.py"
