"""The GPU check's CPU rehearsal: bench/gpu_check.py --device cpu --quick runs every part on tiny sizes,
with only what a bare GPU machine's Python has (zarr, jsonschema, snakemake, waterz... blocked), and
writes its JSON and CSV."""

import json
import subprocess
import sys

import pandas as pd
from helpers import ROOT

BLOCKED = ("zarr", "ome_zarr", "ome_zarr_models", "numcodecs", "jsonschema", "snakemake", "waterz", "h5py", "dask")
RUN = (
    "import importlib.abc, runpy, sys\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    f"        if name.split('.')[0] in {BLOCKED!r}:\n"
    "            raise ImportError(f'{name} is not on a bare GPU machine')\n"
    "sys.meta_path.insert(0, Block())\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def test_gpu_check_rehearses_on_cpu_without_the_workflow_dependencies(tmp_path):
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-c", RUN, str(ROOT / "bench" / "gpu_check.py"), str(tmp_path), "--device", "cpu", "--quick"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "gpu_check.json").read_text())
    assert info["errors"] == {}, info["errors"]
    rows = pd.read_csv(tmp_path / "gpu_check.csv")
    assert list(rows.columns) == ["part", "arch", "precision", "metric", "value"]
    trained = set(rows.query("part == 'train' and metric == 'steps_per_s'")["arch"])
    inferred = set(rows.query("part == 'infer' and metric == 'out_mpix_per_s'")["arch"])
    from srseg.models import ARCHS

    assert trained == set(ARCHS) - {"bicubic"} and inferred == set(ARCHS)
    assert "sample_tile_seconds" in set(rows.query("arch == 'sr3'")["metric"])
    assert info["train"]["wgan/fp32"]["critic"] and info["train"]["esrgan/fp32"]["critic"]
    assert info["affinity"]["fp32"]["steps_per_s"] > 0
    assert info["infer"]["edsr"]["tiled_over_untiled"] > 0 and info["infer"]["bicubic"]["relative_to_bicubic"] == 1
    assert info["agreement"]["skipped"]
    assert len(info["isbi"]["loss_curve"]) >= 2 and info["isbi"]["psnr_bicubic"] > 0
