"""Chunked volumes at lab scale: read lazily, written section by section, shown at true scale.

Readers (`open_volume`) give a lazy (z, y, x) `Volume` with its voxel size and offset (nm)
for

* OME-Zarr (NGFF 0.4 or 0.5): `path.zarr` (its multiscales' level 0) or `path.zarr/group`;
  voxel size and offset from the level's coordinateTransformations (scale, translation);
* plain zarr arrays (v2 or v3): `path.zarr/dataset` (voxel size from a `voxel_size_nm` or
  N5/CREMI-style `resolution` attribute, offset from `offset_nm` / `offset`);
* TIFF stacks (one page per section, read page by page; uncompressed ImageJ stacks whose
  pages hold no IFDs are read by byte offset).

N5 containers are refused with an InputError naming the path: zarr 3 has no N5 store and
no library here reads it (convert once, e.g. `python -c "import zarr, tensorstore..."` or
with n5-to-zarr tools, see the README).

The writer (`OmeZarrWriter`) streams sections into an OME-Zarr (NGFF 0.5, zarr v3, as
ome-zarr 0.18 writes: zstd, chunks of one section by `chunk` x `chunk` px) with axes z/y/x
in nanometer, scale = voxel size, translation = offset, and a pyramid of 2x yx levels
(mean for images, the mode of each 2 x 2 block for labels) computed section by section, so
memory holds one section whatever the volume's size. It writes into `<path>.tmp` and
renames it onto `<path>` only when every section is written, so a killed job never
leaves an output that looks complete. A writer given `z_range` writes one block of
sections (one job of a blockwise run); `gather_blocks` joins such blocks by hard-linking
their chunk files into the whole volume: no pixel is read or rewritten, and the result is
byte for byte the one-job output.

zarr and ome-zarr are imported lazily: TIFF users (and a bare GPU machine) never need them.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tifffile

from . import io
from .io import InputError, _voxel_from_tiff, write_tiff_sections

#: yx chunk side of the OME-Zarr outputs (z chunk: one section)
CHUNK = 1024
#: attribute key of this library's bookkeeping in a written group (block range, kind)
ATTR = "srseg"
#: nm per unit of the NGFF axis units (UDUNITS-2 names)
_NGFF_UNITS = {
    "angstrom": 0.1,
    "nanometer": 1.0,
    "micrometer": 1e3,
    "millimeter": 1e6,
    "picometer": 1e-3,
    "meter": 1e9,
}


# --------------------------------------------------------------------------- paths


def is_zarr(path: str | os.PathLike) -> bool:
    """A zarr source: some component of the path ends with .zarr (path.zarr or path.zarr/dataset)."""
    return any(part.lower().endswith(".zarr") for part in Path(path).parts)


def is_n5(path: str | os.PathLike) -> bool:
    return any(part.lower().endswith(".n5") for part in Path(path).parts)


def split_zarr(path: str | os.PathLike) -> tuple[Path, str]:
    """(the .zarr root, the node path inside it, '' for the root)."""
    parts = Path(path).parts
    i = max(k for k, p in enumerate(parts) if p.lower().endswith(".zarr"))
    return Path(*parts[: i + 1]), "/".join(parts[i + 1 :])


def tmp_path(path: str | os.PathLike) -> Path:
    """Where a writer builds `path` before renaming it (a leftover of a killed job is removed on restart)."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


# --------------------------------------------------------------------------- readers


class Volume:
    """A lazy (z, y, x) volume: `section(k)` reads one section in the on-disk dtype.

    `voxel_nm` and `offset_nm` are [z, y, x] in nm (None where the source has none).
    Slicing (`vol[a:b]`, `vol[k]`) reads only what it names; `read()` reads everything.
    """

    def __init__(self, shape, dtype, voxel_nm=None, offset_nm=None, source: str = "", fmt: str = ""):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.voxel_nm = voxel_nm
        self.offset_nm = offset_nm
        self.source = str(source)
        self.format = fmt

    ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def section(self, k: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.section(int(key))
        if isinstance(key, slice):
            return self.sections(range(*key.indices(self.shape[0])))
        if isinstance(key, (list, np.ndarray)):
            return self.sections([int(k) for k in key])
        raise TypeError(f"a Volume takes a section index, a slice or a list of indices, not {key!r}")

    def sections(self, ks: Iterable[int]) -> np.ndarray:
        ks = list(ks)
        out = np.empty((len(ks), *self.shape[1:]), self.dtype)
        for i, k in enumerate(ks):
            out[i] = self.section(k)
        return out

    def read(self) -> np.ndarray:
        return self.sections(range(self.shape[0]))

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.source!r}, shape={self.shape}, dtype={self.dtype}, voxel_nm={self.voxel_nm})"
        )


class ArrayVolume(Volume):
    """An in-memory array seen as a Volume (library callers and tests)."""

    def __init__(self, array: np.ndarray, voxel_nm=None, offset_nm=None):
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise InputError(f"expected a (z, y, x) volume, got shape {array.shape}")
        super().__init__(array.shape, array.dtype, voxel_nm, offset_nm, "<array>", "array")
        self.array = array

    def section(self, k: int) -> np.ndarray:
        return self.array[k]

    def sections(self, ks) -> np.ndarray:
        return self.array[list(ks)]


class TiffVolume(Volume):
    """A TIFF stack read section by section (tifffile pages), never as a whole."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: file not found; check the path")
        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
            voxel = _voxel_from_tiff(self._tif)
        except Exception as exc:  # tifffile raises many types for corrupt files
            raise InputError(f"{path}: not a readable TIFF ({exc}); re-export the stack as TIFF") from exc
        shape = tuple(int(s) for s in series.shape)
        if len(shape) > 3:
            shape = tuple(s for s in shape if s != 1)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            self._tif.close()
            raise InputError(f"{path}: a grey (z, y, x) stack is needed, the TIFF has shape {series.shape}")
        super().__init__(shape, series.dtype, voxel, None, str(path), "tiff")
        self._paged = len(series.pages) == shape[0]
        self._offset = series.dataoffset  # contiguous, uncompressed data (e.g. ImageJ >4 GB with one IFD)
        if not self._paged and self._offset is None:
            self._whole = series.asarray().reshape(shape)  # neither pages nor offsets: the one fallback read
        self._series = series

    def section(self, k: int) -> np.ndarray:
        k = int(k)
        if not 0 <= k < self.shape[0]:
            raise IndexError(f"section {k} of {self.shape[0]}")
        if self._paged:
            return self._tif.asarray(key=k, series=0).reshape(self.shape[1:])
        if self._offset is not None:
            n = self.shape[1] * self.shape[2]
            fh = self._tif.filehandle
            fh.seek(self._offset + k * n * self.dtype.itemsize)
            dtype = self.dtype.newbyteorder(self._tif.byteorder)
            return np.fromfile(fh, dtype, count=n).reshape(self.shape[1:]).astype(self.dtype, copy=False)
        return self._whole[k]

    def close(self) -> None:
        self._tif.close()


class ZarrVolume(Volume):
    """A zarr array (plain, or one level of an OME-Zarr multiscale), read chunk by chunk."""

    def __init__(self, array, voxel_nm, offset_nm, source: str, fmt: str, levels=None, group=None, attrs=None):
        shape = tuple(array.shape)
        self._squeeze = len(shape) == 2
        super().__init__((1, *shape) if self._squeeze else shape, array.dtype, voxel_nm, offset_nm, source, fmt)
        self.array = array
        self.levels = levels or []  # OME-Zarr: [{"path", "scale", "translation"}] of every level
        self.group = group
        self.attrs = dict(attrs or {})

    def section(self, k: int) -> np.ndarray:
        return np.asarray(self.array[...] if self._squeeze else self.array[int(k)])

    def sections(self, ks) -> np.ndarray:
        ks = list(ks)
        if ks and not self._squeeze and ks == list(range(ks[0], ks[-1] + 1)):
            return np.asarray(self.array[ks[0] : ks[-1] + 1])
        return super().sections(ks)

    def level(self, i: int) -> ZarrVolume:
        """Level i of an OME-Zarr pyramid: a lazy volume with that level's voxel size and offset."""
        if self.group is None:
            raise InputError(f"{self.source}: a plain zarr array has no pyramid levels")
        lv = self.levels[i]
        return ZarrVolume(
            self.group[lv["path"]], lv["scale"], lv["translation"], self.source, self.format, self.levels, self.group
        )


def open_volume(source: str | os.PathLike) -> Volume:
    """A lazy volume of a TIFF, an OME-Zarr (level 0 of its multiscales), or a zarr array.

    `path.zarr` and `path.zarr/inner`: an array is read as it is; a group with `multiscales`
    metadata by its first (full-resolution) dataset. N5 is refused (see the module docstring).
    """
    source = str(source)
    if is_n5(source):
        raise InputError(
            f"{source}: N5 containers cannot be read here (zarr 3 has no N5 store); convert the dataset "
            "to OME-Zarr or zarr once (e.g. with tensorstore or n5-to-zarr) and give path.zarr"
        )
    if is_zarr(source):
        return _open_zarr(source)
    if os.path.isdir(source):
        raise InputError(f"{source}: a folder; give a TIFF stack, path.zarr or path.zarr/dataset")
    return TiffVolume(source)


def read_image(source: str | os.PathLike) -> tuple[np.ndarray, list[float] | None, str]:
    """A whole grey volume, TIFF or zarr: (float32 in [0, 1], voxel_nm, on-disk dtype), as io.read_image.

    For stages whose inputs may be OME-Zarr (infer.format: ome-zarr) but fit in memory.
    """
    if not is_zarr(source):
        return io.read_image(source)
    vol = open_volume(source)
    dtype = str(vol.dtype)
    return io.to_float(np.asarray(vol.read())), vol.voxel_nm, dtype


def _open_zarr(source: str) -> ZarrVolume:
    import zarr

    root, inner = split_zarr(source)
    if not root.exists():
        raise InputError(f"{source}: {root} not found; check the path")
    try:
        node = zarr.open(str(root), mode="r", path=inner) if inner else zarr.open(str(root), mode="r")
    except Exception as exc:  # zarr raises FileNotFoundError, KeyError, NodeNotFound... for a wrong inner path
        raise InputError(f"{source}: no zarr array or group at {inner or 'the root'} ({exc}); check the path") from exc
    if isinstance(node, zarr.Array):
        attrs = dict(node.attrs)
        voxel = _attr_zyx(attrs, ("voxel_size_nm", "resolution"))
        offset = _attr_zyx(attrs, ("offset_nm", "offset"))
        vol = ZarrVolume(node, voxel, offset, source, "zarr", attrs=attrs)
        _check_grey(vol)
        return vol
    attrs = dict(node.attrs)
    meta = attrs.get("ome", attrs)  # NGFF 0.5 nests under "ome", 0.4 has the keys at the top
    multiscales = meta.get("multiscales")
    if not multiscales:
        arrays = sorted(name for name, _ in node.arrays())
        raise InputError(
            f"{source}: a zarr group without OME-Zarr multiscales metadata; give one of its arrays as "
            f"{source}/<dataset> (it has {', '.join(arrays) or 'no arrays'})"
        )
    levels = ngff_levels(multiscales[0], source)
    array = node[levels[0]["path"]]
    vol = ZarrVolume(array, levels[0]["scale"], levels[0]["translation"], source, "ome-zarr", levels, node, attrs)
    _check_grey(vol)
    return vol


def _check_grey(vol: ZarrVolume) -> None:
    if vol.array.ndim not in (2, 3):
        raise InputError(
            f"{vol.source}: a (z, y, x) array is needed, it has shape {tuple(vol.array.shape)}; "
            "select one channel / time point into its own array"
        )


def _attr_zyx(attrs: dict, keys) -> list[float] | None:
    for key in keys:
        v = attrs.get(key)
        if isinstance(v, (list, tuple)) and len(v) in (2, 3) and all(isinstance(x, (int, float)) for x in v):
            v = [float(x) for x in v]
            return v if len(v) == 3 else [None, *v]
    return None


def ngff_levels(ms: dict, source: str = "") -> list[dict]:
    """[{"path", "scale", "translation"}] (z, y, x nm) of an NGFF multiscales entry's datasets."""
    axes = ms.get("axes") or [{"name": n} for n in "zyx"]
    axes = [a if isinstance(a, dict) else {"name": a} for a in axes]
    names = [a["name"] for a in axes]
    if names[-2:] != ["y", "x"] or any(a.get("type") == "channel" for a in axes) or len(names) > 3:
        raise InputError(f"{source}: OME-Zarr axes {names} are not (z, y, x) or (y, x); export the grey volume alone")
    unit = [_NGFF_UNITS.get(a.get("unit", "nanometer"), None) for a in axes]
    if any(u is None for u in unit):
        raise InputError(f"{source}: unknown axis unit in {axes}; use nanometer or micrometer")
    glob_scale, glob_trans = _transforms(ms.get("coordinateTransformations"), len(names))
    out = []
    for ds in ms["datasets"]:
        scale, trans = _transforms(ds.get("coordinateTransformations"), len(names))
        scale = [s * g * u for s, g, u in zip(scale, glob_scale, unit)]
        trans = [(t * g + gt) * u for t, g, gt, u in zip(trans, glob_scale, glob_trans, unit)]
        if len(names) == 2:
            scale, trans = [None, *scale], [0.0, *trans]
        out.append({"path": ds["path"], "scale": scale, "translation": trans})
    return out


def _transforms(tfs, n: int) -> tuple[list[float], list[float]]:
    scale, trans = [1.0] * n, [0.0] * n
    for t in tfs or []:
        if t.get("type") == "scale" and "scale" in t:
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation" and "translation" in t:
            trans = [float(v) for v in t["translation"]]
    return scale, trans


# --------------------------------------------------------------------------- pyramid


def downsample2(plane: np.ndarray, kind: str = "image") -> np.ndarray:
    """A 2D plane halved in y and x (ceil): the mean of each 2 x 2 block (images, rounded to the dtype)
    or its most frequent value (labels; ties go to the top-left voxel). Odd edges repeat the last row/column."""
    h, w = plane.shape
    p = plane
    if h % 2 or w % 2:
        p = np.pad(plane, ((0, h % 2), (0, w % 2)), mode="edge")
    a, b, c, d = p[0::2, 0::2], p[0::2, 1::2], p[1::2, 0::2], p[1::2, 1::2]
    if kind == "labels":
        cands = (a, b, c, d)
        counts = [sum((x == y).astype(np.uint8) for y in cands) for x in cands]
        best, out = counts[0], a.copy()
        for x, n in zip(cands[1:], counts[1:]):
            take = n > best
            out[take] = x[take]
            best = np.maximum(best, n)
        return out
    m = (a.astype(np.float32) + b + c + d) * np.float32(0.25)
    if np.issubdtype(plane.dtype, np.integer):
        return np.rint(m).astype(plane.dtype)
    return m.astype(plane.dtype)


def auto_levels(shape_yx: Sequence[int], coarsest: int = 256) -> int:
    """Pyramid levels (incl. level 0): halve y, x until the larger side is at most `coarsest` px."""
    n, side = 1, max(int(s) for s in shape_yx)
    while side > coarsest and n < 10:
        side = -(-side // 2)
        n += 1
    return n


# --------------------------------------------------------------------------- writer


class OmeZarrWriter:
    """Write a (z, y, x) volume section by section as an OME-Zarr with a multiscale pyramid.

        with OmeZarrWriter("sr.zarr", (z, y, x), "uint8", voxel_nm=[50, 10, 10]) as w:
            for k, plane in enumerate(planes):
                w.write_section(k, plane)

    kind: "image" (mean pyramid) or "labels" (mode pyramid; NGFF image-label metadata).
    channels: a channel axis c first (arrays (c, z, y, x), sections (c, y, x); e.g. affinities).
    levels: pyramid levels incl. level 0 (None: `auto_levels`). z_range (z0, z1): this
    writer writes only those sections (a block job; `gather_blocks` joins the blocks).
    Leaving the `with` block by an exception removes the temporary output.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: Sequence[int],
        dtype,
        voxel_nm: Sequence[float],
        offset_nm: Sequence[float] | None = None,
        kind: str = "image",
        levels: int | None = None,
        chunk: int = CHUNK,
        name: str | None = None,
        z_range: tuple[int, int] | None = None,
        attrs: dict | None = None,
        channels: int | None = None,
    ):
        import zarr

        if kind not in ("image", "labels"):
            raise ValueError(f"kind must be 'image' or 'labels', not {kind!r}")
        if len(shape) != 3:
            raise ValueError(f"expected a (z, y, x) shape, got {shape}")
        if voxel_nm is None or any(v is None for v in voxel_nm):
            raise InputError(f"{path}: an OME-Zarr needs the voxel size of all three axes, got {voxel_nm}")
        self.path = Path(path)
        self.tmp = tmp_path(self.path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.kind = kind
        self.voxel = [float(v) for v in voxel_nm]
        self.offset = [float(v) for v in (offset_nm if offset_nm is not None else (0.0, 0.0, 0.0))]
        self.levels = int(levels) if levels is not None else auto_levels(self.shape[1:])
        self.chunk = int(chunk)
        self.z_range = (0, self.shape[0]) if z_range is None else (int(z_range[0]), int(z_range[1]))
        self.is_block = z_range is not None
        if not 0 <= self.z_range[0] < self.z_range[1] <= self.shape[0]:
            raise ValueError(f"z_range {z_range} outside the volume's {self.shape[0]} sections")
        self.written = np.zeros(self.z_range[1] - self.z_range[0], bool)
        self._next_row: dict[int, int] = {}  # sections begun by write_rows, not finished yet
        self.name = name or self.path.stem
        self.extra = dict(attrs or {})
        self.channels = None if channels is None else int(channels)
        if self.channels is not None and (self.channels < 1 or kind != "image"):
            raise ValueError(f"channels must be >= 1 and for an image, got {channels} ({kind})")
        self.lead = () if self.channels is None else (self.channels,)
        if self.tmp.exists():  # a killed job's leftover
            shutil.rmtree(self.tmp)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.group = zarr.open_group(str(self.tmp), mode="w", zarr_format=3)
        self.arrays = [self._create(zarr, lv) for lv in range(self.levels)]
        self.closed = False

    def level_shape(self, lv: int) -> tuple[int, int, int]:
        z, h, w = self.shape
        for _ in range(lv):
            h, w = -(-h // 2), -(-w // 2)
        return z, h, w

    def _create(self, zarr, lv: int):
        shape = self.level_shape(lv)
        return self.group.create_array(
            str(lv),
            shape=self.lead + shape,
            chunks=(1,) * len(self.lead) + (1, min(self.chunk, shape[1]), min(self.chunk, shape[2])),
            dtype=self.dtype,
            compressors=zarr.codecs.ZstdCodec(level=3),
            fill_value=0,
            dimension_names=["c"] * len(self.lead) + ["z", "y", "x"],
        )

    @property
    def band_rows(self) -> int:
        """The row band `write_rows` takes best: whole level-0 chunks, a multiple of every level's halving."""
        align = 2 ** (self.levels - 1)
        return -(-min(self.chunk, self.shape[1]) // align) * align

    def write_section(self, k: int, plane: np.ndarray) -> None:
        """Section k (absolute index) at every pyramid level."""
        self.write_rows(k, 0, plane)

    def write_rows(self, k: int, y0: int, rows: np.ndarray) -> None:
        """Rows y0.. of section k (absolute index) at every pyramid level, bands given in order.

        A band starts where the previous one ended, and all but a section's last are a multiple of
        2**(levels - 1) rows high, so each level's rows are those of the whole section's pyramid
        (`downsample2` of a band is the band of the downsampled section). Memory: one band.
        """
        z0, z1 = self.z_range
        if not z0 <= k < z1:
            raise IndexError(f"section {k} outside this writer's z range {self.z_range}")
        rows = np.asarray(rows)
        h, w = self.shape[1:]
        if rows.shape[:-2] != self.lead or rows.shape[-1] != w or not 0 < rows.shape[-2] <= h - y0:
            raise ValueError(f"rows of shape {rows.shape} at y {y0}, expected {self.lead} + (<= {h - y0}, {w})")
        if y0 != self._next_row.get(k, 0):
            raise ValueError(f"section {k}: rows from y {y0} given, {self._next_row.get(k, 0)} expected")
        r, align = rows.shape[-2], 2 ** (self.levels - 1)
        if y0 + r < h and r % align:
            raise ValueError(f"a band of {r} rows: all but a section's last must be a multiple of {align}")
        planes = (rows if self.lead else rows[None]).astype(self.dtype, copy=False)
        for lv, array in enumerate(self.arrays):
            if lv:
                planes = np.stack([downsample2(p, self.kind) for p in planes])
            at = slice(y0 >> lv, (y0 >> lv) + planes.shape[1])
            if self.lead:
                array[:, k, at] = planes
            else:
                array[k, at] = planes[0]
        self._next_row[k] = y0 + r
        if y0 + r == h:
            self.written[k - z0] = True
            del self._next_row[k]

    def write(self, z0: int, block: np.ndarray) -> None:
        for i, plane in enumerate(block):
            self.write_section(z0 + i, plane)

    def copy_from(self, source) -> None:
        """Write this writer's sections from `source`, an array of its full shape (a zarr array: read a row band
        at a time, so memory holds one band of `band_rows`, not a section)."""
        band, lead = self.band_rows, (slice(None),) * len(self.lead)
        for k in range(*self.z_range):
            for y0 in range(0, self.shape[1], band):
                self.write_rows(k, y0, np.asarray(source[(*lead, k, slice(y0, y0 + band))]))

    def metadata(self) -> dict:
        """The NGFF 0.5 `ome` attributes (multiscales, and image-label for labels)."""
        datasets = []
        for lv in range(self.levels):
            f = 2**lv
            scale = [self.voxel[0], self.voxel[1] * f, self.voxel[2] * f]
            # a level-l voxel averages 2**l x 2**l level-0 voxels: its centre is (2**l - 1) / 2 voxels further
            trans = [
                self.offset[0],
                self.offset[1] + (f - 1) / 2 * self.voxel[1],
                self.offset[2] + (f - 1) / 2 * self.voxel[2],
            ]
            if self.lead:
                scale, trans = [1.0] + scale, [0.0] + trans
            datasets.append(
                {
                    "path": str(lv),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": scale},
                        {"type": "translation", "translation": trans},
                    ],
                }
            )
        axes = [{"name": "c", "type": "channel"}] * len(self.lead)
        axes += [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
        ms = {
            "version": "0.5",
            "name": self.name,
            "axes": axes,
            "datasets": datasets,
            "type": "mean" if self.kind == "image" else "mode",
        }
        ome = {"version": "0.5", "multiscales": [ms]}
        if self.kind == "labels":
            ome["image-label"] = {"version": "0.5"}
        return ome

    def close(self) -> Path:
        """Check every section was written, write the metadata and move the result onto `path`."""
        if self.closed:
            return self.path
        missing = np.flatnonzero(~self.written)
        if missing.size:
            self.abort()
            raise RuntimeError(
                f"{self.path}: sections {[int(k) + self.z_range[0] for k in missing[:5]]} were never written"
            )
        own = {"kind": self.kind, "shape": list(self.lead + self.shape), "dtype": str(self.dtype), **self.extra}
        if self.is_block:
            own["z_range"] = list(self.z_range)
        self.group.attrs.update({"ome": self.metadata(), ATTR: own})
        _replace_dir(self.tmp, self.path)
        self.closed = True
        return self.path

    def abort(self) -> None:
        self.closed = True
        if self.tmp.exists():
            shutil.rmtree(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        else:
            self.close()


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename a finished directory onto dst (an older dst is removed first; a file dst is replaced)."""
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    elif dst.exists():
        dst.unlink()
    os.replace(src, dst)


def write_ome_zarr(path, vol: np.ndarray, voxel_nm, offset_nm=None, kind: str = "image", **kw) -> Path:
    """A whole in-memory (z, y, x) array as an OME-Zarr (section by section, like the streaming writer)."""
    vol = np.asarray(vol)
    with OmeZarrWriter(path, vol.shape, vol.dtype, voxel_nm, offset_nm, kind, **kw) as w:
        for k in range(vol.shape[0]):
            w.write_section(k, vol[k])
    return Path(path)


def gather_blocks(
    block_paths: Sequence[str | os.PathLike], out_path: str | os.PathLike, name: str | None = None
) -> Path:
    """Join the blocks of a blockwise write (OmeZarrWriter with z_range) into the whole volume at out_path.

    The blocks must cover the sections 0..z in order, without gaps or overlaps. Chunk files are
    hard-linked (copied where the file system cannot link), never decoded, and the metadata
    are the one-job writer's, so the result is byte for byte what one job writes to the same
    path (the multiscale's name: `name`, else the output's stem, as the writer's default).
    """
    import zarr

    blocks = [Path(p) for p in block_paths]
    infos = []
    for p in blocks:
        if not p.is_dir():
            raise InputError(f"{p}: block output missing; rerun its block job")
        info = dict(zarr.open_group(str(p), mode="r").attrs).get(ATTR, {})
        if "z_range" not in info:
            raise InputError(f"{p}: not a block of a blockwise write (no z_range); rerun its block job")
        infos.append(info)
    ranges = [tuple(i["z_range"]) for i in infos]
    z = infos[0]["shape"][0]
    edges = [0] + [r[1] for r in ranges]
    if [r[0] for r in ranges] != edges[:-1] or edges[-1] != z:
        raise InputError(f"blocks {ranges} do not cover sections 0..{z} in order; rerun the block jobs")
    first = zarr.open_group(str(blocks[0]), mode="r")
    ome = dict(first.attrs)["ome"]
    ms = ome["multiscales"][0]
    scale0, trans0 = _transforms(ms["datasets"][0]["coordinateTransformations"], 3)
    own = {k: v for k, v in infos[0].items() if k != "z_range"}
    a0 = first[ms["datasets"][0]["path"]]
    extra = {k: v for k, v in own.items() if k not in ("kind", "shape", "dtype")}
    writer = OmeZarrWriter(
        out_path,
        own["shape"],
        own["dtype"],
        scale0,
        trans0,
        own["kind"],
        levels=len(ms["datasets"]),
        chunk=a0.chunks[1] if a0.shape[1] > a0.chunks[1] else CHUNK,
        name=name,
        attrs=extra,
    )
    try:
        for p, (z0, z1) in zip(blocks, ranges):
            for lv in range(writer.levels):
                src = p / str(lv) / "c"
                for zk in range(z0, z1):
                    sdir = src / str(zk)
                    if sdir.is_dir():
                        _link_tree(sdir, writer.tmp / str(lv) / "c" / str(zk))
        writer.written[:] = True
        mine = writer.metadata()
        mine["multiscales"][0]["name"] = ms.get("name")
        if mine != ome:
            raise InputError(f"{blocks[0]}: block metadata differ from what the writer writes; rerun the block jobs")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return Path(out_path)


def _link_tree(src: Path, dst: Path) -> None:
    for root, _dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            try:
                os.link(Path(root) / f, target / f)
            except OSError:  # another file system or no hard links: copy
                shutil.copy2(Path(root) / f, target / f)


# --------------------------------------------------------------------------- streaming any format


class TiffSink:
    """A TIFF written section by section (`io.write_tiff_sections` fed from a queue by a writer thread).

    Same bytes as `io.write_tiff` of the whole array; one section queued at a time (plus the one
    being compressed, which the thread does beside the caller's compute). `z_range`: this sink
    holds only those sections (a block job's TIFF).
    """

    def __init__(self, path, shape, dtype, voxel_nm, z_range: tuple[int, int] | None = None):
        self.path = Path(path)
        self.z0, z1 = (0, int(shape[0])) if z_range is None else (int(z_range[0]), int(z_range[1]))
        self.shape = (z1 - self.z0, int(shape[1]), int(shape[2]))
        self.dtype = np.dtype(dtype)
        self.next = self.z0
        self._rows = (None, None, 0)  # (section, its plane, rows filled) of a section given in bands
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(voxel_nm,), daemon=True)
        self.thread.start()

    def _pages(self):
        while True:
            item = self.queue.get()
            if item is None:
                return
            if item is _ABORT:
                raise _Aborted()
            yield item

    def _run(self, voxel_nm) -> None:
        try:
            write_tiff_sections(self.path, self._pages(), self.shape, self.dtype, voxel_nm)
        except _Aborted:
            pass
        except BaseException as exc:  # reported to the caller at its next write or at close
            self.error = exc
            while True:  # drain so the caller never blocks on a dead writer
                if self.queue.get() in (None, _ABORT):
                    break

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    #: a TIFF page is written whole: bands are gathered into their section (`write_rows`)
    band_rows = None

    def write_section(self, k: int, plane: np.ndarray) -> None:
        self._check()
        if k != self.next:
            raise IndexError(f"{self.path}: section {k} given, {self.next} expected (a TIFF is written in order)")
        self.queue.put(np.ascontiguousarray(plane, self.dtype))
        self.next += 1

    def write_rows(self, k: int, y0: int, rows: np.ndarray) -> None:
        """Rows y0.. of section k, in order; the section is queued when its last row arrives (memory: one section)."""
        h = self.shape[1]
        if y0 == 0 and rows.shape[0] == h:
            return self.write_section(k, rows)
        if y0 == 0:
            self._rows = (k, np.empty(self.shape[1:], self.dtype), 0)
        pending, plane, done = self._rows
        if pending != k or y0 != done:
            raise ValueError(f"{self.path}: section {k} rows from y {y0} given out of order")
        plane[y0 : y0 + rows.shape[0]] = rows
        self._rows = (k, plane, y0 + rows.shape[0])
        if y0 + rows.shape[0] == h:
            self._rows = (None, None, 0)
            self.write_section(k, plane)

    def close(self) -> Path:
        self.queue.put(None)
        self.thread.join()
        self._check()
        return self.path

    def abort(self) -> None:
        if self.thread.is_alive():
            self.queue.put(_ABORT)
            self.thread.join()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        else:
            self.close()


class _Aborted(Exception):
    pass


_ABORT = object()


def open_sink(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype,
    voxel_nm,
    offset_nm=None,
    kind: str = "image",
    z_range: tuple[int, int] | None = None,
    **zarr_kw,
):
    """A section-by-section writer for `path`: `OmeZarrWriter` for *.zarr, else `TiffSink`.

    Both take write_section(k, plane) with absolute section indices, close() (the output
    appears, complete) and abort() (nothing appears); as context managers they abort on an
    exception. A TIFF keeps the voxel size but not the offset (TIFF has no place for it).
    """
    shape = tuple(int(s) for s in shape)
    if is_zarr(path):
        return OmeZarrWriter(path, shape, dtype, voxel_nm, offset_nm, kind, z_range=z_range, **zarr_kw)
    return TiffSink(path, shape, dtype, voxel_nm, z_range)


def write_sections(path, planes: Iterable[np.ndarray], shape, dtype, voxel_nm, offset_nm=None, **kw) -> Path:
    """Stream an iterable of sections (z0, z0 + 1, ...) into `path` (see `open_sink`)."""
    z0 = kw["z_range"][0] if kw.get("z_range") else 0
    with open_sink(path, shape, dtype, voxel_nm, offset_nm, **kw) as sink:
        for i, plane in enumerate(planes):
            sink.write_section(z0 + i, plane)
    return Path(path)


def concat_tiffs(paths: Sequence[str | os.PathLike], out_path, voxel_nm=None) -> tuple[int, int, int]:
    """Join TIFF stacks along z into one TIFF, section by section (bytes as `io.write_tiff` of the whole)."""
    vols = [TiffVolume(p) for p in paths]
    try:
        shape = (sum(v.shape[0] for v in vols), *vols[0].shape[1:])
        dtype = vols[0].dtype
        if any(v.shape[1:] != shape[1:] or v.dtype != dtype for v in vols):
            raise InputError(f"{', '.join(map(str, paths))}: blocks differ in section shape or dtype; rerun them")
        voxel = voxel_nm if voxel_nm is not None else vols[0].voxel_nm
        write_tiff_sections(out_path, (v.section(k) for v in vols for k in range(v.shape[0])), shape, dtype, voxel)
    finally:
        for v in vols:
            v.close()
    return shape


def volume_info(path: str | os.PathLike) -> dict:
    """Shape, dtype, voxel size and format of a volume (headers only): for json summaries."""
    with open_volume(path) as v:
        return {"shape": list(v.shape), "dtype": str(v.dtype), "voxel_nm": v.voxel_nm, "format": v.format}


def dumps_ome(path) -> str:
    """The `ome` metadata of an OME-Zarr written here, as indented JSON (README, debugging)."""
    return json.dumps(json.loads((Path(path) / "zarr.json").read_text())["attributes"]["ome"], indent=2)
