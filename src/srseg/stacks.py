"""Reading image stacks in every accepted input format, shared by ingest and simulate.

A stack is a 3D (or single 2D) TIFF / OME-TIFF / ImageJ TIFF, an HDF5 dataset
`file.h5:/path` (needs h5py), a folder of 2D TIFF/PNG sections, or a glob pattern of
them (sections in natural order: s2 before s10); grey uint8 / uint16 / float32
(float64 is stored as float32). `read_stack` returns the on-disk array and the voxel
size of its metadata; `check_image` validates it for the library ([0, 1] floats inside).
"""

from __future__ import annotations

import glob
import os
import re

import cv2
import numpy as np
import tifffile

from .io import InputError, _voxel_from_tiff, list_sections

SUPPORTED_DTYPES = ("uint8", "uint16", "float32")


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
        raise InputError(
            f"{path}: is stored as an RGB/colour image (axes {axes}) where a grey stack is expected; "
            f"save it as single-channel 8/16-bit or float32 (Fiji: Image > Type > 8-bit; "
            f"tifffile: photometric='minisblack')"
        )
    while vol.ndim > 3 and vol.shape[0] == 1:  # a singleton time/channel axis in front is harmless
        vol = vol[0]
        axes = axes[1:]
    if vol.ndim > 3:
        raise InputError(
            f"{path}: is a {vol.ndim}D stack {vol.shape} (axes {axes}) where a 3D (z, y, x) "
            f"stack is expected; export one channel/time point"
        )
    if "C" in axes or "S" in axes:
        raise InputError(
            f"{path}: has a channel axis (axes {axes}) where a grey stack is expected; export a single channel"
        )
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
        raise InputError(
            f"{path}: is an RGB/multi-channel image where a grey section is expected; save it as 8/16-bit greyscale"
        )
    return img[None]


def read_hdf5(path: str, dataset: str) -> tuple[np.ndarray, list | None]:
    """A (z, y, x) dataset of an HDF5 file (`file.h5:/path/in/file`); voxel size from its attributes.

    The voxel size is read from the dataset attribute `resolution` (nm, z/y/x: the
    CREMI convention) or `voxel_size_nm`. h5py is optional: only needed here.
    """
    try:
        import h5py
    except ImportError:
        raise InputError(
            f"{path}:{dataset}: reading HDF5 needs the h5py package; install it with "
            f"`pip install h5py` or convert the dataset to TIFF"
        ) from None
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
    files = list_sections(spec)
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
            raise InputError(
                f"{f}: section shape/dtype {sl.shape[1:]} {sl.dtype} differs from {files[0]} "
                f"({slices[0].shape[1:]} {slices[0].dtype}); all sections must match"
            )
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
