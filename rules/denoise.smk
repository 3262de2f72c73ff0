# Denoised HR targets (EMSR's "denoised" training strategy): training data `denoised`
# pairs each training specimen's real LR with results/denoise/{specimen}/hr.tif instead
# of the noisy acquired HR. Only the `denoise:` config slice reaches the rule, so
# changing the denoiser reruns only these jobs and the models trained on `denoised`.


rule denoise:
    """Denoise a specimen's paired HR section by section (non-local means by default)."""
    input:
        hr="results/pairs/{specimen}/hr.tif",
    output:
        hr="results/denoise/{specimen}/hr.tif",
        info="results/denoise/{specimen}/denoise.json",
    params:
        denoise=config.get("denoise", {}),
    log:
        "logs/denoise/{specimen}.log",
    benchmark:
        "benchmarks/denoise/{specimen}.tsv"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: 4000 * attempt,
        runtime=lambda w, attempt: 60 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/denoise.py"
