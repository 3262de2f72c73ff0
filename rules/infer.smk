# Infer: super-resolve every test specimen's real LR with each (model, training data) of its
# fold, tiled with blended overlap. Untrained baselines (bicubic) have data "none" and no
# model file. `infer.blocks_z: N > 1` scatters one specimen over N jobs of consecutive
# sections (one GPU each) that infer_gather joins into the very file `infer` writes
# (byte-identical to one job). `infer.format: ome-zarr` writes OME-Zarr folders (chunked,
# with a pyramid, voxel size and offset) instead of TIFF, streamed section by section.


rule infer:
    """Super-resolve a test specimen's real LR, tiled, onto the HR grid (bicubic: data 'none', no model file)."""
    input:
        lr=paired("{specimen}", "lr.tif"),
        pairs=paired("{specimen}", "pairs.json"),
        model=model_file,
    output:
        tif=sr_output(inferred("{model}", "{data}", "{fold}", "{specimen}")),
        info=inferred("{model}", "{data}", "{fold}", "{specimen}", "json"),
    log:
        "logs/infer/{model}/{data}/{fold}/{specimen}.log",
    benchmark:
        "benchmarks/infer/{model}/{data}/{fold}/{specimen}.tsv"
    wildcard_constraints:
        model="|".join(MODELS),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        **job_resources(8, 60, gpu=True),
    params:
        infer=stage("infer"),
        # untrained baselines are built from their arch spec (trained models from model.pt)
        arch=lambda w: model_params(w.model) if w.model in UNTRAINED else None,
        code=lambda w: model_code(w.model, "srseg.infer"),
    script:
        "../workflow/scripts/infer.py"


INFER_BLOCKS = config["infer"]["blocks_z"]

if INFER_BLOCKS > 1:

    ruleorder: infer_gather > infer

    use rule infer as infer_block with:
        output:
            tif=sr_output(f"results/infer/{{model}}/{{data}}/{{fold}}/{{specimen}}/block{{block}}.{SR_SUFFIX}"),
            info="results/infer/{model}/{data}/{fold}/{specimen}/block{block}.json",
        log:
            "logs/infer_block/{model}/{data}/{fold}/{specimen}/block{block}.log",
        benchmark:
            "benchmarks/infer_block/{model}/{data}/{fold}/{specimen}/block{block}.tsv"

    rule infer_gather:
        """Join the blocks of a scattered inference into the specimen's SR volume (same output as one job)."""
        input:
            tifs=expand(
                f"results/infer/{{{{model}}}}/{{{{data}}}}/{{{{fold}}}}/{{{{specimen}}}}/block{{b}}.{SR_SUFFIX}",
                b=range(INFER_BLOCKS),
            ),
            infos=expand("results/infer/{{model}}/{{data}}/{{fold}}/{{specimen}}/block{b}.json", b=range(INFER_BLOCKS)),
        output:
            tif=sr_output(inferred("{model}", "{data}", "{fold}", "{specimen}")),
            info=inferred("{model}", "{data}", "{fold}", "{specimen}", "json"),
        log:
            "logs/infer_gather/{model}/{data}/{fold}/{specimen}.log",
        wildcard_constraints:
            model="|".join(MODELS),
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(8, 30),
        params:
            code=code("srseg.infer"),
        script:
            "../workflow/scripts/infer_gather.py"
