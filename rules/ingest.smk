# Ingest: raw stacks (a generated specimen's, or the user's TIFF / folder / glob / HDF5) ->
# validated, normalised results/ingest/{specimen}/lr.tif, hr.tif, meta.json (+ labels.tif).


rule ingest:
    """Validate a specimen's LR and HR stacks, resolve voxel sizes and the stage offset."""
    input:
        unpack(ingest_inputs),
    output:
        lr=ingested("{specimen}", "lr.tif"),
        hr=ingested("{specimen}", "hr.tif"),
        meta=ingested("{specimen}", "meta.json"),
    log:
        "logs/ingest/{specimen}.log",
    benchmark:
        "benchmarks/ingest/{specimen}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(4, 10),
    params:
        spec=lambda w: canonical(specimen_entry(w.specimen)),
        lr=lambda w: ingest_source(w.specimen, "lr"),
        hr=lambda w: ingest_source(w.specimen, "hr"),
        code=code("srseg.ingest"),
    script:
        "../workflow/scripts/ingest.py"


rule ingest_labels:
    """The specimen's instance labels (or a cell mask turned into instances) on the HR grid."""
    input:
        unpack(labels_inputs),
    output:
        labels=ingested("{specimen}", "labels.tif"),
    log:
        "logs/ingest_labels/{specimen}.log",
    wildcard_constraints:
        specimen="|".join(SPECIMENS_WITH_LABELS) or "__none__",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(4, 10),
    params:
        labels=lambda w: ingest_source(w.specimen, "labels"),
        # generated specimens write instance IDs; a user's labels may be a cell mask
        labels_kind=lambda w: "instances" if generated_dir(w.specimen) else specimen_entry(w.specimen)["labels_kind"],
        connectivity=lambda w: specimen_entry(w.specimen)["labels_connectivity"],
        min_area_nm2=lambda w: specimen_entry(w.specimen)["labels_min_area_nm2"],
        code=code("srseg.ingest"),
    script:
        "../workflow/scripts/ingest_labels.py"
