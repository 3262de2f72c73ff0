"""A mistake in config.yaml fails before any job runs, with a sentence naming the key."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from srseg.config import check_config
from srseg.io import InputError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "schemas" / "config.schema.yaml")


@pytest.fixture()
def demo():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def check(config):
    validate(config, SCHEMA)
    check_config(config, ROOT)


def test_demo_config_is_valid(demo):
    check(demo)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(modles=c.pop("models")), "modles"),
        (lambda c: c["segmentation"].update(thresholds="0.5"), "thresholds"),
        (lambda c: c["infer"].update(tile=-4), "tile"),
        (lambda c: c["degradations"]["bicubic"].update(kind="nearest"), "nearest"),
        (lambda c: c["specimens"]["alpha"]["phantom"].update(noise="loud"), "loud"),
    ],
)
def test_schema_errors_name_the_key(demo, mutate, key):
    mutate(demo)
    with pytest.raises(WorkflowError, match=key):
        validate(demo, SCHEMA)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["models"]["edsr"].update(arch="edsrr"), "models.edsr.arch"),
        (lambda c: c["models"]["edsr"].update(loss={"l3": 1}), "models.edsr.loss"),
        (lambda c: c.update(train_data=["real", "blurry"]), "train_data"),
        (lambda c: c.update(splits={"f": {"train": ["alpha"], "test": ["alpha"]}}), "splits.f"),
        (lambda c: c.update(splits={"f": {"train": ["alpha"], "test": ["delta"]}}), "splits.f.test"),
        (lambda c: c["specimens"].update(own={"lr": "raw/missing_lr.tif", "hr": "raw/missing_hr.tif"}),
         "specimens.own.lr"),
        (lambda c: c["segmentation"].update(fixed_threshold=0.4), "fixed_threshold"),
    ],
)
def test_cross_reference_errors_name_the_key(demo, mutate, message):
    mutate(demo)
    validate(demo, SCHEMA)
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        check_config(demo, ROOT)


def test_snakemake_refuses_bad_config_before_any_job(tmp_path, demo):
    bad = copy.deepcopy(demo)
    bad["models"]["srcnn"]["arch"] = "srcnnn"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run(
        [str(snakemake), "-n", "--configfile", str(cfg), "--directory", str(ROOT)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode != 0
    assert "models.srcnn.arch" in proc.stdout + proc.stderr


def test_zoo_overlay_plans_every_model_data_fold_row():
    """config/zoo.yaml (every model x loss of the studies) plans one train job per row."""
    zoo = yaml.safe_load((ROOT / "config" / "zoo.yaml").read_text())
    demo = yaml.safe_load((ROOT / "config.yaml").read_text())
    models = {**demo["models"], **zoo["models"]}
    trained = [m for m, spec in models.items() if spec["arch"] != "bicubic"]
    folds = len(demo["specimens"])  # leave-one-out
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run(
        [str(snakemake), "-n", "--quiet", "rules", "--configfile", "config.yaml", "config/zoo.yaml"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = dict(line.split()[:2] for line in proc.stdout.splitlines() if len(line.split()) == 2)
    assert int(counts["train"]) == len(trained) * len(zoo["train_data"]) * folds
