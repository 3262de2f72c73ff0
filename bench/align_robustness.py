"""Alignment robustness on real EM content (ISBI 2012): random known transforms -> srseg.align.

For each trial an LR overview and an HR sub-field are simulated (srseg.simulate)
from a random block of real sections with a random rotation, scale error, stage
offset error and noise level; srseg.align then recovers the transform and its
error against the truth is measured (RMS distance of the HR field's corners, LR
pixels, worst section). Outcomes:

* ok              -- aligned, error <= --tolerance LR px (default 1)
* detected        -- align refused with InputError (too few inliers, bad scale, ...): a clear error
* silent_wrong    -- aligned but error > tolerance: the failure mode that must never happen

Negative controls (--controls, default 10): the HR field mirrored left-right, so no
correct alignment exists; each must end as a detected failure, never an alignment.

    .venv/bin/python bench/align_robustness.py                     # 60 trials, 4x, ~1-2 min on 2 cores
    .venv/bin/python bench/align_robustness.py --trials 100 --ratio 3.3 --out bench/align_robustness_3.3x.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from srseg.align import align_volume
from srseg.ingest import check_image, read_stack
from srseg.io import InputError, to_float, write_json
from srseg.simulate import simulate_volume

# Noise levels, clean to strong (LR acquisition; the HR acquisition keeps its default noise).
NOISE = {
    "clean": {"lr_dose": 0, "lr_read_noise": 0.0, "scanline_noise": 0.0},
    "mild": {"lr_dose": 1000, "lr_read_noise": 0.01, "scanline_noise": 0.005},
    "moderate": {"lr_dose": 300, "lr_read_noise": 0.02, "scanline_noise": 0.015},
    "strong": {"lr_dose": 60, "lr_read_noise": 0.05, "scanline_noise": 0.03},
}


def run(
    source: str,
    trials: int,
    ratio: float,
    sections: int,
    seed: int,
    tolerance: float,
    max_rotation: float,
    max_scale: float,
    max_offset: float,
    fraction: float,
    n_controls: int = 10,
) -> dict:
    raw, vox = read_stack(source)
    img, _ = check_image(raw, source)
    vol = to_float(img)
    rng = np.random.default_rng(seed)
    rows = []
    levels = list(NOISE)
    t_start = time.time()
    for i in range(trials):
        noise = levels[i % len(levels)]
        z0 = int(rng.integers(0, vol.shape[0] - sections + 1))
        geom = {
            "rotation_deg": float(rng.uniform(-max_rotation, max_rotation)),
            "scale": float(1 + rng.uniform(-max_scale, max_scale)),
            "offset_error_lr_px": rng.uniform(-max_offset, max_offset, 2).tolist(),
        }
        params = {
            "source": source,
            "seed": int(rng.integers(2**31)),
            "hr_field_fraction": fraction,
            "lr_voxel_nm": [vox[0], vox[1] * ratio, vox[2] * ratio],
            **NOISE[noise],
        }
        sim = simulate_volume(vol[z0 : z0 + sections], vox, params, geometry_overrides=geom)
        row = {"trial": i, "noise": noise, "z0": z0, **geom}
        t0 = time.time()
        try:
            res = align_volume(
                sim["lr"],
                sim["hr"],
                sim["lr_voxel_nm"],
                sim["hr_voxel_nm"],
                sim["hr_offset_nm"],
                {"search_margin_lr_px": max_offset + 8},
                truth=sim["truth"],
                where=f"trial {i}",
            )
            qc = res["qc"]
            row.update(
                error_px=qc["error_px"],
                error_px_max=qc["error_px_max"],
                residual_px=qc["residual_px"],
                z_errors=qc["z_errors"],
            )
            row["outcome"] = "ok" if qc["error_px_max"] <= tolerance and qc["z_errors"] == 0 else "silent_wrong"
        except InputError as exc:
            row.update(outcome="detected", error=str(exc))
        row["seconds"] = time.time() - t0
        rows.append(row)
        print(
            f"{i:3d} {noise:8s} rot {geom['rotation_deg']:+5.2f} scale {geom['scale']:.3f} "
            f"off {geom['offset_error_lr_px'][0]:+6.1f},{geom['offset_error_lr_px'][1]:+6.1f} -> "
            f"{row['outcome']:12s} {row.get('error_px', float('nan')):.3f} px",
            flush=True,
        )

    controls = []
    for i in range(n_controls):
        z0 = int(rng.integers(0, vol.shape[0] - sections + 1))
        params = {
            "source": source,
            "seed": int(rng.integers(2**31)),
            "hr_field_fraction": fraction,
            "lr_voxel_nm": [vox[0], vox[1] * ratio, vox[2] * ratio],
            **NOISE[levels[i % len(levels)]],
        }
        sim = simulate_volume(vol[z0 : z0 + sections], vox, params)
        try:
            align_volume(
                sim["lr"],
                np.ascontiguousarray(sim["hr"][:, :, ::-1]),
                sim["lr_voxel_nm"],
                sim["hr_voxel_nm"],
                sim["hr_offset_nm"],
                {"search_margin_lr_px": max_offset + 8},
                where=f"control {i}",
            )
            controls.append({"control": i, "outcome": "silent_wrong"})
        except InputError as exc:
            controls.append({"control": i, "outcome": "detected", "error": str(exc)})
        print(f"control {i}: mirrored HR -> {controls[-1]['outcome']}", flush=True)

    def summary(sel):
        errs = np.array([r["error_px"] for r in sel if r["outcome"] != "detected"])
        n = len(sel)
        return {
            "trials": n,
            "success_rate": sum(r["outcome"] == "ok" for r in sel) / max(n, 1),
            "detected_failures": sum(r["outcome"] == "detected" for r in sel),
            "silent_wrong_gt_tolerance": sum(r["outcome"] == "silent_wrong" for r in sel),
            "error_px_median": float(np.median(errs)) if errs.size else None,
            "error_px_p95": float(np.percentile(errs, 95)) if errs.size else None,
        }

    return {
        "source": source,
        "ratio": ratio,
        "sections_per_trial": sections,
        "hr_field_fraction": fraction,
        "tolerance_lr_px": tolerance,
        "ranges": {"rotation_deg": max_rotation, "scale": max_scale, "offset_error_lr_px": max_offset},
        "noise_levels": NOISE,
        "overall": summary(rows),
        "by_noise": {n: summary([r for r in rows if r["noise"] == n]) for n in levels},
        "negative_controls": {
            "trials": len(controls),
            "detected": sum(c["outcome"] == "detected" for c in controls),
            "silent_wrong": sum(c["outcome"] == "silent_wrong" for c in controls),
        },
        "controls": controls,
        "seconds": time.time() - t_start,
        "trials": rows,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="../shared/data/isbi2012/raw.tif", help="real HR stack (ISBI 2012 raw.tif)")
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--ratio", type=float, default=4.0, help="LR / HR pixel size")
    ap.add_argument("--sections", type=int, default=3, help="sections per trial")
    ap.add_argument("--fraction", type=float, default=0.5, help="HR field side / full field side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=1.0, help="LR px: above this an alignment is wrong")
    ap.add_argument("--max-rotation", type=float, default=3.0)
    ap.add_argument("--max-scale", type=float, default=0.03)
    ap.add_argument("--max-offset", type=float, default=20.0, help="stage offset error, LR px (y and x)")
    ap.add_argument("--controls", type=int, default=10, help="negative controls (mirrored HR)")
    ap.add_argument("--out", default="bench/align_robustness.json")
    a = ap.parse_args()
    logging.disable(logging.INFO)
    res = run(
        a.source,
        a.trials,
        a.ratio,
        a.sections,
        a.seed,
        a.tolerance,
        a.max_rotation,
        a.max_scale,
        a.max_offset,
        a.fraction,
        a.controls,
    )
    write_json(a.out, res)
    print(
        json.dumps(
            {
                "overall": res["overall"],
                "by_noise": res["by_noise"],
                "negative_controls": res["negative_controls"],
                "seconds": round(res["seconds"], 1),
            },
            indent=1,
        )
    )
    print(f"wrote {Path(a.out)}")


if __name__ == "__main__":
    main()
