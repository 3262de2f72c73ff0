# Degrade: synthetic LR from the paired HR, one per recipe under `degradations:`. Each job gets
# only its own recipe, so editing one recipe reruns only that recipe's branch.


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
