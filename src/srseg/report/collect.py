"""Read the per-stage outputs the report aggregates, tolerant of small key renames.

Every file name or key the report relies on is listed here, in ONE place:
the metrics CSVs carry their own (model, data, fold, specimen) columns; the JSON
files (train.json, infer/*.json, align qc.json) and the FRC curves do not, so
their identity is read from the results/ layout in DESIGN.md
(e.g. results/train/{model}/{data}/{fold}/train.json).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..io import InputError, read_json

KEYS = ["model", "data", "fold", "specimen"]
SECTION_KEYS = KEYS + ["section"]

IMAGE_COLUMNS = SECTION_KEYS + ["psnr", "ssim", "frc_mean"]
SEG_COLUMNS = SECTION_KEYS + ["threshold", "voi_split", "voi_merge", "voi_sum", "arand", "f1", "is_best", "is_fixed"]
FRC_COLUMNS = ["section", "frequency_per_nm", "frc"]

# Accepted spellings of JSON keys / log columns (first present wins). The first
# name of each tuple is the one the producing stage is expected to write.
TRAIN_KEYS = {
    "n_params": ("parameters", "n_params", "num_params", "n_parameters", "params"),
    # total training time over all resumed runs; this run's wall time only as a fallback
    "wall_seconds": ("train_seconds_total", "wall_seconds", "train_seconds", "wall_seconds_this_run", "seconds"),
    "steps_per_second": ("steps_per_s", "steps_per_second", "it_per_second"),
    "device": ("device",),
}
INFER_KEYS = {
    "voxels_per_second": ("voxels_per_s", "voxels_per_second", "throughput_voxels_per_second", "vox_per_s"),
    "device": ("device",),
}
QC_KEYS = {
    "n_matches": ("n_matches", "matches"),
    "n_inliers": ("n_inliers", "inliers"),
    "residual_px": ("residual_px", "residual", "rms_residual_px"),
    "error_px": ("error_px", "error"),
}
LOG_COLUMNS = {
    "step": ("step", "iteration", "iter"),
    "loss": ("loss", "train_loss"),
    "val_loss": ("val_loss", "validation_loss", "valid_loss", "val_l1"),  # train.py logs validation L1
    "val_psnr": ("val_psnr",),
}

# Key columns are strings ("none", fold and specimen names); pandas would turn
# "None"/"NA" into NaN by default, so only empty cells count as missing.
_NA = ["", "nan", "NaN"]


def get(d: dict, names: Sequence[str], default=math.nan):
    """First present, non-null value of `names` in a dict (tolerant key access)."""
    for name in names:
        if name in d and d[name] is not None:
            return d[name]
    return default


def path_keys(path: str | Path, names: Sequence[str], stem_suffix: str = "") -> dict:
    """Identity of a file from its place in results/: the last directories (+ stem).

    `names` are matched right to left: the last name is the file stem (minus
    `stem_suffix`) when it is "specimen", else the directories above the file.
    """
    path = Path(path)
    if names and names[-1] == "specimen":
        stem = path.stem[: -len(stem_suffix)] if stem_suffix and path.stem.endswith(stem_suffix) else path.stem
        n_dirs = len(names) - 1
        values = (list(path.parent.parts[-n_dirs:]) if n_dirs else []) + [stem]
    else:
        values = list(path.parent.parts[-len(names):])
    if len(values) != len(names):
        raise InputError(f"{path}: cannot read {', '.join(names)} from its path; keep the results/ layout of DESIGN.md")
    return dict(zip(names, values))


def as_bool(series: pd.Series) -> pd.Series:
    """True/False, 1/0, 'true'/'false' -> bool (CSV writers differ)."""
    if series.dtype == bool:
        return series
    return series.astype(str).str.strip().str.lower().isin({"true", "1", "1.0", "yes"})


def read_csvs(paths: Iterable[str | Path], required: Sequence[str], what: str) -> pd.DataFrame:
    """Concatenate CSVs after checking their columns (InputError names the file)."""
    frames = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: {what} file not found; rerun the stage that writes it")
        frame = pd.read_csv(path, keep_default_na=False, na_values=_NA)
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise InputError(f"{path}: {what} CSV lacks column(s) {', '.join(missing)}; rerun the stage that writes it")
        for key in set(SECTION_KEYS) & set(frame.columns):
            frame[key] = frame[key].astype(str) if key != "section" else frame[key].astype(int)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(required))
    return pd.concat(frames, ignore_index=True)


def load_image_metrics(paths) -> pd.DataFrame:
    return read_csvs(paths, IMAGE_COLUMNS, "image-metrics")


def load_seg_metrics(paths) -> pd.DataFrame:
    seg = read_csvs(paths, SEG_COLUMNS, "segmentation-metrics")
    seg["is_best"] = as_bool(seg["is_best"])
    seg["is_fixed"] = as_bool(seg["is_fixed"])
    seg["threshold"] = seg["threshold"].astype(float)
    return seg


def load_frc_curves(paths) -> pd.DataFrame:
    """FRC curves, tagged with (model, data, fold, specimen) from their paths."""
    frames = []
    for path in paths:
        frame = read_csvs([path], FRC_COLUMNS, "FRC-curve")
        for key, value in path_keys(path, KEYS, stem_suffix="_frc").items():
            frame[key] = value
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=KEYS + FRC_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _read_json(path, what: str) -> dict:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} file not found; rerun the stage that writes it")
    try:
        obj = read_json(path)
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); delete it and rerun the stage that writes it") from exc
    if not isinstance(obj, dict):
        raise InputError(f"{path}: {what} must be a JSON object; delete it and rerun the stage that writes it")
    return obj


def load_train_info(paths) -> pd.DataFrame:
    """One row per train.json: model, data, fold, n_params, wall_seconds, ..."""
    rows = []
    for path in paths:
        d = _read_json(path, "training summary")
        row = path_keys(path, ["model", "data", "fold"])
        row.update({k: get(d, names) for k, names in TRAIN_KEYS.items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "data", "fold", *TRAIN_KEYS])


def load_infer_info(paths) -> pd.DataFrame:
    """One row per inference json: model, data, fold, specimen, voxels_per_second."""
    rows = []
    for path in paths:
        d = _read_json(path, "inference summary")
        row = path_keys(path, KEYS)
        row.update({k: get(d, names) for k, names in INFER_KEYS.items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=KEYS + list(INFER_KEYS))


def load_train_logs(paths) -> pd.DataFrame:
    """Training logs (step, loss, val_loss) of every (model, data, fold)."""
    frames = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: training log not found; rerun the train rule")
        raw = pd.read_csv(path, keep_default_na=False, na_values=_NA)
        frame = pd.DataFrame({k: raw[next(n for n in names if n in raw.columns)]
                              if any(n in raw.columns for n in names) else np.nan
                              for k, names in LOG_COLUMNS.items()}, index=raw.index)
        if frame["step"].isna().all() or frame["loss"].isna().all():
            raise InputError(f"{path}: training log lacks a step or loss column; rerun the train rule")
        frame = frame.apply(pd.to_numeric, errors="coerce")
        # which column the validation loss came from, for the axis label
        frame["val_loss_source"] = next((n for n in LOG_COLUMNS["val_loss"] if n in raw.columns), "")
        for key, value in path_keys(path, ["model", "data", "fold"]).items():
            frame[key] = value
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["model", "data", "fold", *LOG_COLUMNS, "val_loss_source"])
    return pd.concat(frames, ignore_index=True)


def load_align_qc(pngs, jsons) -> list[dict]:
    """Per specimen: the QC image path and the numbers of qc.json (may be absent)."""
    by_specimen = {Path(p).parent.name: {"specimen": Path(p).parent.name, "png": str(p)} for p in pngs}
    for path in jsons:
        d = _read_json(path, "alignment QC")
        entry = by_specimen.setdefault(Path(path).parent.name, {"specimen": Path(path).parent.name, "png": None})
        entry.update({k: get(d, names) for k, names in QC_KEYS.items()})
    return [by_specimen[s] for s in sorted(by_specimen)]
