"""Tiled super-resolution of whole LR volumes in bounded memory, streamed band by band.

Each section is cut into LR tiles of `tile` px that overlap by `overlap` px (srseg.tiling,
the tiler affinity prediction shares); batches of tiles go through the model on the
device and the HR tiles are blended there, with a separable raised-cosine weight: on
every side that has a neighbouring tile the weight is 0 for the outer quarter of the
overlap (where the tile's own border effects live), rises smoothly over the middle half
and is 1 inside. Weighted tiles are summed into a device buffer and divided by the sum of
the weights, so there are no seams, and a model whose receptive field is within a quarter
of the overlap gives the untiled result exactly. The float32 sums run in the same order as
the former host-side blending, so CPU results are byte for byte what they were.

Memory is bounded whatever the number of sections, and whatever their height: LR sections
are read lazily (TIFF pages, zarr chunks; srseg.volumes); the device buffer holds a band of
HR rows plus one tile row, and each band is handed out as soon as no later tile reaches it
(`TiledSR.bands`, `iter_super_resolve_bands`: quantised on the device, copied back through
pinned buffers while the next band computes); run_infer streams the bands into an OME-Zarr
(`OmeZarrWriter.write_rows`, a band of its chunk's height) or gathers them into TIFF pages.
What still grows with the section is its LR stack (1/scale^2 of the HR pixels) and, for a
TIFF output or `infer.samples` > 1, the whole HR section.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch
from tqdm import tqdm

from .config import section
from .data import context_indices
from .io import InputError, from_float, read_json, to_float, write_json
from .log import get_logger
from .models import build_model, load_trained
from .runtime import autocast, resolve_device, set_threads
from .tiling import check_tiling, tile_axis
from .volumes import Volume, concat_tiffs, gather_blocks, is_zarr, open_sink, open_volume

#: torch dtypes of the quantised outputs (`from_float` on the device)
_TORCH_DTYPES = {"uint8": (torch.uint8, 255.0), "uint16": (torch.uint16, 65535.0)}


class TiledSR:
    """The tiled forward of one model over sections of one (h, w) size, blended on the device.

    `bands(stack, k, noise_seed, out_dtype, rows)` super-resolves the (2c+1, h, w) float32 LR
    stack around section k (c: the model's 2.5D context) and yields the HR section as bands of
    `rows` rows (device tensors, float32 or quantised to `out_dtype` exactly as `io.from_float`
    does), each as soon as no later tile reaches it: memory holds one band plus a tile's height,
    not the section. `section(...)` is the whole section (one band). Every pixel gets the same
    additions in the same (tile) order either way, so bands join to the section's bytes.
    """

    def __init__(self, model, hw, scale, tile=64, overlap=8, batch=8, device="cpu", amp=True, compile=False):
        check_tiling(tile, overlap, batch)
        self.device = device = torch.device(device)
        self.scale, self.batch, self.amp = int(scale), int(batch), bool(amp)
        h, w = (int(v) for v in hw)
        self.hw = (h, w)
        (self.ys, self.ty, wy), (self.xs, self.tx, wx) = (
            tile_axis(h, tile, overlap, scale),
            tile_axis(w, tile, overlap, scale),
        )
        self.tiles = [(i, j) for i in range(len(self.ys)) for j in range(len(self.xs))]
        # one weight plane per distinct (row weight, column weight): a few, whatever the field size
        ky, kx = _classes(wy), _classes(wx)
        planes: dict[tuple[int, int], np.ndarray] = {}
        for i, j in self.tiles:
            planes.setdefault((ky[i], kx[j]), np.outer(wy[i], wx[j]))
        dev_planes = {key: torch.from_numpy(v).to(device) for key, v in planes.items()}
        self.weights = {(i, j): dev_planes[ky[i], kx[j]] for i, j in self.tiles}
        self._norms: dict[tuple[int, int], torch.Tensor] = {}  # (first row, end row) -> the band's weight sum
        self.fast = device.type == "cuda"
        model = model.to(device).eval()
        if self.fast:  # NHWC kernels are faster for convolutions under mixed precision
            model = model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # all tiles share one shape: autotune once
        self.model = model
        self.forward = torch.compile(model, dynamic=False) if compile else model
        self.pad_batches = bool(compile)  # one batch shape: no recompilation for the last, smaller batch
        self.context = int(getattr(model, "context", 0))

    def section(self, stack: np.ndarray, k: int, noise_seed: int = 0, out_dtype: str = "float32") -> torch.Tensor:
        """The whole HR section k (see `bands`)."""
        ((_, whole),) = self.bands(stack, k, noise_seed, out_dtype)
        return whole

    def _norm(self, r0: int, r1: int) -> torch.Tensor:
        """The summed tile weights of HR rows [r0, r1), added in tile order as the accumulator's products are."""
        key = (r0, r1)
        if key not in self._norms:
            # on the device: float32 sums in the same order are the same bits anywhere (IEEE addition)
            s, ty, tx = self.scale, self.ty, self.tx
            norm = torch.zeros((r1 - r0, self.hw[1] * s), dtype=torch.float32, device=self.device)
            for i, j in self.tiles:
                a, b = max(self.ys[i] * s, r0), min((self.ys[i] + ty) * s, r1)
                if a < b:
                    plane = self.weights[i, j][a - self.ys[i] * s : b - self.ys[i] * s]
                    norm[a - r0 : b - r0, self.xs[j] * s : (self.xs[j] + tx) * s] += plane
            self._norms = {key: norm}  # one: the whole section's, kept across sections
        return self._norms[key]

    def bands(self, stack: np.ndarray, k: int, noise_seed: int = 0, out_dtype: str = "float32", rows=None):
        """Yield (first HR row, band) of section k, bands of `rows` HR rows (None: the whole section)."""
        model, device, s = self.model, self.device, self.scale
        ys, xs, ty, tx = self.ys, self.xs, self.ty, self.tx
        h, w = self.hw
        if out_dtype != "float32" and out_dtype not in _TORCH_DTYPES:
            raise ValueError(f"unknown image dtype {out_dtype!r}; use uint8, uint16 or float32")
        height = h * s
        band = height if rows is None else max(1, min(int(rows), height))
        cap = min(height, band + ty * s)  # a band plus one tile row: all that is ever unfinished
        sec = torch.from_numpy(np.ascontiguousarray(stack, np.float32))
        if self.fast:
            sec = sec.pin_memory()
        sec = sec.to(device, non_blocking=True)
        noise = section_noise(model, h, w, noise_seed, k, device)
        acc = torch.zeros((cap, w * s), dtype=torch.float32, device=device)
        lo = 0  # the HR row of acc's first row

        def finish(r: int) -> torch.Tensor:
            res = acc[:r] / self._norm(lo, lo + r)
            if out_dtype == "float32":
                return res
            dtype, top = _TORCH_DTYPES[out_dtype]
            return res.clamp_(0.0, 1.0).mul_(top).round_().to(dtype)  # = io.from_float: rint(clip(v) * top)

        for b in range(0, len(self.tiles), self.batch):
            ready = []  # bands finished in this batch, handed out outside inference mode
            with torch.inference_mode():
                chunk = self.tiles[b : b + self.batch]
                run = chunk + [chunk[-1]] * (self.batch - len(chunk)) if self.pad_batches else chunk
                x = torch.stack([sec[:, ys[i] : ys[i] + ty, xs[j] : xs[j] + tx] for i, j in run])
                if self.fast:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(device, self.amp):
                    y = (
                        self.forward(x)
                        if noise is None
                        else self.forward(x, noise=tile_noise(noise, run, ys, xs, ty, tx, model.noise_factor))
                    )
                y = y[: len(chunk)].float().clamp_(0.0, 1.0)[:, 0]
                for (i, j), t in zip(chunk, y):
                    r0 = ys[i] * s
                    while r0 + ty * s - lo > cap:  # then r0 > lo + band: no tile from here on reaches the band
                        ready.append((lo, finish(band)))
                        acc[: cap - band] = acc[band:].clone()
                        acc[cap - band :] = 0.0
                        lo += band
                    # t * weight, then add: two roundings, as numpy's acc += t * w did (no fused multiply-add)
                    acc[r0 - lo : r0 - lo + ty * s, xs[j] * s : (xs[j] + tx) * s].add_(t * self.weights[i, j])
            yield from ready
        while lo < height:
            r = min(band, height - lo)
            with torch.inference_mode():
                last = finish(r)
                acc[: cap - r] = acc[r:].clone()
            yield lo, last
            lo += r


def _classes(weights: list[np.ndarray]) -> list[int]:
    """Index of each tile's 1D weight among the distinct weights of its axis."""
    seen: dict[bytes, int] = {}
    return [seen.setdefault(w.tobytes(), len(seen)) for w in weights]


class _SectionReader:
    """Float32 LR sections of a volume (array or lazy Volume), with its 2.5D context stacks, each read once."""

    def __init__(self, vol, context: int, check_finite: str | None = None):
        self.vol = vol
        self.lazy = isinstance(vol, Volume)
        self.n = vol.shape[0]
        self.context = context
        self.cache: dict[int, np.ndarray] = {}
        self.where = check_finite

    def _one(self, k: int) -> np.ndarray:
        if k not in self.cache:
            plane = to_float(np.asarray(self.vol.section(k))) if self.lazy else self.vol[k]
            if self.where is not None and plane.dtype.kind == "f" and not np.isfinite(plane).all():
                raise InputError(f"{self.where}: section {k} contains NaN or Inf values; fix the image")
            self.cache[k] = plane
        return self.cache[k]

    def stack(self, k: int) -> np.ndarray:
        idx = context_indices(k, self.context, self.n)
        for old in [i for i in self.cache if i < idx[0]]:
            del self.cache[old]
        return np.ascontiguousarray(np.stack([self._one(int(i)) for i in idx]), np.float32)


def iter_super_resolve(
    model: torch.nn.Module,
    vol,
    scale: int,
    tile: int = 64,
    overlap: int = 8,
    batch: int = 8,
    device: str | torch.device = "cpu",
    amp: bool = True,
    out_dtype: str = "float32",
    progress: bool = True,
    noise_seed: int = 0,
    sections: tuple[int, int] | None = None,
    compile: bool = False,
    samples: int = 1,
    check_finite: str | None = None,
) -> Iterator[np.ndarray] | Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield the HR sections (h*s, w*s) of sections z0..z1-1 of `vol`, in out_dtype, one at a time.

    vol: a (z, y, x) float array in [0, 1] or a lazy `srseg.volumes.Volume` in its on-disk
    dtype (read section by section and mapped with io.to_float). `sections` (z0, z1): only
    those (one block of a scattered job); 2.5D context still reads the neighbours outside the
    block and noise is seeded by the absolute section index, so blocks join to exactly the
    whole-volume result. samples > 1 (generative archs): yields (sample 0 in out_dtype,
    per-pixel population std float32) of `samples` noise seeds noise_seed, noise_seed+1, ...
    On CUDA the section is copied back into pinned memory while the next one computes.
    check_finite: name the source in an InputError if a section holds NaN/Inf.
    For sections too wide to hold whole, `iter_super_resolve_bands` yields them in row bands.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise InputError(f"config key infer.samples: must be an integer >= 1, got {samples!r}")
    args = (model, vol, scale, tile, overlap, batch, device, amp)
    if samples == 1:
        kw = dict(progress=progress, noise_seed=noise_seed, sections=sections, compile=compile)
        for _, _, section in iter_super_resolve_bands(*args, out_dtype, check_finite=check_finite, **kw):
            yield section
        return
    z, h, w = vol.shape
    engine = TiledSR(model, (h, w), scale, tile, overlap, batch, device, amp, compile)
    reader = _SectionReader(vol, engine.context, check_finite)
    z0, z1 = sections if sections is not None else (0, z)
    bar = tqdm(total=(z1 - z0) * len(engine.tiles) * samples, desc="infer tiles", mininterval=5, disable=not progress)
    try:
        for k in range(z0, z1):
            stack = reader.stack(k)
            first, mean, m2 = None, None, None  # Welford running mean / M2 (float64), per section
            for i in range(samples):
                sr = engine.section(stack, k, noise_seed + i, "float32").cpu().numpy()
                bar.update(len(engine.tiles))
                if i == 0:
                    first, mean, m2 = sr.copy(), sr.astype(np.float64), np.zeros(sr.shape, np.float64)
                    continue
                delta = sr - mean
                mean += delta / (i + 1)
                m2 += delta * (sr - mean)
            std = np.sqrt(m2 / samples).astype(np.float32)  # population std over the samples
            yield (first if out_dtype == "float32" else from_float(first, out_dtype)), std
    finally:
        bar.close()


def iter_super_resolve_bands(
    model: torch.nn.Module,
    vol,
    scale: int,
    tile: int = 64,
    overlap: int = 8,
    batch: int = 8,
    device: str | torch.device = "cpu",
    amp: bool = True,
    out_dtype: str = "float32",
    progress: bool = True,
    noise_seed: int = 0,
    sections: tuple[int, int] | None = None,
    compile: bool = False,
    check_finite: str | None = None,
    band_rows: int | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (section, first HR row, rows) of the HR sections z0..z1-1, in bands of `band_rows` HR rows
    (None: whole sections), as `iter_super_resolve` does for one sample: the same bytes, and memory that
    holds one band plus a tile's height of the section (`TiledSR.bands`), not the whole HR section."""
    z, h, w = vol.shape
    engine = TiledSR(model, (h, w), scale, tile, overlap, batch, device, amp, compile)
    reader = _SectionReader(vol, engine.context, check_finite)
    z0, z1 = sections if sections is not None else (0, z)
    bar = tqdm(total=(z1 - z0) * len(engine.tiles), desc="infer tiles", mininterval=5, disable=not progress)
    host = _HostCopies(engine.device)
    try:
        for k in range(z0, z1):
            for y0, band in engine.bands(reader.stack(k), k, noise_seed, out_dtype, band_rows):
                ready = host.push(band, (k, y0))
                if ready is not None:
                    yield (*ready[0], ready[1])
            bar.update(len(engine.tiles))
        last = host.flush()
        if last is not None:
            yield (*last[0], last[1])
    finally:
        bar.close()


class _HostCopies:
    """Device bands back to the host. CUDA: a non-blocking copy into one of two pinned buffers,
    handed out one push later (after its event), so the copy and the caller's writing overlap
    the next band's compute. CPU: the tensor's own memory, at once. push(t, tag) returns the
    previous (tag, array), or None."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.buffers: list[torch.Tensor | None] = [None, None]
        self.pending = None
        self.turn = 0

    def push(self, t: torch.Tensor, tag=None):
        if not self.cuda:
            return tag, t.numpy()
        buf = self.buffers[self.turn]
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:  # a section's last band may be shorter
            buf = self.buffers[self.turn] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        self.turn ^= 1
        buf.copy_(t, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        ready, self.pending = self.flush(), (tag, buf, event)
        return ready

    def flush(self):
        if self.pending is None:
            return None
        tag, buf, event = self.pending
        self.pending = None
        event.synchronize()
        return tag, buf.numpy().copy()  # the buffer is reused two pushes later


def super_resolve(
    model: torch.nn.Module,
    vol,
    scale: int,
    tile: int = 64,
    overlap: int = 8,
    batch: int = 8,
    device: str | torch.device = "cpu",
    amp: bool = True,
    out_dtype: str = "float32",
    progress: bool = True,
    noise_seed: int = 0,
    sections: tuple[int, int] | None = None,
    compile: bool = False,
) -> np.ndarray:
    """Super-resolve a (z, y, x) float volume in [0, 1] tile by tile; returns (z, y*s, x*s) in out_dtype.

    The in-memory convenience over `iter_super_resolve` (same arguments, same bytes): the
    whole output is one array, so use iter_super_resolve or run_infer for large volumes.
    """
    z, h, w = vol.shape
    z0, z1 = sections if sections is not None else (0, z)
    out = np.empty((z1 - z0, h * scale, w * scale), np.dtype(out_dtype))
    it = iter_super_resolve(
        model, vol, scale, tile, overlap, batch, device, amp, out_dtype, progress, noise_seed, sections, compile
    )
    for k, plane in enumerate(it):
        out[k] = plane
    return out


def section_noise(model, h: int, w: int, seed: int, k: int, device) -> torch.Tensor | None:
    """Generative archs (noise_factor > 0): one noise plane for the whole section, from a generator
    seeded by (seed, section), so overlapping tiles see the same noise where they overlap (no seams)."""
    f = int(getattr(model, "noise_factor", 0))
    if not f:
        return None
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0]))
    return torch.randn((int(model.noise_channels), h * f, w * f), generator=g).to(device)


def tile_noise(noise: torch.Tensor, chunk, ys, xs, ty: int, tx: int, f: int) -> torch.Tensor:
    """The section's noise plane cut at each tile's position (factor f = noise px per LR px): (B, C, ty*f, tx*f)."""
    return torch.stack([noise[:, ys[i] * f : (ys[i] + ty) * f, xs[j] * f : (xs[j] + tx) * f] for i, j in chunk])


def sample_std(
    model,
    vol,
    scale,
    tile,
    overlap,
    batch,
    device,
    amp,
    samples: int,
    seed: int,
    out_dtype: str,
    sections: tuple[int, int] | None = None,
):
    """`samples` SR volumes with noise seeds seed, seed+1, ...: (sample 0 in out_dtype, per-pixel std float32).

    Sample 0 is what samples=1 gives, so asking for a variance map does not change the SR output.
    Welford running mean / M2 (float64) per section keep memory bounded whatever the sample count.
    In memory: `iter_super_resolve(..., samples=n)` streams the same pairs section by section."""
    it = iter_super_resolve(
        model, vol, scale, tile, overlap, batch, device, amp, out_dtype, False, seed, sections, samples=samples
    )
    pairs = list(it)
    return np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])


def z_blocks(n: int, blocks: int) -> list[tuple[int, int]]:
    """Contiguous, near-equal (z0, z1) section ranges splitting n sections into `blocks` (np.array_split sizes)."""
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise InputError(f"config key infer.blocks_z: must be an integer >= 1, got {blocks!r}")
    if blocks > n:
        raise InputError(
            f"config key infer.blocks_z: {blocks} blocks but the volume has only {n} sections; lower infer.blocks_z"
        )
    edges = np.cumsum([0] + [len(a) for a in np.array_split(np.arange(n), blocks)])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _hr_voxel(pairs: dict | None, lr_voxel, scale: int, lr_path) -> list[float]:
    if pairs and pairs.get("hr_voxel_nm"):
        return [float(v) for v in pairs["hr_voxel_nm"]]
    if lr_voxel is None or any(v is None for v in lr_voxel):
        raise InputError(
            f"{lr_path}: no voxel size in the TIFF and no hr_voxel_nm in pairs.json; write the LR with its voxel size"
        )
    return [float(lr_voxel[0]), lr_voxel[1] / scale, lr_voxel[2] / scale]


def load_sr_model(model_path=None, arch_spec=None, scale=None, pairs=None, pairs_json=None):
    """(model on the CPU, scale, arch): a trained model.pt, or an untrained arch spec (bicubic) at the pairs' scale."""
    pairs_scale = int(pairs["scale"]) if pairs and "scale" in pairs else None
    if model_path:
        model, meta = load_trained(model_path, "cpu")
        if pairs_scale is not None and pairs_scale != int(meta["scale"]):
            raise InputError(
                f"{model_path}: model was trained at scale {meta['scale']} but {pairs_json} pairs at scale "
                f"{pairs_scale}; train on data of the same scale"
            )
        return model, int(meta["scale"]), meta["arch"]
    if not arch_spec:
        raise InputError(
            "infer needs a trained model file or an untrained arch spec (e.g. {arch: bicubic}); "
            "check the infer rule's inputs"
        )
    scale = scale if scale is not None else pairs_scale
    if scale is None:
        raise InputError(
            f"no scale for arch {arch_spec.get('arch')!r}: give pairs.json with a `scale` key or pass scale"
        )
    model = build_model(arch_spec, int(scale))
    if getattr(model, "trainable", True) and any(True for _ in model.parameters()):
        raise InputError(
            f"arch {arch_spec['arch']!r} must be trained before inference; run the train rule and pass its model.pt"
        )
    return model, int(scale), arch_spec["arch"]


def _std_path(out: str) -> str:
    """Where the per-pixel std of a generative model goes, beside the declared output."""
    out = str(out)
    for suffix in (".tif", ".zarr"):
        if out.endswith(suffix):
            return out[: -len(suffix)] + "_std" + suffix
    return out + "_std.tif"


def hr_offset(lr_offset, lr_voxel, hr_voxel) -> list[float]:
    """nm position of HR voxel (0, 0, 0) of the SR output of an LR volume whose voxel (0, 0, 0) is at
    lr_offset: the SR grid subdivides each LR pixel, so its first pixel centre lies half an LR pixel
    less half an HR pixel before the first LR centre (y, x; z is not resampled)."""
    lo = [0.0, 0.0, 0.0] if lr_offset is None else [float(v or 0.0) for v in lr_offset]
    return [lo[0]] + [lo[a] + (float(hr_voxel[a]) - float(lr_voxel[a])) / 2 for a in (1, 2)]


def run_infer(
    lr_path: str,
    out_tif: str,
    out_json: str,
    model_path: str | None = None,
    arch_spec: dict | None = None,
    scale: int | None = None,
    pairs_json: str | None = None,
    settings: dict | None = None,
    block: int | None = None,
    device: str = "auto",
    threads: int = 1,
    log: str | None = None,
    compile: bool | None = None,
) -> dict:
    """Super-resolve one LR volume with a trained model.pt (or an untrained arch_spec such as bicubic).

    lr_path: a TIFF, an OME-Zarr (path.zarr: level 0) or a zarr array (path.zarr/dataset), read
    section by section. out_tif: the output on the HR grid (pairs.json hr_voxel_nm, else LR
    voxel / scale) in the input's dtype, streamed as it is computed: an OME-Zarr with voxel
    size, offset and pyramid when it ends in .zarr, else a TIFF (bytes as before). The json
    records throughput (output voxels/s), device and tiling. With `block` b of `blocks_z`,
    only that block of sections (z_blocks) is written: a TIFF of those sections, or an
    OME-Zarr of the whole shape holding only them, for one job of a scattered inference
    that run_infer_gather joins. compile (or settings key `compile`): torch.compile the model.
    """
    t0 = time.perf_counter()
    cfg = section("infer", settings)
    compile = cfg["compile"] if compile is None else bool(compile)
    tile, overlap, batch, amp = cfg["tile"], cfg["overlap"], cfg["batch"], cfg["amp"]
    samples, seed, blocks_z = cfg["samples"], cfg["seed"], cfg["blocks_z"]
    logger = get_logger("srseg.infer", log)
    check_tiling(tile, overlap, batch)
    set_threads(threads)
    dev = resolve_device(device)
    pairs = read_json(pairs_json) if pairs_json else None
    model, scale, arch = load_sr_model(model_path, arch_spec, scale, pairs, pairs_json)
    vol = open_volume(lr_path)
    try:
        dtype = str(vol.dtype)
        if dtype not in ("uint8", "uint16", "float32"):
            if vol.dtype.kind != "f":
                raise InputError(
                    f"{lr_path}: image dtype {dtype} is not supported; convert it to uint8, uint16 or float32"
                )
            dtype = "float32"  # float64 input: float32 output
        lr_voxel = vol.voxel_nm
        hr_voxel = _hr_voxel(pairs, lr_voxel, scale, lr_path)
        z, h, w = vol.shape
        sections = None
        if block is not None:
            ranges = z_blocks(z, blocks_z)
            if not 0 <= block < len(ranges):
                raise InputError(f"block {block} does not exist: infer.blocks_z is {blocks_z}")
            sections = ranges[block]
        z0, z1 = sections if sections is not None else (0, z)
        hr_shape = (z, h * scale, w * scale)
        lr_vox = [
            v if v is not None else hv * (scale if a else 1)
            for a, (v, hv) in enumerate(zip(lr_voxel or [None] * 3, hr_voxel))
        ]
        offset = hr_offset(vol.offset_nm, lr_vox, hr_voxel)
        stochastic = bool(getattr(model, "noise_factor", 0))
        n_samples = int(samples) if stochastic else 1
        std_path = _std_path(out_tif) if n_samples > 1 else None
        sink_kw = (
            dict(z_range=sections, attrs={"arch": arch, "scale": scale}) if is_zarr(out_tif) else dict(z_range=sections)
        )
        sinks = [open_sink(out_tif, hr_shape, dtype, hr_voxel, offset, **sink_kw)]
        if std_path:  # undeclared extra beside the declared output (keeps the DAG unconditional)
            sinks.append(open_sink(std_path, hr_shape, "float32", hr_voxel, offset, **sink_kw))
        logger.info(
            "%s x%d: LR %s (%s) -> %s, sections %d..%d, tile %d overlap %d batch %d on %s",
            arch,
            scale,
            vol.shape,
            vol.format,
            out_tif,
            z0,
            z1,
            tile,
            overlap,
            batch,
            dev,
        )
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t1 = time.perf_counter()
        std_sum = 0.0
        try:
            args = (model, vol, scale, tile, overlap, batch, dev, amp, dtype, True, seed, sections, compile)
            if n_samples == 1:  # row bands into an OME-Zarr (memory: one band), whole sections into a TIFF
                bands = iter_super_resolve_bands(*args, check_finite=str(lr_path), band_rows=sinks[0].band_rows)
                for k, y0, rows in bands:
                    sinks[0].write_rows(k, y0, rows)
            else:
                it = iter_super_resolve(*args, samples=n_samples, check_finite=str(lr_path))
                for k, (out, std) in zip(range(z0, z1), it):
                    sinks[1].write_section(k, std)
                    std_sum += float(std.mean(dtype=np.float64))
                    sinks[0].write_section(k, out)
            for sink in sinks:
                sink.close()
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        compute = time.perf_counter() - t1
    finally:
        vol.close()
    n_out = (z1 - z0) * hr_shape[1] * hr_shape[2]
    info = {
        "arch": arch,
        "model": model_path,
        "scale": scale,
        "context": getattr(model, "context", 0),
        "input": str(lr_path),
        "input_format": vol.format,
        "output_format": "ome-zarr" if is_zarr(out_tif) else "tiff",
        "lr_shape": list(vol.shape),
        "hr_shape": [z1 - z0, *hr_shape[1:]],
        "hr_voxel_nm": hr_voxel,
        "hr_offset_nm": offset,
        "dtype": dtype,
        "tile": tile,
        "overlap": overlap,
        "batch": batch,
        "compile": compile,
        "amp": bool(amp and dev.type == "cuda"),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": threads,
        "torch_version": torch.__version__,
        "compute_seconds": compute,
        "voxels_per_s": n_out / compute if compute > 0 else None,
        "seconds": time.perf_counter() - t0,
        "samples": n_samples if stochastic else 1,
        "noise_seed": int(seed) if stochastic else None,
        "variance_mean": std_sum / (z1 - z0) if std_path else None,
        "std_path": std_path,
    }
    if sections is not None:
        info.update(block=int(block), blocks_z=int(blocks_z), z_range=list(sections))
    write_json(out_json, info)
    return info


def run_infer_gather(
    block_tifs: list[str], block_jsons: list[str], out_tif: str, out_json: str, log: str | None = None
) -> dict:
    """Join the blocks of a scattered inference (run_infer with block=0..n-1) into one volume + info json.

    TIFF blocks are concatenated along z section by section; OME-Zarr blocks (each the whole
    shape holding its own sections) are joined by hard-linking their chunk files
    (srseg.volumes.gather_blocks). Either way the bytes are the one-job result's. The json is
    the first block's with the whole volume's shape, summed compute time and throughput.
    """
    infos = [read_json(p) for p in block_jsons]
    order = [i["block"] for i in infos]
    if order != list(range(len(infos))) or len(block_tifs) != len(infos):
        raise InputError(f"inference blocks {order} are not 0..{len(infos) - 1} in order; rerun the infer_block jobs")
    std_paths = [i.get("std_path") for i in infos]
    std_path = None
    if is_zarr(out_tif):
        gather_blocks(block_tifs, out_tif)
        if all(std_paths):  # generative archs: the variance maps are joined the same way
            std_path = _std_path(out_tif)
            gather_blocks(std_paths, std_path)
    else:
        if all(std_paths):
            std_path = _std_path(out_tif)
            concat_tiffs(std_paths, std_path)
        concat_tiffs(block_tifs, out_tif)
    z = sum(i["hr_shape"][0] for i in infos)
    hr_shape = [z, *infos[0]["hr_shape"][1:]]
    n_out = int(np.prod(hr_shape))
    compute = sum(i["compute_seconds"] for i in infos)
    info = {k: v for k, v in infos[0].items() if k not in ("block", "z_range")}
    info.update(
        hr_shape=hr_shape,
        compute_seconds=compute,
        voxels_per_s=n_out / compute if compute > 0 else None,
        seconds=sum(i["seconds"] for i in infos),
        std_path=std_path,
        blocks_z=len(infos),
        variance_mean=(
            float(
                np.average(
                    [i["variance_mean"] for i in infos], weights=[i["z_range"][1] - i["z_range"][0] for i in infos]
                )
            )
            if std_path
            else None
        ),
        block_devices=[i["device_name"] for i in infos],
    )
    write_json(out_json, info)
    return info
