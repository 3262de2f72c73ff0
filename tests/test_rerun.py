"""Rerun only what changed: on a completed tiny run, Snakemake's default rerun triggers
(mtime, params, input, software-env, code) must plan exactly the jobs a change affects.

A user edits one model, one degradation recipe or one script and reruns; the
expensive branches that did not change must not be recomputed. One tiny run (1 fold,
2 models x 2 training-data kinds, 5 training steps) is built once in a temporary
copy of the workflow, then each edit is dry-run (`snakemake -n`) and undone.

Library changes rerun what they affect: every rule's params carry a digest of the srseg
modules it executes (srseg.config.digest), so the copy of the workflow here gets its own
copy of src/ (first on PYTHONPATH) that the tests edit. Reordering the config's keys, or
spelling a number another way, plans nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from helpers import copy_workflow, load_config, run_snakemake

TARGETS = [f"results/metrics/image/{m}/{d}/f0/beta.csv" for m in ("srcnn", "edsr") for d in ("real", "blur_noise")]
JOB = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)*?)    output: ([^,\n]+)", re.M)

pytestmark = pytest.mark.slow


def tiny_config() -> dict:
    cfg = load_config("tiny_slurm")
    cfg["splits"] = {"f0": {"train": ["alpha"], "test": ["beta"]}}
    cfg["train_data"] = ["real", "blur_noise"]
    return cfg


def snakemake(workdir: Path, *args: str) -> str:
    """Snakemake on the copy, its own src/ first on PYTHONPATH (the library edits below reach the jobs)."""
    pythonpath = os.pathsep.join(p for p in (str(workdir / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}
    res = run_snakemake(workdir, *args, *TARGETS, snakefile=workdir / "Snakefile", env=env)
    return res.stdout + res.stderr


def planned(workdir: Path) -> set[tuple[str, str]]:
    """(rule, first output) of every job a dry-run with the default rerun triggers plans."""
    return {(rule, out.strip()) for rule, _, out in JOB.findall(snakemake(workdir, "-n", "--cores", "1"))}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("rerun"), library=True)
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
                jobs |= {
                    ("train", f"results/train/{m}/{d}/f0/model.pt"),
                    ("infer", f"results/infer/{m}/{d}/f0/beta.tif"),
                    ("image_metrics", f"results/metrics/image/{m}/{d}/f0/beta.csv"),
                }
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
    original = edit_config(
        run_dir, lambda c: c["degradations"].update(pssr={"kind": "pssr", "blur_sigma": 2, "noise_gain": 0.2})
    )
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


def _reversed_keys(value):
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in sorted(value, reverse=True)}
    return value


def test_reordering_keys_and_respelling_numbers_plans_nothing(run_dir):
    path = run_dir / "config.yaml"
    original = path.read_text()
    cfg = _reversed_keys(yaml.safe_load(original))
    cfg["training"]["lr"] = "1e-3"  # YAML 1.1 reads this as text; the same 0.001 as the default
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        assert planned(run_dir) == set()
    finally:
        path.write_text(original)


def edit_library(work: Path, module: str, old: str, new: str):
    path = work / "src" / "srseg" / module
    original = path.read_text()
    assert old in original, f"{module} no longer contains {old!r}; update the test"
    path.write_text(original.replace(old, new, 1))
    return path, original


def test_editing_a_model_file_reruns_only_that_models_branch(run_dir):
    path, original = edit_library(run_dir, "models/edsr_arch.py", "res_scale: float = 1.0", "res_scale: float = 0.5")
    try:
        assert planned(run_dir) == branch(model="edsr")  # srcnn's jobs and the shared stages stay
    finally:
        path.write_text(original)
    assert planned(run_dir) == set()


def test_a_docstring_edit_reruns_nothing(run_dir):
    path, original = edit_library(run_dir, "models/edsr_arch.py", '"""', '"""Edited docs. ')
    try:
        assert planned(run_dir) == set()
    finally:
        path.write_text(original)


def test_editing_the_metrics_code_reruns_only_the_metrics(run_dir):
    path, original = edit_library(run_dir, "metrics/image.py", "FRC_THRESHOLD = 1.0 / 7.0", "FRC_THRESHOLD = 1.0 / 7.5")
    try:
        assert planned(run_dir) == {j for j in branch() if j[0] == "image_metrics"}
    finally:
        path.write_text(original)
