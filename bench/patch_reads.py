"""Training's data cost of reading patches from chunks instead of from memory.

    python bench/patch_reads.py --out results/bench/patch_reads.json [--z 32] [--side 2048]
                                [--scale 4] [--patch 48] [--batch 16] [--batches 50]

Writes a synthetic uint8 HR field (z x side x side, zlib TIFF as rule pairs writes it) and its
LR (side / scale), then draws the same seeded batches (`srseg.data.PatchSampler`) from the pair
held in memory in its stored dtype (how fields up to `data.WHOLE_READ_BYTES` are read) and from
the pair read chunk by chunk (`data.ChunkedSections`: each patch decodes the TIFF strips it
covers; how larger fields are read), and with the HR field as an OME-Zarr of 256^2 chunks
(`--chunk`; also read chunk by chunk). Reports seconds per batch, the open time, the peak RSS
of each (a fresh process each, VmHWM) and checks that all give the same batches.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from srseg.io import write_csv, write_json, write_tiff_sections  # noqa: E402

CHILD = """
import hashlib, json, sys, time
import numpy as np
import pandas as pd
from srseg.data import PatchSampler, StoredVolume
lr_path, hr_path, whole, patch, scale, batch, n = sys.argv[1:8]  # whole: 1 in memory, 0 by chunks
limit = None if whole == "1" else 0
t = time.perf_counter()
pair = [(StoredVolume.open(lr_path, limit), StoredVolume.open(hr_path, limit))]
opened = time.perf_counter() - t
sampler = PatchSampler(pair, int(patch), int(scale), np.random.default_rng(0))
digest = hashlib.sha256()
t = time.perf_counter()
for _ in range(int(n)):
    a, b = sampler.batch(int(batch))
    digest.update(a.tobytes()); digest.update(b.tobytes())
per = (time.perf_counter() - t) / int(n)
hwm = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
print(json.dumps({"open_s": opened, "s_per_batch": per, "peak_rss_gb": int(hwm) * 1024 / 1e9,
                  "kind": type(pair[0][1].array).__name__, "digest": digest.hexdigest()}))
"""


def make_field(work: Path, z: int, side: int, scale: int) -> tuple[Path, Path]:
    """An EM-like uint8 HR field and its block-mean LR, written section by section (zlib TIFFs)."""
    hr, lr = work / f"hr_{z}x{side}.tif", work / f"lr_{z}x{side // scale}.tif"
    if hr.exists() and lr.exists():
        return lr, hr
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side

    def hr_planes():
        rng = np.random.default_rng(0)
        for k in range(z):
            img = 0.5 + 0.3 * np.sin(2 * np.pi * (40 * xx + k / 7)) * np.cos(2 * np.pi * (31 * yy - k / 5))
            img += rng.normal(0, 0.05, img.shape)
            yield np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)

    def lr_planes():
        for plane in hr_planes():
            s = side // scale
            yield plane.reshape(s, scale, s, scale).mean(axis=(1, 3)).round().astype(np.uint8)

    write_tiff_sections(hr, hr_planes(), (z, side, side), "uint8", [50.0, 10.0, 10.0])
    write_tiff_sections(lr, lr_planes(), (z, side // scale, side // scale), "uint8", [50.0, 40.0, 40.0])
    return lr, hr


def ome_zarr_copy(hr: Path, chunk: int) -> Path:
    """The HR field as an OME-Zarr with (1, chunk, chunk) chunks, written section by section."""
    from srseg.volumes import OmeZarrWriter, open_volume

    out = hr.with_name(f"{hr.stem}_c{chunk}.zarr")
    if out.exists():
        return out
    vol = open_volume(hr)
    with OmeZarrWriter(out, vol.shape, vol.dtype, vol.voxel_nm, levels=1, chunk=chunk) as w:
        for k in range(vol.shape[0]):
            w.write_section(k, vol.section(k))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--z", type=int, default=32)
    ap.add_argument("--side", type=int, default=2048, help="HR section side (px)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--patch", type=int, default=48, help="LR patch side (px)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=256, help="y/x chunk of the OME-Zarr copy")
    ap.add_argument("--work", default=None)
    args = ap.parse_args(argv)
    work = Path(args.work or Path(args.out).with_suffix("")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    lr, hr = make_field(work, args.z, args.side, args.scale)
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    rows = []
    zarr_hr = ome_zarr_copy(hr, args.chunk)
    paths = [
        ("TIFF in memory (stored dtype)", hr, "1"),
        ("TIFF chunk by chunk (page strips)", hr, "0"),
        (f"OME-Zarr chunk by chunk (1 x {args.chunk}^2 chunks)", zarr_hr, "0"),
    ]
    for label, source, whole in paths:
        cmd = [sys.executable, "-c", CHILD, str(lr), str(source), whole, str(args.patch), str(args.scale)]
        out = subprocess.run([*cmd, str(args.batch), str(args.batches)], capture_output=True, text=True, env=env)
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        rows.append({"path": label, **json.loads(out.stdout.strip().splitlines()[-1])})
    if len({r["digest"] for r in rows}) != 1:
        raise AssertionError("the chunked reads gave other batches than the in-memory ones")
    hr_gb = args.z * args.side**2 / 1e9
    for r in rows:
        r.update(hr_field_gb=hr_gb, batch=args.batch, patch=args.patch, scale=args.scale)
    write_json(args.out, {"rows": rows})
    write_csv(Path(args.out).with_suffix(".csv"), pd.DataFrame(rows))
    print(f"HR field {args.z} x {args.side}^2 uint8 ({hr_gb:.2f} GB), batches of {args.batch} x {args.patch}^2 LR:")
    print("| path | open (s) | s / batch | peak RSS (GB) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['open_s']:.2f} | {r['s_per_batch']:.4f} | {r['peak_rss_gb']:.3f} |")


if __name__ == "__main__":
    main()
