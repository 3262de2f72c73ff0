# Helpers shared by all rules files: config slices, folds, wildcard constraints.
# Rules receive only their own slice of config through params, so that editing
# one model (or recipe, or stage) reruns exactly the jobs that depend on it.

import copy
import glob as _glob
import os as _os
import re as _re

from snakemake.utils import validate

from srseg.config import check_config
from srseg.simulate import check_section_blocks
from srseg.io import InputError

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


# ---------------------------------------------------------------- ingest


PHANTOM_SPECIMENS = [s for s, e in config["specimens"].items() if (e or {}).get("phantom") is not None]


def is_phantom(specimen):
    return specimen in PHANTOM_SPECIMENS


def generated_dir(specimen):
    """results/phantom/{s} or results/simulate/{s} for a generated specimen, else None."""
    entry = config["specimens"][specimen] or {}
    if entry.get("phantom") is not None:
        return f"results/phantom/{specimen}"
    if entry.get("simulate") is not None:
        return f"results/simulate/{specimen}"
    return None


def is_generated(specimen):
    return generated_dir(specimen) is not None


def has_labels(specimen):
    """Generated specimens always have labels; a user specimen when its `labels` key is set."""
    return is_generated(specimen) or bool((config["specimens"][specimen] or {}).get("labels"))


SPECIMENS_WITH_LABELS = [s for s in SPECIMENS if has_labels(s)]


def _source_files(source):
    """Files behind a user path (file, folder or glob), so Snakemake tracks their mtimes.

    A path that matches nothing is returned as is: Snakemake then reports it missing.
    """
    h5 = _re.match(r"^(.*\.(?:h5|hdf5|hdf)):/?.+$", source, flags=_re.IGNORECASE)
    if h5 and not _os.path.isfile(source):  # file.h5:/dataset -> the HDF5 file itself
        return [h5.group(1)]
    if _os.path.isdir(source):
        files = [_os.path.join(source, f) for f in sorted(_os.listdir(source))
                 if f.lower().endswith((".tif", ".tiff", ".png"))]
    elif _glob.has_magic(source):
        files = sorted(_glob.glob(source))
    else:
        files = [source]
    return files or [source]


def _user_source(specimen, key):
    value = (config["specimens"][specimen] or {}).get(key)
    if not value:
        raise ValueError(f"config key specimens.{specimen}.{key} is missing; give a TIFF, folder or glob path")
    return str(value)


def ingest_source(specimen, key):
    """The path (phantom/simulate output, or the user's TIFF/folder/glob) ingest reads for lr/hr/labels."""
    if is_generated(specimen):
        return f"{generated_dir(specimen)}/{key}.tif"
    return _user_source(specimen, key)


def ingest_inputs(wildcards):
    s = wildcards.specimen
    if is_generated(s):
        d = generated_dir(s)
        return {"lr": f"{d}/lr.tif", "hr": f"{d}/hr.tif", "meta": f"{d}/meta.json"}
    return {"lr": _source_files(_user_source(s, "lr")), "hr": _source_files(_user_source(s, "hr"))}


# ---------------------------------------------------------------- simulate


check_section_blocks(config["specimens"])

SIMULATED_SPECIMENS = [s for s, e in config["specimens"].items() if (e or {}).get("simulate") is not None]


def simulate_inputs(wildcards):
    """The source stack (and labels) files, so Snakemake reruns when they change."""
    sim = config["specimens"][wildcards.specimen]["simulate"]
    inputs = {"source": _source_files(str(sim["source"]))}
    if sim.get("labels"):
        inputs["labels"] = _source_files(str(sim["labels"]))
    return inputs


# ---------------------------------------------------------------- align


def align_inputs(wildcards):
    """Ingest outputs, plus the true transform of generated specimens (align then reports error_px)."""
    s = wildcards.specimen
    inputs = {
        "lr": f"results/ingest/{s}/lr.tif",
        "hr": f"results/ingest/{s}/hr.tif",
        "meta": f"results/ingest/{s}/meta.json",
    }
    if is_generated(s):
        inputs["truth"] = f"{generated_dir(s)}/truth.json"
    return inputs


# ---------------------------------------------------------------- segmentation


def affinity_train_specimens(fold):
    """Training specimens of a fold that have labels (the affinity net needs them)."""
    return [s for s in train_specimens(fold) if has_labels(s)]


def reference_inputs(wildcards):
    """The specimen's labels if it has them, else the `hr` row's segmentations + the fold's best threshold."""
    if has_labels(wildcards.specimen):
        return {"labels": f"results/pairs/{wildcards.specimen}/labels.tif"}
    return {
        "threshold": f"results/affinity/{wildcards.fold}/threshold.json",
        "segs": expand(f"results/segment/hr/none/{wildcards.fold}/{wildcards.specimen}/t{{thr}}.tif", thr=THRESHOLDS),
    }


# ---------------------------------------------------------------- report


# name: (caption file in report/, category, subcategory) of each registered output
REPORT_ITEMS = {
    "summary": ("summary", "Summary", "Tables"),
    "per_specimen": ("per_specimen", "Summary", "Tables"),
    "paired_tests": ("paired_tests", "Summary", "Tables"),
    "metric_bars": ("metric_bars", "Summary", "Figures"),
    "alignment_qc": ("alignment_qc", "Alignment", "Figures"),
    "qualitative": ("qualitative", "Image quality", "Figures"),
    "frc_curves": ("frc_curves", "Image quality", "Figures"),
    "segmentation_overlays": ("segmentation_overlays", "Segmentation", "Figures"),
    "threshold_curves": ("threshold_curves", "Segmentation", "Figures"),
    "quality_vs_segmentation": ("quality_vs_segmentation", "Segmentation", "Figures"),
    "thresholds_f1": ("thresholds_f1", "Segmentation", "Tables"),
    "thresholds_voi": ("thresholds_voi", "Segmentation", "Tables"),
    "training_curves": ("training_curves", "Training", "Figures"),
    "training_strategy": ("training_strategy", "Training", "Tables"),
}


def report_slice():
    return config.get("report") or {}


def report_example():
    """(fold, specimen) of the qualitative figures: report.example_specimen, else the first fold's first test specimen."""
    wanted = report_slice().get("example_specimen")
    for fold, split in FOLDS.items():
        if wanted is None or wanted in split["test"]:
            return fold, wanted or split["test"][0]
    raise InputError(f"config key report.example_specimen: {wanted!r} is no fold's test specimen; "
                     f"use one of {', '.join(s for f in FOLDS.values() for s in f['test'])}")


EXAMPLE_FOLD, EXAMPLE_SPECIMEN = report_example()
SR_ROWS = [r for r in scored_rows() if r[0] != "hr"]  # rows with an SR image (hr is the reference)


def _registered(path, name):
    caption, category, subcategory = REPORT_ITEMS[name]
    return report(path, caption=f"../report/{caption}.rst", category=category, subcategory=subcategory)
