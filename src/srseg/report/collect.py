"""Read the per-stage outputs the report aggregates, through one declared schema.

Every file the report reads is declared here as a `Producer`: the rule that writes it,
the keys (JSON) or columns (CSV) it must hold, and the keys it may lack. A declared key
that is missing is an InputError naming the file, the key and the rule to rerun, never a
silent NaN; a key present with the value null (e.g. a throughput that could not be
measured) reads as NaN. Undeclared keys are ignored. The metrics CSVs' columns are the
registered metrics (srseg.metrics.registry) and carry their own (model, data, fold,
specimen); the other files' identity is read from the results/ layout in DESIGN.md
(e.g. results/train/{model}/{data}/{fold}/train.json).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..io import InputError, read_json
from ..metrics import DENOISED_SUFFIX, IMAGE, SEGMENTATION, VOLUME_SUFFIX, columns

KEYS = ("model", "data", "fold", "specimen")
SECTION_KEYS = KEYS + ("section",)
RUN_KEYS = ("model", "data", "fold")


@dataclass(frozen=True)
class Producer:
    what: str  # what the file is, for messages
    rule: str  # the rule that writes it
    required: tuple[str, ...]  # keys / columns it must hold
    optional: tuple[str, ...] = ()  # keys it may lack (NaN then)

    @property
    def keys(self) -> tuple[str, ...]:
        return self.required + self.optional

    def missing(self, path, key: str) -> InputError:
        return InputError(f"{path}: {self.what} lacks {key!r}; rerun the {self.rule} rule that writes it")


TRAIN_JSON = Producer(
    "training summary", "train", ("parameters", "steps", "train_seconds_total", "steps_per_s", "device")
)
INFER_JSON = Producer("inference summary", "infer", ("voxels_per_s", "compute_seconds", "device"))
# error_px: only for specimens with a known true transform (phantom, simulate)
ALIGN_QC = Producer("alignment QC", "align", ("n_matches", "n_inliers", "residual_px"), optional=("error_px",))
TRAIN_LOG = Producer("training log", "train", ("step", "loss", "val_l1", "val_psnr"))  # GAN/diffusion logs add columns
FRC_CSV = Producer("FRC-curve CSV", "image_metrics", ("section", "frequency_per_nm", "frc"))


def image_csv() -> Producer:
    """The image-metrics CSV: one column per registered image metric (read at call time: plug-ins register late).

    The `<metric>_denoised` set (scores against the denoised HR) is there only with
    metrics.references listing denoised.
    """
    return Producer(
        "image-metrics CSV",
        "image_metrics",
        SECTION_KEYS + tuple(columns(IMAGE)),
        optional=tuple(f"{n}{DENOISED_SUFFIX}" for n in columns(IMAGE)),
    )


def seg_csv() -> Producer:
    """The segmentation-metrics CSV: per-section scores and the whole-volume `<metric>_3d` set (NaN without 3D)."""
    return Producer(
        "segmentation-metrics CSV",
        "seg_metrics",
        SECTION_KEYS
        + ("threshold", "is_best", "is_hr_best", "is_fixed")
        + tuple(columns(SEGMENTATION))
        + tuple(f"{n}{VOLUME_SUFFIX}" for n in columns(SEGMENTATION)),
    )


# Key columns are strings ("none", fold and specimen names); pandas would turn
# "None"/"NA" into NaN by default, so only empty cells count as missing.
_NA = ["", "nan", "NaN"]


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
        values = list(path.parent.parts[-len(names) :])
    if len(values) != len(names):
        raise InputError(f"{path}: cannot read {', '.join(names)} from its path; keep the results/ layout of DESIGN.md")
    return dict(zip(names, values))


def as_bool(series: pd.Series) -> pd.Series:
    """True/False, 1/0, 'true'/'false' -> bool (CSV writers differ)."""
    if series.dtype == bool:
        return series
    return series.astype(str).str.strip().str.lower().isin({"true", "1", "1.0", "yes"})


def _exists(path: Path, producer: Producer) -> Path:
    if not path.exists():
        raise InputError(f"{path}: {producer.what} not found; rerun the {producer.rule} rule that writes it")
    return path


def read_table(path: str | Path, producer: Producer) -> pd.DataFrame:
    """One CSV with its declared columns checked; key columns typed."""
    path = _exists(Path(path), producer)
    frame = pd.read_csv(path, keep_default_na=False, na_values=_NA)
    for col in producer.required:
        if col not in frame.columns:
            raise producer.missing(path, col)
    for key in set(SECTION_KEYS) & set(frame.columns):
        frame[key] = frame[key].astype(int) if key == "section" else frame[key].astype(str)
    return frame


def read_tables(paths: Iterable[str | Path], producer: Producer) -> pd.DataFrame:
    frames = [read_table(p, producer) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(producer.required))


def read_record(path: str | Path, producer: Producer) -> dict:
    """The declared keys of one JSON object (null and absent optional keys -> NaN)."""
    path = _exists(Path(path), producer)
    try:
        obj = read_json(path)
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); delete it and rerun the {producer.rule} rule") from exc
    if not isinstance(obj, dict):
        raise InputError(f"{path}: {producer.what} must be a JSON object; delete it and rerun the {producer.rule} rule")
    for key in producer.required:
        if key not in obj:
            raise producer.missing(path, key)
    return {k: math.nan if obj.get(k) is None else obj[k] for k in producer.keys}


def load_image_metrics(paths) -> pd.DataFrame:
    return read_tables(paths, image_csv())


def load_seg_metrics(paths) -> pd.DataFrame:
    seg = read_tables(paths, seg_csv())
    seg["is_best"] = as_bool(seg["is_best"])
    seg["is_hr_best"] = as_bool(seg["is_hr_best"])
    seg["is_fixed"] = as_bool(seg["is_fixed"])
    seg["threshold"] = seg["threshold"].astype(float)
    return seg


def _tagged(paths, producer: Producer, names: Sequence[str], stem_suffix: str = "") -> pd.DataFrame:
    """CSVs without identity columns, tagged with `names` read from their paths."""
    frames = [read_table(p, producer).assign(**path_keys(p, names, stem_suffix)) for p in paths]
    if not frames:
        return pd.DataFrame(columns=[*names, *producer.required])
    return pd.concat(frames, ignore_index=True)


def load_frc_curves(paths) -> pd.DataFrame:
    """FRC curves, tagged with (model, data, fold, specimen) from their paths."""
    return _tagged(paths, FRC_CSV, KEYS, stem_suffix="_frc")


def load_train_logs(paths) -> pd.DataFrame:
    """Training logs (step, loss, val_l1, val_psnr) of every (model, data, fold)."""
    logs = _tagged(paths, TRAIN_LOG, RUN_KEYS)
    numeric = logs[list(TRAIN_LOG.required)].apply(pd.to_numeric, errors="coerce")
    return pd.concat([logs[list(RUN_KEYS)], numeric], axis=1)


def _records(paths, producer: Producer, names: Sequence[str]) -> pd.DataFrame:
    rows = [{**path_keys(p, names), **read_record(p, producer)} for p in paths]
    return pd.DataFrame(rows, columns=[*names, *producer.keys])


def load_train_info(paths) -> pd.DataFrame:
    """One row per train.json: model, data, fold and its declared keys."""
    return _records(paths, TRAIN_JSON, RUN_KEYS)


def load_infer_info(paths) -> pd.DataFrame:
    """One row per inference json: model, data, fold, specimen and its declared keys."""
    return _records(paths, INFER_JSON, KEYS)


def load_align_qc(pngs, jsons) -> list[dict]:
    """Per specimen (sorted): the QC image path and the declared numbers of qc.json (NaN without one)."""
    by_specimen = {Path(p).parent.name: {"specimen": Path(p).parent.name, "png": str(p)} for p in pngs}
    for path in jsons:
        entry = by_specimen.setdefault(Path(path).parent.name, {"specimen": Path(path).parent.name, "png": None})
        entry.update(read_record(path, ALIGN_QC))
    return [{**dict.fromkeys(ALIGN_QC.keys, math.nan), **by_specimen[s]} for s in sorted(by_specimen)]
