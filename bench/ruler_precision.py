"""Seconds per training step of the ruler's U-Net in float32 and under bf16 autocast on this CPU.

    python bench/ruler_precision.py --out results/bench/ruler_precision.json [--config config/isbi.yaml]
                                    [--steps 20] [--threads 1]

Builds the affinity network of the config's `affinity:` slice (and of the same slice at depth 3
and 4), draws one seeded batch of its patch size (`affinity.batch` x `affinity.patch`^2, x
`patch_z` sections in 3D; the network's grid) and times forward + LSD head + backward + Adam
step, in float32 and under `srseg.affinity.training_autocast` with `cpu_bf16` (what
`affinity.cpu_bf16: true` trains in). Reports whether this CPU has bf16 instructions
(`affinity.cpu_bf16_native`); without them the bf16 column is float32 again. Network cost
only: the patch sampling (augmentation, targets) is the same in both and not timed here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from srseg import affinity, runtime  # noqa: E402
from srseg.config import section  # noqa: E402
from srseg.io import write_csv, write_json  # noqa: E402


def step_seconds(settings: dict, cpu_bf16: bool, steps: int) -> float:
    """Mean seconds of one optimiser step (after 3 warm-up steps) of the slice's network."""
    torch.manual_seed(0)
    net = affinity.build_network(settings)
    opt = torch.optim.Adam(net.parameters(), lr=float(settings["lr"]))
    p, b = int(settings["patch"]), int(settings["batch"])
    x = torch.rand(b, 1, p, p) if int(settings["dim"]) == 2 else torch.rand(b, 1, int(settings["patch_z"]), p, p)
    device = torch.device("cpu")
    for i in range(steps + 3):
        if i == 3:
            t = time.perf_counter()
        with affinity.training_autocast(device, True, cpu_bf16):
            aff, lsd = net.forward_all(x)
            loss = aff.float().mean() + (lsd.float().mean() if lsd is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default=str(ROOT / "config" / "isbi.yaml"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.config) as f:
        base = section("affinity", (yaml.safe_load(f) or {}).get("affinity") or {})
    depths = sorted({3, 4, int(base["depth"])})
    rows = []
    for depth in depths:
        s = {**base, "depth": depth}
        fp32, bf16 = step_seconds(s, False, a.steps), step_seconds(s, True, a.steps)
        rows.append(
            {
                "depth": depth,
                "features": int(s["features"]),
                "dim": int(s["dim"]),
                "patch": int(s["patch"]),
                "batch": int(s["batch"]),
                "parameters": runtime.count_parameters(affinity.build_network(s)),
                "float32_s_per_step": round(fp32, 4),
                "bf16_s_per_step": round(bf16, 4),
                "speedup": round(fp32 / bf16, 2),
            }
        )
        print(rows[-1], flush=True)
    out = Path(a.out)
    write_csv(out.with_suffix(".csv"), pd.DataFrame(rows))
    write_json(
        out,
        {
            "cpu_bf16_native": affinity.cpu_bf16_native(),
            "threads": a.threads,
            "torch": torch.__version__,
            "config": a.config,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
