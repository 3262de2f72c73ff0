"""Rerun only what changed: on a completed tiny run, Snakemake's default rerun triggers
(mtime, params, input, software-env, code) must plan exactly the jobs a change affects.

A user edits one model, one degradation recipe or one script and reruns; the
expensive branches that did not change must not be recomputed. One tiny run (1 fold,
2 models x 2 training-data kinds, 5 training steps) is built once in a temporary
copy of the workflow, then each edit is dry-run (`snakemake -n`) and undone.

Library changes (src/srseg) do not trigger reruns: rules run scripts that import the
installed package, and Snakemake does not hash imported modules. Bump
srseg.__version__ (recorded in results/report/provenance.json) and rerun with
`--forcerun <rule>` when a library change should invalidate results.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(os.environ.get("WORKFLOW_SRC", ROOT))  # the workflow copied (default: this checkout)
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TARGETS = [f"results/metrics/image/{m}/{d}/f0/beta.csv" for m in ("srcnn", "edsr") for d in ("real", "blur_noise")]
JOB = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)*?)    output: ([^,\n]+)", re.M)

pytestmark = pytest.mark.slow


def tiny_config() -> dict:
    cfg = yaml.safe_load((ROOT / "tests" / "slurm" / "tiny_config.yaml").read_text())
    cfg["splits"] = {"f0": {"train": ["alpha"], "test": ["beta"]}}
    cfg["train_data"] = ["real", "blur_noise"]
    return cfg


def snakemake(workdir: Path, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([*SNAKEMAKE, *args, *TARGETS], cwd=workdir, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def planned(workdir: Path) -> set[tuple[str, str]]:
    """(rule, first output) of every job a dry-run with the default rerun triggers plans."""
    return {(rule, out.strip()) for rule, _, out in JOB.findall(snakemake(workdir, "-n", "--cores", "1"))}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    work = tmp_path_factory.mktemp("rerun")
    for name in ("Snakefile", "rules", "workflow", "schemas", "report", "envs"):
        src = SRC / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    (work / "config.yaml").write_text(yaml.safe_dump(tiny_config(), sort_keys=False))
    snakemake(work, "--cores", "2")
    assert all((work / t).is_file() for t in TARGETS)
    return work


def edit_config(work: Path, change) -> str:
    """Apply `change` to config.yaml; returns the original text to restore."""
    path = work / "config.yaml"
    original = path.read_text()
    cfg = yaml.safe_load(original)
    change(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return original


def branch(model: str | None = None, data: str | None = None) -> set[tuple[str, str]]:
    """train / infer / image_metrics jobs of the (model, data) rows matching the filter."""
    jobs = set()
    for m in ("srcnn", "edsr"):
        for d in ("real", "blur_noise"):
            if (model or m) == m and (data or d) == d:
                jobs |= {("train", f"results/train/{m}/{d}/f0/model.pt"),
                         ("infer", f"results/infer/{m}/{d}/f0/beta.tif"),
                         ("image_metrics", f"results/metrics/image/{m}/{d}/f0/beta.csv")}
    return jobs


def test_editing_nothing_plans_nothing(run_dir):
    assert planned(run_dir) == set()


def test_editing_one_model_plans_only_that_models_branch(run_dir):
    original = edit_config(run_dir, lambda c: c["models"]["srcnn"].update(lr=5.0e-4))
    try:
        assert planned(run_dir) == branch(model="srcnn")  # edsr's branch and the shared data stay
    finally:
        (run_dir / "config.yaml").write_text(original)


def test_editing_one_recipe_plans_only_what_depends_on_it(run_dir):
    original = edit_config(run_dir, lambda c: c["degradations"]["blur_noise"].update(noise_post=[6, 15]))
    try:
        assert planned(run_dir) == {("degrade", "results/degrade/blur_noise/alpha/lr.tif")} | branch(data="blur_noise")
    finally:
        (run_dir / "config.yaml").write_text(original)


def test_adding_a_recipe_nobody_trains_on_plans_nothing(run_dir):
    original = edit_config(run_dir, lambda c: c["degradations"].update(pssr={"kind": "pssr", "blur_sigma": 2, "noise_gain": 0.2}))
    try:
        assert planned(run_dir) == set()
    finally:
        (run_dir / "config.yaml").write_text(original)


def test_editing_a_script_reruns_only_its_rule(run_dir):
    script = run_dir / "workflow" / "scripts" / "image_metrics.py"
    original, stat = script.read_text(), script.stat()
    script.write_text(original + "\n# an edit\n")
    try:
        assert planned(run_dir) == {j for j in branch() if j[0] == "image_metrics"}
    finally:  # undo the edit, content and modification time (Snakemake compares both)
        script.write_text(original)
        os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned(run_dir) == set()
