# Generated specimens: `phantom:` entries (the embedded demo: EM-like tissue imaged twice with a
# known transform) and `simulate:` entries (an LR overview and an HR sub-field acquisition
# simulated from one real HR stack, e.g. ISBI 2012). Both write what ingest reads, plus the
# true transform (truth.json) that align scores itself against.


rule phantom:
    """Demo specimen: LR overview + HR field of generated tissue, labels and the true transform."""
    output:
        lr="results/phantom/{specimen}/lr.tif",
        hr="results/phantom/{specimen}/hr.tif",
        labels="results/phantom/{specimen}/labels.tif",
        meta="results/phantom/{specimen}/meta.json",
        truth="results/phantom/{specimen}/truth.json",
    log:
        "logs/phantom/{specimen}.log",
    benchmark:
        "benchmarks/phantom/{specimen}.tsv"
    wildcard_constraints:
        specimen="|".join(PHANTOM_SPECIMENS) or "__none__",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(2, 10),
    params:
        spec=lambda w: canonical(specimen_entry(w.specimen)["phantom"]),
        geometry=stage("phantom"),
        code=code("srseg.phantom"),
    script:
        "../workflow/scripts/phantom.py"


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
    log:
        "logs/simulate/{specimen}.log",
    benchmark:
        "benchmarks/simulate/{specimen}.tsv"
    wildcard_constraints:
        specimen="|".join(SIMULATED_SPECIMENS) or "__none__",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(4, 10),
    params:
        spec=lambda w: canonical(specimen_entry(w.specimen)["simulate"]),
        bit_depth=lambda w: specimen_entry(w.specimen)["bit_depth"],
        code=code("srseg.simulate"),
    script:
        "../workflow/scripts/simulate.py"
