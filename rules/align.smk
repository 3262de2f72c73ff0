# Align: place the HR field in the LR overview (stage offset, then SIFT + RANSAC per section,
# ECC refinement). Only `align:` reaches the rule: editing it reruns alignment and what follows.


rule align:
    """HR placed in LR: stage offsets, SIFT + RANSAC per section, ECC refinement; QC figure and numbers."""
    input:
        unpack(align_inputs),
    output:
        transform=aligned("{specimen}", "transform.json"),
        qc_png=report(aligned("{specimen}", "qc.png"), category="Alignment"),
        qc_json=aligned("{specimen}", "qc.json"),
    log:
        "logs/align/{specimen}.log",
    benchmark:
        "benchmarks/align/{specimen}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        **job_resources(2, 10),
    params:
        align=stage("align"),
        code=code("srseg.align"),
    script:
        "../workflow/scripts/align.py"
