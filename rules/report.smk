# Report: every metrics table, statistic and paper figure, registered for
# `snakemake --report results/report/report.html`; then provenance.json (the resolved config,
# software versions, git commit and hosts of the run). Inputs are all scored rows' metrics
# plus one example test specimen's images (qualitative figures); params are `report:` only,
# so editing it reruns the report alone.

from srseg.report.layout import FIGURE_NAMES, TABLE_NAMES


rule report:
    """Tables (csv/md/tex), statistics and figures (png/pdf) of the whole benchmark."""
    input:
        image=per_test_specimen("results/metrics/image/{model}/{data}/{fold}/{specimen}.csv", rows=SR_ROWS),
        frc=per_test_specimen("results/metrics/image/{model}/{data}/{fold}/{specimen}_frc.csv", rows=SR_ROWS),
        seg=per_test_specimen("results/metrics/seg/{model}/{data}/{fold}/{specimen}.csv"),
        infer=per_test_specimen(inferred("{model}", "{data}", "{fold}", "{specimen}", "json"), rows=SR_ROWS),
        train=[trained(m, d, f, "train.json") for m in TRAINED for d in TRAIN_DATA for f in FOLDS],
        train_log=[trained(m, d, f, "log.csv") for m in TRAINED for d in TRAIN_DATA for f in FOLDS],
        align_png=[aligned(s, "qc.png") for s in SPECIMENS],
        align_json=[aligned(s, "qc.json") for s in SPECIMENS],
        example_lr=paired(EXAMPLE_SPECIMEN, "lr.tif"),
        example_hr=paired(EXAMPLE_SPECIMEN, "hr.tif"),
        example_reference=referenced(EXAMPLE_FOLD, EXAMPLE_SPECIMEN),
        example_sr=[inferred(m, d, EXAMPLE_FOLD, EXAMPLE_SPECIMEN) for m, d in SR_ROWS],
        example_seg=[s for m, d in scored_rows() for s in segmentations(m, d, EXAMPLE_FOLD, EXAMPLE_SPECIMEN)],
    output:
        tables=[registered(f"results/report/tables/{n}.csv", n) for n in TABLE_NAMES]
        + [f"results/report/tables/{n}.{ext}" for n in TABLE_NAMES for ext in ("md", "tex")],
        figures=[registered(f"results/report/figures/{n}.png", n) for n in FIGURE_NAMES]
        + [f"results/report/figures/{n}.pdf" for n in FIGURE_NAMES],
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        **job_resources(4, 30),
    params:
        cfg=stage("report"),
        rows=scored_rows(),
        example={"fold": EXAMPLE_FOLD, "specimen": EXAMPLE_SPECIMEN},
        code=code("srseg.report", *METRIC_MODULES),
    script:
        "../workflow/scripts/report.py"


rule provenance:
    """Resolved config, software versions, git commit and host names of this run."""
    input:
        rules.report.output,
    output:
        json=report("results/report/provenance.json", caption="../report/provenance.rst", category="Provenance"),
    log:
        "logs/provenance/provenance.log",
    localrule: True
    conda:
        "../envs/torch.yaml"
    resources:
        **job_resources(1, 5),
    params:
        config=canonical(config),
        workflow_dir=workflow.basedir,
    script:
        "../workflow/scripts/provenance.py"
