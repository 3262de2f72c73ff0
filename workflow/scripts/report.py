"""Snakemake rule `report`: every table and figure (srseg.report.run_report)."""

from pathlib import Path

from srseg.entry import rule_log
from srseg.report import run_report

inp = snakemake.input
with rule_log(snakemake) as log:
    run_report(
        image_csvs=list(inp.image),
        seg_csvs=list(inp.seg),
        frc_csvs=list(inp.frc),
        infer_jsons=list(inp.infer),
        train_jsons=list(inp.train),
        train_logs=list(inp.train_log),
        align_pngs=list(inp.align_png),
        align_jsons=list(inp.align_json),
        example={
            **snakemake.params.example,
            "lr": inp.example_lr,
            "hr": inp.example_hr,
            "reference": inp.example_reference,
            "sr": list(inp.example_sr),
            "seg": list(inp.example_seg),
        },
        rows=snakemake.params.rows,
        cfg=dict(snakemake.params.cfg),
        tables_dir=Path(snakemake.output.tables[0]).parent,
        figures_dir=Path(snakemake.output.figures[0]).parent,
        log=log,
    )
