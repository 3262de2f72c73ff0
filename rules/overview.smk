# Overview (`snakemake overview`; not part of `all`): the chosen (model, training data) row
# super-resolves each selected specimen's WHOLE LR overview (ingest's lr.tif, not only the HR
# field that rule pairs cuts), then the fold's affinity network segments it block by block at
# the row's own threshold, into OME-Zarr volumes with pyramids, voxel size and offset. The
# row is overview.model / .data, or (null) the summary table's best by the headline VOI sum
# (checkpoint overview_choice, after the report). A specimen is processed with the models of
# the fold that tests it. overview_segment resumes after a kill: its work folder
# (results/overview/{specimen}/work) is no declared output, so Snakemake keeps it. The target
# rule `overview` is in the Snakefile, beside `all`.


checkpoint overview_choice:
    """The overview row: overview.model / .data, or the summary table's best row by the headline VOI sum."""
    input:
        summary=overview_summary,
    output:
        json=OVERVIEW_CHOICE,
    log:
        "logs/overview_choice/choice.log",
    localrule: True
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        **job_resources(1, 5),
    params:
        model=OVERVIEW["model"],
        data=OVERVIEW["data"],
        rows=[list(r) for r in SR_ROWS],
        code=code("srseg.overview"),
    script:
        "../workflow/scripts/overview_choice.py"


rule overview_infer:
    """Super-resolve a specimen's whole LR overview with the overview row, into an OME-Zarr with pyramid."""
    input:
        unpack(overview_infer_inputs),
    output:
        tif=directory(overviewed("{specimen}", "sr.zarr")),
        info=overviewed("{specimen}", "sr.json"),
    log:
        "logs/overview_infer/{specimen}.log",
    benchmark:
        "benchmarks/overview_infer/{specimen}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        **job_resources(16, 240, gpu=True),
    params:
        infer=stage("infer"),
        blocks_z=OVERVIEW["blocks_z"],
        # untrained baselines are built from their arch spec (trained models from model.pt)
        arch={m: model_params(m) for m in UNTRAINED},
        code=code("srseg.overview", "srseg.infer"),
    script:
        "../workflow/scripts/overview_infer.py"


if OVERVIEW["blocks_z"] > 1:

    ruleorder: overview_infer_gather > overview_infer

    use rule overview_infer as overview_infer_block with:
        output:
            tif=directory(overviewed("{specimen}", "sr/block{block}.zarr")),
            info=overviewed("{specimen}", "sr/block{block}.json"),
        log:
            "logs/overview_infer_block/{specimen}/block{block}.log",
        benchmark:
            "benchmarks/overview_infer_block/{specimen}/block{block}.tsv"

    rule overview_infer_gather:
        """Join the blocks of a scattered overview inference into sr.zarr (same bytes as one job)."""
        input:
            tifs=expand(overviewed("{{specimen}}", "sr/block{b}.zarr"), b=range(OVERVIEW["blocks_z"])),
            infos=expand(overviewed("{{specimen}}", "sr/block{b}.json"), b=range(OVERVIEW["blocks_z"])),
        output:
            tif=directory(overviewed("{specimen}", "sr.zarr")),
            info=overviewed("{specimen}", "sr.json"),
        log:
            "logs/overview_infer_gather/{specimen}.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(8, 30),
        params:
            code=code("srseg.infer"),
        script:
            "../workflow/scripts/infer_gather.py"


rule overview_segment:
    """Affinities and blockwise segmentation of a whole SR overview at the row's threshold; resumable."""
    input:
        unpack(overview_segment_inputs),
    output:
        zarr=directory(overviewed("{specimen}", "segmentation.zarr")),
        info=overviewed("{specimen}", "segmentation.json"),
    log:
        "logs/overview_segment/{specimen}.log",
    benchmark:
        "benchmarks/overview_segment/{specimen}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        **job_resources(16, 480, gpu=True),
    params:
        overview=canonical({k: OVERVIEW[k] for k in ("threshold", "block", "context")}),
        segmentation=segmentation_choice(),
        work=lambda w: overviewed(w.specimen, "work"),
        code=code("srseg.overview", "srseg.blockwise"),
    script:
        "../workflow/scripts/overview_segment.py"
