"""provenance.json: what a reader of the tables needs to trace them to a run."""

import re
import subprocess
import sys
from pathlib import Path

import torch

from srseg.io import read_json
from srseg.provenance import git_state, host_info, package_versions, run_provenance

ROOT = Path(__file__).resolve().parents[1]


def test_provenance_records_config_versions_commit_and_host(tmp_path):
    config = {"seed": 3, "models": {"edsr": {"arch": "edsr", "lr": 1.0e-4}}}
    out = tmp_path / "report" / "provenance.json"
    run_provenance(config, out, ROOT)
    info = read_json(out)
    assert info["config"] == config
    assert info["python"] == sys.version.split()[0]
    assert info["packages"]["torch"] == torch.__version__
    assert info["packages"]["snakemake"] and info["packages"]["waterz"]
    assert info["cuda"]["cuda_available"] == torch.cuda.is_available()
    assert info["cuda"]["cuda_build"] == torch.version.cuda
    assert info["hosts"]["hostname"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert info["git"]["commit"] == head.stdout.strip()
        assert isinstance(info["git"]["dirty"], bool)


def test_outside_a_git_checkout_the_commit_is_none(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


def test_git_dirty_flag_follows_uncommitted_changes(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "Snakefile").write_text("a\n")
    git("add", "Snakefile")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    state = git_state(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"]) and state["dirty"] is False
    (tmp_path / "Snakefile").write_text("b\n")
    assert git_state(tmp_path)["dirty"] is True


def test_slurm_job_records_submit_host_and_cluster():
    env = {"SLURM_SUBMIT_HOST": "login1", "SLURM_CLUSTER_NAME": "hpc", "SLURM_JOB_ID": "42"}
    info = host_info(env)
    assert (info["submit_host"], info["cluster_name"], info["job_id"]) == ("login1", "hpc", "42")
    assert host_info({})["submit_host"] is None


def test_missing_package_is_none_not_an_error():
    assert package_versions(["numpy", "surely-not-installed-pkg"]) == {
        "numpy": package_versions(["numpy"])["numpy"],
        "surely-not-installed-pkg": None,
    }
