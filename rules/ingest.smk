# Demo data (phantom) and ingest: raw stacks -> validated results/ingest/{specimen}/...
# A specimen is generated when its config entry has `phantom:`, else read from the
# user's paths (a TIFF, a folder of sections, or a glob).

import glob as _glob
import os as _os

PHANTOM_SPECIMENS = [s for s, e in config["specimens"].items() if (e or {}).get("phantom") is not None]


def is_phantom(specimen):
    return specimen in PHANTOM_SPECIMENS


def has_labels(specimen):
    """Phantoms always have labels; a user specimen when its `labels` key is set."""
    return is_phantom(specimen) or bool((config["specimens"][specimen] or {}).get("labels"))


SPECIMENS_WITH_LABELS = [s for s in SPECIMENS if has_labels(s)]


def _source_files(source):
    """Files behind a user path (file, folder or glob), so Snakemake tracks their mtimes.

    A path that matches nothing is returned as is: Snakemake then reports it missing.
    """
    if _os.path.isdir(source):
        files = [_os.path.join(source, f) for f in sorted(_os.listdir(source))
                 if f.lower().endswith((".tif", ".tiff", ".png"))]
    elif _glob.has_magic(source):
        files = sorted(_glob.glob(source))
    else:
        files = [source]
    return files or [source]


def _user_source(specimen, key):
    value = (config["specimens"][specimen] or {}).get(key)
    if not value:
        raise ValueError(f"config key specimens.{specimen}.{key} is missing; give a TIFF, folder or glob path")
    return str(value)


def ingest_source(specimen, key):
    """The path (phantom output, or the user's TIFF/folder/glob) ingest reads for lr/hr/labels."""
    if is_phantom(specimen):
        return f"results/phantom/{specimen}/{key}.tif"
    return _user_source(specimen, key)


def ingest_inputs(wildcards):
    s = wildcards.specimen
    if is_phantom(s):
        return {"lr": f"results/phantom/{s}/lr.tif", "hr": f"results/phantom/{s}/hr.tif",
                "meta": f"results/phantom/{s}/meta.json"}
    return {"lr": _source_files(_user_source(s, "lr")), "hr": _source_files(_user_source(s, "hr"))}


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
        mem_mb=2000,
        runtime=10,
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
        mem_mb=4000,
        runtime=10,
    script:
        "../workflow/scripts/ingest.py"


rule ingest_labels:
    input:
        labels=lambda w: ingest_source(w.specimen, "labels") if is_phantom(w.specimen)
        else _source_files(_user_source(w.specimen, "labels")),
        meta="results/ingest/{specimen}/meta.json",
    output:
        labels="results/ingest/{specimen}/labels.tif",
    wildcard_constraints:
        specimen="|".join(SPECIMENS_WITH_LABELS) or "__none__",
    params:
        labels=lambda w: ingest_source(w.specimen, "labels"),
    log:
        "logs/ingest_labels/{specimen}.log",
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../workflow/scripts/ingest_labels.py"
