# Super-resolution: train each trained model on each kind of training data for each
# fold, then super-resolve every test specimen's real LR. Untrained baselines
# (bicubic) skip training and run through `infer` with data "none".
# Each train job gets only its own model's config slice (model_slice), so editing one
# model retrains only that model's branch. Training resumes from
# results/train/{model}/{data}/{fold}/checkpoint.pt (kept after training, so raising
# `steps` continues; a checkpoint made with other settings or inputs is ignored).


rule train:
    """Train one SR model on the fold's training specimens (real LR or a degradation recipe's LR -> real HR; denoised: real LR -> denoised HR)."""
    input:
        lr=lambda w: [lr_path(w.data, s) for s in train_specimens(w.fold)],
        # the HR target: acquired HR, or its denoised copy for data "denoised" (rules/denoise.smk)
        hr=lambda w: [hr_target_path(w.data, s) for s in train_specimens(w.fold)],
    output:
        model="results/train/{model}/{data}/{fold}/model.pt",
        log_csv="results/train/{model}/{data}/{fold}/log.csv",
        train_json="results/train/{model}/{data}/{fold}/train.json",
    wildcard_constraints:
        model="|".join(TRAINED) if TRAINED else "__none__",
        data="|".join(["real", "denoised"] + RECIPES),
    params:
        spec=lambda w: model_slice(w.model),
    log:
        "logs/train/{model}/{data}/{fold}.log",
    benchmark:
        "benchmarks/train/{model}/{data}/{fold}.tsv"
    # one thread: CPU results are then byte-identical whatever --cores is (GPU does the work on a cluster)
    threads: 1
    resources:
        gpu=gpu_resources(),
        mem_mb=lambda w, attempt: 8000 * attempt,
        # minutes, at a conservative ~10 steps/s on a GPU; a retry resumes from the checkpoint
        runtime=lambda w, attempt: (60 + model_slice(w.model)["steps"] // 500) * attempt,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train.py"


rule infer:
    """Super-resolve a test specimen's real LR, tiled, onto the HR grid (bicubic: data 'none', no model file)."""
    input:
        lr="results/pairs/{specimen}/lr.tif",
        pairs="results/pairs/{specimen}/pairs.json",
        model=lambda w: [] if w.model in UNTRAINED else [f"results/train/{w.model}/{w.data}/{w.fold}/model.pt"],
    output:
        tif="results/infer/{model}/{data}/{fold}/{specimen}.tif",
        info="results/infer/{model}/{data}/{fold}/{specimen}.json",
    wildcard_constraints:
        model="|".join(MODELS),
    params:
        infer=config["infer"],
        # untrained baselines: their arch spec (trained models are rebuilt from model.pt)
        arch=lambda w: (
            {"arch": config["models"][w.model]["arch"], "net": config["models"][w.model].get("net") or {}}
            if w.model in UNTRAINED
            else None
        ),
        device=config["device"],
    log:
        "logs/infer/{model}/{data}/{fold}/{specimen}.log",
    benchmark:
        "benchmarks/infer/{model}/{data}/{fold}/{specimen}.tsv"
    threads: 1
    resources:
        gpu=gpu_resources(),
        mem_mb=lambda w, attempt: 8000 * attempt,
        runtime=lambda w, attempt: 60 * attempt,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/infer.py"


# infer.blocks_z: N > 1 scatters each specimen's inference over N jobs (blocks of
# sections, e.g. one GPU each for one huge specimen); infer_gather joins them into the
# very file `infer` writes, and the ruleorder makes the gather produce it. The default
# (1 block) is the single `infer` job above, unchanged.
INFER_BLOCKS = int(config["infer"].get("blocks_z", 1))

if INFER_BLOCKS > 1:

    ruleorder: infer_gather > infer

    rule infer_block:
        """Super-resolve one block of sections of a test specimen's real LR (a scattered `infer`)."""
        input:
            lr="results/pairs/{specimen}/lr.tif",
            pairs="results/pairs/{specimen}/pairs.json",
            model=lambda w: [] if w.model in UNTRAINED else [f"results/train/{w.model}/{w.data}/{w.fold}/model.pt"],
        output:
            tif="results/infer/{model}/{data}/{fold}/{specimen}/block{block}.tif",
            info="results/infer/{model}/{data}/{fold}/{specimen}/block{block}.json",
        wildcard_constraints:
            model="|".join(MODELS),
            block=r"\d+",
        params:
            infer=config["infer"],
            arch=lambda w: (
                {"arch": config["models"][w.model]["arch"], "net": config["models"][w.model].get("net") or {}}
                if w.model in UNTRAINED
                else None
            ),
            device=config["device"],
        log:
            "logs/infer_block/{model}/{data}/{fold}/{specimen}/block{block}.log",
        benchmark:
            "benchmarks/infer_block/{model}/{data}/{fold}/{specimen}/block{block}.tsv"
        threads: 1
        resources:
            gpu=gpu_resources(),
            mem_mb=lambda w, attempt: 8000 * attempt,
            runtime=lambda w, attempt: 60 * attempt,
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/infer.py"

    rule infer_gather:
        """Join the blocks of a scattered inference into the specimen's SR volume (same output as one job)."""
        input:
            tifs=expand("results/infer/{{model}}/{{data}}/{{fold}}/{{specimen}}/block{b}.tif", b=range(INFER_BLOCKS)),
            infos=expand("results/infer/{{model}}/{{data}}/{{fold}}/{{specimen}}/block{b}.json", b=range(INFER_BLOCKS)),
        output:
            tif="results/infer/{model}/{data}/{fold}/{specimen}.tif",
            info="results/infer/{model}/{data}/{fold}/{specimen}.json",
        wildcard_constraints:
            model="|".join(MODELS),
        log:
            "logs/infer_gather/{model}/{data}/{fold}/{specimen}.log",
        threads: 1
        resources:
            mem_mb=lambda w, attempt: 8000 * attempt,
            runtime=lambda w, attempt: 30 * attempt,
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/infer_gather.py"
