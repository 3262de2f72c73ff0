"""Checks of config.yaml that a JSON schema cannot express.

The schema (schemas/config.schema.yaml) catches typos, wrong types and unknown
keys; `check_config` then checks cross-references (recipe and specimen names,
model architectures, input files) so that every mistake fails before any job
runs, with one sentence naming the key.
"""

from __future__ import annotations

import glob
from pathlib import Path

from .io import InputError


def check_config(config: dict, workdir: str | Path = ".") -> None:
    workdir = Path(workdir)
    specimens = config["specimens"]
    recipes = config.get("degradations") or {}

    for name, spec in specimens.items():
        for key in ("lr", "hr", "labels"):
            source = spec.get(key)
            if source and not _source_exists(source, workdir):
                raise InputError(
                    f"config key specimens.{name}.{key}: {source!r} does not exist; "
                    "give a TIFF file, a folder of 2D images or a glob"
                )

    for data in config["train_data"]:
        if data not in ("real", "denoised") and data not in recipes:
            raise InputError(
                f"config key train_data: {data!r} is neither 'real', 'denoised' nor a recipe under degradations "
                f"(known: {', '.join(recipes) or 'none'})"
            )

    splits = config["splits"]
    if splits == "leave_one_out":
        if len(specimens) < 2:
            raise InputError("config key splits: leave_one_out needs at least two specimens")
    else:
        for fold, split in splits.items():
            for role in ("train", "test"):
                for s in split[role]:
                    if s not in specimens:
                        raise InputError(f"config key splits.{fold}.{role}: unknown specimen {s!r}")
            leaked = set(split["train"]) & set(split["test"])
            if leaked:
                raise InputError(
                    f"config key splits.{fold}: {sorted(leaked)} is both trained on and tested; "
                    "a specimen may be in only one of train and test"
                )

    from .losses import LOSSES, build_loss
    from .models import ARCHS

    for name, spec in config["models"].items():
        if spec["arch"] not in ARCHS:
            raise InputError(
                f"config key models.{name}.arch: unknown architecture {spec['arch']!r} "
                f"(registered: {', '.join(sorted(ARCHS))})"
            )
        for loss in (spec.get("loss") or {}):
            if loss not in LOSSES:
                raise InputError(
                    f"config key models.{name}.loss: unknown loss {loss!r} (registered: {', '.join(sorted(LOSSES))})"
                )
        if spec.get("loss"):
            try:
                build_loss(spec["loss"])
            except InputError as exc:
                raise InputError(f"config key models.{name}.loss: {exc}") from exc

    seg = config["segmentation"]
    fixed = seg.get("fixed_threshold")
    if fixed is not None and float(fixed) not in [float(t) for t in seg["thresholds"]]:
        raise InputError(
            f"config key segmentation.fixed_threshold: {fixed} is not one of segmentation.thresholds; add it there"
        )


def _source_exists(source: str, workdir: Path) -> bool:
    path_part = source.split(".h5:")[0] + ".h5" if ".h5:" in source else source
    candidate = Path(path_part)
    if not candidate.is_absolute():
        candidate = workdir / candidate
    if candidate.exists():
        return True
    return bool(glob.glob(str(candidate)))
