"""The conda environments (envs/*.yaml) that HPC users run the rules in agree with
pyproject.toml: same packages, same lower bounds, and every rule names one of them.

A user on a cluster gets the versions of envs/*.yaml, a developer those of
pyproject.toml; when the two drift apart, a result can depend on which one ran it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
# conda-forge name -> PyPI name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch", "py-opencv": "opencv-python-headless"}
# needed to run the workflow engine itself, never inside a rule's environment
ENGINE_ONLY = {"snakemake", "snakemake-executor-plugin-slurm", "jsonschema"}
# the library imports these in every rule; a rule env missing one fails at import
CORE = {
    "numpy",
    "scipy",
    "tifffile",
    "scikit-image",
    "pandas",
    "matplotlib",
    "pyyaml",
    "tqdm",
    "opencv-python-headless",
}
# name[extras] >= version, optionally with an environment marker (`; python_version >= '3.11'`)
SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*(?:>=\s*([0-9][0-9A-Za-z.]*))?\s*(?:;.*)?$")


def _parse(spec: str) -> tuple[str, str | None]:
    m = SPEC.match(spec)
    assert m, f"cannot parse requirement {spec!r}; write it as `name>=version`"
    return m.group(1).lower(), m.group(2)


def pyproject_requirements() -> dict[str, str | None]:
    """PyPI name -> lower bound, over dependencies and every optional group."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for group in project.get("optional-dependencies", {}).values():
        specs += group
    return dict(_parse(s) for s in specs)


def env_requirements(path: Path) -> dict[str, str | None]:
    """PyPI name -> lower bound of one conda env file (conda and pip sections), without python/pip/srseg."""
    env = yaml.safe_load(path.read_text())
    out = {}
    for dep in env["dependencies"]:
        specs = dep["pip"] if isinstance(dep, dict) else [dep]
        for spec in specs:
            if spec.startswith("-e") or spec.startswith("-"):
                continue  # the local srseg package itself
            name, bound = _parse(spec)
            if name in ("python", "pip"):
                continue
            out[CONDA_TO_PYPI.get(name, name)] = bound
    return out


def test_there_are_the_three_rule_environments():
    assert {p.stem for p in ENVS} >= {"data", "torch", "report"}


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_packages_and_lower_bounds_match_pyproject(path):
    project = pyproject_requirements()
    env = env_requirements(path)
    unknown = sorted(set(env) - set(project))
    assert not unknown, f"{path.name} has {unknown}, which pyproject.toml does not list; add them there too"
    differing = {n: (b, project[n]) for n, b in env.items() if b != project[n]}
    assert not differing, f"{path.name}: lower bounds (env, pyproject) differ: {differing}"
    missing = sorted(CORE - set(env))
    assert not missing, f"{path.name} lacks {missing}, which every rule imports through srseg"


def test_torch_env_has_everything_the_gpu_rules_import():
    env = env_requirements(ROOT / "envs" / "torch.yaml")
    project = pyproject_requirements()
    needed = {"torch", "waterz"} & set(project)
    assert needed <= set(env)


def developer_only() -> set[str]:
    """The `test` extra (pytest, linters): run by developers and CI, never inside a rule's environment."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_parse(s)[0] for s in project.get("optional-dependencies", {}).get("test", [])}


def test_every_pyproject_dependency_is_in_some_env_or_engine_only():
    project = set(pyproject_requirements()) - ENGINE_ONLY - developer_only()
    in_envs = set().union(*(env_requirements(p) for p in ENVS))
    assert project <= in_envs, f"no env provides {sorted(project - in_envs)}"


def test_every_env_installs_srseg_editable_from_the_repo():
    for path in ENVS:
        pip = next(d["pip"] for d in yaml.safe_load(path.read_text())["dependencies"] if isinstance(d, dict))
        assert any(s.split()[-1].startswith("..") and s.startswith("-e") for s in pip), path.name


def test_every_rule_has_a_conda_env_and_a_log():
    """Parsed from the rule files (no Snakemake run): each `rule x:` block has conda: and log:."""
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        blocks = re.split(r"^[ ]*rule (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            body = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]  # up to the next top-level statement
            assert re.search(r"^\s+conda:", body, re.M), f"{smk.name}: rule {name} has no conda: environment"
            assert re.search(r"^\s+log:", body, re.M), f"{smk.name}: rule {name} has no log:"
            env = re.search(r"conda:\s*\n\s*\"\.\./(envs/\w+\.yaml)\"", body)
            assert env and (ROOT / env.group(1)).is_file(), f"{smk.name}: rule {name}'s conda env does not exist"
