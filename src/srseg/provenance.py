"""Provenance of a workflow run: what ran, with which software, where.

results/report/provenance.json records the resolved config (after --config and
--configfile overrides), the versions of python and the packages that shape the
numbers (torch + its CUDA build, snakemake, waterz, numpy, ...), the git commit of
the workflow (and whether the tree had uncommitted changes), and the host names
(the job's own, and the SLURM submit host / cluster when run under SLURM), so a
table in a paper can be traced back to the run that made it.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from .io import write_json

# distributions whose versions can change a number in the tables
PACKAGES = (
    "srseg",
    "torch",
    "numpy",
    "scipy",
    "scikit-image",
    "opencv-python-headless",
    "tifffile",
    "waterz",
    "pandas",
    "snakemake",
    "snakemake-executor-plugin-slurm",
)


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None where it is not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = None
    return out


def cuda_info() -> dict:
    """torch's CUDA/cuDNN build and the visible GPUs (none on a CPU-only machine)."""
    try:
        import torch
    except ImportError:  # an env without torch (e.g. the report env): say so rather than fail
        return {"torch": None}
    available = torch.cuda.is_available()
    return {
        "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if available else None,
        "cuda_available": available,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else [],
    }


def git_state(path: str | Path = ".") -> dict:
    """Commit and dirty flag of the git checkout containing `path` (None outside a checkout or without git)."""

    def git(*args):
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def host_info(environ=None) -> dict:
    """This job's host, plus the SLURM submit host, cluster and job id when run as a SLURM job."""
    environ = os.environ if environ is None else environ
    slurm = {key.lower(): environ.get(f"SLURM_{key}") for key in ("SUBMIT_HOST", "CLUSTER_NAME", "JOB_ID")}
    return {"hostname": socket.gethostname(), "platform": platform.platform(), **slurm}


def collect_provenance(config: dict, workflow_dir: str | Path = ".") -> dict:
    """Everything provenance.json records (a plain, JSON-serialisable dict)."""
    return {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "cuda": cuda_info(),
        "git": git_state(workflow_dir),
        "hosts": host_info(),
        "config": config,
    }


def run_provenance(config: dict, out_json: str | Path, workflow_dir: str | Path = ".", log: str | None = None) -> dict:
    """Write provenance.json atomically and return its content."""
    info = collect_provenance(config, workflow_dir)
    write_json(out_json, info)
    return info
