"""Inference throughput of every registered SR architecture, relative to bicubic, in one run.

    python bench/infer_speed.py --out results/bench/infer_speed.json [--size 4 256 256] [--scale 3]
                                [--device auto] [--config config.yaml] [--tile 64 --overlap 8 --batch 8]
                                [--untiled] [--models edsr bicubic]

Models run with random weights (speed does not depend on the weights) through the same
tiled path as the infer rule (srseg.infer.super_resolve: batched tiles, mixed precision
and channels_last on CUDA). Nets come from --config's `models:` entries (default: the
demo config) or, with --paper-sizes, from each architecture's defaults. Prints a table and
writes the json plus a csv beside it with output megapixels/s per model and the device.
--untiled also times one untiled forward pass per section of the same model (no tiles, no
blending) and reports `tiled_over_untiled`, the tiled path's throughput relative to it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from srseg.config import resolve
from srseg.infer import section_noise, super_resolve
from srseg.io import write_csv, write_json
from srseg.models import ARCHS, build_model
from srseg.runtime import count_parameters, resolve_device, set_threads


def model_specs(config: str | None, paper_sizes: bool) -> dict[str, dict]:
    """name -> {"arch", "net"}: the config's models, or one per registered arch at its defaults."""
    if paper_sizes or not config:
        specs = {name: {"arch": name, "net": {}} for name in ARCHS}
        # SR3's default sampler is the full ancestral chain (2000 steps); time the fast DDIM-50 instead
        specs["sr3"]["net"] = {"sampler": "ddim", "sample_steps": 50}
        return specs
    models = resolve(yaml.safe_load(Path(config).read_text()))["models"]  # the defaults' models if it sets none
    specs = {name: {"arch": m["arch"], "net": m.get("net") or {}} for name, m in models.items()}
    if not any(s["arch"] == "bicubic" for s in specs.values()):
        specs["bicubic"] = {"arch": "bicubic", "net": {}}
    return specs


def best_of(run, device, repeats: int) -> float:
    """Best-of-`repeats` wall seconds of run(), after one warm-up call (cuDNN autotuning, allocator, lazy init)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return best


def time_model(model, vol, scale, device, tile, overlap, batch, repeats: int) -> float:
    """Best-of-`repeats` seconds for one tiled pass over vol, after a warm-up pass."""
    return best_of(
        lambda: super_resolve(model, vol, scale, tile, overlap, batch, device, amp=True, progress=False),
        device,
        repeats,
    )


def untiled_forward(model, vol, scale, device, amp: bool = True) -> None:
    """One forward pass of the whole section (as the model would see it untiled), section by section."""
    from srseg.data import context_indices
    from srseg.runtime import autocast

    device = torch.device(device)
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    z, h, w = vol.shape
    context = getattr(model, "context", 0)
    with torch.inference_mode():
        for k in range(z):
            x = torch.from_numpy(np.ascontiguousarray(vol[context_indices(k, context, z)]))[None].to(device)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            noise = section_noise(model, h, w, 0, k, device)
            with autocast(device, amp):
                y = model(x) if noise is None else model(x, noise=noise[None])
            y.float().clamp_(0.0, 1.0).cpu()


def time_untiled(model, vol, scale, device, repeats: int) -> float:
    """Best-of-`repeats` seconds for untiled forward passes over vol, after a warm-up pass."""
    return best_of(lambda: untiled_forward(model, vol, scale, device), device, repeats)


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="json path; a csv with the same stem is written beside it")
    ap.add_argument("--size", type=int, nargs=3, default=[4, 256, 256], metavar=("Z", "Y", "X"), help="LR input size")
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--config", default="config.yaml", help="take model nets from this config ('' for arch defaults)")
    ap.add_argument("--paper-sizes", action="store_true", help="use each architecture's default (paper) size")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--overlap", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--untiled", action="store_true", help="also time an untiled forward pass of each model")
    ap.add_argument("--models", nargs="*", default=None, help="only these model names (bicubic always kept)")
    args = ap.parse_args(argv)

    set_threads(args.threads or None)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    vol = np.random.default_rng(0).random(args.size).astype(np.float32)
    out_mpix = vol.size * args.scale**2 / 1e6
    rows = []
    specs = model_specs(args.config, args.paper_sizes)
    if args.models:
        specs = {k: v for k, v in specs.items() if k in args.models or v["arch"] == "bicubic"}
    for name, spec in specs.items():
        model = build_model(spec, args.scale)
        seconds = time_model(model, vol, args.scale, device, args.tile, args.overlap, args.batch, args.repeats)
        row = {
            "model": name,
            "arch": spec["arch"],
            "net": str(spec["net"]),
            "parameters": count_parameters(model),
            "seconds": seconds,
            "out_mpix_per_s": out_mpix / seconds,
        }
        if args.untiled:
            untiled = time_untiled(model, vol, args.scale, device, args.repeats)
            row.update(untiled_seconds=untiled, tiled_over_untiled=untiled / seconds)
        rows.append(row)
        del model
    df = pd.DataFrame(rows)
    bic = df.loc[df["arch"] == "bicubic", "out_mpix_per_s"].iloc[0]
    df["relative_to_bicubic"] = df["out_mpix_per_s"] / bic
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    df["device"] = name
    info = {
        "device": name,
        "torch_version": torch.__version__,
        "lr_size_zyx": args.size,
        "scale": args.scale,
        "tile": args.tile,
        "overlap": args.overlap,
        "batch": args.batch,
        "amp": device.type == "cuda",
        "rows": df.to_dict(orient="records"),
    }
    write_json(args.out, info)
    write_csv(Path(args.out).with_suffix(".csv"), df)
    print(f"device: {name}; LR {args.size} x{args.scale} -> {out_mpix:.1f} output Mpx per pass")
    cols = ["model", "arch", "parameters", "out_mpix_per_s", "relative_to_bicubic"]
    cols += ["tiled_over_untiled"] if args.untiled else []
    print(df[cols].to_string(index=False, float_format="%.3g"))
    return df


if __name__ == "__main__":
    main()
