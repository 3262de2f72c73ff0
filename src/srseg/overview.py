"""The end use: one chosen (model, training data) row super-resolves and segments a specimen's WHOLE LR overview.

The benchmark scores every row on the LR pixels inside the HR field only (rule pairs cuts
them). `snakemake overview` then takes one row, the config's `overview.model` / `.data` or
the summary table's best (`choose_row`: lowest headline VOI sum, the 3D one where scored;
bicubic is a candidate like any model, the `hr` upper bound is not), and for each selected
specimen, with the models of the fold that tests it (nothing was trained on it):

1. `run_overview_infer`: srseg.infer.run_infer on the ingested LR overview (every section,
   the whole field), an OME-Zarr with pyramid, voxel size and offset; `overview.blocks_z`
   scatters it over jobs exactly as `infer.blocks_z` does (run_infer(block=...) + gather);
2. `run_overview_segment`: the fold's affinity network and the row's own validation-chosen
   threshold and fragment settings (rule row_threshold's json; or `overview.threshold`),
   block by block (srseg.blockwise) into an OME-Zarr label volume with pyramid and the SR's
   voxel size and offset, plus a json of timings, blocks and peak RSS.

Step 2 is resumable: its work folder (results/overview/{specimen}/work, not a declared
output, so Snakemake keeps it when the job fails) holds the affinities and the blockwise
passes; every finished z-block / block leaves a marker, and a rerun after a kill skips them.
A fingerprint of the inputs and settings (`run.json`) guards it: anything else changed and
the folder starts over.

The affinities are predicted z-block by z-block (`predict_affinity_zarr`: whole z-blocks of
overview.block, each from `srseg.affinity.predict_sections`, which computes exactly the tiles,
batches and blending of the prediction of the whole volume at once), so the z-blocks can be
predicted in any grouping, in one job or in many, with the same bytes.

`overview.segment_jobs` runs step 2 as separate Snakemake jobs instead: `run_overview_work`
(checkpoint overview_work: the empty affinity array and work group; its json gives the
affinity jobs, `overview.blocks_z` runs of whole z-blocks, and the number of blocks),
`run_overview_affinities` per affinity job (GPU), `run_overview_pass` per block and pass (and
the two gathers), `run_overview_export`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import runtime
from .io import InputError, read_json, write_json

#: the upper-bound row (real HR segmented): a reference, not something to super-resolve with
UPPER_BOUND = "hr"
#: the headline VOI sum of the summary table, 3D where scored (srseg.report.columns.headline)
VOI_COLUMNS = ("voi_sum_3d_mean", "voi_sum_mean")


# --------------------------------------------------------------------------- the row


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def choose_row(
    summary_csv: str | os.PathLike,
    model: str | None = None,
    data: str | None = None,
    rows: Sequence[Sequence[str]] | None = None,
) -> dict:
    """{model, data, by, value}: the row that processes the overviews.

    model and data given: that row (by "config"; value: its headline VOI sum if the table has
    it, else None). Otherwise the summary table's row with the lowest headline VOI sum:
    `voi_sum_3d_mean` where any row has a finite one (the report's headline unit), else
    `voi_sum_mean`; `hr` is excluded, bicubic is a candidate (if it segments best, super-resolving
    with a trained model would be worse); ties go to the first row of the table. rows: the
    config's (model, data) rows; others (a stale table) are ignored.
    """
    if (model is None) != (data is None):
        raise InputError("overview.model and overview.data: give both or neither")
    table = []
    if summary_csv is not None and Path(summary_csv).exists():
        with open(summary_csv, newline="") as fh:
            table = list(csv.DictReader(fh))
    elif model is None:
        raise InputError(f"{summary_csv}: no summary table to choose the overview row from; run the report first")
    allowed = {tuple(r) for r in rows} if rows is not None else None
    cand = [
        r
        for r in table
        if r.get("model") != UPPER_BOUND and (allowed is None or (r.get("model"), r.get("data")) in allowed)
    ]
    by = next(
        (c for c in VOI_COLUMNS if any(math.isfinite(_number(r.get(c))) for r in cand)),
        None,
    )
    if model is not None:
        value = next((_number(r.get(by)) for r in cand if (r["model"], r["data"]) == (model, data)), math.nan)
        return {"model": model, "data": data, "by": "config", "value": value if math.isfinite(value) else None}
    if by is None:
        raise InputError(
            f"{summary_csv}: no row has a finite {' or '.join(VOI_COLUMNS)}; set overview.model and overview.data"
        )
    scored = [(v, i, r) for i, r in enumerate(cand) if math.isfinite(v := _number(r.get(by)))]
    value, _, best = min(scored, key=lambda t: (t[0], t[1]))
    return {"model": best["model"], "data": best["data"], "by": by, "value": value}


def run_overview_choice(
    out_json: str,
    summary_csv: str | None = None,
    model: str | None = None,
    data: str | None = None,
    rows: Sequence[Sequence[str]] | None = None,
    log: str | None = None,
) -> dict:
    """Checkpoint overview_choice: `choose_row` into results/overview/choice.json."""
    choice = choose_row(summary_csv, model, data, rows)
    runtime.get_logger("srseg.overview", log).info(
        "overview row: %s / %s (%s %s)", choice["model"], choice["data"], choice["by"], choice["value"]
    )
    write_json(out_json, choice)
    return choice


# --------------------------------------------------------------------------- SR of the whole overview


def run_overview_infer(
    choice: str,
    lr_path: str,
    out_zarr: str,
    out_json: str,
    pairs_json: str,
    model_path: str | None = None,
    arch_specs: dict | None = None,
    settings: dict | None = None,
    blocks_z: int | None = None,
    block: int | None = None,
    device: str = "auto",
    threads: int = 1,
    log: str | None = None,
) -> dict:
    """Super-resolve the whole LR overview `lr_path` with the row of `choice` (srseg.infer.run_infer).

    model_path: the row's model.pt (trained models); arch_specs: {model: arch spec} of the
    untrained ones (bicubic), from which the row's is taken. settings: the `infer:` slice,
    with `blocks_z` replaced by overview.blocks_z (None: its default); block: one of those blocks (a
    scattered job).
    pairs_json: the specimen's pairs.json (scale and HR voxel size).
    """
    from .config import section
    from .infer import run_infer

    blocks_z = section("overview", {} if blocks_z is None else {"blocks_z": blocks_z})["blocks_z"]
    row = read_json(choice)
    spec = None if model_path else (arch_specs or {}).get(row["model"])
    if not model_path and spec is None:
        raise InputError(f"{choice}: model {row['model']!r} has no model file and is no untrained arch; rerun the rule")
    info = run_infer(
        lr_path=lr_path,
        out_tif=out_zarr,
        out_json=out_json,
        model_path=model_path,
        arch_spec=spec,
        pairs_json=pairs_json,
        settings={**dict(settings or {}), "blocks_z": int(blocks_z)},
        block=block,
        device=device,
        threads=threads,
        log=log,
    )
    info.update(row={k: row[k] for k in ("model", "data")})
    write_json(out_json, info)
    return info


# --------------------------------------------------------------------------- affinities, z-block by z-block


def affinity_rows(shape_zyx: Sequence[int], block_zyx: Sequence[int]) -> list[tuple[int, int]]:
    """The z-blocks (z0, z1) of an overview's affinity array: its chunk rows, block[0] sections each (the last cut)."""
    nz = int(shape_zyx[0])
    bz = min(int(block_zyx[0]), max(nz, 1))
    return [(z0, min(z0 + bz, nz)) for z0 in range(0, nz, bz)]


def affinity_jobs(shape_zyx: Sequence[int], block_zyx: Sequence[int], jobs: int) -> list[tuple[int, int]]:
    """The z ranges of the affinity jobs of `overview.segment_jobs`: `jobs` (overview.blocks_z; fewer where the
    volume has fewer z-blocks) contiguous, near-equal runs of whole z-blocks (`affinity_rows`), so that no two
    jobs write one chunk of the affinity array."""
    import numpy as np

    rows = affinity_rows(shape_zyx, block_zyx)
    parts = np.array_split(np.arange(len(rows)), max(1, min(int(jobs), len(rows))))
    return [(rows[p[0]][0], rows[p[-1]][1]) for p in parts]


def affinity_array(path, net, shape_zyx: Sequence[int], block_zyx: Sequence[int], resume: bool = False):
    """The zarr array (C, z, y, x) float32 at `path` for the affinities of `net` on a volume of `shape_zyx`,
    chunked by block. resume: the one an interrupted run left there if it has this shape and chunks (its
    finished z-blocks keep their markers `<path>.done/<z0>`); else a new one, with no markers."""
    import numpy as np
    import zarr

    from .blockwise import block_grid

    shape = tuple(int(s) for s in shape_zyx)
    chunk = tuple(s.stop - s.start for s in block_grid(shape, block_zyx)[0].core)
    n_out = int(net.channels) + (1 if int(net.dim) == 2 else 0)
    if resume and Path(path).exists():
        try:
            arr = zarr.open_array(str(path), mode="r+")
        except (FileNotFoundError, ValueError, zarr.errors.ArrayNotFoundError):
            arr = None
        if arr is not None and arr.shape == (n_out, *shape) and arr.chunks == (n_out, *chunk):
            return arr
    shutil.rmtree(f"{path}.done", ignore_errors=True)
    return zarr.create_array(
        str(path),
        shape=(n_out, *shape),
        chunks=(n_out, *chunk),
        dtype=np.float32,
        fill_value=0.0,
        zarr_format=3,
        overwrite=True,
    )


def predict_affinity_zarr(
    net,
    volume,
    device,
    settings: dict,
    path,
    z_range: Sequence[int] | None = None,
    progress: bool = False,
    on_block=None,
) -> float:
    """Predict the z-blocks (`affinity_rows` of its chunks) of the array at `path` (`affinity_array`) inside
    z_range (None: all) from the lazy `volume`, skipping those whose marker `<path>.done/<z0>` exists; returns
    the prediction seconds. Each z-block is `srseg.affinity.predict_sections` (the whole-volume prediction's
    own tiles: its bytes), written into whole chunks and then marked. on_block("affinities", z0) after each."""
    import zarr

    from .affinity import predict_sections

    arr = zarr.open_array(str(path), mode="r+")
    done = Path(f"{path}.done")
    done.mkdir(parents=True, exist_ok=True)
    rows = affinity_rows(arr.shape[1:], arr.chunks[1:])
    lo, hi = (0, arr.shape[1]) if z_range is None else (int(z_range[0]), int(z_range[1]))
    todo = [(z0, z1) for z0, z1 in rows if lo <= z0 and z1 <= hi and not (done / str(z0)).exists()]
    mine = sum(1 for z0, z1 in rows if lo <= z0 and z1 <= hi)
    if progress and len(todo) < mine:
        print(f"affinities: {mine - len(todo)} z-blocks already done, resumed", file=sys.stderr)
    seconds = 0.0
    for z0, z1 in todo:
        t0 = time.perf_counter()
        affs = predict_sections(net, volume, z0, z1, device, settings, progress=progress)
        if getattr(device, "type", str(device)) == "cuda":
            import torch

            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        arr[:, z0:z1] = affs
        (done / str(z0)).write_text("")
        if on_block is not None:
            on_block("affinities", z0)
    return seconds


# --------------------------------------------------------------------------- segmentation, resumable


def _stamp(path) -> list:
    """(name, size, mtime) of a file, or of a folder's top-level files (an OME-Zarr's metadata, rewritten per write)."""
    p = Path(path)
    files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
    return [[q.name, q.stat().st_size, q.stat().st_mtime_ns] for q in files]


def fingerprint(image, model, choice, settings: dict) -> str:
    """What the work folder's content depends on: the inputs' stamps and the settings."""
    key = {"image": _stamp(image), "model": _stamp(model), "choice": _stamp(choice) if choice else None, **settings}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def overview_settings(threshold_json: str | None, segmentation: dict | None, threshold: float | None):
    """(threshold, fragment settings, merge function): the row's own validation choice (rule row_threshold's
    json: best_threshold and fragments) unless overview.threshold is given (then with the row's fragments)."""
    from .config import section
    from .segment import TUNED_KEYS, default_fragments

    seg = section("segmentation", segmentation)
    frag = default_fragments(seg)
    chosen = read_json(threshold_json) if threshold_json else {}
    if threshold_json:
        got = chosen.get("fragments")
        if got is None or any(k not in got for k in TUNED_KEYS):
            raise InputError(
                f"{threshold_json}: no complete `fragments` entry ({', '.join(TUNED_KEYS)}); rerun rule row_threshold"
            )
        frag = {k: got[k] for k in TUNED_KEYS}
    if threshold is None:
        if "best_threshold" not in chosen:
            raise InputError(f"{threshold_json}: no best_threshold; rerun rule row_threshold or set overview.threshold")
        threshold = chosen["best_threshold"]
    return float(threshold), frag, seg["merge_function"]


def _prepare(image, model, work, threshold_json, segmentation, threshold, block, context, device, threads, log):
    """What both overview segmentation paths start with: settings, the ruler, and the work folder.

    Returns (logger, device, net, settings, resumed, key); settings = threshold, fragments,
    merge_function, block, context. The work folder is kept when its `run.json` fingerprint
    matches these inputs and settings (a resumed run), else emptied.
    """
    from .affinity import load_affinity_model  # torch: not for the torch-free row choice of this module
    from .blockwise import block_grid, check_context
    from .config import section

    logger = runtime.get_logger("srseg.overview", log)
    runtime.set_threads(threads)
    dev = runtime.resolve_device(device)
    given = {"block": block, "context": context, "threshold": threshold}
    ov = section("overview", {k: list(v) if k != "threshold" else v for k, v in given.items() if v is not None})
    block = [int(b) for b in ov["block"]]
    thr, frag, merge_function = overview_settings(threshold_json, segmentation, threshold)
    net = load_affinity_model(model, dev)
    try:
        ctx = check_context(ov["context"], net.dim, getattr(net, "offsets", None), float(frag["long_range_weight"]))
        block_grid((1, 1, 1), block)
    except ValueError as exc:
        raise InputError(f"overview: {exc}; raise overview.context / overview.block") from exc
    settings = {
        "threshold": thr,
        "fragments": frag,
        "merge_function": merge_function,
        "block": block,
        "context": list(ctx),
    }
    work = Path(work)
    key = fingerprint(image, model, threshold_json, settings)
    stamp = work / "run.json"
    resumed = work.exists() and stamp.exists() and read_json(stamp).get("key") == key
    if work.exists() and not resumed:
        logger.info("work folder %s is from other inputs or settings: starting over", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"key": key, "image": str(image), "model": str(model), **settings})
    return logger, dev, net, settings, resumed, key


def export_intermediates(
    work, voxel_nm, offset_nm, affinities: str | None = None, fragments: str | None = None, attrs: dict | None = None
) -> dict:
    """The work folder's affinities (C, z, y, x float32, a channel axis) and fragments (uint64 labels) as
    OME-Zarr volumes with pyramids at `affinities` / `fragments` (None: not written; `overview.intermediates`),
    section by section: what a lab opens beside segmentation.zarr to see why the ruler cut or merged.
    Returns {name: seconds}."""
    import zarr

    from .volumes import OmeZarrWriter

    work = Path(work)
    timing = {}
    for name, out, source in (
        ("affinities", affinities, lambda: zarr.open_array(str(work / "affs.zarr"), mode="r")),
        ("fragments", fragments, lambda: zarr.open_group(str(work / "seg.zarr"), mode="r")["fragments"]),
    ):
        if out is None:
            continue
        t0 = time.perf_counter()
        arr = source()
        channels = arr.shape[0] if name == "affinities" else None
        shape = arr.shape[1:] if channels else arr.shape
        kind = "image" if channels else "labels"
        with OmeZarrWriter(out, shape, arr.dtype, voxel_nm, offset_nm, kind, channels=channels, attrs=attrs) as w:
            w.copy_from(arr)
        timing[f"{name}_export_seconds"] = time.perf_counter() - t0
    return timing


def run_overview_segment(
    image: str,
    model: str,
    out_zarr: str,
    out_json: str,
    work: str,
    threshold_json: str | None = None,
    segmentation: dict | None = None,
    threshold: float | None = None,
    block: Sequence[int] | None = None,
    context: Sequence[int] | None = None,
    cache_dir: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    log: str | None = None,
    on_block=None,
    keep_work: bool = False,
    out_affinities: str | None = None,
    out_fragments: str | None = None,
) -> dict:
    """Affinities + blockwise segmentation of the SR overview `image` at one threshold, resumable.

    image: the SR OME-Zarr (any volume open_volume reads); model: the fold's affinity model.pt;
    threshold_json: the row's rule row_threshold json (threshold and fragment settings);
    threshold: overrides its threshold. block, context: [z, y, x] voxels (None: the `overview:`
    defaults). out_zarr: an OME-Zarr label volume (uint64 IDs, mode pyramid) with the image's
    voxel size and offset; out_json: timings, block and fragment counts, peak RSS and what this
    call computed (blocks per pass) vs. found done. out_affinities / out_fragments: also those
    as OME-Zarr (`export_intermediates`).

    work: the persistent work folder (affinities `affs.zarr` + `affs.zarr.done/`, blockwise
    group `seg.zarr` with per-block markers, `run.json` fingerprint). A rerun after a failure
    or kill skips every finished z-block and block; a different fingerprint starts over. It is
    removed after success unless keep_work. on_block(pass, index): after each computed block
    (progress hooks; tests inject failures).
    """
    from .blockwise import affinity_z_context, export_ome_zarr, segment_blockwise_zarr
    from .segment import fragment_options, waterz_cache
    from .volumes import open_volume

    t0 = time.perf_counter()
    work = Path(work)
    logger, dev, net, settings, resumed, key = _prepare(
        image, model, work, threshold_json, segmentation, threshold, block, context, device, threads, log
    )
    thr, frag, merge_function = settings["threshold"], settings["fragments"], settings["merge_function"]
    block, ctx = settings["block"], settings["context"]
    offsets = getattr(net, "offsets", None)
    computed = {"affinities": 0}

    def hook(name, index):
        if name == "affinities":
            computed["affinities"] += 1
        if on_block is not None:
            on_block(name, index)

    with open_volume(image) as vol:
        voxel, offset, shape = vol.voxel_nm, vol.offset_nm, vol.shape
        logger.info(
            "segmenting %s %s at threshold %s, block %s context %s, with %s on %s%s",
            image,
            shape,
            thr,
            block,
            list(ctx),
            model,
            dev,
            " (resuming)" if resumed else "",
        )
        affs = affinity_array(work / "affs.zarr", net, shape, block, resume=True)
        t_pred = predict_affinity_zarr(net, vol, dev, net.params, work / "affs.zarr", progress=True, on_block=hook)
    with waterz_cache(cache_dir):
        timing = segment_blockwise_zarr(
            affs,
            work / "seg.zarr",
            [thr],
            block,
            ctx,
            dim=net.dim,
            merge_function=merge_function,
            progress=True,
            offsets=offsets,
            resume=True,
            on_block=hook,
            **fragment_options(frag),
        )
    timing.pop("arrays")
    computed.update(timing.pop("computed"))
    t1 = time.perf_counter()
    export_ome_zarr(
        work / "seg.zarr",
        thr,
        out_zarr,
        voxel,
        offset,
        filtered=int(frag["min_size"]) > 1,
        attrs={"threshold": thr, "fragments": frag, "image": str(image)},
    )
    timing.update(
        export_intermediates(work, voxel, offset, out_affinities, out_fragments, {"image": str(image), "model": model})
    )
    n = 1
    for s in shape:
        n *= int(s)
    info = {
        "image": str(image),
        "model": str(model),
        "output": str(out_zarr),
        "device": str(dev),
        "dim": int(net.dim),
        "shape": list(shape),
        "voxels": n,
        "voxel_nm": voxel,
        "offset_nm": offset,
        "threshold": thr,
        "threshold_from": "overview.threshold" if threshold is not None else str(threshold_json),
        "fragments": frag,
        "merge_function": merge_function,
        "block": block,
        "context": list(ctx),
        "affinity_z_context": affinity_z_context(net),
        "affinity_seconds": t_pred,
        **timing,
        "export_seconds": time.perf_counter() - t1,
        "seconds": time.perf_counter() - t0,
        "resumed": bool(resumed),
        "computed": computed,
        "peak_rss_mb": runtime.peak_rss_mb(),
    }
    write_json(out_json, info)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "%d blocks (%s computed now), %d fragments, %.1f s, peak RSS %s MiB",
        info["n_blocks"],
        computed,
        info["n_fragments"],
        info["seconds"],
        f"{info['peak_rss_mb']:.0f}" if info["peak_rss_mb"] is not None else "?",
    )
    return info


# --------------------------------------------------------------------------- segmentation as separate jobs

#: the passes of `overview.segment_jobs`: rule overview_<name>[_block]; per block unless in GATHERS
PASSES = ("fragments", "edges", "luts", "relabel", "sizes", "filter")
GATHERS = ("luts", "sizes")


def _jobs_paths(work) -> dict:
    """The files of a scattered overview segmentation under its work folder (only the markers are rule outputs)."""
    work = Path(work)
    return {
        "affs": work / "affs.zarr",
        "affinity_jobs": work / "affs.zarr.jobs",
        "seg": work / "seg.zarr",
        "sizes": work / "sizes.npz",
    }


def overview_marker(work, name: str, index: int | None = None) -> Path:
    """The output of pass `name` (PASSES, or "affinities": affinity job `index`) of block `index` (None for a
    gather): what its rule declares."""
    if name == "affinities":
        return _jobs_paths(work)["affinity_jobs"] / f"{int(index)}.json"
    seg = _jobs_paths(work)["seg"]
    if name == "luts":
        return seg / "luts.npz"
    if name == "sizes":
        return _jobs_paths(work)["sizes"]
    suffix = {"fragments": "fragments.json", "edges": "merges.npz", "relabel": "sizes.npz", "filter": "filtered.json"}
    return seg / "blocks" / f"{int(index)}.{suffix[name]}"


def run_overview_work(
    image: str,
    model: str,
    out_json: str,
    threshold_json: str | None = None,
    segmentation: dict | None = None,
    threshold: float | None = None,
    block: Sequence[int] | None = None,
    context: Sequence[int] | None = None,
    blocks_z: int | None = None,
    threads: int | None = None,
    log: str | None = None,
) -> dict:
    """Checkpoint overview_work (`overview.segment_jobs`): the empty affinity array and blockwise work group of
    the whole SR overview, in the folder of `out_json` (results/overview/{specimen}/work/work.json). No GPU:
    the affinities are the jobs of `run_overview_affinities`.

    Same settings as `run_overview_segment`; blocks_z: the number of affinity jobs (overview.blocks_z; fewer
    where the overview has fewer z-blocks). out_json, written last: the settings every job reads, the shape,
    the affinity jobs' z ranges (`affinity_jobs`), for each block the affinity jobs its fragments read
    (`block_affinity_jobs`; the edges and later passes wait for every block's fragments, so for all of them),
    and the number of blocks (from which the job rules are planned).
    """
    from .blockwise import affinity_z_context, agglomeration_mode, block_grid, create_work, pass_context
    from .config import section
    from .volumes import open_volume

    t0 = time.perf_counter()
    work = Path(out_json).parent
    paths = _jobs_paths(work)
    logger, _, net, settings, resumed, key = _prepare(
        image, model, work, threshold_json, segmentation, threshold, block, context, "cpu", threads, log
    )
    thr, merge_function, block = settings["threshold"], settings["merge_function"], settings["block"]
    n_jobs = int(section("overview", {} if blocks_z is None else {"blocks_z": blocks_z})["blocks_z"])
    offsets = getattr(net, "offsets", None)
    with open_volume(image) as vol:
        voxel, offset, shape = vol.voxel_nm, vol.offset_nm, [int(s) for s in vol.shape]
    # a new affinity array every time (the jobs after this checkpoint all rerun), no stale job markers
    shutil.rmtree(paths["affinity_jobs"], ignore_errors=True)
    affinity_array(paths["affs"], net, shape, block, resume=False)
    paths["affinity_jobs"].mkdir()
    jobs = affinity_jobs(shape, block, n_jobs)
    grid = block_grid(shape, block)
    reads = [b.with_context(pass_context(settings["context"], None))[0] for b in grid]  # as zarr_fragments_job
    mode = agglomeration_mode("rag", merge_function)
    create_work(paths["seg"], shape, block, [thr], mode)
    info = {
        "key": key,
        "image": str(image),
        "model": str(model),
        "dim": int(net.dim),
        "offsets": [list(map(int, o)) for o in offsets] if offsets is not None else None,
        "shape": shape,
        "voxel_nm": voxel,
        "offset_nm": offset,
        "threshold_from": "overview.threshold" if threshold is not None else str(threshold_json),
        **settings,
        "agglomeration": mode,
        "affinity_z_context": affinity_z_context(net),
        "affinity_jobs": [list(j) for j in jobs],
        "block_affinity_jobs": [[i for i, (a, b) in enumerate(jobs) if a < z.stop and b > z.start] for z in reads],
        "n_blocks": len(grid),
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": runtime.peak_rss_mb(),
    }
    write_json(out_json, info)
    logger.info(
        "%s %s: %d affinity jobs %s, %d blocks to segment%s",
        image,
        shape,
        len(jobs),
        info["affinity_jobs"],
        info["n_blocks"],
        " (settings unchanged)" if resumed else "",
    )
    return info


def run_overview_affinities(
    work_json: str, index: int, device: str = "auto", threads: int | None = None, log: str | None = None
) -> Path:
    """Affinity job `index` of `overview.segment_jobs` (rule overview_affinities_block, one GPU): the z-blocks of
    its z range (work.json's `affinity_jobs`) of the SR overview, into their chunks of the shared affinity
    array (`predict_affinity_zarr`: the bytes of the whole-volume prediction, so the same as one job). Its
    marker (`overview_marker(work, "affinities", index)`: z range, device, seconds), written last and
    atomically, is what it returns. A rerun after a kill skips the z-blocks it finished."""
    from .affinity import load_affinity_model
    from .volumes import open_volume

    meta = read_json(work_json)
    work = Path(work_json).parent
    jobs = meta["affinity_jobs"]
    if not 0 <= int(index) < len(jobs):
        raise ValueError(f"affinity job {index} does not exist: {work_json} plans {len(jobs)}")
    z0, z1 = jobs[int(index)]
    logger = runtime.get_logger("srseg.overview", log)
    runtime.set_threads(threads)
    dev = runtime.resolve_device(device)
    net = load_affinity_model(meta["model"], dev)
    with open_volume(meta["image"]) as vol:
        logger.info("affinities of sections [%d, %d) of %s %s on %s", z0, z1, meta["image"], list(vol.shape), dev)
        seconds = predict_affinity_zarr(net, vol, dev, net.params, _jobs_paths(work)["affs"], (z0, z1), progress=True)
    out = overview_marker(work, "affinities", index)
    info = {"index": int(index), "z_range": [z0, z1], "device": str(dev), "seconds": seconds}
    write_json(out, {**info, "peak_rss_mb": runtime.peak_rss_mb()})  # atomic
    logger.info("affinities of sections [%d, %d): %.1f s", z0, z1, seconds)
    return out


def run_overview_pass(work_json: str, name: str, index: int | None = None, log: str | None = None) -> Path:
    """One job of `overview.segment_jobs`: pass `name` (PASSES) of block `index` (a gather: None) of the work
    folder of `work_json` (checkpoint overview_work), via srseg.blockwise's per-block job functions. Each
    job writes only its own chunks of the work arrays and, last and atomically, its marker
    (`overview_marker`), which it returns."""
    from .blockwise import (
        zarr_filter_job,
        zarr_fragments_job,
        zarr_luts_job,
        zarr_merges_job,
        zarr_relabel_job,
        zarr_sizes,
    )

    if name not in PASSES or (index is None) != (name in GATHERS):
        raise ValueError(f"pass {name!r} with block {index!r}: one of {PASSES}, a block index unless {GATHERS}")
    meta = read_json(work_json)
    paths = _jobs_paths(Path(work_json).parent)
    affs, seg = paths["affs"], paths["seg"]
    frag = meta["fragments"]
    fold = {"offsets": meta["offsets"], "long_range_weight": float(frag["long_range_weight"])}
    t0 = time.perf_counter()
    if name == "fragments":
        args = (int(frag["seed_min_distance"]), float(frag["boundary_threshold"]))
        zarr_fragments_job(affs, seg, index, meta["context"], *args, **fold)
    elif name == "edges":
        link = {k: frag[k] for k in ("seed_min_distance", "boundary_threshold")}
        zarr_merges_job(affs, seg, index, meta["context"], meta["dim"], meta["merge_function"], link, **fold)
    elif name == "luts":
        zarr_luts_job(seg)
    elif name == "relabel":
        zarr_relabel_job(seg, index)
    elif name == "sizes":
        import numpy as np

        ids, counts = zarr_sizes(seg, 0)
        out = paths["sizes"]
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, ids=ids, counts=counts)
        os.replace(tmp, out)
    else:
        import numpy as np

        with np.load(paths["sizes"]) as z:
            sizes = [(z["ids"], z["counts"])]
        zarr_filter_job(affs, seg, index, meta["context"], int(frag["min_size"]), meta["dim"], sizes=sizes, **fold)
    runtime.get_logger("srseg.overview", log).info(
        "%s%s: %.2f s", name, "" if index is None else f" block {index}", time.perf_counter() - t0
    )
    return overview_marker(paths["seg"].parent, name, index)


def run_overview_export(
    work_json: str,
    out_zarr: str,
    out_json: str,
    log: str | None = None,
    out_affinities: str | None = None,
    out_fragments: str | None = None,
) -> dict:
    """The last job of `overview.segment_jobs`: the work group's labels as the OME-Zarr `out_zarr` (the same
    labels as `run_overview_segment`) and its json (settings, counts; per-job timings are in the job logs and
    benchmarks). The work folder stays: its markers are the block jobs' outputs."""
    import numpy as np

    from .blockwise import _n_merges, export_ome_zarr

    t0 = time.perf_counter()
    meta = read_json(work_json)
    seg = _jobs_paths(Path(work_json).parent)["seg"]
    frag, thr = meta["fragments"], meta["threshold"]
    export_ome_zarr(
        seg,
        thr,
        out_zarr,
        meta["voxel_nm"],
        meta["offset_nm"],
        filtered=int(frag["min_size"]) > 1,
        attrs={"threshold": thr, "fragments": frag, "image": meta["image"]},
    )
    intermediates = export_intermediates(
        seg.parent,
        meta["voxel_nm"],
        meta["offset_nm"],
        out_affinities,
        out_fragments,
        {"image": meta["image"], "model": meta["model"]},
    )
    n_blocks = int(meta["n_blocks"])
    n_fragments = sum(read_json(overview_marker(seg.parent, "fragments", i))["n"] for i in range(n_blocks))
    n_edges = 0
    for i in range(n_blocks):
        with np.load(overview_marker(seg.parent, "edges", i)) as z:
            n_edges += len(z["edges"])
    keep = (
        "image", "model", "dim", "shape", "voxel_nm", "offset_nm", "threshold", "threshold_from",
        "fragments", "merge_function", "block", "context", "affinity_z_context", "agglomeration",
    )  # fmt: skip
    jobs = [read_json(overview_marker(seg.parent, "affinities", i)) for i in range(len(meta["affinity_jobs"]))]
    voxels = 1
    for s in meta["shape"]:
        voxels *= int(s)
    info = {
        **{k: meta[k] for k in keep},
        "device": ", ".join(sorted({j["device"] for j in jobs})),
        "affinity_seconds": sum(float(j["seconds"]) for j in jobs),
        "affinity_jobs": meta["affinity_jobs"],
        "output": str(out_zarr),
        "voxels": voxels,
        "n_blocks": n_blocks,
        "n_fragments": int(n_fragments),
        "n_edges": int(n_edges),
        "n_merges": _n_merges(seg, n_fragments, meta["agglomeration"], n_edges),
        "segment_jobs": True,
        **intermediates,
        "export_seconds": time.perf_counter() - t0,
        "peak_rss_mb": runtime.peak_rss_mb(),
    }
    write_json(out_json, info)
    runtime.get_logger("srseg.overview", log).info(
        "%d blocks, %d fragments, exported in %.1f s", n_blocks, n_fragments, info["export_seconds"]
    )
    return info
