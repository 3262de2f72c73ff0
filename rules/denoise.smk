# Denoised HR targets (EMSR's "denoised" training strategy): training data `denoised` pairs
# each training specimen's real LR with results/denoise/{specimen}/hr.tif instead of the
# noisy acquired HR. Only `denoise:` reaches the rule.


rule denoise:
    """Denoise a specimen's paired HR section by section (non-local means by default)."""
    input:
        hr=paired("{specimen}", "hr.tif"),
    output:
        hr="results/denoise/{specimen}/hr.tif",
        info="results/denoise/{specimen}/denoise.json",
    log:
        "logs/denoise/{specimen}.log",
    benchmark:
        "benchmarks/denoise/{specimen}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(4, 60),
    params:
        denoise=stage("denoise"),
        code=code("srseg.denoise"),
    script:
        "../workflow/scripts/denoise.py"
