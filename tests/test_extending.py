"""Extending the workflow is one file plus a config entry (README, "Adding a model" / "Adding a metric")."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import yaml
from helpers import ROOT


def _readme_block(after: str) -> str:
    """The first ```python block following the README line that contains `after`."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index(after)
    return re.search(r"```python\n(.*?)```", readme[start:], re.S).group(1)


def _library_copy(tmp_path):
    """src/srseg and schemas/ side by side, as in the repository: a place to add files."""
    shutil.copytree(ROOT / "src" / "srseg", tmp_path / "src" / "srseg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    return tmp_path / "src"


def test_the_readme_model_is_one_file_and_one_config_entry(tmp_path):
    """README's mynet_arch.py, dropped into a copy of the package, is planned, checked and trained."""
    lib = _library_copy(tmp_path)
    (lib / "srseg" / "models" / "mynet_arch.py").write_text(_readme_block("**Adding a model**"))
    entry = re.search(r"`models: \{mynet: (\{.*?\})\}`", (ROOT / "README.md").read_text()).group(1)
    code = f"""
import sys, yaml
from srseg import config as C
from srseg.config import catalog
info = catalog.archs()["mynet"]
assert info.params == {{"features": 32}} and info.context and info.kind == "supervised", info
cfg = yaml.safe_load(open({str(ROOT / "config.yaml")!r}))
cfg["models"] = {{"bicubic": {{"arch": "bicubic"}}, "mynet": yaml.safe_load({entry!r})}}
spec = C.model_settings(C.resolve(cfg, {str(ROOT)!r}), "mynet")
assert spec["net"] == {{"features": 64}} and spec["kind"] == "supervised"
assert "torch" not in sys.modules   # planning knows the new model without torch
import torch
from srseg.models import build_model
net = build_model({{**spec, "context": 1}}, 3)
assert net(torch.rand(2, 3, 8, 8)).shape == (2, 1, 24, 24)
print("ok")
"""
    res = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(lib), "PATH": ""},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


def test_the_readme_metric_is_one_registered_function(tmp_path):
    """README's metric, as a new file of the metrics package, becomes a column of the image-metrics CSV."""
    lib = _library_copy(tmp_path)
    (lib / "srseg" / "metrics" / "mae.py").write_text(_readme_block("**Adding a metric**"))
    code = """
import numpy as np
from srseg.metrics.image import SectionPair
from srseg.metrics.registry import IMAGE, columns, score
assert "mae" in columns(IMAGE), columns(IMAGE)
print("ok")
"""
    res = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(lib), "PATH": ""},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


def test_every_gpu_rule_runs_on_the_gpu_partition():
    """profiles/slurm routes every rule that asks for a GPU (resources gpu) to the GPU partition."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    gpu_rules = set()
    for smk in (ROOT / "rules").glob("*.smk"):
        text = smk.read_text()
        # rules at any indentation (some sit under `if` blocks): the body is what is indented deeper
        for _, name, body in re.findall(
            r"^( *)(?:use )?(?:rule|checkpoint) (\w+)[^\n]*:\n((?:(?:\1    .*)?\n)*)", text, re.M
        ):
            if "gpu=True" in body or "gpu=GPU" in body:
                gpu_rules.add(name)
        for alias, base in re.findall(r"^\s*use rule (\w+) as (\w+)", text, re.M):
            if alias in gpu_rules:
                gpu_rules.add(base)
    assert {"train", "infer", "infer_block", "train_affinity", "segment"} <= gpu_rules, gpu_rules
    routed = profile["set-resources"]
    for rule in sorted(gpu_rules):
        assert routed.get(rule, {}).get("slurm_partition") == "gpu", (
            f"{rule} asks for a GPU but runs on the CPU partition"
        )
    cpu = {r for r, v in routed.items() if v.get("slurm_partition") == "gpu"} - gpu_rules
    assert not cpu, f"{cpu} are routed to the GPU partition but ask for no GPU"
