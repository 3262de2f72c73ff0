# Report stage: every metrics table, statistic and paper figure, registered for
# `snakemake --report results/report/report.html`. Inputs are all scored rows'
# metrics plus one example test specimen's images (qualitative figures);
# params are config["report"] only, so editing it reruns this rule alone.

from srseg.report.layout import FIGURE_NAMES, TABLE_NAMES


rule report:
    """Tables (csv/md/tex), statistics and figures (png/pdf) of the whole benchmark."""
    input:
        image=per_test_specimen("results/metrics/image/{model}/{data}/{fold}/{specimen}.csv", rows=SR_ROWS),
        frc=per_test_specimen("results/metrics/image/{model}/{data}/{fold}/{specimen}_frc.csv", rows=SR_ROWS),
        seg=per_test_specimen("results/metrics/seg/{model}/{data}/{fold}/{specimen}.csv"),
        infer=per_test_specimen("results/infer/{model}/{data}/{fold}/{specimen}.json", rows=SR_ROWS),
        train=[f"results/train/{m}/{d}/{f}/train.json" for m in TRAINED for d in TRAIN_DATA for f in FOLDS],
        train_log=[f"results/train/{m}/{d}/{f}/log.csv" for m in TRAINED for d in TRAIN_DATA for f in FOLDS],
        align_png=expand("results/align/{specimen}/qc.png", specimen=SPECIMENS),
        align_json=expand("results/align/{specimen}/qc.json", specimen=SPECIMENS),
        example_lr=f"results/pairs/{EXAMPLE_SPECIMEN}/lr.tif",
        example_hr=f"results/pairs/{EXAMPLE_SPECIMEN}/hr.tif",
        example_reference=f"results/reference/{EXAMPLE_FOLD}/{EXAMPLE_SPECIMEN}.tif",
        example_sr=[f"results/infer/{m}/{d}/{EXAMPLE_FOLD}/{EXAMPLE_SPECIMEN}.tif" for m, d in SR_ROWS],
        example_seg=[f"results/segment/{m}/{d}/{EXAMPLE_FOLD}/{EXAMPLE_SPECIMEN}/t{t}.tif"
                     for m, d in scored_rows() for t in THRESHOLDS],
    output:
        tables=[_registered(f"results/report/tables/{n}.csv", n) for n in TABLE_NAMES]
        + [f"results/report/tables/{n}.{ext}" for n in TABLE_NAMES for ext in ("md", "tex")],
        figures=[_registered(f"results/report/figures/{n}.png", n) for n in FIGURE_NAMES]
        + [f"results/report/figures/{n}.pdf" for n in FIGURE_NAMES],
    params:
        cfg=report_slice(),
        rows=scored_rows(),
        example={"fold": EXAMPLE_FOLD, "specimen": EXAMPLE_SPECIMEN},
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: 4000 * attempt,
        runtime=lambda w, attempt: 30 * attempt,
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/report.py"
