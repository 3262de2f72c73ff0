import sys; sys.stderr = open(snakemake.log[0], "a")  # tqdm + tracebacks go to the rule log
from pathlib import Path

from srseg.report import run_report

inp = snakemake.input
run_report(
    image_csvs=inp.image, seg_csvs=inp.seg, frc_csvs=inp.frc, infer_jsons=inp.infer,
    train_jsons=inp.train, train_logs=inp.train_log, align_pngs=inp.align_png, align_jsons=inp.align_json,
    example={**snakemake.params.example, "lr": inp.example_lr, "hr": inp.example_hr,
             "reference": inp.example_reference, "sr": list(inp.example_sr), "seg": list(inp.example_seg)},
    rows=snakemake.params.rows, cfg=snakemake.params.cfg,
    tables_dir=Path(snakemake.output.tables[0]).parent, figures_dir=Path(snakemake.output.figures[0]).parent,
    log=snakemake.log[0],
)
