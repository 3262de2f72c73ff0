# Degrade: synthetic LR from the paired HR, one per recipe under `degradations:`. Each job gets
# only its own recipe, so editing one recipe reruns only that recipe's branch. A `fitted`
# recipe is first fitted per fold to the real pairs of that fold's training specimens
# (fit_degradation), so its synthetic LR is per fold too (degrade_fitted): a test specimen's
# pairs never shape the degradation a model is trained on.


rule degrade:
    """Synthetic LR from the paired HR with one recipe, on the paired LR's grid; seeded by (seed, recipe, specimen)."""
    input:
        hr=paired("{specimen}", "hr.tif"),
        pairs=paired("{specimen}", "pairs.json"),
    output:
        lr="results/degrade/{recipe}/{specimen}/lr.tif",
    log:
        "logs/degrade/{recipe}/{specimen}.log",
    benchmark:
        "benchmarks/degrade/{recipe}/{specimen}.tsv"
    wildcard_constraints:
        recipe="|".join(PLAIN_RECIPES) or "__none__",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(2, 10),
    params:
        recipe=lambda w: canonical(config["degradations"][w.recipe]),
        seed=config["seed"],
        code=code("srseg.degrade"),
    script:
        "../workflow/scripts/degrade.py"


rule fit_degradation:
    """Fit a `fitted` recipe (PSF, gain/offset/gamma, Poisson-Gaussian noise) to one fold's real training pairs."""
    input:
        lr=lambda w: [paired(s, "lr.tif") for s in train_specimens(w.fold)],
        hr=lambda w: [paired(s, "hr.tif") for s in train_specimens(w.fold)],
        pairs=lambda w: [paired(s, "pairs.json") for s in train_specimens(w.fold)],
    output:
        fit="results/degrade/{recipe}/{fold}/fit.json",
    log:
        "logs/fit_degradation/{recipe}/{fold}.log",
    benchmark:
        "benchmarks/fit_degradation/{recipe}/{fold}.tsv"
    wildcard_constraints:
        recipe="|".join(FITTED_RECIPES) or "__none__",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(2, 30),
    params:
        recipe=lambda w: fit_settings(w.recipe),
        code=code("srseg.degrade"),
    script:
        "../workflow/scripts/fit_degradation.py"


use rule degrade as degrade_fitted with:
    input:
        hr=paired("{specimen}", "hr.tif"),
        pairs=paired("{specimen}", "pairs.json"),
        fit="results/degrade/{recipe}/{fold}/fit.json",
    output:
        lr="results/degrade/{recipe}/{fold}/{specimen}/lr.tif",
    log:
        "logs/degrade/{recipe}/{fold}/{specimen}.log",
    benchmark:
        "benchmarks/degrade/{recipe}/{fold}/{specimen}.tsv"
    wildcard_constraints:
        recipe="|".join(FITTED_RECIPES) or "__none__",
