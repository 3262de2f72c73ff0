"""Blockwise against in-memory segmentation on a finished run: VOI between the two, per row and threshold.

    python bench/blockwise_demo.py --results results --out results/bench/blockwise_demo.json
                                   [--block 8 128 128] [--context 2 32 32] [--models hr bicubic]
                                   [--agglomeration rag|blocks]

For every segment job of the run (results/segment/{model}/{data}/{fold}/{specimen}/segment.json,
the in-memory path) the same image, ruler, threshold json and fragment settings are segmented
again through rule segment's blockwise path (`srseg.blockwise.run_segment_blockwise` with
`segmentation.blockwise.block`), and the VOI split + merge between the blockwise and the
in-memory segmentation is computed at each threshold (the in-memory one as the reference,
whole volume); `--agglomeration blocks` runs the per-block waterz path instead of the
default exact RAG agglomeration (`srseg.blockwise.rag_luts`). Prints a table and writes json +
csv. Run from the run's working directory (paths in segment.json are relative to it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from srseg.blockwise import run_segment_blockwise
from srseg.config import section
from srseg.io import read_labels, write_csv, write_json
from srseg.metrics.segmentation import contingency_table, voi_from_table


def compare(job: Path, block, context, work: Path, agglomeration: str = "rag") -> list[dict]:
    info = json.loads((job / "segment.json").read_text())
    thresholds = [float(t) for t in info["thresholds"]]
    memory = [job / f"t{t:g}.tif" for t in thresholds]
    out = [work / p.name for p in memory]
    seg = section(
        "segmentation",
        {
            "thresholds": thresholds,
            "merge_function": info["merge_function"],
            "blockwise": {"block": list(block), "context": list(context)},
        },
    )
    choice = info["fragments_from"] if info["fragments_from"].endswith(".json") else None
    t0 = time.perf_counter()
    run_segment_blockwise(
        info["image"],
        info["model"],
        [str(p) for p in out],
        str(work / "segment.json"),
        seg,
        choice=choice,
        threads=1,
        agglomeration=agglomeration,
    )
    wall = time.perf_counter() - t0
    model, data, fold, specimen = job.parts[-4:]
    rows = []
    for t, a, b in zip(thresholds, memory, out):
        reference, _ = read_labels(a)
        blockwise, _ = read_labels(b)
        split, merge = voi_from_table(
            contingency_table(blockwise, reference.astype("int64") + 1)[0]
        )  # +1: label 0 scored too
        rows.append(
            {
                "model": model,
                "data": data,
                "fold": fold,
                "specimen": specimen,
                "threshold": t,
                "voi_split": split,
                "voi_merge": merge,
                "voi_sum": split + merge,
                "blockwise_seconds": wall,
                "in_memory_ids": int(len(pd.unique(reference.ravel()))),
                "blockwise_ids": int(len(pd.unique(blockwise.ravel()))),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", default="results/bench/blockwise_demo.json")
    ap.add_argument("--block", type=int, nargs=3, default=[8, 128, 128])
    ap.add_argument("--context", type=int, nargs=3, default=[2, 32, 32])
    ap.add_argument("--models", nargs="*", default=None, help="only these rows' models (default: every row)")
    ap.add_argument("--agglomeration", choices=["rag", "blocks"], default="rag")
    args = ap.parse_args()
    jobs = sorted(p.parent for p in Path(args.results, "segment").glob("*/*/*/*/segment.json"))
    if args.models:
        jobs = [j for j in jobs if j.parts[-4] in args.models]
    rows = []
    for job in jobs:
        with tempfile.TemporaryDirectory() as tmp:
            rows += compare(job, args.block, args.context, Path(tmp), args.agglomeration)
    table = pd.DataFrame(rows)
    summary = {
        "block": args.block,
        "context": args.context,
        "agglomeration": args.agglomeration,
        "jobs": len(jobs),
        "max_voi_sum": float(table["voi_sum"].max()),
        "mean_voi_sum": float(table["voi_sum"].mean()),
        "rows": rows,
    }
    write_json(args.out, summary)
    write_csv(str(Path(args.out).with_suffix(".csv")), table)
    print(table.groupby(["model", "data"])["voi_sum"].agg(["mean", "max"]).round(4).to_markdown())
    print(
        f"{len(jobs)} jobs; VOI sum blockwise vs in-memory: "
        f"mean {summary['mean_voi_sum']:.4f}, max {summary['max_voi_sum']:.4f}"
    )


if __name__ == "__main__":
    main()
