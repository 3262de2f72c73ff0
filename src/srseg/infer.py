"""Tiled super-resolution of whole LR volumes in bounded device memory.

Each section is cut into LR tiles of `tile` px that overlap by `overlap` px (srseg.tiling,
the tiler affinity prediction shares); batches of tiles go through the model on the
device and come back as HR tiles, which are blended on the CPU with a separable
raised-cosine weight: on every side that has a neighbouring tile the weight is 0 for
the outer quarter of the overlap (where the tile's own border effects live), rises
smoothly over the middle half and is 1 inside.
The weighted sum is divided by the summed weights, so there are no seams, and a model
whose receptive field is within a quarter of the overlap gives the untiled result
exactly. Device memory is bounded by `batch` tiles; host memory holds the LR volume,
the output volume in its on-disk dtype and one float32 section.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from .config import section
from .data import context_indices
from .io import InputError, from_float, read_image, read_json, read_tiff, write_json, write_tiff
from .log import get_logger
from .models import build_model, load_trained
from .runtime import autocast, resolve_device, set_threads
from .tiling import check_tiling, tile_axis


def super_resolve(
    model: torch.nn.Module,
    vol: np.ndarray,
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
) -> np.ndarray:
    """Super-resolve a (z, y, x) float volume in [0, 1] tile by tile; returns (z, y*s, x*s) in out_dtype.

    `sections` (z0, z1) super-resolves only those sections (one block of a scattered job):
    2.5D context still reads the neighbours outside the block, and noise is seeded by the
    absolute section index, so the blocks concatenate to exactly the whole-volume result.
    """
    check_tiling(tile, overlap, batch)
    device = torch.device(device)
    z, h, w = vol.shape
    (ys, ty, wy), (xs, tx, wx) = tile_axis(h, tile, overlap, scale), tile_axis(w, tile, overlap, scale)
    tiles = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    norm = np.zeros((h * scale, w * scale), np.float32)
    for i, j in tiles:
        norm[ys[i] * scale : (ys[i] + ty) * scale, xs[j] * scale : (xs[j] + tx) * scale] += np.outer(wy[i], wx[j])
    z0, z1 = sections if sections is not None else (0, z)
    out = np.empty((z1 - z0, h * scale, w * scale), np.dtype(out_dtype))
    fast = device.type == "cuda"
    model = model.to(device).eval()
    if fast:  # NHWC kernels are faster for convolutions under mixed precision
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # all tiles share one shape: autotune once
    acc = np.zeros_like(norm)
    context = getattr(model, "context", 0)  # 2.5D models see the 2k+1 sections around the one they super-resolve
    bar = tqdm(total=(z1 - z0) * len(tiles), desc="infer tiles", mininterval=5, disable=not progress)
    with torch.inference_mode():
        for k in range(z0, z1):
            acc.fill(0.0)
            section = torch.from_numpy(
                np.ascontiguousarray(vol[context_indices(k, context, z)], np.float32)
            )  # (2k+1, h, w)
            if fast:
                section = section.pin_memory()
            section = section.to(device, non_blocking=True)
            noise = section_noise(model, h, w, noise_seed, k, device)
            for b in range(0, len(tiles), batch):
                chunk = tiles[b : b + batch]
                x = torch.stack([section[:, ys[i] : ys[i] + ty, xs[j] : xs[j] + tx] for i, j in chunk])
                if fast:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(device, amp):
                    y = (
                        model(x)
                        if noise is None
                        else model(x, noise=tile_noise(noise, chunk, ys, xs, ty, tx, model.noise_factor))
                    )
                y = y.float().clamp_(0.0, 1.0)[:, 0].cpu().numpy()
                for (i, j), t in zip(chunk, y):
                    acc[ys[i] * scale : (ys[i] + ty) * scale, xs[j] * scale : (xs[j] + tx) * scale] += t * np.outer(
                        wy[i], wx[j]
                    )
                bar.update(len(chunk))
            res = acc / norm
            out[k - z0] = res if out_dtype == "float32" else from_float(res, out_dtype)
    bar.close()
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
    Welford running mean / M2 (float64) keep memory bounded whatever the sample count."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise InputError(f"config key infer.samples: must be an integer >= 1, got {samples!r}")
    mean = m2 = first = None
    for i in range(samples):
        sr = super_resolve(
            model, vol, scale, tile, overlap, batch, device, amp, "float32", noise_seed=seed + i, sections=sections
        )
        if i == 0:
            first, mean, m2 = sr.copy(), sr.astype(np.float64), np.zeros(sr.shape, np.float64)
            continue
        delta = sr - mean
        mean += delta / (i + 1)
        m2 += delta * (sr - mean)
    std = np.sqrt(m2 / samples).astype(np.float32)  # population std over the samples
    out = first if out_dtype == "float32" else from_float(first, out_dtype)
    return out, std


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
) -> dict:
    """Super-resolve one LR TIFF with a trained model.pt (or an untrained arch_spec such as bicubic).

    The output TIFF is on the HR grid (pairs.json hr_voxel_nm, else LR voxel / scale) in
    the input's dtype; the json records throughput (output voxels/s), device and tiling.
    With `block` b of `blocks_z`, only that block of sections (z_blocks) is written, for
    one job of a scattered inference that run_gather_blocks joins.
    """
    t0 = time.perf_counter()
    cfg = section("infer", settings)
    tile, overlap, batch, amp = cfg["tile"], cfg["overlap"], cfg["batch"], cfg["amp"]
    samples, seed, blocks_z = cfg["samples"], cfg["seed"], cfg["blocks_z"]
    get_logger("srseg.infer", log)
    check_tiling(tile, overlap, batch)
    set_threads(threads)
    dev = resolve_device(device)
    pairs = read_json(pairs_json) if pairs_json else None
    model, scale, arch = load_sr_model(model_path, arch_spec, scale, pairs, pairs_json)
    vol, lr_voxel, dtype = read_image(lr_path)
    hr_voxel = _hr_voxel(pairs, lr_voxel, scale, lr_path)
    if not np.isfinite(vol).all():
        raise InputError(f"{lr_path}: contains NaN or Inf values; fix the image")
    sections = None
    if block is not None:
        ranges = z_blocks(vol.shape[0], blocks_z)
        if not 0 <= block < len(ranges):
            raise InputError(f"block {block} does not exist: infer.blocks_z is {blocks_z}")
        sections = ranges[block]

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t1 = time.perf_counter()
    stochastic = bool(getattr(model, "noise_factor", 0))
    if stochastic and samples > 1:  # generative archs: n samples, per-pixel std as a hallucination indicator
        sr, std = sample_std(model, vol, scale, tile, overlap, batch, dev, amp, samples, seed, dtype, sections)
    else:
        sr, std = (
            super_resolve(
                model, vol, scale, tile, overlap, batch, dev, amp, out_dtype=dtype, noise_seed=seed, sections=sections
            ),
            None,
        )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    compute = time.perf_counter() - t1
    std_path = None
    if std is not None:  # undeclared extra beside the declared output (keeps the DAG unconditional)
        std_path = (
            str(out_tif)[: -len(".tif")] + "_std.tif" if str(out_tif).endswith(".tif") else str(out_tif) + "_std.tif"
        )
        write_tiff(std_path, std, hr_voxel)
    write_tiff(out_tif, sr, hr_voxel)
    info = {
        "arch": arch,
        "model": model_path,
        "scale": scale,
        "context": getattr(model, "context", 0),
        "input": str(lr_path),
        "lr_shape": list(vol.shape),
        "hr_shape": list(sr.shape),
        "hr_voxel_nm": hr_voxel,
        "dtype": dtype,
        "tile": tile,
        "overlap": overlap,
        "batch": batch,
        "amp": bool(amp and dev.type == "cuda"),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": threads,
        "torch_version": torch.__version__,
        "compute_seconds": compute,
        "voxels_per_s": sr.size / compute if compute > 0 else None,
        "seconds": time.perf_counter() - t0,
        "samples": int(samples) if stochastic else 1,
        "noise_seed": int(seed) if stochastic else None,
        "variance_mean": float(std.mean()) if std is not None else None,
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

    The TIFF is the blocks concatenated along z (bytes as the one-job result); the json is
    the first block's with the whole volume's shape, summed compute time and throughput.
    """
    infos = [read_json(p) for p in block_jsons]
    order = [i["block"] for i in infos]
    if order != list(range(len(infos))) or len(block_tifs) != len(infos):
        raise InputError(f"inference blocks {order} are not 0..{len(infos) - 1} in order; rerun the infer_block jobs")
    parts, voxel = [], None
    for path in block_tifs:
        vol, vox = read_tiff(path)
        parts.append(vol)
        voxel = voxel or vox
    sr = np.concatenate(parts, axis=0)
    std_paths = [i.get("std_path") for i in infos]
    std_path = None
    if all(std_paths):  # generative archs: the variance maps are joined the same way
        std_path = str(out_tif)[: -len(".tif")] + "_std.tif"
        write_tiff(std_path, np.concatenate([read_tiff(p)[0] for p in std_paths], axis=0), voxel)
    write_tiff(out_tif, sr, voxel)
    compute = sum(i["compute_seconds"] for i in infos)
    info = {k: v for k, v in infos[0].items() if k not in ("block", "z_range")}
    info.update(
        hr_shape=list(sr.shape),
        compute_seconds=compute,
        voxels_per_s=sr.size / compute if compute > 0 else None,
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
