"""Ingest: read a specimen's raw LR and HR stacks (+ labels), validate, write normalised TIFFs.

Accepted inputs: a 3D (or single 2D) TIFF / OME-TIFF / ImageJ TIFF, an HDF5
dataset `file.h5:/path` (needs h5py), a folder of 2D TIFF/PNG sections, or
a glob pattern of them (sections in natural order: s2 before s10); grey
uint8 / uint16 / float32 (float64 is stored as float32).  Voxel sizes (nm,
z/y/x) come from config if given, else from the phantom's meta.json, else from
the TIFF metadata.  Everything is validated before anything is written, and
every file is written atomically with meta.json last, so a failed ingest leaves
no output that looks complete.

Outputs: results/ingest/{specimen}/lr.tif, hr.tif (the input's dtype, voxel
size in the TIFF metadata), meta.json, and optionally labels.tif.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import cv2
import numpy as np
import tifffile

from .io import InputError, _voxel_from_tiff, read_json, write_json, write_labels, write_tiff

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
SUPPORTED_DTYPES = ("uint8", "uint16", "float32")


def natural_key(path: str) -> list:
    """Sort key that orders embedded numbers numerically: s2 < s10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def _list_sections(spec: str) -> list[str]:
    """The files of a folder or glob, in natural order."""
    if os.path.isdir(spec):
        files = [str(p) for p in Path(spec).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        where = f"folder {spec}"
    else:
        files = [f for f in glob.glob(spec) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        where = f"pattern {spec}"
    if not files:
        raise InputError(f"{where}: no .tif/.tiff/.png files found; check the path in config.yaml")
    return sorted(files, key=natural_key)


def _read_tiff_file(path: str) -> tuple[np.ndarray, list | None]:
    """One TIFF file as (array, voxel_nm or None); RGB / multi-channel / >3D are refused."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            photometric = tif.pages[0].photometric
            vol = series.asarray()
            voxel = _voxel_from_tiff(tif)
    except Exception as exc:  # tifffile raises many exception types for damaged files
        raise InputError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc}); re-export it as TIFF") from exc
    if photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.PALETTE, tifffile.PHOTOMETRIC.YCBCR):
        raise InputError(f"{path}: is stored as an RGB/colour image (axes {axes}) where a grey stack is expected; "
                         f"save it as single-channel 8/16-bit or float32 (Fiji: Image > Type > 8-bit; "
                         f"tifffile: photometric='minisblack')")
    while vol.ndim > 3 and vol.shape[0] == 1:  # a singleton time/channel axis in front is harmless
        vol = vol[0]
        axes = axes[1:]
    if vol.ndim > 3:
        raise InputError(f"{path}: is a {vol.ndim}D stack {vol.shape} (axes {axes}) where a 3D (z, y, x) "
                         f"stack is expected; export one channel/time point")
    if "C" in axes or "S" in axes:
        raise InputError(f"{path}: has a channel axis (axes {axes}) where a grey stack is expected; "
                         f"export a single channel")
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3:
        raise InputError(f"{path}: has shape {vol.shape}, not an image; export a (z, y, x) stack")
    return vol, voxel


def _read_png_file(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: not a readable PNG; re-export it")
    if img.ndim == 3:
        raise InputError(f"{path}: is an RGB/multi-channel image where a grey section is expected; "
                         f"save it as 8/16-bit greyscale")
    return img[None]


def read_hdf5(path: str, dataset: str) -> tuple[np.ndarray, list | None]:
    """A (z, y, x) dataset of an HDF5 file (`file.h5:/path/in/file`); voxel size from its attributes.

    The voxel size is read from the dataset attribute `resolution` (nm, z/y/x: the
    CREMI convention) or `voxel_size_nm`. h5py is optional: only needed here.
    """
    try:
        import h5py
    except ImportError:
        raise InputError(f"{path}:{dataset}: reading HDF5 needs the h5py package; install it with "
                         f"`pip install h5py` or convert the dataset to TIFF") from None
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found; check the path in config.yaml")
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
                raise InputError(f"{path}: has no dataset {dataset!r}; give `file.h5:/path/to/dataset`")
            ds = f[dataset]
            vol = ds[()]
            res = ds.attrs.get("resolution", ds.attrs.get("voxel_size_nm"))
    except InputError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError for damaged files
        raise InputError(f"{path}: not a readable HDF5 file ({type(exc).__name__}: {exc}); re-export it") from exc
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3:
        raise InputError(f"{path}:{dataset}: has shape {vol.shape} where a (z, y, x) stack is expected")
    voxel = [float(v) for v in res] if res is not None and len(res) == 3 else None
    return vol, voxel


def read_stack(spec: str) -> tuple[np.ndarray, list | None]:
    """Read a (z, y, x) stack from a 3D TIFF, a folder of 2D TIFF/PNG, or a glob of them.

    Returns the array in its on-disk dtype and voxel_nm [z, y, x] from the TIFF
    metadata (entries None where unknown; None when the file has none).  For a
    section sequence, the voxel size comes from the first section's metadata.
    """
    spec = str(spec)
    h5 = re.match(r"^(.*\.(?:h5|hdf5|hdf)):(/?.+)$", spec, flags=re.IGNORECASE)
    if h5 and not os.path.isfile(spec):
        return read_hdf5(h5.group(1), h5.group(2))
    if os.path.isfile(spec):
        return _read_tiff_file(spec) if not spec.lower().endswith(".png") else (_read_png_file(spec), None)
    if not os.path.isdir(spec) and not glob.has_magic(spec):
        raise InputError(f"{spec}: file not found; check the path in config.yaml")
    files = _list_sections(spec)
    slices, voxel = [], None
    for i, f in enumerate(files):
        if f.lower().endswith(".png"):
            sl = _read_png_file(f)
        else:
            sl, vox = _read_tiff_file(f)
            if i == 0:
                voxel = vox
        if sl.shape[0] != 1:
            raise InputError(f"{f}: holds {sl.shape[0]} sections; a folder/glob must hold one 2D section per file")
        if slices and (sl.shape != slices[0].shape or sl.dtype != slices[0].dtype):
            raise InputError(f"{f}: section shape/dtype {sl.shape[1:]} {sl.dtype} differs from {files[0]} "
                             f"({slices[0].shape[1:]} {slices[0].dtype}); all sections must match")
        slices.append(sl)
    if voxel is not None:
        voxel = [None] + list(voxel[1:])  # a single section's z spacing is meaningless
    return np.concatenate(slices, axis=0), voxel


def check_image(vol: np.ndarray, source: str) -> tuple[np.ndarray, dict]:
    """Validate a grey image stack; returns it in a supported dtype plus notes for meta.json.

    Float images must be finite; float images outside [0, 1] are rescaled to
    [0, 1] by their min/max (noted in meta.json) since the library works in [0, 1].
    """
    notes: dict = {}
    if vol.dtype == np.float64 or vol.dtype == np.float16:
        vol = vol.astype(np.float32)
        notes["cast_to"] = "float32"
    if str(vol.dtype) not in SUPPORTED_DTYPES:
        raise InputError(f"{source}: pixel type {vol.dtype} is not supported; convert it to uint8, uint16 or float32")
    if vol.size == 0 or min(vol.shape) == 0:
        raise InputError(f"{source}: is empty (shape {vol.shape}); check the export")
    if vol.dtype == np.float32:
        if not np.all(np.isfinite(vol)):
            n = int(np.size(vol) - np.count_nonzero(np.isfinite(vol)))
            raise InputError(f"{source}: contains {n} NaN/Inf values; fill or crop them before ingest")
        lo, hi = float(vol.min()), float(vol.max())
        if lo < 0 or hi > 1:
            if hi <= lo:
                raise InputError(f"{source}: is constant ({lo}); check the export")
            vol = ((vol - lo) / (hi - lo)).astype(np.float32)
            notes["rescaled_from"] = [lo, hi]
    if vol.min() == vol.max():
        raise InputError(f"{source}: is constant ({vol.flat[0]}); check the export")
    return vol, notes


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


def load_specimen_config(config: dict, name: str) -> dict:
    """Normalise one `specimens:` entry: {phantom, lr, hr, labels, lr_voxel_nm, hr_voxel_nm, hr_offset_nm}.

    A specimen is either generated (has `phantom:`) or read from the user's stacks
    (has `lr` and `hr`).  Missing optional keys become None.
    """
    specimens = config.get("specimens") or {}
    if name not in specimens:
        raise InputError(f"specimen {name!r} is not defined under specimens: in config.yaml")
    entry = specimens[name] or {}
    is_phantom = "phantom" in entry and entry["phantom"] is not None
    if not is_phantom:
        for key in ("lr", "hr"):
            if not entry.get(key):
                raise InputError(f"config key specimens.{name}.{key} is missing; give the path of the "
                                 f"{key.upper()} stack (or a phantom: entry)")
    return {
        "phantom": is_phantom,
        "lr": entry.get("lr"),
        "hr": entry.get("hr"),
        "labels": entry.get("labels"),
        "lr_voxel_nm": entry.get("lr_voxel_nm"),
        "hr_voxel_nm": entry.get("hr_voxel_nm"),
        "hr_offset_nm": entry.get("hr_offset_nm"),
    }


def _check_overlap(name, lr_shape, hr_shape, lr_vox, hr_vox, offset) -> None:
    """The HR field, placed at the stage offset, must overlap the LR field (z, y, x)."""
    for ax, axis in enumerate("zyx"):
        lr_lo, lr_hi = -lr_vox[ax] / 2, (lr_shape[ax] - 0.5) * lr_vox[ax]
        hr_lo = offset[ax] - hr_vox[ax] / 2
        hr_hi = offset[ax] + (hr_shape[ax] - 0.5) * hr_vox[ax]
        if hr_hi <= lr_lo or hr_lo >= lr_hi:
            raise InputError(f"config key specimens.{name}.hr_offset_nm puts the HR field outside the LR field "
                             f"along {axis} (HR {hr_lo:.0f}..{hr_hi:.0f} nm, LR {lr_lo:.0f}..{lr_hi:.0f} nm); "
                             f"fix the offset (nm of HR pixel 0 relative to LR pixel 0)")


def run_ingest(lr: str, hr: str, out_lr: str, out_hr: str, out_meta: str, specimen: str,
               spec: dict | None = None, phantom_meta: str | None = None) -> dict:
    """Validate a specimen's LR and HR stacks and write lr.tif, hr.tif and meta.json.

    lr, hr: a TIFF, folder or glob; spec: the specimen's config entry (may hold
    lr_voxel_nm, hr_voxel_nm, hr_offset_nm, all [z, y, x] nm); phantom_meta: the
    phantom's meta.json, used where the config gives no value.  Returns meta.
    """
    spec = spec or {}
    pmeta = read_json(phantom_meta) if phantom_meta else {}
    lr_raw, lr_tiff_vox = read_stack(lr)
    hr_raw, hr_tiff_vox = read_stack(hr)
    lr_vol, lr_notes = check_image(lr_raw, f"LR stack {lr}")
    hr_vol, hr_notes = check_image(hr_raw, f"HR stack {hr}")
    lr_vox = _voxel(specimen, "lr", spec.get("lr_voxel_nm"), pmeta.get("lr_voxel_nm"), lr_tiff_vox, str(lr))
    hr_vox = _voxel(specimen, "hr", spec.get("hr_voxel_nm"), pmeta.get("hr_voxel_nm"), hr_tiff_vox, str(hr))
    ratio = [lr_vox[i] / hr_vox[i] for i in range(3)]
    if ratio[1] <= 1 or ratio[2] <= 1:
        r = min(ratio[1], ratio[2])
        what = f"scale ratio {r:.3g} < 1" if r < 1 else "scale ratio = 1 (nothing to super-resolve)"
        raise InputError(f"specimen {specimen}: LR/HR {what} in y/x (LR voxel {lr_vox} nm, HR voxel {hr_vox} nm) "
                         f"but HR pixels must be smaller than LR pixels; check specimens.{specimen}.lr_voxel_nm "
                         f"and hr_voxel_nm")
    offset = spec.get("hr_offset_nm")
    if offset is None:
        offset = pmeta.get("hr_offset_nm")
    if offset is None:
        raise InputError(f"config key specimens.{specimen}.hr_offset_nm is missing; give the stage position "
                         f"[z, y, x] (nm) of HR pixel 0 relative to LR pixel 0")
    offset = _check_triplet(offset, f"specimens.{specimen}.hr_offset_nm", positive=False)
    _check_overlap(specimen, lr_vol.shape, hr_vol.shape, lr_vox, hr_vox, offset)

    meta = {
        "specimen": specimen,
        "lr_voxel_nm": lr_vox,
        "hr_voxel_nm": hr_vox,
        "hr_offset_nm": offset,
        "scale_ratio": ratio,
        "lr_shape": list(lr_vol.shape),
        "hr_shape": list(hr_vol.shape),
        "dtype": str(hr_vol.dtype),  # the HR dtype: what SR outputs should be written as
        "lr_dtype": str(lr_vol.dtype),
        "hr_dtype": str(hr_vol.dtype),
        "sources": {"lr": str(lr), "hr": str(hr), **({"phantom_meta": str(phantom_meta)} if phantom_meta else {})},
        "phantom": bool(pmeta.get("phantom", False)),
        "simulated": bool(pmeta.get("simulated", False)),
    }
    if lr_notes:
        meta["lr_notes"] = lr_notes
    if hr_notes:
        meta["hr_notes"] = hr_notes
    write_tiff(out_lr, lr_vol, lr_vox)
    write_tiff(out_hr, hr_vol, hr_vox)
    write_json(out_meta, meta)  # last: its presence means the ingest completed
    return meta


def run_ingest_labels(labels: str, hr_meta: str, out_labels: str, specimen: str,
                      labels_kind: str = "instances", connectivity: str = "2d") -> np.ndarray:
    """Validate instance labels against the ingested HR (same shape) and write labels.tif.

    labels: a TIFF, folder or glob (or file.h5:/dataset) of integer IDs (0 =
    background/membrane), or with labels_kind "cell_mask" a mask (nonzero = inside
    a cell) turned into instances: connected components per section ("2d") or
    through z ("3d"); hr_meta: results/ingest/{specimen}/meta.json.  Voxel size is the HR's.
    """
    meta = read_json(hr_meta)
    vol, _ = read_stack(labels)
    src = f"labels {labels}"
    if labels_kind not in ("instances", "cell_mask"):
        raise InputError(f"config key specimens.{specimen}.labels_kind = {labels_kind!r}; use instances or cell_mask")
    if labels_kind == "cell_mask":
        from .simulate import cell_mask_to_instances

        vol = cell_mask_to_instances(vol, connectivity)
    if np.issubdtype(vol.dtype, np.floating):
        if not np.all(np.isfinite(vol)) or not np.all(np.mod(vol, 1) == 0):
            raise InputError(f"{src}: must hold integer instance IDs, found fractional/NaN values; "
                             f"export the label image as integers")
    elif not np.issubdtype(vol.dtype, np.integer):
        raise InputError(f"{src}: pixel type {vol.dtype} cannot hold instance IDs; export integer labels")
    if vol.min() < 0:
        raise InputError(f"{src}: has negative IDs; labels must be >= 0 (0 = background)")
    if list(vol.shape) != list(meta["hr_shape"]):
        raise InputError(f"{src}: shape {list(vol.shape)} differs from the HR stack {meta['hr_shape']}; "
                         f"labels must cover the HR stack voxel for voxel (specimens.{specimen}.labels)")
    if vol.max() == 0:
        raise InputError(f"{src}: contains no labelled voxels; give instance labels or set "
                         f"specimens.{specimen}.labels: null")
    vol = vol.astype(np.uint64)
    write_labels(out_labels, vol, meta["hr_voxel_nm"])
    return vol
