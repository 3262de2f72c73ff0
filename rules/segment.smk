# Segment every scored image (SR output, bicubic or real HR) with its fold's affinity network:
# affinities, seeded-watershed fragments and waterz agglomeration at every threshold; and the
# reference labels each test specimen is scored against.


rule segment:
    """Affinities of one scored image, then one segmentation per threshold."""
    input:
        image=lambda w: sr_image(w.model, w.data, w.fold, w.specimen),
        model=affinity_model("{fold}"),
        # the fragment settings (seed distance, boundary threshold, size filter, long-range weight)
        # this row chose on the validation sections, with its threshold
        choice=lambda w: row_threshold(w.model, w.data, w.fold),
    output:
        segs=segmentations("{model}", "{data}", "{fold}", "{specimen}"),
        info=segmented("{model}", "{data}", "{fold}", "{specimen}", "segment.json"),
    log:
        "logs/segment/{model}/{data}/{fold}/{specimen}.log",
    benchmark:
        "benchmarks/segment/{model}/{data}/{fold}/{specimen}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        **job_resources(8, 60, gpu=True),
    params:
        segmentation=segmentation_choice(),
        code=code("srseg.blockwise"),
    script:
        "../workflow/scripts/segment.py"


rule reference:
    """Labels a test specimen is scored against: its own labels, or real HR segmented at the validation-best threshold."""
    input:
        unpack(reference_inputs),
    output:
        labels=referenced("{fold}", "{specimen}"),
        meta=referenced("{fold}", "{specimen}", "json"),
    log:
        "logs/reference/{fold}/{specimen}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        **job_resources(4, 10),
    params:
        # a specimen with labels only copies and checks them: the thresholds and the segmentation
        # code (rule segment's digest) then leave its reference, and every row's score, alone
        thresholds=lambda w: None if has_labels(w.specimen) else THRESHOLDS,
        code=code("srseg.reference"),
    script:
        "../workflow/scripts/reference.py"
