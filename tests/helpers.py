"""Plain helpers the test modules share: paths, small synthetic data, training and workflow runs.

Fixtures live in conftest.py; this module only holds functions and constants, imported as
`from helpers import ...` (pytest puts tests/ on sys.path). Nothing here imports torch at
import time, so torch-free tests stay torch-free.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "configs"  # every config file a test runs the workflow on
ISBI_DATA = ROOT.parent / "shared" / "data" / "isbi2012"  # raw.tif, cells.tif (real-data tests skip without)
WORKFLOW_SRC = Path(os.environ.get("WORKFLOW_SRC", ROOT))  # the workflow a test copies (default: this checkout)
WORKFLOW_FILES = ("Snakefile", "rules", "workflow", "schemas", "report", "envs")

# the embedded demo's phantom specimens (config.yaml): alpha, beta, gamma
DEMO_PHANTOMS = {
    name: entry["phantom"]
    for name, entry in yaml.safe_load((ROOT / "config.yaml").read_text())["specimens"].items()
    if "phantom" in entry
}


def load_config(name: str) -> dict:
    """A test config (tests/configs/<name>.yaml) as written: only what differs from the defaults."""
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


# --------------------------------------------------------------------------- synthetic data


def synthetic_pair(rng: np.random.Generator, z: int = 3, n: int = 16, scale: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random HR volume (z x n*scale x n*scale, in [0, 1]) and its bilinear LR (z x n x n), float32."""
    hr = ndimage.gaussian_filter(rng.random((z, n * scale, n * scale)), (0, 1.5, 1.5))
    hr = (hr - hr.min()) / (hr.max() - hr.min())
    lr = ndimage.zoom(hr, (1, 1 / scale, 1 / scale), order=1)
    return lr.astype(np.float32), hr.astype(np.float32)


def write_pairs(
    root: Path, names=("a", "b"), z: int = 3, n: int = 16, scale: int = 2, seed: int = 0, dtype: str = "uint8"
) -> tuple[list[str], list[str]]:
    """One synthetic_pair per specimen name, as root/<name>/{lr,hr}.tif (HR at 10 nm); (LR paths, HR paths)."""
    from srseg.io import write_image

    rng = np.random.default_rng(seed)
    lrs, hrs = [], []
    for name in names:
        lr, hr = synthetic_pair(rng, z, n, scale)
        write_image(root / name / "lr.tif", lr, [50, 10 * scale, 10 * scale], dtype)
        write_image(root / name / "hr.tif", hr, [50, 10, 10], dtype)
        lrs.append(str(root / name / "lr.tif"))
        hrs.append(str(root / name / "hr.tif"))
    return lrs, hrs


def cells(shape, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi cells with 2-px label-0 membranes and their rendered image (dark membranes, noise)."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    pts = rng.uniform(0, [ny, nx], (n, 2))
    yy, xx = np.mgrid[0:ny, 0:nx]
    lab = np.stack(
        [cKDTree(pts + z * 0.5).query(np.stack([yy.ravel(), xx.ravel()], 1))[1].reshape(ny, nx) + 1 for z in range(nz)]
    )
    edge = np.zeros(lab.shape, bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :, 1:] |= lab[:, :, 1:] != lab[:, :, :-1]
    edge = ndimage.binary_dilation(edge, np.ones((1, 2, 2), bool))
    lab = np.where(edge, 0, lab).astype(np.uint64)
    img = np.where(lab > 0, 0.7, 0.25) + rng.normal(0, 0.05, lab.shape)
    return np.clip(img, 0, 1).astype(np.float32), lab


def demo_specimen(name: str, **geometry) -> dict:
    """A demo phantom specimen (DEMO_PHANTOMS) on the default geometry, 3 sections of 288 x 288 HR px."""
    from srseg.phantom import generate_specimen

    return generate_specimen(DEMO_PHANTOMS[name], {"hr_shape": [3, 288, 288], **geometry})


# --------------------------------------------------------------------------- training


def train_outputs(out: Path) -> tuple[str, str, str]:
    """The model, log and train.json paths a training run writes under `out`."""
    return str(out / "model.pt"), str(out / "log.csv"), str(out / "train.json")


def train_entry(entry: dict, pairs, out: Path, name: str | None = None, device: str = "cpu", **kw) -> dict:
    """Train a (partial) model entry on (LR paths, HR paths): its complete slice comes from the schema's defaults."""
    from srseg.config import model_spec
    from srseg.training import run_train

    spec = model_spec(entry) if name is None else model_spec(entry, name=name)
    return run_train(spec, pairs[0], pairs[1], *train_outputs(out), device=device, name=name, **kw)


# --------------------------------------------------------------------------- the workflow


def copy_workflow(dest: Path, library: bool = False) -> Path:
    """Copy WORKFLOW_SRC's workflow (Snakefile, rules, scripts, schemas, ...) into `dest`; with `library`, src/ too."""
    for name in WORKFLOW_FILES + (("src",) if library else ()):
        src = WORKFLOW_SRC / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy(src, dest / name)
    return dest


def _tail(text: str, chars: int) -> str:
    return text[-chars:] if len(text) > chars else text


def run_snakemake(
    workdir: Path,
    *args: str,
    config: Path | str | None = None,
    snakefile: Path = ROOT / "Snakefile",
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """`python -m snakemake --snakefile S --directory W ARGS [--configfile C]`, run in `workdir`.

    `env` is layered over this process's environment. With `check`, a non-zero exit raises an
    AssertionError with the command, the tails of Snakemake's stdout and stderr and of every
    rule log under workdir/logs.
    """
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir)]
    cmd += [str(a) for a in args]
    if config is not None:  # last: --configfile takes every argument up to the next option
        cmd += ["--configfile", str(config)]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        logs = "\n".join(
            f"--- {p.relative_to(workdir)}\n{_tail(p.read_text(errors='replace'), 2000)}"
            for p in sorted(Path(workdir, "logs").rglob("*.log"))
        )
        raise AssertionError(
            f"snakemake {' '.join(cmd[3:])} failed (exit {proc.returncode}) in {workdir}\n"
            f"--- stdout\n{_tail(proc.stdout, 2000)}\n--- stderr\n{_tail(proc.stderr, 4000)}\n{_tail(logs, 6000)}"
        )
    return proc
