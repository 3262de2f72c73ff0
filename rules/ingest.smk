# Demo data (phantom) and ingest: raw stacks -> validated results/ingest/{specimen}/...
# A specimen is generated when its config entry has `phantom:` (rule phantom) or
# `simulate:` (rule simulate, rules/simulate.smk: LR + HR acquisitions simulated from a
# real HR stack), else read from the user's paths (a TIFF, a folder of sections, a glob,
# or file.h5:/dataset).


rule phantom:
    output:
        lr="results/phantom/{specimen}/lr.tif",
        hr="results/phantom/{specimen}/hr.tif",
        labels="results/phantom/{specimen}/labels.tif",
        meta="results/phantom/{specimen}/meta.json",
        truth="results/phantom/{specimen}/truth.json",
    wildcard_constraints:
        specimen="|".join(PHANTOM_SPECIMENS) or "__none__",
    params:
        spec=lambda w: config["specimens"][w.specimen]["phantom"],
        geometry=config.get("phantom", {}),
    threads: 1
    log:
        "logs/phantom/{specimen}.log",
    benchmark:
        "benchmarks/phantom/{specimen}.tsv"
    resources:
        mem_mb=lambda w, attempt: 2000 * attempt,
        runtime=lambda w, attempt: 10 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/phantom.py"


rule ingest:
    input:
        unpack(ingest_inputs),
    output:
        lr="results/ingest/{specimen}/lr.tif",
        hr="results/ingest/{specimen}/hr.tif",
        meta="results/ingest/{specimen}/meta.json",
    params:
        spec=lambda w: config["specimens"][w.specimen],
        lr=lambda w: ingest_source(w.specimen, "lr"),
        hr=lambda w: ingest_source(w.specimen, "hr"),
    log:
        "logs/ingest/{specimen}.log",
    benchmark:
        "benchmarks/ingest/{specimen}.tsv"
    resources:
        mem_mb=lambda w, attempt: 4000 * attempt,
        runtime=lambda w, attempt: 10 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/ingest.py"


rule ingest_labels:
    input:
        labels=lambda w: ingest_source(w.specimen, "labels") if is_generated(w.specimen)
        else _source_files(_user_source(w.specimen, "labels")),
        meta="results/ingest/{specimen}/meta.json",
    output:
        labels="results/ingest/{specimen}/labels.tif",
    wildcard_constraints:
        specimen="|".join(SPECIMENS_WITH_LABELS) or "__none__",
    params:
        labels=lambda w: ingest_source(w.specimen, "labels"),
        # generated specimens write instance IDs; a user's labels may be a cell mask
        labels_kind=lambda w: "instances" if is_generated(w.specimen)
        else (config["specimens"][w.specimen] or {}).get("labels_kind", "instances"),
        connectivity=lambda w: (config["specimens"][w.specimen] or {}).get("labels_connectivity", "2d"),
    log:
        "logs/ingest_labels/{specimen}.log",
    resources:
        mem_mb=lambda w, attempt: 4000 * attempt,
        runtime=lambda w, attempt: 10 * attempt,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/ingest_labels.py"
