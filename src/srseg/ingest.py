"""Ingest: read a specimen's raw LR and HR stacks (+ labels), validate, write normalised TIFFs.

Accepted inputs: a 3D (or single 2D) TIFF / OME-TIFF / ImageJ TIFF, an HDF5
dataset `file.h5:/path` (needs h5py), a folder of 2D TIFF/PNG sections, or
a glob pattern of them (sections in natural order: s2 before s10); grey
uint8 / uint16 / float32 (float64 is stored as float32).  Voxel sizes (nm,
z/y/x) come from config if given, else from the phantom's meta.json, else from
the TIFF metadata.  Everything is validated before anything is written, and
every file is written atomically with meta.json last, so a failed ingest leaves
no output that looks complete.

Bounded memory: the stacks are read lazily (`stacks.open_stack`: a TIFF page by page, a
folder/glob one file at a time, HDF5 and zarr / OME-Zarr by slices), validated in one
streaming pass per stack (the same checks and errors as `stacks.check_image`, plus the max
that detects the bit depth), then normalised and written section by section
(`volumes.TiffSink`: BigTIFF above 4 GB, the bytes `write_tiff` writes for the whole
array). Memory holds a few sections, whatever the LR overview's size.

Bit depth: an integer stack is rescaled from its real bit depth onto its dtype's
full range (12-bit data in uint16: v -> rint(v * 65535 / 4095)), so that [0, 1]
inside the library -- and with it every noise level "on the 8-bit scale", EMSR's
sigma / 255 and PSNR's peak 1 -- is relative to the data's real range. The depth
is `specimens.<name>.bit_depth` when given (a value above it is an InputError),
else detected per stack (srseg.io.detect_bit_depth: uint16 whose max <= 4095 is
12 bit, <= 16383 14 bit, ...). The map is injective, so lossless; meta.json
records each stack's depth and factor (raw = rint(stored / value_scale)).
Generated specimens (phantom, simulate) are 8-bit uint8: nothing changes.

Outputs: results/ingest/{specimen}/lr.tif, hr.tif (the input's dtype, voxel
size in the TIFF metadata), meta.json, and optionally labels.tif.
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import geometry
from .config.schema import defaults
from .io import (
    InputError,
    full_range_scale,
    read_json,
    resolve_bit_depth_of_max,
    write_json,
    write_labels,
)
from .labels import area_px, cell_mask_to_instances
from .stacks import (  # noqa: F401  (SUPPORTED_DTYPES, check_image, read_stack: re-exported, ingest's formats)
    SUPPORTED_DTYPES,
    StackCheck,
    check_image,
    check_stack,
    checked_sections,
    open_stack,
    read_stack,
)
from .volumes import TiffSink


def _voxel(name: str, which: str, from_config, from_meta, from_tiff, source: str) -> list[float]:
    """Resolve a voxel size: config wins, else the phantom meta.json, else TIFF metadata."""
    key = f"specimens.{name}.{which}_voxel_nm"
    for cand in (from_config, from_meta):
        if cand is not None:
            return _check_triplet(cand, key, positive=True)
    if from_tiff is None or any(v is None for v in from_tiff):
        have = "no voxel size" if from_tiff is None else f"only {from_tiff} (None = missing)"
        raise InputError(f"{source}: {have} in its metadata; set {key}: [z, y, x] (nm) in config.yaml")
    return _check_triplet(from_tiff, key, positive=True)


def _check_triplet(value, key: str, positive: bool) -> list[float]:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        out = []
    if len(out) != 3 or not all(np.isfinite(out)) or (positive and min(out) <= 0):
        what = "three positive numbers" if positive else "three numbers"
        raise InputError(f"config key {key} = {value!r} must be {what} [z, y, x] in nm")
    return out


def bit_depth(check: StackCheck, declared: int | None, key: str, source: str) -> tuple[int | None, dict]:
    """A checked stack's real bit depth (None: float) and what meta.json records about it."""
    bits = resolve_bit_depth_of_max(check.dtype, check.top if check.dtype.kind == "u" else 0, declared, key, source)
    if bits is None:  # float32: [0, 1] already
        return None, {"bit_depth": None, "value_scale": None, "bit_depth_from": "float"}
    return bits, {
        "bit_depth": bits,
        "value_scale": full_range_scale(str(check.dtype), bits),
        "bit_depth_from": "config" if declared is not None else "detected",
    }


def run_ingest(
    lr: str,
    hr: str,
    out_lr: str,
    out_hr: str,
    out_meta: str,
    specimen: str,
    spec: dict | None = None,
    phantom_meta: str | None = None,
    log: str | None = None,
) -> dict:
    """Validate a specimen's LR and HR stacks and write lr.tif, hr.tif and meta.json.

    lr, hr: a TIFF, folder or glob; spec: the specimen's config entry (may hold
    lr_voxel_nm, hr_voxel_nm, hr_offset_nm, all [z, y, x] nm, and bit_depth);
    phantom_meta: the phantom's meta.json, used where the config gives no value
    (a generated specimen's stacks are 8-bit: its bit_depth, if any, described the
    simulate source and is not applied here).  Returns meta.
    """
    spec = spec or {}
    pmeta = read_json(phantom_meta) if phantom_meta else {}
    with contextlib.ExitStack() as opened:
        lr_src, lr_tiff_vox = open_stack(lr)
        opened.enter_context(lr_src)
        hr_src, hr_tiff_vox = open_stack(hr)
        opened.enter_context(hr_src)
        # everything is checked before anything is written: one streaming pass over each stack
        lr_chk = check_stack(lr_src, f"LR stack {lr}")
        hr_chk = check_stack(hr_src, f"HR stack {hr}")
        lr_vox = _voxel(specimen, "lr", spec.get("lr_voxel_nm"), pmeta.get("lr_voxel_nm"), lr_tiff_vox, str(lr))
        hr_vox = _voxel(specimen, "hr", spec.get("hr_voxel_nm"), pmeta.get("hr_voxel_nm"), hr_tiff_vox, str(hr))
        ratio = [lr_vox[i] / hr_vox[i] for i in range(3)]
        if ratio[1] <= 1 or ratio[2] <= 1:
            r = min(ratio[1], ratio[2])
            what = f"scale ratio {r:.3g} < 1" if r < 1 else "scale ratio = 1 (nothing to super-resolve)"
            raise InputError(
                f"specimen {specimen}: LR/HR {what} in y/x (LR voxel {lr_vox} nm, HR voxel {hr_vox} nm) "
                f"but HR pixels must be smaller than LR pixels; check specimens.{specimen}.lr_voxel_nm "
                f"and hr_voxel_nm"
            )
        offset = spec.get("hr_offset_nm")
        if offset is None:
            offset = pmeta.get("hr_offset_nm")
        if offset is None:
            raise InputError(
                f"config key specimens.{specimen}.hr_offset_nm is missing; give the stage position "
                f"[z, y, x] (nm) of HR pixel 0 relative to LR pixel 0"
            )
        offset = _check_triplet(offset, f"specimens.{specimen}.hr_offset_nm", positive=False)
        geometry.require_hr_inside(specimen, lr_src.shape, hr_src.shape, lr_vox, hr_vox, offset)
        declared = None if phantom_meta else spec.get("bit_depth")
        key = f"specimens.{specimen}.bit_depth"
        lr_bits, lr_depth = bit_depth(lr_chk, declared, key, f"LR stack {lr}")
        hr_bits, hr_depth = bit_depth(hr_chk, declared, key, f"HR stack {hr}")

        meta = {
            "specimen": specimen,
            "lr_voxel_nm": lr_vox,
            "hr_voxel_nm": hr_vox,
            "hr_offset_nm": offset,
            "scale_ratio": ratio,
            "lr_shape": list(lr_src.shape),
            "hr_shape": list(hr_src.shape),
            "dtype": str(hr_chk.dtype),  # the HR dtype: what SR outputs should be written as
            "lr_dtype": str(lr_chk.dtype),
            "hr_dtype": str(hr_chk.dtype),
            # real bit depth of each stack (null: float) and stored = rint(raw * value_scale)
            **{f"{w}_{k}": v for w, depth in (("lr", lr_depth), ("hr", hr_depth)) for k, v in depth.items()},
            "sources": {"lr": str(lr), "hr": str(hr), **({"phantom_meta": str(phantom_meta)} if phantom_meta else {})},
            "phantom": bool(pmeta.get("phantom", False)),
            "simulated": bool(pmeta.get("simulated", False)),
        }
        if lr_chk.notes:
            meta["lr_notes"] = lr_chk.notes
        if hr_chk.notes:
            meta["hr_notes"] = hr_chk.notes
        # the second pass: normalised sections streamed into lr.tif / hr.tif (the bytes write_tiff writes)
        _write_tiff(out_lr, checked_sections(lr_src, lr_chk, lr_bits), lr_src.shape, lr_chk.dtype, lr_vox)
        _write_tiff(out_hr, checked_sections(hr_src, hr_chk, hr_bits), hr_src.shape, hr_chk.dtype, hr_vox)
    write_json(out_meta, meta)  # last: its presence means the ingest completed
    return meta


def _write_tiff(path, sections, shape, dtype, voxel_nm) -> None:
    """Sections streamed into a TIFF (volumes.TiffSink: compressed beside the reading, atomic, BigTIFF above
    4 GB, the bytes io.write_tiff writes for the whole array), whatever the path's folders are called."""
    with TiffSink(path, shape, dtype, voxel_nm) as sink:
        for k, plane in enumerate(sections):
            sink.write_section(k, plane)


def run_ingest_labels(
    labels: str,
    hr_meta: str,
    out_labels: str,
    specimen: str,
    labels_kind: str | None = None,
    connectivity: str | None = None,
    min_area_nm2: float | None = None,
    log: str | None = None,
) -> np.ndarray:
    """Validate instance labels against the ingested HR (same shape) and write labels.tif.

    labels: a TIFF, folder or glob (or file.h5:/dataset) of integer IDs (0 =
    background/membrane), or with labels_kind "cell_mask" a mask (nonzero = inside
    a cell) turned into instances: connected components per section ("2d") or
    through z ("3d"), without components whose largest cross-section is under
    `min_area_nm2` (gaps inside drawn membranes, not cells); hr_meta:
    results/ingest/{specimen}/meta.json.  Voxel size is the HR's. labels_kind,
    connectivity and min_area_nm2 left None take the schema's defaults of a specimen entry
    (specimens.*.labels_kind, .labels_connectivity, .labels_min_area_nm2), as the workflow does.
    """
    default = defaults("specimens", "*")
    labels_kind = default["labels_kind"] if labels_kind is None else labels_kind
    connectivity = default["labels_connectivity"] if connectivity is None else connectivity
    min_area_nm2 = default["labels_min_area_nm2"] if min_area_nm2 is None else min_area_nm2
    meta = read_json(hr_meta)
    vol, _ = read_stack(labels)
    src = f"labels {labels}"
    if labels_kind not in ("instances", "cell_mask"):
        raise InputError(f"config key specimens.{specimen}.labels_kind = {labels_kind!r}; use instances or cell_mask")
    if labels_kind == "cell_mask":
        vol = cell_mask_to_instances(vol, connectivity, area_px(min_area_nm2, meta["hr_voxel_nm"]))
    if np.issubdtype(vol.dtype, np.floating):
        if not np.all(np.isfinite(vol)) or not np.all(np.mod(vol, 1) == 0):
            raise InputError(
                f"{src}: must hold integer instance IDs, found fractional/NaN values; "
                f"export the label image as integers"
            )
    elif not np.issubdtype(vol.dtype, np.integer):
        raise InputError(f"{src}: pixel type {vol.dtype} cannot hold instance IDs; export integer labels")
    if vol.min() < 0:
        raise InputError(f"{src}: has negative IDs; labels must be >= 0 (0 = background)")
    if list(vol.shape) != list(meta["hr_shape"]):
        raise InputError(
            f"{src}: shape {list(vol.shape)} differs from the HR stack {meta['hr_shape']}; "
            f"labels must cover the HR stack voxel for voxel (specimens.{specimen}.labels)"
        )
    if vol.max() == 0:
        raise InputError(
            f"{src}: contains no labelled voxels; give instance labels or set specimens.{specimen}.labels: null"
        )
    vol = vol.astype(np.uint64)
    write_labels(out_labels, vol, meta["hr_voxel_nm"])
    return vol
