"""Training data: LR/HR volume pairs, random patches with flips/rotations, fixed validation patches.

Pairs are (z, y, x) volumes with HR exactly `scale` x LR in y and x (same z); HR pixel
block [i*s, (i+1)*s) covers LR pixel i. A patch is a 2D LR square of side `patch` and the
HR square of side patch*scale over the same area. The volumes are kept in their stored
dtype (`StoredVolume`) and only the patches drawn become float32 in [0, 1]: a quarter of
the memory of float32 volumes for uint8 data. A volume larger than `WHOLE_READ_BYTES` is not
held at all: its patches are read from its chunks (`ChunkedSections`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tifffile

from .io import InputError, _voxel_from_tiff, read_tiff, to_float

#: a training job reads its compressed volumes whole (random patches from memory are the fastest:
#: bench/patch_reads.py measured 16x faster batches) while together they stay under this many stored
#: bytes; the rest are read chunk by chunk, so training memory does not grow with the fields
WHOLE_READ_BYTES = 512 * 2**20


class ReadBudget:
    """Opens a job's volumes (`StoredVolume.open`) whole while they fit in `WHOLE_READ_BYTES` together."""

    def __init__(self, budget: int | None = None):
        self.left = WHOLE_READ_BYTES if budget is None else int(budget)

    def open(self, path) -> StoredVolume:
        vol = StoredVolume.open(path, self.left)
        if isinstance(vol.array, np.ndarray) and not isinstance(vol.array, np.memmap):
            self.left -= vol.array.nbytes  # memory-mapped pages are the page cache's, not the job's
        return vol


class ChunkedSections:
    """A (z, y, x) zarr array seen through a section range and read chunk by chunk: what `StoredVolume`
    holds of a volume too large to read whole (an OME-Zarr / zarr array, or a compressed TIFF through
    tifffile's zarr store, whose chunks are the strips of its pages).

    Indexing follows numpy (ints, slices of any step, integer arrays, Ellipsis) and reads only the
    bounding box of the selection; `sections(slice(a, b))` is the lazy view of sections a..b-1. Written here
    because zarr 3 arrays have no lazy views and no negative steps.
    """

    def __init__(self, array, start: int = 0, stop: int | None = None, keepalive=None):
        if array.ndim != 3:
            raise ValueError(f"expected a (z, y, x) array, got shape {array.shape}")
        self.array, self.start = array, int(start)
        self.stop = int(array.shape[0] if stop is None else stop)
        self._keepalive = keepalive  # the open TiffFile whose file handle the store reads through

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.stop - self.start, *(int(n) for n in self.array.shape[1:]))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    ndim = 3

    def sections(self, key: slice) -> ChunkedSections:
        a, b, step = key.indices(self.shape[0])
        if step != 1:
            raise ValueError("a lazy section range needs step 1")
        return ChunkedSections(self.array, self.start + a, self.start + max(a, b), self._keepalive)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1 :]
        if len(key) > 3:
            raise IndexError(f"too many indices for a (z, y, x) volume: {key!r}")
        key = key + (slice(None),) * (3 - len(key))
        box, post = [], []
        for k, n in zip(key, self.shape):
            if isinstance(k, slice):
                r = range(n)[k]
                lo, hi = (min(r[0], r[-1]), max(r[0], r[-1]) + 1) if len(r) else (0, 0)
                box.append(slice(lo, hi))
                post.append(slice(None, None, k.step) if k.step is not None and k.step != 1 else slice(None))
            elif isinstance(k, (int, np.integer)):
                i = range(n)[int(k)]  # IndexError, as numpy, for one out of range
                box.append(slice(i, i + 1))
                post.append(0)
            else:
                idx = np.asarray(k)
                if idx.dtype.kind not in "iu":
                    raise IndexError(f"only integer, slice and integer-array indices are supported, got {k!r}")
                idx = np.where(idx < 0, idx + n, idx)
                if idx.size and (idx.min() < 0 or idx.max() >= n):
                    raise IndexError(f"index out of range for an axis of {n}")
                lo = int(idx.min()) if idx.size else 0
                box.append(slice(lo, int(idx.max()) + 1 if idx.size else 0))
                post.append(idx - lo)
        box[0] = slice(box[0].start + self.start, box[0].stop + self.start)
        return np.asarray(self.array[tuple(box)])[tuple(post)]


class StoredVolume:
    """A (z, y, x) image in its stored dtype whose patches come out as float32 in [0, 1] (`io.to_float`).

    `open` reads a TIFF once in its stored dtype (rule pairs writes zlib-compressed uint8 or
    uint16), or memory-maps it where it is uncompressed, so the OS pages in only the
    sections patches are cut from; a float32 copy of the whole volume (4 bytes per voxel)
    never exists. A compressed TIFF or an OME-Zarr / zarr array of more than `whole_read_bytes`
    (`WHOLE_READ_BYTES`; `ReadBudget` shares it among a job's volumes) is not read at all:
    each patch decodes only the chunks it covers (`ChunkedSections`).
    Indexing with a section range (`vol[a:b]`) gives another StoredVolume; any other index
    gives the float32 array, as indexing the float32 volume would.
    """

    def __init__(self, array: np.ndarray, voxel_nm: list[float] | None = None):
        self.voxel_nm = voxel_nm
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"expected a (z, y, x) volume, got shape {array.shape}")
        to_float(array[:0])  # refuses unsupported dtypes now, with the fix
        self.array = array

    @classmethod
    def open(cls, path, whole_read_bytes: int | None = None) -> StoredVolume:
        """whole_read_bytes: None for `WHOLE_READ_BYTES`."""
        from .volumes import is_zarr, open_volume

        whole_read_bytes = WHOLE_READ_BYTES if whole_read_bytes is None else int(whole_read_bytes)

        if is_zarr(path):
            vol = open_volume(path)
            if vol.array.ndim == 2 or int(np.prod(vol.shape)) * vol.dtype.itemsize <= whole_read_bytes:
                return cls(np.asarray(vol.array[...]).reshape(vol.shape), vol.voxel_nm)
            return cls(ChunkedSections(vol.array), vol.voxel_nm)
        if not Path(path).exists():
            raise InputError(f"{path}: file not found; check the path in config.yaml")
        try:
            array = tifffile.memmap(path, mode="r")
        except (ValueError, TypeError, OSError):  # compressed (rule pairs' zlib) or tiled: not mappable
            return cls._open_compressed(path, whole_read_bytes)
        with tifffile.TiffFile(path) as tif:
            return cls(array, _voxel_from_tiff(tif))

    @classmethod
    def _open_compressed(cls, path, whole_read_bytes: int) -> StoredVolume:
        import zarr

        try:
            tif = tifffile.TiffFile(path)
        except Exception:  # read_tiff says what is wrong with it, in one sentence
            return cls(*read_tiff(path))
        series = tif.series[0]
        if len(series.shape) != 3 or int(np.prod(series.shape)) * series.dtype.itemsize <= whole_read_bytes:
            tif.close()
            return cls(*read_tiff(path))
        array = zarr.open_array(series.aszarr(), mode="r")
        return cls(ChunkedSections(array, keepalive=tif), _voxel_from_tiff(tif))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    def __getitem__(self, key):
        if isinstance(key, slice):
            if isinstance(self.array, ChunkedSections):
                return StoredVolume(self.array.sections(key), self.voxel_nm)
            return StoredVolume(self.array[key], self.voxel_nm)
        return to_float(np.asarray(self.array[key]))

    def is_finite(self) -> bool:
        """No NaN or Inf, checked section by section (integer volumes always are)."""
        if not np.issubdtype(self.array.dtype, np.floating):
            return True
        return all(np.isfinite(self.array[z]).all() for z in range(self.shape[0]))


def load_pairs(lr_paths: list[str], hr_paths: list[str]) -> tuple[list[tuple[StoredVolume, StoredVolume]], int]:
    """Open LR/HR TIFF pairs (`StoredVolume`); check HR = scale x LR (one integer scale for all pairs)."""
    if not lr_paths or len(lr_paths) != len(hr_paths):
        raise InputError(
            f"training needs one HR file per LR file, got {len(lr_paths)} LR and {len(hr_paths)} HR;"
            " check the fold's training specimens"
        )
    pairs, scale, budget = [], None, ReadBudget()
    for lp, hp in zip(lr_paths, hr_paths):
        lr, hr = budget.open(lp), budget.open(hp)
        if lr.shape[0] != hr.shape[0]:
            raise InputError(
                f"{lp}: {lr.shape[0]} sections but {hp} has {hr.shape[0]}; pair LR and HR section by section"
            )
        ry, rx = hr.shape[1] / lr.shape[1], hr.shape[2] / lr.shape[2]
        if ry != rx or not ry.is_integer() or ry < 1:
            raise InputError(
                f"{hp}: HR shape {hr.shape[1:]} is not an integer multiple of LR shape {lr.shape[1:]} from {lp}; "
                "HR must be exactly scale x LR in y and x"
            )
        if scale is not None and int(ry) != scale:
            raise InputError(
                f"{hp}: scale {int(ry)} differs from {scale} of the other training pairs; use one scale per model"
            )
        scale = int(ry)
        for name, vol in ((lp, lr), (hp, hr)):
            if not vol.is_finite():
                raise InputError(f"{name}: contains NaN or Inf values; fix the image")
        pairs.append((lr, hr))
    return pairs, scale


def validation_sections(n_sections: int, fraction: float) -> tuple[slice, slice]:
    """(train, validation) section slices of a specimen: validation = its last ceil(fraction * n) sections.

    The one definition (config `validation.fraction`) that SR training, affinity training and
    every row's threshold choice share, so no model is ever trained on the sections a
    threshold is chosen on. At least one section stays on each side (n >= 2).
    """
    if n_sections < 2:
        raise InputError(f"{n_sections} section cannot be split into training and validation; give at least 2")
    n_val = min(max(1, math.ceil(fraction * n_sections)), n_sections - 1)
    return slice(0, n_sections - n_val), slice(n_sections - n_val, n_sections)


def split_sections(pairs, val_fraction: float):
    """Hold back each volume's validation sections (`validation_sections`) for validation patches.

    Sections, not random pixels, so validation patches never overlap training patches.
    A single-section volume is used for both (validation then measures fit, not generalisation).
    Returns (train pairs, val pairs).
    """
    train, val = [], []
    for lr, hr in pairs:
        if lr.shape[0] < 2:
            train.append((lr, hr))
            val.append((lr, hr))
            continue
        tr, va = validation_sections(lr.shape[0], val_fraction)
        train.append((lr[tr], hr[tr]))
        val.append((lr[va], hr[va]))
    return train, val


def check_patch(pairs, patch: int, paths: list[str] | None = None) -> None:
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise InputError(f"config key patch: must be a positive integer (LR pixels), got {patch!r}")
    for i, (lr, _) in enumerate(pairs):
        if min(lr.shape[1:]) < patch:
            where = paths[i] if paths else f"training pair {i}"
            raise InputError(
                f"{where}: LR sections of {lr.shape[1]} x {lr.shape[2]} px are smaller than the training patch "
                f"{patch}; lower `patch`"
            )


def is_empty(hr_patch: np.ndarray, min_std: float = 0.01) -> bool:
    """Blank patches (outside the imaged field, padding) teach nothing: nearly constant, or mostly exact 0."""
    return float(hr_patch.std()) < min_std or float(np.mean(hr_patch <= 0.0)) > 0.5


def augment(lr: np.ndarray, hr: np.ndarray, k: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """The same 90-degree rotation (k quarter turns) and optional flip on both patches.

    Acts on the last two axes, so a (2k+1, p, p) z-context stack turns with its HR patch.
    """
    lr, hr = np.rot90(lr, k, axes=(-2, -1)), np.rot90(hr, k, axes=(-2, -1))
    if flip:
        lr, hr = lr[..., ::-1], hr[..., ::-1]
    return lr, hr


def context_indices(z: int, context: int, n: int) -> np.ndarray:
    """Sections z-k .. z+k of a volume of n sections, edge sections replicated (2.5D input)."""
    return np.clip(np.arange(z - context, z + context + 1), 0, n - 1)


class PatchSampler:
    """Random non-empty LR/HR patch pairs with the 8 dihedral augmentations, from a numpy Generator.

    The Generator is the only source of randomness, so saving ``rng.bit_generator.state``
    in a checkpoint makes a resumed run draw exactly the patches an uninterrupted run draws.
    With ``context`` k > 0 the LR patch is the stack of the 2k+1 sections around the HR
    section (edges replicated), giving (n, 2k+1, p, p) LR batches.
    """

    def __init__(
        self,
        pairs,
        patch: int,
        scale: int,
        rng: np.random.Generator,
        augment: bool = True,
        min_std: float = 0.01,
        max_tries: int = 50,
        context: int = 0,
    ):
        check_patch(pairs, patch)
        self.pairs, self.patch, self.scale, self.rng = pairs, patch, scale, rng
        self.context = int(context)
        self.augment, self.min_std, self.max_tries = augment, min_std, max_tries
        # pick volumes in proportion to their number of patch positions
        n = np.array([lr.shape[0] * (lr.shape[1] - patch + 1) * (lr.shape[2] - patch + 1) for lr, _ in pairs], float)
        self.p = n / n.sum()
        self.n_empty_skipped = 0

    def one(self) -> tuple[np.ndarray, np.ndarray]:
        p, s = self.patch, self.scale
        for _ in range(self.max_tries):
            lr, hr = self.pairs[self.rng.choice(len(self.pairs), p=self.p)]
            z = self.rng.integers(lr.shape[0])
            y = self.rng.integers(lr.shape[1] - p + 1)
            x = self.rng.integers(lr.shape[2] - p + 1)
            hp = hr[z, y * s : (y + p) * s, x * s : (x + p) * s]
            if not is_empty(hp, self.min_std):
                break
            self.n_empty_skipped += 1
        lp = lr[context_indices(z, self.context, lr.shape[0]), y : y + p, x : x + p]  # (2k+1, p, p)
        if self.augment:
            lp, hp = augment(lp, hp, int(self.rng.integers(4)), bool(self.rng.integers(2)))
        return lp, hp

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, 2k+1, p, p) LR and (n, 1, p*s, p*s) HR float32 arrays (k = context, 0 by default)."""
        items = [self.one() for _ in range(n)]
        lr = np.stack([a for a, _ in items])
        hr = np.stack([b for _, b in items])[:, None]
        return np.ascontiguousarray(lr, np.float32), np.ascontiguousarray(hr, np.float32)


def fixed_patches(pairs, patch: int, scale: int, n: int, seed: int, context: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded set of n non-empty validation patches (no augmentation)."""
    sampler = PatchSampler(pairs, patch, scale, np.random.default_rng(seed), augment=False, context=context)
    return sampler.batch(n)
