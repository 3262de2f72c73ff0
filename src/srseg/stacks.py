"""Reading image stacks in every accepted input format, shared by ingest and simulate.

A stack is a 3D (or single 2D) TIFF / OME-TIFF / ImageJ TIFF, an HDF5 dataset
`file.h5:/path` (needs h5py), a folder of 2D TIFF/PNG sections, a glob pattern of
them (sections in natural order: s2 before s10), or an OME-Zarr / zarr array
(`path.zarr`, `path.zarr/dataset`); grey uint8 / uint16 / float32 (float64 is stored
as float32). `read_stack` returns the on-disk array and the voxel size of its
metadata; `check_image` validates it for the library ([0, 1] floats inside).

For stacks larger than memory (a lab's whole LR overview) `open_stack` gives the same
stack as a lazy `srseg.volumes.Volume` (a TIFF page by page, a folder one file at a
time, HDF5 and zarr by slices), `check_stack` validates it section by section with
the same one-sentence errors as `check_image`, and `checked_sections` yields the
normalised sections `check_image` would have returned (+ the bit-depth rescale), one
at a time: memory holds one section whatever the stack's size. `FloatSections` (open
with `float_sections`) is the reading side of the stages after ingest (align, pairs): an
ingested lr.tif seen as float32 in [0, 1] one section (or a region of one) at a time.
"""

from __future__ import annotations

import glob
import operator
import os
import re
from collections.abc import Iterator
from typing import NamedTuple

import cv2
import numpy as np
import tifffile

from .io import InputError, _voxel_from_tiff, list_sections, to_float, to_full_range
from .volumes import ArrayVolume, TiffVolume, Volume, is_n5, is_zarr, open_volume

SUPPORTED_DTYPES = ("uint8", "uint16", "float32")


def _tiff_shape(path: str, tif: tifffile.TiffFile) -> tuple[int, int, int]:
    """The (z, y, x) shape of a TIFF's first series from its headers; RGB / multi-channel / >3D are refused."""
    series = tif.series[0]
    axes = series.axes
    shape = tuple(int(n) for n in series.shape)
    photometric = tif.pages[0].photometric
    if photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.PALETTE, tifffile.PHOTOMETRIC.YCBCR):
        raise InputError(
            f"{path}: is stored as an RGB/colour image (axes {axes}) where a grey stack is expected; "
            f"save it as single-channel 8/16-bit or float32 (Fiji: Image > Type > 8-bit; "
            f"tifffile: photometric='minisblack')"
        )
    while len(shape) > 3 and shape[0] == 1:  # a singleton time/channel axis in front is harmless
        shape = shape[1:]
        axes = axes[1:]
    if len(shape) > 3:
        raise InputError(
            f"{path}: is a {len(shape)}D stack {shape} (axes {axes}) where a 3D (z, y, x) "
            f"stack is expected; export one channel/time point"
        )
    if "C" in axes or "S" in axes:
        raise InputError(
            f"{path}: has a channel axis (axes {axes}) where a grey stack is expected; export a single channel"
        )
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise InputError(f"{path}: has shape {shape}, not an image; export a (z, y, x) stack")
    return shape


def _unreadable_tiff(path, exc: Exception) -> InputError:
    return InputError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc}); re-export it as TIFF")


def _read_tiff_file(path: str) -> tuple[np.ndarray, list | None]:
    """One TIFF file as (array, voxel_nm or None); RGB / multi-channel / >3D are refused."""
    try:
        with tifffile.TiffFile(path) as tif:
            shape = _tiff_shape(path, tif)
            vol = tif.series[0].asarray().reshape(shape)
            voxel = _voxel_from_tiff(tif)
    except (InputError, MemoryError):  # a file too large for memory is not a damaged one
        raise
    except Exception as exc:  # tifffile raises many exception types for damaged files
        raise _unreadable_tiff(path, exc) from exc
    return vol, voxel


class _TiffStack(TiffVolume):
    """A TIFF stack read page by page (volumes.TiffVolume) after ingest's header checks; a damaged page is
    the same InputError as a damaged file."""

    def __init__(self, path: str):
        try:
            with tifffile.TiffFile(path) as tif:
                _tiff_shape(path, tif)
            super().__init__(path)
        except InputError:
            raise
        except Exception as exc:  # tifffile raises many exception types for damaged files
            raise _unreadable_tiff(path, exc) from exc

    def section(self, k: int) -> np.ndarray:
        try:
            return super().section(k)
        except IndexError:
            raise
        except Exception as exc:  # a damaged page
            raise _unreadable_tiff(self.source, exc) from exc


def _read_png_file(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: not a readable PNG; re-export it")
    if img.ndim == 3:
        raise InputError(
            f"{path}: is an RGB/multi-channel image where a grey section is expected; save it as 8/16-bit greyscale"
        )
    return img[None]


def _open_hdf5(path: str, dataset: str):
    """(open h5py.File, its dataset) of `file.h5:/path/in/file`, with ingest's errors."""
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
        f = h5py.File(path, "r")
    except Exception as exc:  # h5py raises OSError/KeyError for damaged files
        raise InputError(f"{path}: not a readable HDF5 file ({type(exc).__name__}: {exc}); re-export it") from exc
    try:
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise InputError(f"{path}: has no dataset {dataset!r}; give `file.h5:/path/to/dataset`")
        ds = f[dataset]
        if ds.ndim not in (2, 3):
            raise InputError(f"{path}:{dataset}: has shape {ds.shape} where a (z, y, x) stack is expected")
    except InputError:
        f.close()
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file
        f.close()
        raise InputError(f"{path}: not a readable HDF5 file ({type(exc).__name__}: {exc}); re-export it") from exc
    return f, ds


def _h5_voxel(ds) -> list | None:
    res = ds.attrs.get("resolution", ds.attrs.get("voxel_size_nm"))
    return [float(v) for v in res] if res is not None and len(res) == 3 else None


def read_hdf5(path: str, dataset: str) -> tuple[np.ndarray, list | None]:
    """A (z, y, x) dataset of an HDF5 file (`file.h5:/path/in/file`); voxel size from its attributes.

    The voxel size is read from the dataset attribute `resolution` (nm, z/y/x: the
    CREMI convention) or `voxel_size_nm`. h5py is optional: only needed here.
    """
    f, ds = _open_hdf5(path, dataset)
    try:
        vol, voxel = ds[()], _h5_voxel(ds)
    except Exception as exc:  # noqa: BLE001 - a damaged file
        raise InputError(f"{path}: not a readable HDF5 file ({type(exc).__name__}: {exc}); re-export it") from exc
    finally:
        f.close()
    return (vol[None] if vol.ndim == 2 else vol), voxel


class _H5Stack(Volume):
    """An HDF5 dataset read section by section (the file stays open until close)."""

    def __init__(self, path: str, dataset: str):
        self._file, self._ds = _open_hdf5(path, dataset)
        self._flat = self._ds.ndim == 2
        shape = (1, *self._ds.shape) if self._flat else self._ds.shape
        super().__init__(shape, self._ds.dtype, _h5_voxel(self._ds), None, f"{path}:{dataset}", "hdf5")

    def section(self, k: int) -> np.ndarray:
        if not 0 <= int(k) < self.shape[0]:
            raise IndexError(f"section {k} of {self.shape[0]}")
        return np.asarray(self._ds[()] if self._flat else self._ds[int(k)])

    def close(self) -> None:
        self._file.close()


class _SectionFiles(Volume):
    """A folder / glob of 2D TIFF or PNG sections, one file read per section (the first at opening, for the
    shape and dtype every other file must match)."""

    def __init__(self, spec: str, files: list[str]):
        self.files = files
        first, voxel = self._read(0)
        super().__init__((len(files), *first.shape[1:]), first.dtype, voxel, None, spec, "sections")
        self._first = first

    def _read(self, k: int) -> tuple[np.ndarray, list | None]:
        f = self.files[k]
        sl, vox = (_read_png_file(f), None) if f.lower().endswith(".png") else _read_tiff_file(f)
        if sl.shape[0] != 1:
            raise InputError(f"{f}: holds {sl.shape[0]} sections; a folder/glob must hold one 2D section per file")
        return sl, vox

    def section(self, k: int) -> np.ndarray:
        k = int(k)
        if not 0 <= k < self.shape[0]:
            raise IndexError(f"section {k} of {self.shape[0]}")
        if k == 0:
            return self._first[0]
        sl, _ = self._read(k)
        if sl.shape[1:] != self.shape[1:] or sl.dtype != self.dtype:
            raise InputError(
                f"{self.files[k]}: section shape/dtype {sl.shape[1:]} {sl.dtype} differs from {self.files[0]} "
                f"({self._first.shape[1:]} {self._first.dtype}); all sections must match"
            )
        return sl[0]


def open_stack(spec: str) -> tuple[Volume, list | None]:
    """A (z, y, x) stack of any accepted form as a lazy Volume, and the voxel size of its metadata.

    Reads headers only (a folder/glob: its first file); sections are read when asked for, so a
    stack larger than memory can be validated (`check_stack`) and rewritten section by section.
    Errors are `read_stack`'s (a damaged section raises its InputError when it is read). The
    voxel size is `read_stack`'s: entries None where unknown, None when the source has none.
    Close the volume when done (it may hold a file open).
    """
    spec = str(spec)
    h5 = re.match(r"^(.*\.(?:h5|hdf5|hdf)):(/?.+)$", spec, flags=re.IGNORECASE)
    if h5 and not os.path.isfile(spec):
        vol = _H5Stack(h5.group(1), h5.group(2))
        return vol, vol.voxel_nm
    if is_zarr(spec) or is_n5(spec):
        vol = open_volume(spec)
        return vol, (None if vol.voxel_nm is None or all(v is None for v in vol.voxel_nm) else list(vol.voxel_nm))
    if os.path.isfile(spec):
        if spec.lower().endswith(".png"):
            return ArrayVolume(_read_png_file(spec)), None
        vol = _TiffStack(spec)
        return vol, vol.voxel_nm
    if not os.path.isdir(spec) and not glob.has_magic(spec):
        raise InputError(f"{spec}: file not found; check the path in config.yaml")
    vol = _SectionFiles(spec, list_sections(spec))
    voxel = vol.voxel_nm
    if voxel is not None:
        voxel = [None] + list(voxel[1:])  # a single section's z spacing is meaningless
    return vol, voxel


def read_stack(spec: str) -> tuple[np.ndarray, list | None]:
    """Read a (z, y, x) stack from a 3D TIFF, a folder of 2D TIFF/PNG, a glob of them, HDF5 or zarr.

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
    vol, voxel = open_stack(spec)
    with vol:
        return vol.read(), voxel


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


class StackCheck(NamedTuple):
    """What `check_stack` found: the stack's dtype inside the library, meta.json's notes, and its range."""

    dtype: np.dtype  # the dtype check_image returns (float64 / float16 -> float32)
    notes: dict
    lo: np.generic  # the smallest and largest value (of the cast data, before any rescale)
    hi: np.generic
    rescale: tuple[float, float] | None  # float data outside [0, 1]: (lo, hi) mapped onto [0, 1]

    @property
    def top(self) -> int:
        """The largest value of an integer stack (its bit depth's witness)."""
        return int(self.hi)


def check_stack(vol: Volume, source: str) -> StackCheck:
    """`check_image` of a lazy stack, section by section (one section in memory): the same checks, the same
    one-sentence InputErrors, the same notes; `checked_sections` then yields what check_image returns."""
    notes: dict = {}
    dtype = vol.dtype
    cast = dtype in (np.float64, np.float16)
    if cast:
        dtype = np.dtype(np.float32)
        notes["cast_to"] = "float32"
    if str(dtype) not in SUPPORTED_DTYPES:
        raise InputError(f"{source}: pixel type {dtype} is not supported; convert it to uint8, uint16 or float32")
    if int(np.prod(vol.shape)) == 0 or min(vol.shape) == 0:
        raise InputError(f"{source}: is empty (shape {vol.shape}); check the export")
    is_float = dtype == np.float32
    bad, lo, hi = 0, None, None
    for k in range(vol.shape[0]):
        s = vol.section(k)
        if cast:
            s = s.astype(np.float32)
        if is_float:
            finite = np.count_nonzero(np.isfinite(s))
            if finite != s.size:
                bad += int(s.size - finite)
                continue
        s_lo, s_hi = s.min(), s.max()
        lo = s_lo if lo is None or s_lo < lo else lo
        hi = s_hi if hi is None or s_hi > hi else hi
    if bad:
        raise InputError(f"{source}: contains {bad} NaN/Inf values; fill or crop them before ingest")
    rescale = None
    if is_float and (float(lo) < 0 or float(hi) > 1):
        if float(hi) <= float(lo):
            raise InputError(f"{source}: is constant ({float(lo)}); check the export")
        rescale = (float(lo), float(hi))
        notes["rescaled_from"] = [float(lo), float(hi)]
    elif lo == hi:
        raise InputError(f"{source}: is constant ({lo}); check the export")
    return StackCheck(np.dtype(dtype), notes, lo, hi, rescale)


def checked_sections(vol: Volume, check: StackCheck, bits: int | None = None) -> Iterator[np.ndarray]:
    """The sections of `vol` as `check_image` returns them (cast, rescaled into [0, 1]), and an integer stack
    of `bits` bits mapped onto its dtype's full range (`io.to_full_range`); one section at a time."""
    for k in range(vol.shape[0]):
        s = vol.section(k)
        if s.dtype != check.dtype:
            s = s.astype(check.dtype)
        if check.rescale is not None:
            lo, hi = check.rescale
            s = ((s - lo) / (hi - lo)).astype(np.float32)
        elif bits is not None:
            s = to_full_range(s, bits)
        yield s


class FloatSections:
    """A lazy Volume's sections as float32 in [0, 1] (`io.to_float`), what `io.read_image` gives, read only
    when asked for: `view[k]` is section k, `view[k, rows, cols]` a region of it (only the region is
    converted); `view.shape` is the volume's. The last section read is kept (stages ask for the same
    LR section for several HR sections). The stages after ingest read an LR overview of any size so:
    memory holds one section, never the whole volume as float32.
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, vol: Volume):
        self.vol = vol
        self.shape = tuple(vol.shape)
        self._k: int | None = None
        self._raw: np.ndarray | None = None
        self._float: np.ndarray | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        k = operator.index(key)
        if k < 0:
            k += self.shape[0]
        if not 0 <= k < self.shape[0]:
            raise IndexError(f"section {key} of {self.shape[0]} ({self.vol.source})")
        if k != self._k:
            self._k, self._raw, self._float = k, np.asarray(self.vol.section(k)), None
        if rest:
            return to_float(self._raw[rest])
        if self._float is None:
            self._float = to_float(self._raw)
        return self._float

    def close(self) -> None:
        self._raw = self._float = None
        self.vol.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def float_sections(source) -> FloatSections:
    """An ingested volume (TIFF, zarr, OME-Zarr: `volumes.open_volume`) as lazy float32 sections; close it."""
    return FloatSections(open_volume(source))
