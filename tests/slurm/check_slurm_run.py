"""Checks a finished SLURM test run (tests/slurm/run_slurm_test.sh).

Every job Snakemake ran must have gone through sbatch (a SLURM job id in its log),
SLURM must report each such job COMPLETED (scontrol keeps finished jobs for
MinJobAge seconds, so no slurmdbd is needed), and the target's outputs must be
complete. Exits non-zero with one line per problem.

    python check_slurm_run.py SNAKEMAKE_LOG WORKDIR TARGET
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
RULE_TO_ID = re.compile(r"^rule (\w+):\n(?:(?!^rule ).*\n)*?Job \d+ has been submitted with SLURM jobid (\d+)", re.M)
# partitions profiles/slurm sends each rule to (set-resources), as the test cluster names them
GPU_RULES = {"train", "train_affinity", "infer", "segment"}
LOCAL_JOB = re.compile(r"^localrule (\S+):", re.M)
ALL_JOB = re.compile(r"^rule (\S+):", re.M)


def slurm_job_ids(log_text: str) -> list[str]:
    """SLURM job ids the executor plugin reported for submitted jobs."""
    return [m.group(2) for m in SUBMITTED.finditer(log_text)]


def job_fields(job_id: str) -> dict[str, str]:
    """JobState, Partition, ... of a (possibly finished) job as slurmctld reports it."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", out))


def check(log_path: str, workdir: str, target: str) -> list[str]:
    text = Path(log_path).read_text()
    problems = []
    ids = slurm_job_ids(text)
    rules = ALL_JOB.findall(text)
    if not ids:
        problems.append("no job was submitted with sbatch (no 'submitted with SLURM jobid' line in the log)")
    if len(ids) != len(rules):
        problems.append(f"{len(rules)} rule jobs ran but {len(ids)} went through sbatch")
    if "train" not in rules:
        problems.append("the training job did not run through SLURM")
    for rule, job_id in RULE_TO_ID.findall(text):
        fields = job_fields(job_id)
        state, partition = fields.get("JobState", "UNKNOWN"), fields.get("Partition")
        print(f"SLURM job {job_id}: rule {rule}, partition {partition}, {state}")
        if state != "COMPLETED":
            problems.append(f"SLURM job {job_id} ({rule}) is {state}, not COMPLETED")
        expected = "gpu" if rule in GPU_RULES else "main"
        if partition != expected:
            problems.append(f"SLURM job {job_id} ({rule}) ran in partition {partition}, the profile says {expected}")
    if "steps (100%) done" not in text:
        problems.append("snakemake did not report all steps done")
    out = Path(workdir) / Path(target).parent
    for name in ("model.pt", "log.csv", "train.json"):
        if not (out / name).is_file() or (out / name).stat().st_size == 0:
            problems.append(f"missing or empty output {out / name}")
    if (out / "train.json").is_file():
        info = json.loads((out / "train.json").read_text())
        if not info:
            problems.append(f"{out / 'train.json'} is empty")
    print(f"rules run through SLURM: {', '.join(rules)}")
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python check_slurm_run.py SNAKEMAKE_LOG WORKDIR TARGET")
    problems = check(*sys.argv[1:4])
    for p in problems:
        print("FAIL:", p)
    print("test-slurm: PASSED" if not problems else "test-slurm: FAILED")
    sys.exit(1 if problems else 0)
