# Segmentation stage: an affinity network trained per fold on the training
# specimens' real HR + labels (validation = their last sections, which also pick
# the best waterz threshold), affinities + watershed + waterz agglomeration of
# every scored image, and the reference labels each test specimen is scored
# against. Editing `affinity:` retrains the affinity nets and re-segments;
# editing `segmentation:` re-segments only (and re-picks the threshold).


rule train_affinity:
    """Affinity U-Net on the fold's training specimens; best threshold chosen on their held-back sections."""
    input:
        hr=lambda w: expand("results/pairs/{s}/hr.tif", s=affinity_train_specimens(w.fold)),
        labels=lambda w: expand("results/pairs/{s}/labels.tif", s=affinity_train_specimens(w.fold)),
    output:
        model="results/affinity/{fold}/model.pt",
        log_csv="results/affinity/{fold}/log.csv",
        train_json="results/affinity/{fold}/train.json",
        threshold="results/affinity/{fold}/threshold.json",
    params:
        affinity=config["affinity"],
        thresholds=THRESHOLDS,
        seed_min_distance=config["segmentation"]["seed_min_distance"],
        merge_function=config["segmentation"].get("merge_function", "mean"),
        seed=config["seed"],
        device=config["device"],
    log:
        "logs/train_affinity/{fold}.log",
    benchmark:
        "benchmarks/train_affinity/{fold}.tsv"
    # one thread: CPU results are then byte-identical whatever --cores is (GPU does the work on a cluster)
    threads: 1
    resources:
        gpu=gpu_resources(),
        mem_mb=lambda w, attempt: 8000 * attempt,
        runtime=lambda w, attempt: 120 * attempt,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train_affinity.py"


rule segment:
    """Affinities of one scored image (SR output, bicubic or real HR), then one segmentation per threshold."""
    input:
        image=lambda w: sr_image(w.model, w.data, w.fold, w.specimen),
        model="results/affinity/{fold}/model.pt",
    output:
        segs=expand("results/segment/{{model}}/{{data}}/{{fold}}/{{specimen}}/t{thr}.tif", thr=THRESHOLDS),
        info="results/segment/{model}/{data}/{fold}/{specimen}/segment.json",
    params:
        segmentation=config["segmentation"],
        device=config["device"],
        # waterz JIT-compiles non-prebuilt scoring functions via witty into WITTY_CACHE_DIR: one per job, no collisions
        cache=lambda w: f".waterz_cache/{w.model}/{w.data}/{w.fold}/{w.specimen}",
    log:
        "logs/segment/{model}/{data}/{fold}/{specimen}.log",
    benchmark:
        "benchmarks/segment/{model}/{data}/{fold}/{specimen}.tsv"
    threads: 1
    resources:
        gpu=gpu_resources(),
        mem_mb=lambda w, attempt: 8000 * attempt,
        runtime=lambda w, attempt: 60 * attempt,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/segment.py"


rule reference:
    """Labels a test specimen is scored against: its own labels, or real HR segmented at the validation-best threshold."""
    input:
        unpack(reference_inputs),
    output:
        labels="results/reference/{fold}/{specimen}.tif",
        meta="results/reference/{fold}/{specimen}.json",
    params:
        thresholds=THRESHOLDS,
    log:
        "logs/reference/{fold}/{specimen}.log",
    threads: 1
    resources:
        mem_mb=lambda w, attempt: 4000 * attempt,
        runtime=lambda w, attempt: 10 * attempt,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/reference.py"
