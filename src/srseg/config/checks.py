"""Checks of a config that a JSON schema cannot express, run before any job.

Each failure is one InputError sentence that starts with the full dotted key (or the file)
and ends with the fix. Everything here is torch-, OpenCV- and waterz-free: what the checks
need to know about architectures and losses comes from `catalog` (the source files read as
text), about stacks from their headers (`io.stack_info`), about checkpoints from
`io.peek_checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import geometry, ruler_spec
from ..io import InputError, peek_checkpoint, source_exists, stack_info
from ..waterz_scoring import MERGE_FUNCTIONS, check_merge_function
from . import catalog
from .schema import defaults, subschema, suggest

#: keys of a model entry that only GAN archs take
GAN_KEYS = ("n_critic", "d_lr", "betas", "schedule", "gan_start", "critic")
#: keys a model entry may set whatever its arch (besides the training keys)
ENTRY_KEYS = ("arch", "net", "loss", "init", "context", "freeze", "seed")
RESERVED_DATA = ("real", "denoised")
#: `affinity:` keys only training reads: a lab's own ruler (affinity.model) is used as is
RULER_TRAINING_KEYS = (
    "steps", "lr", "batch", "patch", "patch_z", "val_every", "log_every", "checkpoint_every",
    "balance", "amp", "cpu_bf16", "freeze", "augment", "lsd",
)  # fmt: skip


def training_keys() -> tuple[str, ...]:
    """The `training:` keys every trained model inherits (GAN-only keys excluded)."""
    return tuple(k for k in subschema("training")["properties"] if k not in GAN_KEYS)


def folds(config: dict) -> dict[str, dict[str, list[str]]]:
    """fold -> {train, test}: leave-one-specimen-out, or the explicit splits; names sorted."""
    specimens = sorted(config["specimens"])
    splits = config["splits"]
    if splits == "leave_one_out":
        return {s: {"train": [t for t in specimens if t != s], "test": [s]} for s in specimens}
    return {name: {"train": sorted(f["train"]), "test": sorted(f["test"])} for name, f in sorted(splits.items())}


def _path(value: str, workdir: Path) -> Path:
    p = Path(value)
    return p if p.is_absolute() else workdir / p


def _exists(source: str, workdir: Path) -> bool:
    return source_exists(str(_path(source, workdir)) if not os.path.isabs(source) else source)


# --------------------------------------------------------------------------- specimens


def check_specimens(config: dict, workdir: Path) -> None:
    for name, entry in config["specimens"].items():
        key = f"specimens.{name}"
        kinds = [k for k in ("phantom", "simulate") if k in entry]
        own = [k for k in ("lr", "hr") if k in entry]
        if len(kinds) > 1:
            raise InputError(f"{key}: has both phantom: and simulate:; give one of them")
        if kinds and own:
            raise InputError(
                f"{key}.{own[0]}: a {kinds[0]}: specimen is generated and takes no {own[0]}:; "
                f"remove {own[0]}: or {kinds[0]}:"
            )
        if kinds:
            for k in ("labels", "lr_voxel_nm", "hr_voxel_nm", "hr_offset_nm") + (
                ("bit_depth",) if "phantom" in kinds else ()
            ):
                if entry.get(k) is not None:
                    raise InputError(f"{key}.{k}: a {kinds[0]}: specimen sets its own; remove it")
        else:
            for k in ("lr", "hr"):
                if k not in entry:
                    raise InputError(
                        f"{key}.{k}: missing; give the {k.upper()} stack (a TIFF, a folder or glob of "
                        f"sections, or file.h5:/dataset), or make it a phantom: or simulate: specimen"
                    )
            if entry.get("hr_offset_nm") is None:
                raise InputError(
                    f"{key}.hr_offset_nm: missing; give the stage position [z, y, x] (nm) of HR voxel "
                    f"(0, 0, 0) in the LR frame"
                )
        for k in ("lr", "hr", "labels"):
            if entry.get(k) and not _exists(entry[k], workdir):
                raise InputError(
                    f"{key}.{k}: {entry[k]!r} does not exist; give a TIFF file, a folder of 2D images, "
                    f"a glob or file.h5:/dataset"
                )
        for where, labels_of, schema_path in (
            (key, entry, ("specimens", "*")),
            (f"{key}.simulate", entry.get("simulate"), ("specimens", "*", "simulate")),
        ):
            if labels_of is not None:
                check_min_area(where, labels_of, schema_path)
        sim = entry.get("simulate")
        if sim is not None:
            if not sim["labels"]:
                raise InputError(
                    f"{key}.simulate.labels: missing; give the source's labels (instances, or a cell mask "
                    f"with labels_kind: cell_mask) so the affinity network can be trained and scored"
                )
            for k in ("source", "labels"):
                if sim.get(k) and not _exists(sim[k], workdir):
                    raise InputError(
                        f"{key}.simulate.{k}: {sim[k]!r} does not exist; give the real HR stack's path "
                        f"(relative to the working directory)"
                    )
            if sim["sections"] is not None and sim["sections"][0] >= sim["sections"][1]:
                raise InputError(
                    f"{key}.simulate.sections: {sim['sections']} is empty; give [start, stop) with start < stop"
                )
            if sim["crop"] is not None and (sim["crop"][0] >= sim["crop"][1] or sim["crop"][2] >= sim["crop"][3]):
                raise InputError(
                    f"{key}.simulate.crop: {sim['crop']} is empty; give [y0, y1, x0, x1] with y0 < y1, x0 < x1"
                )
    check_section_blocks(config["specimens"], workdir)
    geometry_of = config["phantom"]
    if geometry_of["hr_voxel_nm"][0] != geometry_of["lr_voxel_nm"][0]:
        raise InputError("phantom.lr_voxel_nm: its z must equal phantom.hr_voxel_nm's (one section thickness)")


def check_min_area(where: str, labels_of: dict, schema_path: tuple[str, ...]) -> None:
    """labels_min_area_nm2 only cleans a cell mask: refuse a value set for instance labels."""
    default = defaults(*schema_path)
    if labels_of.get("labels_kind", default["labels_kind"]) == "cell_mask":
        return
    if labels_of.get("labels_min_area_nm2", default["labels_min_area_nm2"]) != default["labels_min_area_nm2"]:
        raise InputError(
            f"{where}.labels_min_area_nm2: only a cell mask (labels_kind: cell_mask) is cleaned of small "
            f"components, instance labels are used as given; remove it or set {where}.labels_kind: cell_mask"
        )


def check_section_blocks(specimens: dict, workdir: Path = Path(".")) -> None:
    """Refuse two simulate specimens of one source whose section blocks overlap or are too close.

    Leave-one-specimen-out is leak-free only if no source section belongs to two specimens,
    and neighbouring sections are nearly the same image, so blocks must also be at least
    `min_gap_sections` apart (the larger of the two entries'). A specimen without `sections`
    uses the whole stack.
    """
    blocks = []
    for name, entry in specimens.items():
        sim = entry.get("simulate")
        if sim is None:
            continue
        src = os.path.normpath(str(_path(sim["source"], workdir).resolve()))
        start, stop = sim["sections"] if sim.get("sections") is not None else (0, float("inf"))
        blocks.append((name, src, start, stop, int(sim.get("min_gap_sections", 0))))
    for i, (a, src_a, s0, s1, gap_a) in enumerate(blocks):
        for b, src_b, t0, t1, gap_b in blocks[i + 1 :]:
            if src_a != src_b:
                continue
            gap, need = max(t0 - s1, s0 - t1), max(gap_a, gap_b)
            if gap < 0:
                raise InputError(
                    f"specimens.{b}.simulate.sections: overlaps specimens.{a}.simulate.sections of the same source, "
                    f"so a section would be trained on and tested; give disjoint [start, stop) blocks"
                )
            if gap < need:
                raise InputError(
                    f"specimens.{b}.simulate.sections: only {gap} section(s) apart from specimens.{a}'s block of the "
                    f"same source, fewer than min_gap_sections ({need}); leave a gap between the blocks"
                )


def hr_sections(config: dict, name: str, workdir: Path) -> int | None:
    """Sections of a specimen's HR stack, where known before ingest (None: known at ingest)."""
    entry = config["specimens"][name]
    if "phantom" in entry:
        return int(config["phantom"]["hr_shape"][0])
    if "simulate" in entry:
        sim = entry["simulate"]
        if sim["sections"] is not None:
            return int(sim["sections"][1] - sim["sections"][0])
        info = stack_info(str(_path(sim["source"], workdir)))
        return info[0][0] if info else None
    info = stack_info(str(_path(entry["hr"], workdir)))
    return info[0][0] if info else None


def check_sections(config: dict, fold_map: dict, workdir: Path) -> None:
    """Every training specimen needs training and validation sections; HR must lie inside LR."""
    trained_on = sorted({s for f in fold_map.values() for s in f["train"]})
    for name in sorted(config["specimens"]):
        n = hr_sections(config, name, workdir)
        if n is None:
            continue
        if n < 1:
            raise InputError(f"specimens.{name}: has no sections; give a stack with at least one section")
        if name in trained_on and n < 2:
            raise InputError(
                f"specimens.{name}: has {n} section but is trained on, which needs at least 2 "
                f"(training and validation sections); give more sections or use it only for testing"
            )
    for name, entry in sorted(config["specimens"].items()):
        if "lr" not in entry:
            continue
        lr, hr = stack_info(str(_path(entry["lr"], workdir))), stack_info(str(_path(entry["hr"], workdir)))
        if lr is None or hr is None:
            continue
        lr_vox = entry["lr_voxel_nm"] or lr[1]
        hr_vox = entry["hr_voxel_nm"] or hr[1]
        for which, vox in (("lr", lr_vox), ("hr", hr_vox)):
            if vox is None or any(v is None for v in vox):
                raise InputError(
                    f"specimens.{name}.{which}_voxel_nm: missing and {entry[which]} has no voxel size in "
                    f"its metadata; set it to [z, y, x] in nm"
                )
        geometry.require_hr_inside(name, lr[0], hr[0], lr_vox, hr_vox, entry["hr_offset_nm"])


# --------------------------------------------------------------------------- data, splits


def check_recipe(name: str, recipe: dict) -> None:
    """A recipe's ranges [lo, hi] must have lo <= hi (the schema checks each bound alone)."""
    for key, value in recipe.items():
        if isinstance(value, list) and len(value) == 2 and value[0] > value[1]:
            raise InputError(f"degradations.{name}.{key}: range {value} has lo > hi; give [lo, hi] with lo <= hi")


def check_train_data(config: dict) -> None:
    recipes = config["degradations"]
    for name, recipe in recipes.items():
        check_recipe(name, recipe)
    for data in config["train_data"]:
        if data not in RESERVED_DATA and data not in recipes:
            raise InputError(
                f"train_data: {data!r} is neither real, denoised nor a recipe under degradations"
                f"{suggest(data, list(recipes) + list(RESERVED_DATA))}"
            )


def check_splits(config: dict) -> None:
    specimens = config["specimens"]
    splits = config["splits"]
    if splits == "leave_one_out":
        return
    for fold, split in splits.items():
        for role in ("train", "test"):
            for s in split[role]:
                if s not in specimens:
                    raise InputError(f"splits.{fold}.{role}: unknown specimen {s!r}{suggest(s, specimens)}")
        leaked = sorted(set(split["train"]) & set(split["test"]))
        if leaked:
            raise InputError(
                f"splits.{fold}: {', '.join(leaked)} is both trained on and tested; a specimen may be "
                f"in only one of train and test"
            )


def check_labels(config: dict, fold_map: dict) -> None:
    """The affinity net of every fold trains on HR + labels of its training specimens."""
    for fold, split in fold_map.items():
        labelled = [s for s in split["train"] if _has_labels(config["specimens"][s])]
        if not labelled:
            raise InputError(
                f"splits.{fold}.train: no training specimen has labels, so fold {fold}'s affinity network "
                f"cannot be trained; add labels: to one of {', '.join(split['train'])}"
            )


def _has_labels(entry: dict) -> bool:
    return "phantom" in entry or "simulate" in entry or bool(entry.get("labels"))


# --------------------------------------------------------------------------- models


def check_loss(key: str, loss: dict, arch: catalog.ArchInfo, workdir: Path) -> None:
    known = catalog.losses()
    pixel = sorted(n for n, i in known.items() if i.role == "pixel")
    adversarial = []
    for name, value in loss.items():
        where = f"{key}.loss.{name}"
        if name not in known:
            raise InputError(f"{where}: unknown loss{suggest(name, known)}")
        info = known[name]
        if info.role == "pixel":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"{where}: give its weight as a number, e.g. {name}: 1")
            continue
        if not isinstance(value, dict):
            raise InputError(f"{where}: give its options as a mapping, e.g. {name}: {{{', '.join(info.options[:2])}}}")
        for option, v in value.items():
            if option in info.options:
                continue
            if info.takes_pixel_losses and option in pixel:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise InputError(f"{where}.{option}: give the weight of its pixel loss as a number")
                continue
            allowed = list(info.options) + (pixel if info.takes_pixel_losses else [])
            raise InputError(f"{where}.{option}: not an option of loss {name}{suggest(option, allowed)}")
        if info.role == "adversarial":
            adversarial.append(name)
        if name == "perceptual" and not (value.get("weights") and _path(str(value["weights"]), workdir).is_file()):
            raise InputError(
                f"{where}.weights: VGG19 weights file {value.get('weights')!r} not found; give the path "
                f"of a torchvision vgg19 state dict (no weights are downloaded)"
            )
        if arch.kind == "diffusion":
            raise InputError(
                f"{where}: arch {arch.name} is trained on the noise with pixel losses only "
                f"({', '.join(pixel)}); remove {name}"
            )
    if arch.kind == "gan" and len(adversarial) != 1:
        raise InputError(
            f"{key}.loss: GAN arch {arch.name} needs exactly one adversarial loss (wgan_gp, ragan or gan_bce), "
            f"got {', '.join(adversarial) or 'none'}"
        )
    if arch.kind != "gan" and adversarial:
        raise InputError(
            f"{key}.loss.{adversarial[0]}: adversarial, but arch {arch.name} has no critic; "
            f"use a GAN arch (wgan, esrgan) or remove it"
        )


def check_init(key: str, path: str | None, arch: str, workdir: Path, registry: str = "srseg") -> None:
    if not path:
        return
    file = _path(path, workdir)
    if not file.is_file():
        raise InputError(f"{key}.init: {path!r} does not exist; give the checkpoint to fine-tune from")
    meta = peek_checkpoint(file)
    if meta and isinstance(meta.get("arch"), str) and meta["arch"] != arch:
        raise InputError(
            f"{key}.init: {path} was trained as arch {meta['arch']!r}, this model is {arch!r}; "
            f"point init: to a {arch} checkpoint"
        )


def check_model(name: str, entry: dict, workdir: Path) -> None:
    key = f"models.{name}"
    archs = catalog.archs()
    if entry["arch"] not in archs:
        raise InputError(f"{key}.arch: unknown architecture {entry['arch']!r}{suggest(entry['arch'], archs)}")
    arch = archs[entry["arch"]]
    for k in entry["net"]:
        if k not in arch.params:
            raise InputError(
                f"{key}.net.{k}: not a setting of arch {arch.name}{suggest(k, arch.params)} (see {arch.path.name})"
            )
    required = [k for k, v in arch.params.items() if v is catalog.NO_DEFAULT and k not in entry["net"]]
    if required:
        raise InputError(f"{key}.net.{required[0]}: missing; arch {arch.name} needs it")
    if not arch.trained:
        given = [k for k in entry if k not in ("arch", "net") and entry[k] != _entry_default(k)]
        if given:
            raise InputError(f"{key}.{given[0]}: arch {arch.name} is not trained; remove {given[0]}")
        return
    if "loss" not in entry:
        raise InputError(f"{key}.loss: missing; a trained model needs a loss, e.g. loss: {{l1: 1}}")
    check_loss(key, entry["loss"], arch, workdir)
    if arch.kind != "gan":
        for k in GAN_KEYS:
            if k in entry:
                raise InputError(
                    f"{key}.{k}: only GAN archs (wgan, esrgan) take it, this model is {arch.name}; remove it"
                )
    else:
        for k in entry.get("critic", {}):
            if k not in arch.critic_params:
                raise InputError(
                    f"{key}.critic.{k}: not a setting of {arch.name}'s critic{suggest(k, arch.critic_params)}"
                )
    if entry["context"] and not arch.context:
        able = sorted(n for n, a in archs.items() if a.context and a.trained)
        raise InputError(
            f"{key}.context: arch {arch.name} takes one section (no in_channels), so context: "
            f"{entry['context']} is not possible; set context: 0 or use one of {', '.join(able)}"
        )
    check_init(key, entry["init"], arch.name, workdir)


def _entry_default(key: str):
    sub = subschema("models", "*")["properties"].get(key, {})
    return sub.get("default", object())


def check_models(config: dict, workdir: Path) -> None:
    for name, entry in config["models"].items():
        check_model(name, entry, workdir)


# --------------------------------------------------------------------------- stages


def blockwise_problem(block, context, dim: int, long_range, long_range_weight) -> tuple[str, str] | None:
    """(dotted key, problem and fix) of a `segmentation.blockwise` setting that cannot stitch blocks, or None.

    The rules of `srseg.blockwise.check_context` (that module needs waterz; the config checks
    may not import it): every block entry >= 1; context >= 1 along each axis whose edges can
    merge (y, x; z too for a 3D network); and, when long-range affinities are folded in (any
    weight > 0), context at least each long-range offset along its axis.
    """
    key = "segmentation.blockwise"
    if block is None:
        return None
    if any(int(b) < 1 for b in block):
        return f"{key}.block", f"{list(block)} has an entry below 1; give [z, y, x] block sizes of at least 1 voxel"
    context = [int(c) for c in context]
    axes = (0, 1, 2) if int(dim) == 3 else (1, 2)
    for a in axes:
        if context[a] < 1:
            return (
                f"{key}.context",
                f"{context} has no {'zyx'[a]} context, so objects crossing a block face are never stitched; "
                f"set it to at least 1 along {'z, y and x' if int(dim) == 3 else 'y and x'}",
            )
    weights = long_range_weight if isinstance(long_range_weight, (list, tuple)) else [long_range_weight]
    if max(float(w) for w in weights) > 0:
        for o in long_range or []:
            nonzero = [a for a, v in enumerate(o) if v]
            if len(nonzero) == 1 and nonzero[0] in axes and abs(int(o[nonzero[0]])) > context[nonzero[0]]:
                a = nonzero[0]
                return (
                    f"{key}.context",
                    f"{context} is smaller than the long-range offset {list(o)} of affinity.long_range along "
                    f"{'zyx'[a]}; raise it to at least {abs(int(o[a]))} there "
                    "(or set segmentation.long_range_weight: 0)",
                )
    return None


def check_blockwise(seg: dict, affinity: dict) -> None:
    bw = seg["blockwise"]
    problem = blockwise_problem(
        bw["block"], bw["context"], affinity["dim"], affinity.get("long_range"), seg["long_range_weight"]
    )
    if problem:
        raise InputError(f"{problem[0]}: {problem[1]}")


def check_stages(config: dict, fold_map: dict, workdir: Path) -> None:
    seg = config["segmentation"]
    fixed = seg["fixed_threshold"]
    if fixed is not None and float(fixed) not in [float(t) for t in seg["thresholds"]]:
        raise InputError(f"segmentation.fixed_threshold: {fixed} is not one of segmentation.thresholds; add it there")
    problem = check_merge_function(seg["merge_function"])
    if problem:
        raise InputError(
            f"segmentation.merge_function: {seg['merge_function']!r} {problem}"
            f"{suggest(seg['merge_function'], MERGE_FUNCTIONS) if '<' not in seg['merge_function'] else ''}"
            f" (named: mean, hist_quant_10 ... hist_quant_95)"
        )
    check_blockwise(seg, config["affinity"])
    infer = config["infer"]
    if 2 * infer["overlap"] >= infer["tile"]:
        raise InputError(
            f"infer.overlap: {infer['overlap']} must be less than half of infer.tile ({infer['tile']}); "
            f"lower it or raise infer.tile"
        )
    if infer["blocks_z"] > 1:
        for fold in fold_map.values():
            for s in fold["test"]:
                n = hr_sections(config, s, workdir)
                if n is not None and n < infer["blocks_z"]:
                    raise InputError(
                        f"infer.blocks_z: {infer['blocks_z']} blocks, but test specimen {s} has only {n} "
                        f"sections; lower infer.blocks_z"
                    )
    aff = config["affinity"]
    if 2 * aff["overlap"] >= aff["tile"]:
        raise InputError(f"affinity.overlap: {aff['overlap']} must be less than half of affinity.tile ({aff['tile']})")
    smallest = aff["pool"] ** (aff["depth"] - 1) * 2 * aff["downsample"]
    if aff["patch"] < smallest:
        raise InputError(
            f"affinity.patch: {aff['patch']} is too small for a U-Net of depth {aff['depth']} pooling by "
            f"{aff['pool']} (downsample {aff['downsample']}); raise it to at least {smallest}"
        )
    ruler_spec.check_offsets(aff)
    if aff["model"] and aff["init"]:
        raise InputError(
            "affinity.init: a lab's own ruler (affinity.model) is used as is, not fine-tuned; remove affinity.init "
            "(or affinity.model to fine-tune from init)"
        )
    check_init("affinity", aff["init"], "affinity", workdir)
    if aff["model"]:
        ruler_defaults = defaults("affinity")
        given = [k for k in RULER_TRAINING_KEYS if aff[k] != ruler_defaults[k]]
        if given:
            raise InputError(
                f"affinity.{given[0]}: a lab's own ruler (affinity.model) is used as is, not trained, so this "
                f"training setting would be ignored; remove affinity.{given[0]} (or affinity.model to train one)"
            )
    ruler_spec.check_ruler_model(aff, workdir)
    example = config["report"]["example_specimen"]
    tests = [s for f in fold_map.values() for s in f["test"]]
    if example is not None and example not in tests:
        raise InputError(
            f"report.example_specimen: {example!r} is no fold's test specimen; use one of "
            f"{', '.join(sorted(set(tests)))}"
        )


# --------------------------------------------------------------------------- overview


def overview_fold(config: dict, fold_map: dict, specimen: str) -> str:
    """The fold whose models process `specimen`'s whole LR overview: the first (sorted) in which it is a test
    specimen, so none of them was trained on it; InputError naming overview.specimens if there is none."""
    for fold, split in sorted(fold_map.items()):
        if specimen in split["test"]:
            return fold
    tests = sorted({s for f in fold_map.values() for s in f["test"]})
    raise InputError(
        f"overview.specimens: {specimen!r} is no fold's test specimen, so every model was trained on it; "
        f"use one of {', '.join(tests)} (or add a split that tests it)"
    )


def overview_specimens(config: dict, fold_map: dict) -> list[str]:
    """The specimens `snakemake overview` processes: overview.specimens, or (null) every test specimen."""
    given = config["overview"]["specimens"]
    if given is None:
        return sorted({s for f in fold_map.values() for s in f["test"]})
    for s in given:
        if s not in config["specimens"]:
            raise InputError(f"overview.specimens: unknown specimen {s!r}{suggest(s, list(config['specimens']))}")
        overview_fold(config, fold_map, s)
    return sorted(given)


def check_overview(config: dict, fold_map: dict) -> None:
    ov = config["overview"]
    model, data = ov["model"], ov["data"]
    if (model is None) != (data is None):
        missing = "data" if data is None else "model"
        raise InputError(
            f"overview.{missing}: null while overview.{'model' if missing == 'data' else 'data'} is set; "
            "give both (one row of the tables) or neither (the summary table's best row)"
        )
    if model is not None:
        models = config["models"]
        if model not in models:
            raise InputError(f"overview.model: unknown model {model!r}{suggest(model, list(models))}")
        trained = catalog.archs()[models[model]["arch"]].trained
        rows = list(config["train_data"]) if trained else ["none"]
        if data not in rows:
            raise InputError(
                f"overview.data: {data!r} is not a training data of model {model} (its rows: {', '.join(rows)}); "
                f"use one of them"
            )
    overview_specimens(config, fold_map)
    t = ov["threshold"]
    thresholds = [float(v) for v in config["segmentation"]["thresholds"]]
    if t is not None and float(t) not in thresholds:
        raise InputError(
            f"overview.threshold: {t} is not one of segmentation.thresholds ({', '.join(map(str, thresholds))}); "
            "add it there (its row is segmented at every listed threshold) or pick one of them"
        )
    seg = config["segmentation"]
    problem = blockwise_problem(
        ov["block"],
        ov["context"],
        config["affinity"]["dim"],
        config["affinity"].get("long_range"),
        seg["long_range_weight"],
    )
    if problem:
        key = problem[0].replace("segmentation.blockwise", "overview")
        raise InputError(f"{key}: {problem[1].replace('segmentation.blockwise', 'overview')}")


def check(config: dict, workdir: str | Path = ".") -> None:
    """All cross-checks of a normalised, schema-valid config (see the module docstring)."""
    workdir = Path(workdir)
    check_specimens(config, workdir)
    check_splits(config)
    fold_map = folds(config)
    check_labels(config, fold_map)
    check_train_data(config)
    check_models(config, workdir)
    check_stages(config, fold_map, workdir)
    check_sections(config, fold_map, workdir)
    check_overview(config, fold_map)
