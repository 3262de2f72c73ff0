"""Bounded memory: inference of a volume larger than the address space it is allowed (RLIMIT_AS in a
subprocess) streams through, and gives what the in-memory path gives where both fit."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

from srseg.io import write_json, write_tiff

pytest.importorskip("zarr")

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from srseg.infer import run_infer, super_resolve
    from srseg.models import build_model
    from srseg.volumes import open_volume

    d, headroom = sys.argv[1], int(sys.argv[2])
    kw = dict(arch_spec={"arch": "bicubic"}, pairs_json=f"{d}/pairs.json", settings={"tile": 64, "overlap": 8},
              device="cpu")
    def vm():  # bytes of address space in use
        return int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    run_infer(f"{d}/small.tif", f"{d}/warm.zarr", f"{d}/warm.json", **kw)  # imports, thread pools, caches
    cap = vm() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    run_infer(f"{d}/big.tif", f"{d}/big.zarr", f"{d}/big.json", **kw)
    run_infer(f"{d}/small.tif", f"{d}/small.zarr", f"{d}/small.json", **kw)
    with open_volume(f"{d}/big.zarr") as v:
        last = v.section(v.shape[0] - 1)
        big_shape = list(v.shape)
    np.save(f"{d}/big_last.npy", last)
    try:  # the in-memory path under the same cap: the whole LR as float32 and the whole output
        lr = open_volume(f"{d}/big.tif").read().astype(np.float32) / 255
        super_resolve(build_model({"arch": "bicubic"}, 4), lr, 4, 64, 8, out_dtype="uint8", progress=False)
        in_memory = "fits"
    except MemoryError:
        in_memory = "MemoryError"
    print(json.dumps({"cap": cap, "big_shape": big_shape, "in_memory": in_memory}))
    """
)


def test_inference_streams_a_volume_larger_than_its_memory_cap(tmp_path):
    rng = np.random.default_rng(0)
    small = (rng.random((3, 40, 36)) * 255).astype(np.uint8)
    big = (rng.random((1200, 128, 128)) * 255).astype(np.uint8)  # output 1200 x 512 x 512 uint8: 315 MB
    write_tiff(tmp_path / "small.tif", small, [50, 40, 40])
    write_tiff(tmp_path / "big.tif", big, [50, 40, 40])
    write_json(tmp_path / "pairs.json", {"scale": 4, "hr_voxel_nm": [50, 10, 10]})
    headroom = 160 * 2**20  # less than half the output, less than the float32 LR + output of the in-memory path
    env = {"OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(headroom)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["big_shape"] == [1200, 512, 512]
    assert out["in_memory"] == "MemoryError"  # the cap is real: the whole-volume path does not fit under it

    from srseg.infer import super_resolve
    from srseg.models import build_model
    from srseg.volumes import open_volume

    model = build_model({"arch": "bicubic"}, 4)
    ref = super_resolve(model, small.astype(np.float32) / 255, 4, 64, 8, out_dtype="uint8", progress=False)
    with open_volume(tmp_path / "small.zarr") as v:
        np.testing.assert_array_equal(v.read(), ref)  # streamed under the cap == in memory, uncapped
    last = super_resolve(model, big[-1:].astype(np.float32) / 255, 4, 64, 8, out_dtype="uint8", progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "big_last.npy"), last[0])
    assert tifffile.imread(tmp_path / "big.tif").shape == big.shape
