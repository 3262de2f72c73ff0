# Train: one job per (trained model, training data, fold). Each job gets only its own model's
# slice (model_params: the model entry over `training:`), so editing one model retrains only
# that model's branch; `code` carries the digest of the training code and of the model's own
# *_arch.py. Training resumes from results/train/{model}/{data}/{fold}/checkpoint.pt (kept
# after training, so raising `steps` continues; a checkpoint of other settings is ignored).


rule train:
    """Train one SR model on the fold's training specimens (real LR or a recipe's LR -> real HR; denoised: real LR -> denoised HR)."""
    input:
        lr=lambda w: [lr_path(w.data, s, w.fold) for s in train_specimens(w.fold)],
        hr=lambda w: [hr_target_path(w.data, s) for s in train_specimens(w.fold)],
    output:
        model=trained("{model}", "{data}", "{fold}", "model.pt"),
        log_csv=trained("{model}", "{data}", "{fold}", "log.csv"),
        train_json=trained("{model}", "{data}", "{fold}", "train.json"),
    log:
        "logs/train/{model}/{data}/{fold}.log",
    benchmark:
        "benchmarks/train/{model}/{data}/{fold}.tsv"
    wildcard_constraints:
        model="|".join(TRAINED) or "__none__",
        data="|".join(["real", "denoised"] + RECIPES),
    conda:
        "../envs/torch.yaml"
    # one thread: CPU results are then byte-identical whatever --cores is (GPU does the work on a cluster)
    threads: 1
    resources:
        # runtime in minutes, at a conservative ~10 steps/s on a GPU; a retry resumes from the checkpoint
        mem_mb=lambda w, attempt: 8000 * attempt,
        runtime=lambda w, attempt: (60 + model_params(w.model)["steps"] // 500) * attempt,
        gpu=GPU,
    params:
        spec=lambda w: model_params(w.model),
        # the engine, the model's training kind and own arch file, and the bicubic arch that
        # scores every model's validation patches (the bar to clear)
        code=lambda w: code_digest(
            "srseg.training", ARCH[w.model].training_module, ARCH[w.model].module, "srseg.models.bicubic_arch"
        ),
    script:
        "../workflow/scripts/train.py"
