# Helpers shared by every rules file: the resolved config, folds, paths, params and resources.
#
# The config is resolved once, here, before the rules are defined: the schema's defaults
# (schemas/config.schema.yaml) are layered under the user's keys, and every key at every
# depth is checked (srseg.config), so a typo or a wrong value fails before any job runs
# with one sentence naming the dotted key. Nothing imported here loads torch or OpenCV.
#
# Params are what decides a rerun. Each rule gets only its own slice of the config
# (`stage(...)`, `model_params(...)`), in canonical form (keys sorted at every depth, one
# type per number), plus `code`: a digest of the library modules the rule executes
# (`code(...)`). So reordering or reformatting the config reruns nothing, editing one model
# reruns its branch, and editing src/srseg/models/edsr_arch.py reruns what edsr trained.

from pathlib import Path

from srseg import config as srseg_config
from srseg.config import canonical, catalog, code_digest

# resolved in place: scripts see the same config through snakemake.config
_resolved = srseg_config.resolve(config, Path.cwd())
config.clear()
config.update(_resolved)

SPECIMENS = sorted(config["specimens"])
RECIPES = sorted(config["degradations"])
FITTED_RECIPES = [r for r in RECIPES if config["degradations"][r]["kind"] == "fitted"]
PLAIN_RECIPES = [r for r in RECIPES if r not in FITTED_RECIPES]
MODELS = sorted(config["models"])
TRAIN_DATA = list(config["train_data"])
THRESHOLDS = sorted(float(t) for t in config["segmentation"]["thresholds"])
FOLDS = srseg_config.folds(config)
ARCH = {m: catalog.archs()[config["models"][m]["arch"]] for m in MODELS}
# Rows that need no training: they are scored like any model, with data "none".
UNTRAINED = [m for m in MODELS if not ARCH[m].trained]
TRAINED = [m for m in MODELS if ARCH[m].trained]
GPU = 1 if config["gpu"] else 0


# ---------------------------------------------------------------- params and resources


def stage(name):
    """A top-level config section in canonical form (a rule's params)."""
    return canonical(config[name])


def code(*modules):
    """Digest of the library code a job executes: editing that code reruns the job (srseg.config.digest)."""
    return code_digest(*modules)


def package_modules(package):
    """Every module of a package: for packages whose plug-in files are found at run time (metrics)."""
    return [m for m in srseg_config.digest.modules() if m == package or m.startswith(f"{package}.")]


METRIC_MODULES = package_modules("srseg.metrics")


def model_params(model):
    """One model's complete slice: its entry over `training:`, only the keys its arch kind uses."""
    return srseg_config.model_settings(config, model)


def model_code(model, stage_module):
    """The stage's code plus the model's own *_arch.py (another model's file never reruns it)."""
    return code_digest(stage_module, ARCH[model].module)


def job_resources(mem_gb, minutes, gpu=False):
    """Portable resources; memory and runtime grow with each retry `attempt` (profiles/slurm retries)."""
    out = {
        "mem_mb": lambda wildcards, attempt: int(mem_gb * 1000) * attempt,
        "runtime": lambda wildcards, attempt: int(minutes) * attempt,
    }
    if gpu:
        out["gpu"] = GPU
    return out


# ---------------------------------------------------------------- folds and rows


def data_for(model):
    """Training-data kinds of a model: untrained baselines have one, 'none'."""
    return ["none"] if model in UNTRAINED else TRAIN_DATA


def scored_rows():
    """(model, data) pairs that appear in the tables, plus the `hr` upper bound last."""
    rows = [(m, d) for m in UNTRAINED for d in data_for(m)]
    rows += [(m, d) for m in TRAINED for d in data_for(m)]
    return rows + [("hr", "none")]


SR_ROWS = [r for r in scored_rows() if r[0] != "hr"]  # rows with an SR image (hr is the reference)


def test_specimens(fold):
    return FOLDS[fold]["test"]


def train_specimens(fold):
    return FOLDS[fold]["train"]


def per_test_specimen(pattern, rows=None, **fmt):
    """Expand `pattern` over rows x folds x the fold's test specimens."""
    out = []
    for model, data in rows if rows is not None else scored_rows():
        for fold, split in FOLDS.items():
            for specimen in split["test"]:
                out.append(pattern.format(model=model, data=data, fold=fold, specimen=specimen, **fmt))
    return out


# ---------------------------------------------------------------- paths of results/
# One place for the layout (README, "Results layout"); rules use these instead of literals.


def ingested(specimen, name):
    return f"results/ingest/{specimen}/{name}"


def aligned(specimen, name):
    return f"results/align/{specimen}/{name}"


def paired(specimen, name):
    return f"results/pairs/{specimen}/{name}"


def trained(model, data, fold, name):
    return f"results/train/{model}/{data}/{fold}/{name}"


SR_SUFFIX = "zarr" if config["infer"]["format"] == "ome-zarr" else "tif"


def inferred(model, data, fold, specimen, ext=None):
    """An SR volume (.tif, or an OME-Zarr folder .zarr with infer.format: ome-zarr) or its .json."""
    return f"results/infer/{model}/{data}/{fold}/{specimen}.{ext or SR_SUFFIX}"


def sr_output(path):
    """An SR volume as an output of a job: OME-Zarr volumes are folders."""
    return directory(path) if path.endswith(".zarr") else path


def affinity_model(fold, name="model.pt"):
    return f"results/affinity/{fold}/{name}"


def row_threshold(model, data, fold):
    """Where a row's own threshold is chosen (the `hr` row's is the HR-chosen threshold.json)."""
    if model == "hr":
        return affinity_model(fold, "threshold.json")
    return f"results/threshold/{model}/{data}/{fold}.json"


def segmented(model, data, fold, specimen, name):
    return f"results/segment/{model}/{data}/{fold}/{specimen}/{name}"


def segmentations(model, data, fold, specimen):
    """The segmentations of one image, one per threshold, in THRESHOLDS order."""
    return [segmented(model, data, fold, specimen, f"t{t}.tif") for t in THRESHOLDS]


def referenced(fold, specimen, ext="tif"):
    return f"results/reference/{fold}/{specimen}.{ext}"


def lr_path(data, specimen, fold):
    """The LR input a model trains on: the acquired LR (real, denoised), or a synthetic one (fitted: per fold)."""
    if data in ("real", "denoised"):
        return paired(specimen, "lr.tif")
    if data in FITTED_RECIPES:
        return f"results/degrade/{data}/{fold}/{specimen}/lr.tif"
    return f"results/degrade/{data}/{specimen}/lr.tif"


def fit_settings(recipe):
    """The keys of a `fitted` recipe that shape its fit (srseg.fitting.FIT_KEYS; the rest only the synthesis)."""
    entry = config["degradations"][recipe]
    return canonical({k: entry[k] for k in ("kind", "max_blur_sigma", "fit_pixels") if k in entry})


def hr_target_path(data, specimen):
    """The HR a model learns to produce: denoised HR for data 'denoised' (EMSR's third strategy), else real HR."""
    if data == "denoised":
        return f"results/denoise/{specimen}/hr.tif"
    return paired(specimen, "hr.tif")


def sr_image(model, data, fold, specimen):
    """The image that gets segmented and scored for one table row."""
    if model == "hr":
        return paired(specimen, "hr.tif")
    return inferred(model, data, fold, specimen)


# ---------------------------------------------------------------- models


def model_file(wildcards):
    if wildcards.model in UNTRAINED:
        return []
    return [trained(wildcards.model, wildcards.data, wildcards.fold, "model.pt")]


def segmentation_choice():
    """The keys of `segmentation:` that shape the segmentations (not the reported fixed threshold)."""
    seg = config["segmentation"]
    keys = (
        "thresholds",
        "merge_function",
        "seed_min_distance",
        "boundary_threshold",
        "min_size",
        "long_range_weight",
        "blockwise",
    )
    return canonical({k: seg[k] for k in keys})


def lab_ruler(wildcards):
    """A lab's own ruler checkpoint (affinity.model) as an input, so replacing the file reruns the rows."""
    path = config["affinity"]["model"]
    return [path] if path else []


# ---------------------------------------------------------------- ingest


def specimen_entry(specimen):
    return config["specimens"][specimen]


def generated_dir(specimen):
    """results/phantom/{s} or results/simulate/{s} for a generated specimen, else None."""
    entry = specimen_entry(specimen)
    if "phantom" in entry:
        return f"results/phantom/{specimen}"
    if "simulate" in entry:
        return f"results/simulate/{specimen}"
    return None


PHANTOM_SPECIMENS = [s for s in SPECIMENS if "phantom" in specimen_entry(s)]
SIMULATED_SPECIMENS = [s for s in SPECIMENS if "simulate" in specimen_entry(s)]


def has_labels(specimen):
    """Generated specimens always have labels; a user specimen when its `labels` key is set."""
    return generated_dir(specimen) is not None or bool(specimen_entry(specimen)["labels"])


SPECIMENS_WITH_LABELS = [s for s in SPECIMENS if has_labels(s)]


def source_files(source):
    """Files behind a user path (file, folder, glob, file.h5:/dataset or .zarr), so Snakemake tracks their mtimes."""
    from srseg.io import H5_SOURCE, list_sections
    import glob as _glob
    import os as _os

    h5 = H5_SOURCE.match(source)
    if h5 and not _os.path.isfile(source):
        return [h5.group(1)]
    parts = _os.path.normpath(source).split(_os.sep)
    zarr_at = [i for i, p in enumerate(parts) if p.lower().endswith(".zarr")]
    if zarr_at:  # an OME-Zarr / zarr array: the .zarr folder itself (Snakemake tracks its mtime)
        return [_os.sep.join(parts[: zarr_at[-1] + 1])]
    if _os.path.isdir(source) or _glob.has_magic(source):
        return list_sections(source)
    return [source]


def ingest_source(specimen, key):
    """What ingest reads for lr/hr/labels: the generated stack, or the user's TIFF/folder/glob/HDF5."""
    if generated_dir(specimen):
        return f"{generated_dir(specimen)}/{key}.tif"
    return specimen_entry(specimen)[key]


def ingest_inputs(wildcards):
    s = wildcards.specimen
    if generated_dir(s):
        d = generated_dir(s)
        return {"lr": f"{d}/lr.tif", "hr": f"{d}/hr.tif", "meta": f"{d}/meta.json"}
    return {"lr": source_files(ingest_source(s, "lr")), "hr": source_files(ingest_source(s, "hr"))}


def labels_inputs(wildcards):
    return {
        "labels": source_files(ingest_source(wildcards.specimen, "labels")),
        "meta": ingested(wildcards.specimen, "meta.json"),
    }


def simulate_inputs(wildcards):
    """The source stack (and labels) files, so Snakemake reruns when they change."""
    sim = specimen_entry(wildcards.specimen)["simulate"]
    inputs = {"source": source_files(sim["source"])}
    if sim["labels"]:
        inputs["labels"] = source_files(sim["labels"])
    return inputs


def align_inputs(wildcards):
    """Ingest outputs, plus the true transform of generated specimens (align then reports error_px)."""
    s = wildcards.specimen
    inputs = {"lr": ingested(s, "lr.tif"), "hr": ingested(s, "hr.tif"), "meta": ingested(s, "meta.json")}
    if generated_dir(s):
        inputs["truth"] = f"{generated_dir(s)}/truth.json"
    return inputs


# ---------------------------------------------------------------- metrics


def image_metrics_inputs(wildcards):
    """SR image, its HR pair, and the denoised HR where `metrics.references` asks for it (EMSR's protocol)."""
    w = wildcards
    inputs = {
        "sr": inferred(w.model, w.data, w.fold, w.specimen),
        "hr": paired(w.specimen, "hr.tif"),
        "pairs": paired(w.specimen, "pairs.json"),
    }
    if "denoised" in config["metrics"]["references"]:
        inputs["denoised"] = f"results/denoise/{w.specimen}/hr.tif"
    return inputs


# ---------------------------------------------------------------- segmentation


def affinity_train_specimens(fold):
    """Training specimens of a fold that have labels (the affinity net needs them)."""
    return [s for s in train_specimens(fold) if has_labels(s)]


def reference_inputs(wildcards):
    """The specimen's labels if it has them, else the `hr` row's segmentations + the fold's best threshold."""
    if has_labels(wildcards.specimen):
        return {"labels": paired(wildcards.specimen, "labels.tif")}
    return {
        "threshold": affinity_model(wildcards.fold, "threshold.json"),
        "segs": segmentations("hr", "none", wildcards.fold, wildcards.specimen),
    }


# ---------------------------------------------------------------- report

# name: (caption file in report/, category, subcategory) of each registered output
REPORT_ITEMS = {
    "ruler": ("ruler", "Ruler", "Tables"),
    "ruler_curves": ("ruler_curves", "Ruler", "Figures"),
    "summary": ("summary", "Summary", "Tables"),
    "per_specimen": ("per_specimen", "Summary", "Tables"),
    "paired_tests": ("paired_tests", "Summary", "Tables"),
    "cost": ("cost", "Summary", "Tables"),
    "metric_bars": ("metric_bars", "Summary", "Figures"),
    "alignment_qc": ("alignment_qc", "Alignment", "Figures"),
    "qualitative": ("qualitative", "Image quality", "Figures"),
    "frc_curves": ("frc_curves", "Image quality", "Figures"),
    "segmentation_overlays": ("segmentation_overlays", "Segmentation", "Figures"),
    "threshold_curves": ("threshold_curves", "Segmentation", "Figures"),
    "quality_vs_segmentation": ("quality_vs_segmentation", "Segmentation", "Figures"),
    "thresholds_f1": ("thresholds_f1", "Segmentation", "Tables"),
    "thresholds_voi": ("thresholds_voi", "Segmentation", "Tables"),
    "threshold_choice": ("threshold_choice", "Segmentation", "Tables"),
    "training_curves": ("training_curves", "Training", "Figures"),
    "training_strategy": ("training_strategy", "Training", "Tables"),
}


def report_example():
    """(fold, specimen) of the qualitative figures: report.example_specimen, else the first fold's first test specimen."""
    wanted = config["report"]["example_specimen"]
    for fold, split in FOLDS.items():
        if wanted is None or wanted in split["test"]:
            return fold, wanted or split["test"][0]


EXAMPLE_FOLD, EXAMPLE_SPECIMEN = report_example()


def registered(path, name):
    caption, category, subcategory = REPORT_ITEMS[name]
    return report(path, caption=f"../report/{caption}.rst", category=category, subcategory=subcategory)


# ---------------------------------------------------------------- overview (`snakemake overview`)

OVERVIEW = config["overview"]
OVERVIEW_SPECIMENS = srseg_config.checks.overview_specimens(config, FOLDS)
OVERVIEW_CHOICE = "results/overview/choice.json"
SUMMARY_TABLE = "results/report/tables/summary.csv"


def overviewed(specimen, name):
    return f"results/overview/{specimen}/{name}"


def overview_intermediates():
    """overview.intermediates: the affinities and fragments as OME-Zarr outputs beside segmentation.zarr."""
    if not OVERVIEW["intermediates"]:
        return {}
    return {n: directory(overviewed("{specimen}", f"{n}.zarr")) for n in ("affinities", "fragments")}


def overview_fold(specimen):
    """The fold that tests the specimen: its models never saw it (srseg.config.checks.overview_fold)."""
    return srseg_config.checks.overview_fold(config, FOLDS, specimen)


def overview_summary(wildcards):
    """The summary table the checkpoint chooses the row from; none when overview.model / .data are set."""
    return [] if OVERVIEW["model"] is not None else [SUMMARY_TABLE]


def overview_row():
    """(model, data) of the overview row, from checkpoint overview_choice (so after the report when chosen)."""
    import json

    with open(checkpoints.overview_choice.get().output.json) as fh:
        row = json.load(fh)
    return row["model"], row["data"]


def overview_infer_inputs(wildcards):
    model, data = overview_row()
    fold = overview_fold(wildcards.specimen)
    return {
        "lr": ingested(wildcards.specimen, "lr.tif"),
        "pairs": paired(wildcards.specimen, "pairs.json"),
        "choice": OVERVIEW_CHOICE,
        "model": [] if model in UNTRAINED else [trained(model, data, fold, "model.pt")],
    }


def overview_segment_inputs(wildcards):
    model, data = overview_row()
    fold = overview_fold(wildcards.specimen)
    return {
        "image": overviewed(wildcards.specimen, "sr.zarr"),
        "model": affinity_model(fold),
        "threshold": row_threshold(model, data, fold),
        "choice": OVERVIEW_CHOICE,
    }


def overview_work_json(specimen):
    """The checkpoint overview_work's output (`overview.segment_jobs`): settings and block count of the jobs."""
    return overviewed(specimen, "work/work.json")


def overview_marker(specimen, name, index=None):
    """The output of pass `name` of block `index` (None: a gather) of a scattered overview segmentation; the
    same paths as srseg.overview.overview_marker (not imported here: it would load torch for every plan)."""
    if name == "affinities":  # affinity job `index`
        return overviewed(specimen, f"work/affs.zarr.jobs/{index}.json")
    seg = overviewed(specimen, "work/seg.zarr")
    gathers = {"luts": f"{seg}/luts.npz", "sizes": overviewed(specimen, "work/sizes.npz")}
    if name in gathers:
        return gathers[name]
    suffix = {"fragments": "fragments.json", "edges": "merges.npz", "relabel": "sizes.npz", "filter": "filtered.json"}
    return f"{seg}/blocks/{index}.{suffix[name]}"


def overview_work_meta(specimen):
    """The json of checkpoint overview_work: the settings and plan of a scattered overview segmentation."""
    import json

    with open(checkpoints.overview_work.get(specimen=specimen).output.json) as fh:
        return json.load(fh)


def overview_blocks(specimen):
    """(number of blocks, min_size) of a scattered overview segmentation, after checkpoint overview_work."""
    meta = overview_work_meta(specimen)
    return int(meta["n_blocks"]), int(meta["fragments"]["min_size"])


def overview_fragments_inputs(wildcards):
    """The work json and the markers of the affinity jobs whose sections a block's fragments job reads."""
    meta = overview_work_meta(wildcards.specimen)
    jobs = meta["block_affinity_jobs"][int(wildcards.block)]
    return {
        "work": overview_work_json(wildcards.specimen),
        "affinities": [overview_marker(wildcards.specimen, "affinities", j) for j in jobs],
    }


def overview_pass_inputs(name):
    """Input function: the work json and every block's marker of pass `name` (or, for the export, the last
    per-block pass: filter when min_size > 1, else relabel)."""

    def inputs(wildcards):
        n, min_size = overview_blocks(wildcards.specimen)
        kind = name if name != "last" else ("filter" if min_size > 1 else "relabel")
        return {
            "work": overview_work_json(wildcards.specimen),
            "markers": [overview_marker(wildcards.specimen, kind, i) for i in range(n)],
        }

    return inputs
