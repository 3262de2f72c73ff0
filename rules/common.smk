# Helpers shared by every rule file: config slices, folds, wildcard constraints.
# Rules receive only their own slice of config through params, so that editing
# one model (or recipe, or stage) reruns exactly the jobs that depend on it.

import copy

from snakemake.utils import validate

from srseg.config import check_config

validate(config, "../schemas/config.schema.yaml")
check_config(config)

SPECIMENS = list(config["specimens"])
RECIPES = list(config.get("degradations", {}))
MODELS = list(config["models"])
TRAIN_DATA = list(config["train_data"])
THRESHOLDS = [float(t) for t in config["segmentation"]["thresholds"]]
# Rows that need no training: they are scored like any model, with data "none".
UNTRAINED = [m for m, spec in config["models"].items() if spec["arch"] == "bicubic"]
TRAINED = [m for m in MODELS if m not in UNTRAINED]


def _folds():
    splits = config["splits"]
    if splits == "leave_one_out":
        return {s: {"train": [t for t in SPECIMENS if t != s], "test": [s]} for s in SPECIMENS}
    return {name: {"train": list(f["train"]), "test": list(f["test"])} for name, f in splits.items()}


FOLDS = _folds()

wildcard_constraints:
    specimen="|".join(SPECIMENS),
    recipe="|".join(RECIPES) if RECIPES else "__none__",
    model="|".join(MODELS + ["hr"]),
    fold="|".join(FOLDS),
    data="|".join(["real", "none", "denoised"] + RECIPES),


def model_slice(model):
    """A trained model's config: global training defaults overridden by its entry."""
    merged = copy.deepcopy(config.get("training", {}))
    merged.update(copy.deepcopy(config["models"][model]))
    merged.setdefault("seed", config["seed"])
    merged.setdefault("device", config["device"])
    return merged


def gpu_resources():
    return 1 if config.get("gpu", False) else 0


def data_for(model):
    """Training-data kinds of a model: untrained baselines have one, 'none'."""
    return ["none"] if model in UNTRAINED else TRAIN_DATA


def scored_rows():
    """(model, data) pairs that appear in the tables, plus the `hr` upper bound."""
    rows = [(m, d) for m in MODELS for d in data_for(m)]
    return rows + [("hr", "none")]


def test_specimens(fold):
    return FOLDS[fold]["test"]


def train_specimens(fold):
    return FOLDS[fold]["train"]


def lr_path(data, specimen):
    """The LR input a model trains on: the acquired LR (real, denoised), or a synthetic one."""
    if data in ("real", "denoised"):
        return f"results/pairs/{specimen}/lr.tif"
    return f"results/degrade/{data}/{specimen}/lr.tif"


def hr_target_path(data, specimen):
    """The HR a model learns to produce: denoised HR for data 'denoised' (EMSR's third strategy), else real HR."""
    if data == "denoised":
        return f"results/denoise/{specimen}/hr.tif"
    return f"results/pairs/{specimen}/hr.tif"


def sr_image(model, data, fold, specimen):
    """The image that gets segmented and scored for one table row."""
    if model == "hr":
        return f"results/pairs/{specimen}/hr.tif"
    return f"results/infer/{model}/{data}/{fold}/{specimen}.tif"


def per_test_specimen(pattern, rows=None, **fmt):
    """Expand `pattern` over rows x folds x the fold's test specimens."""
    out = []
    for model, data in rows if rows is not None else scored_rows():
        for fold, split in FOLDS.items():
            for specimen in split["test"]:
                out.append(pattern.format(model=model, data=data, fold=fold, specimen=specimen, **fmt))
    return out
