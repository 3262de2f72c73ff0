"""Volume and file I/O shared by every stage.

Volumes are (z, y, x). Images are float32 in [0, 1] inside the library and
uint8/uint16/float32 on disk; labels are integer instance IDs. Every TIFF we
write carries its voxel size in nm: as ImageJ resolution + spacing (so Fiji and
napari-tifffile show true scale) and, for label volumes ImageJ cannot hold
(uint32/uint64), as tifffile "shaped" JSON metadata plus resolution tags.

Every writer is atomic: it writes a temporary file in the target folder and
renames it, so a failed job never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile


class InputError(ValueError):
    """Bad user input: the message is one sentence naming the file/key and the fix."""


IMAGE_DTYPES = ("uint8", "uint16", "float32")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    The temporary name keeps the suffix so libraries that dispatch on the
    extension (matplotlib, tifffile, torch) behave as for the final file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


# --------------------------------------------------------------------------- images


def to_float(vol: np.ndarray) -> np.ndarray:
    """Map an on-disk image to float32 in [0, 1] (integer types by their full range)."""
    if vol.dtype == np.uint8:
        return vol.astype(np.float32) / 255.0
    if vol.dtype == np.uint16:
        return vol.astype(np.float32) / 65535.0
    if np.issubdtype(vol.dtype, np.floating):
        return vol.astype(np.float32, copy=False)
    raise InputError(f"image dtype {vol.dtype} is not supported; convert it to uint8, uint16 or float32")


def from_float(vol: np.ndarray, dtype: str) -> np.ndarray:
    """Quantise a float image in [0, 1] to `dtype` (values outside are clipped)."""
    vol = np.clip(np.asarray(vol, dtype=np.float32), 0.0, 1.0)
    if dtype == "uint8":
        return np.rint(vol * 255.0).astype(np.uint8)
    if dtype == "uint16":
        return np.rint(vol * 65535.0).astype(np.uint16)
    if dtype == "float32":
        return vol
    raise ValueError(f"unknown image dtype {dtype!r}; use one of {IMAGE_DTYPES}")


# --------------------------------------------------------------------------- bit depth
#
# Detectors often store fewer bits than their container: 12- or 14-bit EM data in uint16. The
# library's [0, 1] (and so every "8-bit scale" noise sigma, EMSR's sigma / 255 and PSNR's peak
# L = 1) must be relative to the data's real range 0 .. 2**bits - 1, not the dtype's. Ingest
# therefore rescales an integer stack of `bits` bits onto its dtype's full range (`to_full_range`,
# lossless: an injective integer map, undone exactly by `from_full_range`); everything downstream
# reads it with `to_float` as before.

#: bits of the integer image dtypes
DTYPE_BITS = {"uint8": 8, "uint16": 16}
#: the depths `detect_bit_depth` chooses from (the ADC depths of EM detectors and cameras)
STANDARD_BIT_DEPTHS = (8, 10, 12, 14, 16)


def detect_bit_depth(vol: np.ndarray) -> int | None:
    """The real bit depth of an integer stack: the smallest standard depth whose range holds its maximum.

    uint8 is always 8 bit; uint16 with max <= 255 -> 8, <= 1023 -> 10, <= 4095 -> 12, <= 16383 -> 14,
    else 16. Float stacks have none (None): they are [0, 1] already. A dim 16-bit stack is taken for
    a lower depth: declare its depth (`specimens.<name>.bit_depth`) instead.
    """
    return bit_depth_of_max(vol.dtype, int(vol.max()) if vol.size else 0)


def bit_depth_of_max(dtype, top: int) -> int | None:
    """`detect_bit_depth` of a stack of `dtype` whose largest value is `top` (a streaming max pass gives it)."""
    dtype = str(np.dtype(dtype))
    if dtype not in DTYPE_BITS:
        return None
    if dtype == "uint8":
        return 8
    return next(b for b in STANDARD_BIT_DEPTHS if int(top) <= 2**b - 1)


def resolve_bit_depth(vol: np.ndarray, declared: int | None, key: str, source: str) -> int | None:
    """The declared depth (checked against the dtype and the data) or the detected one; None for floats.

    key: the config key that declares it (named in the error), source: the stack (named too).
    """
    if str(vol.dtype) not in DTYPE_BITS:
        return None
    return resolve_bit_depth_of_max(vol.dtype, lambda: int(vol.max()) if vol.size else 0, declared, key, source)


def resolve_bit_depth_of_max(dtype, top, declared: int | None, key: str, source: str) -> int | None:
    """`resolve_bit_depth` of a stack of `dtype` whose largest value is `top` (an int, or a callable giving it
    when needed): what a streaming ingest resolves from its max pass, with the same errors."""
    dtype = str(np.dtype(dtype))
    if dtype not in DTYPE_BITS:
        return None
    if declared is None:
        return bit_depth_of_max(dtype, top() if callable(top) else top)
    bits = int(declared)
    if not 1 <= bits <= DTYPE_BITS[dtype]:
        raise InputError(
            f"config key {key} = {declared!r}: {source} is {dtype}, which holds 1 to {DTYPE_BITS[dtype]} bits; "
            f"fix {key} or set it to null to detect the depth"
        )
    top = int(top() if callable(top) else top)
    if top > 2**bits - 1:
        raise InputError(
            f"config key {key} = {bits}: {source} has values up to {top}, above the {bits}-bit maximum "
            f"{2**bits - 1}; raise {key} or set it to null to detect the depth"
        )
    return bits


def full_range_scale(dtype: str, bits: int) -> float:
    """stored / raw: (2**dtype_bits - 1) / (2**bits - 1); 1.0 when the data fill the dtype."""
    return (2 ** DTYPE_BITS[str(dtype)] - 1) / (2 ** int(bits) - 1)


def to_full_range(vol: np.ndarray, bits: int) -> np.ndarray:
    """An integer stack of `bits` bits mapped onto its dtype's full range: rint(v * full_range_scale).

    Lossless: the factor is >= 1, so distinct values stay distinct (an injective map), and
    `from_full_range` gives the raw values back exactly. Round half to even (numpy's rint),
    through a lookup table (exact, no float copy of the stack). Values above 2**bits - 1 are
    the caller's to refuse (`resolve_bit_depth`).
    """
    dtype = str(vol.dtype)
    if int(bits) == DTYPE_BITS[dtype]:
        return vol
    n = 2 ** int(bits)
    lut = np.rint(np.arange(n, dtype=np.float64) * full_range_scale(dtype, bits)).astype(vol.dtype)
    return lut[np.minimum(vol, n - 1)]


def from_full_range(vol: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of `to_full_range`: full-range values back to raw `bits`-bit values, rint(v / scale)."""
    dtype = str(vol.dtype)
    if int(bits) == DTYPE_BITS[dtype]:
        return vol
    return np.rint(vol.astype(np.float64) / full_range_scale(dtype, bits)).astype(vol.dtype)


def write_tiff(path: str | os.PathLike, vol: np.ndarray, voxel_nm: Sequence[float]) -> None:
    """Write a (z, y, x) array with its voxel size (nm, z/y/x) atomically."""
    vol = np.ascontiguousarray(vol)
    if vol.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {vol.shape}")
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, vol, **tiff_options(vol.dtype, voxel_nm))


def tiff_options(dtype, voxel_nm: Sequence[float]) -> dict:
    """tifffile.imwrite keywords of `write_tiff`: ImageJ resolution + spacing for uint8/uint16/float32,
    else tifffile "shaped" JSON metadata with the voxel size, zlib-compressed either way."""
    vz, vy, vx = (float(v) for v in voxel_nm)
    if np.dtype(dtype) in (np.uint8, np.uint16, np.float32):
        return dict(
            imagej=True,
            resolution=(1e3 / vx, 1e3 / vy),  # pixels per micrometre
            metadata={"axes": "ZYX", "spacing": vz / 1e3, "unit": "um"},
            compression="zlib",
        )
    return dict(
        resolution=(1e7 / vx, 1e7 / vy),
        resolutionunit="CENTIMETER",
        photometric="minisblack",
        metadata={"axes": "ZYX", "voxel_size_nm": [vz, vy, vx]},
        compression="zlib",
    )


def write_tiff_sections(
    path: str | os.PathLike, sections: Iterator[np.ndarray], shape: Sequence[int], dtype, voxel_nm: Sequence[float]
) -> None:
    """`write_tiff` of a (z, y, x) volume given as an iterator of its z sections, one in memory at a time.

    The file has the bytes `write_tiff` writes for the whole array; atomic as well (an
    iterator that stops early or fails leaves no file).
    """
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    if len(shape) != 3:
        raise ValueError(f"expected a (z, y, x) shape, got {shape}")
    count = 0

    def pages():
        nonlocal count
        for plane in sections:
            plane = np.ascontiguousarray(plane, dtype)
            if plane.shape != shape[1:]:
                raise ValueError(f"section of shape {plane.shape}, expected {shape[1:]}")
            count += 1
            if count > shape[0]:
                raise ValueError(f"more than {shape[0]} sections")
            yield plane
        if count != shape[0]:
            raise ValueError(f"{path}: {count} sections given, {shape[0]} expected")

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, pages(), shape=shape, dtype=dtype, **tiff_options(dtype, voxel_nm))


def read_tiff(path: str | os.PathLike) -> tuple[np.ndarray, list[float] | None]:
    """Read a TIFF written by `write_tiff` (or by Fiji): (array, voxel_nm or None)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found; check the path in config.yaml")
    try:
        with tifffile.TiffFile(path) as tif:
            vol = tif.asarray()
            voxel = _voxel_from_tiff(tif)
    except (InputError, MemoryError):  # a file too large for memory is not a corrupt one
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(f"{path}: not a readable TIFF ({exc}); re-export the stack as TIFF") from exc
    if vol.ndim == 2:
        vol = vol[None]
    return vol, voxel


# nm per unit of the OME PhysicalSize*Unit attributes (OME's default unit is the micrometre)
_OME_UNITS = {"nm": 1.0, "µm": 1e3, "\u03bcm": 1e3, "um": 1e3, "micron": 1e3, "mm": 1e6, "pm": 1e-3, "Å": 0.1}


def _voxel_from_ome(xml: str) -> list[float | None] | None:
    """[z, y, x] nm from OME-XML Pixels PhysicalSize{Z,Y,X} (+ units); None entries where absent."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    out = []
    for axis in "ZYX":
        value, unit = pixels.get(f"PhysicalSize{axis}"), pixels.get(f"PhysicalSize{axis}Unit", "µm")
        scale = _OME_UNITS.get(unit)
        out.append(float(value) * scale if value is not None and scale is not None and float(value) > 0 else None)
    return None if all(v is None for v in out) else out


def _voxel_from_tiff(tif: tifffile.TiffFile) -> list[float] | None:
    shaped = tif.shaped_metadata
    if shaped and "voxel_size_nm" in shaped[0]:
        return [float(v) for v in shaped[0]["voxel_size_nm"]]
    if tif.is_ome and tif.ome_metadata:  # OME-TIFF: physical sizes live in the OME-XML, not the TIFF tags
        ome = _voxel_from_ome(tif.ome_metadata)
        if ome is not None:
            return ome
    ij = tif.imagej_metadata
    page = tif.pages[0]
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    xr = tags["XResolution"].value
    yr = tags["YResolution"].value
    xres = xr[0] / xr[1]
    yres = yr[0] / yr[1]
    if xres <= 0 or yres <= 0 or (xres == 1 and yres == 1 and not ij):
        return None  # the TIFF default of 1 px/inch means "not set"
    unit = (ij or {}).get("unit", "")
    if ij is not None:
        scale = {"um": 1e3, "micron": 1e3, "\\u00B5m": 1e3, "µm": 1e3, "nm": 1.0, "mm": 1e6}.get(unit)
        if scale is None:
            return None
        z = float(ij.get("spacing", 0.0)) * scale
        return [z if z > 0 else None, scale / yres, scale / xres]
    runit = tags.get("ResolutionUnit")
    per = {2: 25.4e6, 3: 1e7}.get(int(runit.value) if runit else 2)
    return [None, per / yres, per / xres]


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, list[float] | None, str]:
    """Read a grey image volume: (float32 in [0, 1], voxel_nm or None, on-disk dtype)."""
    vol, voxel = read_tiff(path)
    dtype = str(vol.dtype)
    return to_float(vol), voxel, dtype


def write_image(path, vol: np.ndarray, voxel_nm, dtype: str = "uint8") -> None:
    write_tiff(path, from_float(vol, dtype), voxel_nm)


def label_dtype(top: int) -> np.dtype:
    """The dtype `write_labels` stores labels whose largest ID is `top` in: uint16, else uint32, else uint64."""
    return np.dtype(np.uint16 if top < 2**16 else np.uint32 if top < 2**32 else np.uint64)


def write_labels(path, labels: np.ndarray, voxel_nm) -> None:
    """Labels are stored as uint16 when they fit (ImageJ-readable), else uint32/uint64."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    write_tiff(path, labels.astype(label_dtype(top)), voxel_nm)


def read_labels(path) -> tuple[np.ndarray, list[float] | None]:
    vol, voxel = read_tiff(path)
    if not np.issubdtype(vol.dtype, np.integer):
        if not np.all(np.mod(vol, 1) == 0):
            raise InputError(f"{path}: labels must be integer instance IDs, found fractional values")
    return vol.astype(np.uint64), voxel


# --------------------------------------------------------------------------- stacks on disk (headers only)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
H5_SOURCE = re.compile(r"^(.*\.(?:h5|hdf5|hdf)):(/?.+)$", flags=re.IGNORECASE)


def natural_key(path: str) -> list:
    """Sort key that orders embedded numbers numerically: s2 < s10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def list_sections(spec: str) -> list[str]:
    """The 2D image files of a folder or glob, in natural order."""
    if os.path.isdir(spec):
        files = [str(p) for p in Path(spec).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        where = f"folder {spec}"
    else:
        files = [f for f in glob.glob(spec) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        where = f"pattern {spec}"
    if not files:
        raise InputError(f"{where}: no .tif/.tiff/.png files found; check the path in config.yaml")
    return sorted(files, key=natural_key)


def source_exists(source: str) -> bool:
    """A TIFF/PNG file, a folder or glob with images, file.h5:/dataset whose file exists, or a zarr / OME-Zarr
    (path.zarr, path.zarr/dataset) whose .zarr folder exists (what is inside is checked when it is read)."""
    h5 = H5_SOURCE.match(source)
    if h5 and not os.path.isfile(source):
        return os.path.isfile(h5.group(1))
    parts = Path(source).parts
    zarr_at = [i for i, part in enumerate(parts) if part.lower().endswith(".zarr")]
    if zarr_at:
        return Path(*parts[: zarr_at[-1] + 1]).is_dir()
    if os.path.isfile(source):
        return True
    if os.path.isdir(source) or glob.has_magic(source):
        try:
            return bool(list_sections(source))
        except InputError:
            return False
    return False


def stack_info(source: str) -> tuple[tuple[int, int, int], list | None] | None:
    """((z, y, x), voxel_nm or None) of a stack from its headers, without reading pixels; None if unknown.

    Used before any job runs (section counts, HR-in-LR containment); HDF5 and unreadable
    files give None and are checked when ingest reads them.
    """
    try:
        if H5_SOURCE.match(source) and not os.path.isfile(source):
            return None
        if os.path.isfile(source):
            files = [source]
        else:
            files = list_sections(source)
        first = files[0]
        if first.lower().endswith(".png"):
            from PIL import Image

            with Image.open(first) as im:
                shape2d, voxel = (im.height, im.width), None
            pages = 1
        else:
            with tifffile.TiffFile(first) as tif:
                series = tif.series[0]
                shape = tuple(int(s) for s in series.shape)
                voxel = _voxel_from_tiff(tif)
            shape = tuple(s for s in shape if s != 1) if len(shape) > 3 else shape
            if len(shape) == 2:
                shape = (1,) + shape
            if len(shape) != 3:
                return None
            pages, shape2d = shape[0], shape[1:]
        z = pages if len(files) == 1 else len(files)
        if len(files) > 1 and voxel is not None:
            voxel = [None] + list(voxel[1:])
        return (int(z), int(shape2d[0]), int(shape2d[1])), voxel
    except Exception:  # noqa: BLE001 - unreadable headers are ingest's to report, with its own message
        return None


def unpickle_checkpoint(path: str | os.PathLike, tensor=None) -> dict | None:
    """The top-level dict of a torch zip checkpoint, unpickled without torch (None: not one).

    torch.save writes a zip holding `<name>/data.pkl`; every non-builtin class is replaced by
    a stub, and `tensor` (a class, optional) stands in for torch._utils._rebuild_tensor*
    (it receives the rebuild arguments: storage, offset, size, stride, ...). Hand-written:
    torch has no metadata-only reader.
    """
    import pickle
    import zipfile

    class _Stub:  # stands in for storages and any other non-builtin class
        def __init__(self, *args, **kwargs):
            pass

        def __setstate__(self, state):
            pass

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module in ("collections", "builtins", "copyreg", "_codecs"):
                return super().find_class(module, name)
            if tensor is not None and module == "torch._utils" and name.startswith("_rebuild_tensor"):
                return tensor
            return _Stub

        def persistent_load(self, pid):
            return None

    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            with archive.open(name) as handle:
                state = _Unpickler(handle).load()
    except Exception:  # noqa: BLE001 - not a zip checkpoint: the job that loads it checks it with torch
        return None
    return state if isinstance(state, dict) else None


def peek_checkpoint(path: str | os.PathLike) -> dict | None:
    """The plain (non-tensor) top-level entries of a PyTorch checkpoint, read without torch.

    Keys such as `arch`, `net`, `scale` of an srseg model.pt, so a wrong `init:` is found
    before any job runs on a login node without torch. Returns None for other formats (they
    are checked when the train job loads them).
    """
    state = unpickle_checkpoint(path)
    if state is None:
        return None
    return {k: v for k, v in state.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
