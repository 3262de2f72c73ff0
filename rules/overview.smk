# Overview (`snakemake overview`; not part of `all`): the chosen (model, training data) row
# super-resolves each selected specimen's WHOLE LR overview (ingest's lr.tif, not only the HR
# field that rule pairs cuts), then the fold's affinity network segments it block by block at
# the row's own threshold, into OME-Zarr volumes with pyramids, voxel size and offset. The
# row is overview.model / .data, or (null) the summary table's best by the headline VOI sum
# (checkpoint overview_choice, after the report). A specimen is processed with the models of
# the fold that tests it. overview_segment resumes after a kill: its work folder
# (results/overview/{specimen}/work) is no declared output, so Snakemake keeps it. The target
# rule `overview` is in the Snakefile, beside `all`.
# overview.segment_jobs: overview_segment is replaced by checkpoint overview_work (the empty work arrays),
# overview.blocks_z affinity jobs (one GPU each) and one job per block and pass (fragments, edges,
# relabel, filter) with the gathers overview_luts / overview_sizes and overview_export: the same labels
# (see the `else:` branch below).


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


if not OVERVIEW["segment_jobs"]:

    rule overview_segment:
        """Affinities and blockwise segmentation of a whole SR overview at the row's threshold; resumable."""
        input:
            unpack(overview_segment_inputs),
        output:
            **overview_intermediates(),
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

else:

    # overview.segment_jobs: the same segmentation as one Snakemake job per block and pass (a SLURM array
    # each). The work arrays (results/overview/{specimen}/work) are written by every job, chunk by chunk,
    # and are no declared outputs; only the markers are, so parallel jobs never share an output path. The
    # number of blocks is known after checkpoint overview_work (from the SR shape it reads).
    # Affinities: overview.blocks_z GPU jobs per specimen, each a run of whole z-blocks of overview.block
    # predicted with the tiles of the whole-volume prediction (the same bytes as one job); a block's
    # fragments job waits for the affinity jobs of its z range only.

    checkpoint overview_work:
        """The empty affinity array and blockwise work group of a whole SR overview; its json plans the jobs."""
        input:
            unpack(overview_segment_inputs),
        output:
            json=overview_work_json("{specimen}"),
        log:
            "logs/overview_work/{specimen}.log",
        benchmark:
            "benchmarks/overview_work/{specimen}.tsv"
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(4, 30),
        params:
            overview=canonical({k: OVERVIEW[k] for k in ("threshold", "block", "context", "blocks_z")}),
            segmentation=segmentation_choice(),
            code=code("srseg.overview", "srseg.blockwise"),
        script:
            "../workflow/scripts/overview_work.py"

    rule overview_affinities_block:
        """The affinities of one run of z-blocks of a scattered overview (the whole-volume prediction's tiles), into its chunks."""
        input:
            work=overview_work_json("{specimen}"),
        output:
            marker=overview_marker("{specimen}", "affinities", "{block}"),
        log:
            "logs/overview_affinities_block/{specimen}/{block}.log",
        benchmark:
            "benchmarks/overview_affinities_block/{specimen}/{block}.tsv"
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(16, 240, gpu=True),
        params:
            code=code("srseg.overview", "srseg.affinity"),
        script:
            "../workflow/scripts/overview_affinities_block.py"

    rule overview_fragments_block:
        """Pass 1 of one block of a scattered overview segmentation: its fragments (block + context)."""
        input:
            unpack(overview_fragments_inputs),
        output:
            marker=overview_marker("{specimen}", "fragments", "{block}"),
        log:
            "logs/overview_fragments_block/{specimen}/{block}.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(4, 30),
        params:
            code=code("srseg.overview", "srseg.blockwise"),
        script:
            "../workflow/scripts/overview_fragments_block.py"

    rule overview_edges_block:
        """Pass 2 of one block: its RAG edge statistics (reads its neighbours' fragments in its context)."""
        input:
            unpack(overview_pass_inputs("fragments")),
        output:
            marker=overview_marker("{specimen}", "edges", "{block}"),
        log:
            "logs/overview_edges_block/{specimen}/{block}.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(4, 30),
        params:
            code=code("srseg.overview", "srseg.blockwise"),
        script:
            "../workflow/scripts/overview_edges_block.py"

    rule overview_luts:
        """Pass 3a (gather): the global agglomeration of every block's edges into the lookup tables."""
        input:
            unpack(overview_pass_inputs("edges")),
        output:
            luts=overview_marker("{specimen}", "luts"),
        log:
            "logs/overview_luts/{specimen}.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(8, 60),
        params:
            code=code("srseg.overview", "srseg.blockwise"),
        script:
            "../workflow/scripts/overview_luts.py"

    rule overview_relabel_block:
        """Pass 3b of one block: its fragments relabelled into global segments, and their sizes."""
        input:
            work=overview_work_json("{specimen}"),
            luts=overview_marker("{specimen}", "luts"),
        output:
            marker=overview_marker("{specimen}", "relabel", "{block}"),
        log:
            "logs/overview_relabel_block/{specimen}/{block}.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(4, 30),
        params:
            code=code("srseg.overview", "srseg.blockwise"),
        script:
            "../workflow/scripts/overview_relabel_block.py"

    rule overview_sizes:
        """The global segment sizes (gather of the relabel pass), for the size filter (min_size > 1)."""
        input:
            unpack(overview_pass_inputs("relabel")),
        output:
            sizes=overview_marker("{specimen}", "sizes"),
        log:
            "logs/overview_sizes/{specimen}.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(8, 30),
        params:
            code=code("srseg.overview", "srseg.blockwise"),
        script:
            "../workflow/scripts/overview_sizes.py"

    rule overview_filter_block:
        """Pass 4 of one block (min_size > 1): segments under min_size merged into their neighbours."""
        input:
            work=overview_work_json("{specimen}"),
            sizes=overview_marker("{specimen}", "sizes"),
        output:
            marker=overview_marker("{specimen}", "filter", "{block}"),
        log:
            "logs/overview_filter_block/{specimen}/{block}.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(4, 30),
        params:
            code=code("srseg.overview", "srseg.blockwise"),
        script:
            "../workflow/scripts/overview_filter_block.py"

    rule overview_export:
        """The scattered segmentation's labels as the overview's OME-Zarr (the same labels as overview_segment)."""
        input:
            unpack(overview_pass_inputs("last")),
        output:
            **overview_intermediates(),
            zarr=directory(overviewed("{specimen}", "segmentation.zarr")),
            info=overviewed("{specimen}", "segmentation.json"),
        log:
            "logs/overview_export/{specimen}.log",
        benchmark:
            "benchmarks/overview_export/{specimen}.tsv"
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            **job_resources(8, 60),
        params:
            code=code("srseg.overview", "srseg.blockwise"),
        script:
            "../workflow/scripts/overview_export.py"
