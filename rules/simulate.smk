# Acquisition simulator: an LR overview + an HR sub-field acquisition made from one real
# HR stack (e.g. ISBI 2012), for specimens whose config entry has `simulate:`. Same
# outputs as rule `phantom`, so ingest and align treat both alike (truth.json included).
# Several specimens may cut blocks of sections from one stack (`sections: [start, stop)`);
# overlapping blocks of the same source are refused here, before any job runs.


rule simulate:
    """LR overview + HR acquisition from a real HR stack, with the true transform (truth.json)."""
    input:
        unpack(simulate_inputs),
    output:
        lr="results/simulate/{specimen}/lr.tif",
        hr="results/simulate/{specimen}/hr.tif",
        labels="results/simulate/{specimen}/labels.tif",
        meta="results/simulate/{specimen}/meta.json",
        truth="results/simulate/{specimen}/truth.json",
    wildcard_constraints:
        specimen="|".join(SIMULATED_SPECIMENS) or "__none__",
    params:
        spec=lambda w: config["specimens"][w.specimen]["simulate"],
    threads: 1
    log:
        "logs/simulate/{specimen}.log",
    benchmark:
        "benchmarks/simulate/{specimen}.tsv"
    resources:
        mem_mb=lambda w, attempt: 4000 * attempt,
        runtime=lambda w, attempt: 10 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/simulate.py"
