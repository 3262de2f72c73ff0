"""Peak memory of rule segment (affinities + waterz) in memory vs blockwise, against the volume's size.

    python bench/segment_memory.py --out results/bench/segment_memory.json [--sections 8 32] [--side 512]
                                   [--block 4 256 256] [--context 2 32 32]

The segmentation half of bench/memory_scale.py (which measures inference): for each size a
synthetic uint8 stack (memory_scale.synthetic_lr, `--side`^2 sections) is segmented by a small
randomly initialised 2D affinity U-Net (features 4, depth 2; its affinities follow the image's
texture, so waterz has real work), in a fresh child process per run: `srseg.segment.run_segment`
(whole image) and `srseg.blockwise.run_segment_blockwise` (segmentation.blockwise.block). Peak
RSS is the child's own (os.wait4 ru_maxrss) and, from segment.json, its VmHWM. Writes the json
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from memory_scale import run_child, synthetic_lr  # noqa: E402

from srseg.io import write_json  # noqa: E402

THRESHOLDS = [0.3, 0.5]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sections", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--block", type=int, nargs=3, default=[4, 256, 256])
    ap.add_argument("--context", type=int, nargs=3, default=[2, 32, 32])
    args = ap.parse_args(argv)
    work = Path(args.out).with_suffix("").resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    model = work / "model.pt"
    run_child(
        "import torch; torch.manual_seed(0)\n"
        "from srseg.affinity import AffinityUNet\nfrom srseg.config import section\n"
        "from srseg.runtime import save_checkpoint\n"
        "net = AffinityUNet(2, 4, 2, mean=0.5, std=0.2)\n"
        f"save_checkpoint({str(model)!r}, {{'net': net.config(), 'state_dict': net.state_dict(),"
        " 'params': section('affinity', {'tile': 256, 'overlap': 16, 'batch': 2})})\n",
        env,
    )
    rows = []
    for z in args.sections:
        image = work / f"img_{z}x{args.side}.tif"
        synthetic_lr(image, z, args.side)
        for label, block in (("in-memory", None), ("blockwise", args.block)):
            out = work / f"{label}_{z}"
            segs = [str(out / f"t{t}.tif") for t in THRESHOLDS]
            seg_cfg = {
                "thresholds": THRESHOLDS,
                "seed_min_distance": 3,
                "min_size": 0,
                "blockwise": {"block": block, "context": args.context},
            }
            fn = (
                "srseg.segment import run_segment as f"
                if block is None
                else ("srseg.blockwise import run_segment_blockwise as f")
            )
            res = run_child(
                "import torch; torch.set_num_threads(1)\n"
                f"from {fn}\n"
                f"f({str(image)!r}, {str(model)!r}, {segs!r}, {str(out / 'segment.json')!r}, {seg_cfg!r},"
                f" cache_dir={str(work / 'cache')!r}, device='cpu')\n",
                env,
            )
            info = json.loads((out / "segment.json").read_text())
            rows.append(
                {
                    "path": label,
                    "shape": f"{z}x{args.side}x{args.side}",
                    "peak_rss_mb": res["peak_rss_bytes"] / 2**20,
                    "vmhwm_mb": info["peak_rss_mb"],
                    "wall_s": res["wall_s"],
                    "n_blocks": info.get("n_blocks", 1),
                    "segments_t0.5": info["segments"]["0.5"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    write_json(args.out, {"block": args.block, "context": args.context, "rows": rows})
    import pandas as pd

    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
