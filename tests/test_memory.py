"""Bounded memory: inference of a volume larger than the address space it is allowed (RLIMIT_AS in a
subprocess) streams through, and gives what the in-memory path gives where both fit."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

from srseg.io import write_json, write_tiff

pytest.importorskip("zarr")

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from srseg.infer import run_infer, super_resolve
    from srseg.models import build_model
    from srseg.volumes import open_volume

    d, headroom = sys.argv[1], int(sys.argv[2])
    kw = dict(arch_spec={"arch": "bicubic"}, pairs_json=f"{d}/pairs.json", settings={"tile": 64, "overlap": 8},
              device="cpu")
    def vm():  # bytes of address space in use
        return int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    run_infer(f"{d}/small.tif", f"{d}/warm.zarr", f"{d}/warm.json", **kw)  # imports, thread pools, caches
    cap = vm() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    run_infer(f"{d}/big.tif", f"{d}/big.zarr", f"{d}/big.json", **kw)
    run_infer(f"{d}/small.tif", f"{d}/small.zarr", f"{d}/small.json", **kw)
    with open_volume(f"{d}/big.zarr") as v:
        last = v.section(v.shape[0] - 1)
        big_shape = list(v.shape)
    np.save(f"{d}/big_last.npy", last)
    try:  # the in-memory path under the same cap: the whole LR as float32 and the whole output
        lr = open_volume(f"{d}/big.tif").read().astype(np.float32) / 255
        super_resolve(build_model({"arch": "bicubic"}, 4), lr, 4, 64, 8, out_dtype="uint8", progress=False)
        in_memory = "fits"
    except MemoryError:
        in_memory = "MemoryError"
    print(json.dumps({"cap": cap, "big_shape": big_shape, "in_memory": in_memory}))
    """
)


def run_capped(child: str, tmp_path, headroom: int) -> dict:
    """Run `child` in a fresh one-thread interpreter (it caps its own address space); its last stdout line as json."""
    env = {"OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path), str(headroom)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_inference_streams_a_volume_larger_than_its_memory_cap(tmp_path):
    rng = np.random.default_rng(0)
    small = (rng.random((3, 40, 36)) * 255).astype(np.uint8)
    big = (rng.random((1200, 128, 128)) * 255).astype(np.uint8)  # output 1200 x 512 x 512 uint8: 315 MB
    write_tiff(tmp_path / "small.tif", small, [50, 40, 40])
    write_tiff(tmp_path / "big.tif", big, [50, 40, 40])
    write_json(tmp_path / "pairs.json", {"scale": 4, "hr_voxel_nm": [50, 10, 10]})
    headroom = 160 * 2**20  # less than half the output, less than the float32 LR + output of the in-memory path
    out = run_capped(CHILD, tmp_path, headroom)
    assert out["big_shape"] == [1200, 512, 512]
    assert out["in_memory"] == "MemoryError"  # the cap is real: the whole-volume path does not fit under it

    from srseg.infer import super_resolve
    from srseg.models import build_model
    from srseg.volumes import open_volume

    model = build_model({"arch": "bicubic"}, 4)
    ref = super_resolve(model, small.astype(np.float32) / 255, 4, 64, 8, out_dtype="uint8", progress=False)
    with open_volume(tmp_path / "small.zarr") as v:
        np.testing.assert_array_equal(v.read(), ref)  # streamed under the cap == in memory, uncapped
    last = super_resolve(model, big[-1:].astype(np.float32) / 255, 4, 64, 8, out_dtype="uint8", progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "big_last.npy"), last[0])
    assert tifffile.imread(tmp_path / "big.tif").shape == big.shape


SEGMENT_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from srseg import blockwise as bw

    d, headroom = sys.argv[1], int(sys.argv[2])
    kw = dict(dim=2, min_size=0)
    def vm():  # bytes of address space in use
        return int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    def run(name):
        out = {0.5: f"{d}/{name}_seg.zarr"}
        bw.segment_blockwise_zarr(f"{d}/{name}.zarr", f"{d}/{name}_work", [0.5], [4, 128, 128], [1, 32, 32],
                                  outputs=out, voxel_nm=[50, 10, 10], **kw)
    run("warm")  # imports, waterz, zarr codecs and thread pools
    cap = vm() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    run("big")
    run("small")
    import zarr
    try:  # the in-memory path under the same cap: the whole affinity volume alone exceeds it
        from srseg.segment import segment_affinities
        segment_affinities(np.asarray(zarr.open_array(f"{d}/big.zarr", mode="r")[...]), [0.5], **kw)
        in_memory = "fits"
    except MemoryError:
        in_memory = "MemoryError"
    print(json.dumps({"cap": cap, "in_memory": in_memory}))
    """
)


def _affinity_zarr(path, labels, seed):
    import zarr

    from srseg.affinity import affinity_targets

    rng = np.random.default_rng(seed)
    affs = affinity_targets(labels, 2)
    affs = np.clip(affs + rng.normal(0, 0.1, affs.shape), 0, 1).astype(np.float32)
    affs[0] = 0.0
    arr = zarr.open_array(str(path), mode="w", shape=affs.shape, chunks=(3, 4, 128, 128), dtype="float32")
    for z0 in range(0, affs.shape[1], 4):
        arr[:, z0 : z0 + 4] = affs[:, z0 : z0 + 4]
    return affs


def _grid_cells(shape, cell, membrane=2):
    """Square cells of `cell` px with label-0 membranes, shifted by a few px per section."""
    z, y, x = np.indices(shape)
    yy, xx = (y + 3 * z) // cell, (x + 2 * z) // cell
    labels = (yy * (shape[2] // cell + 2) + xx + 1).astype(np.uint64)
    edge = ((y + 3 * z) % cell < membrane) | ((x + 2 * z) % cell < membrane)
    return np.where(edge, 0, labels)


def test_segmentation_runs_blockwise_under_a_memory_cap_smaller_than_its_affinities(tmp_path):
    from srseg.metrics.segmentation import contingency_table, voi_from_table
    from srseg.segment import segment_affinities
    from srseg.volumes import open_volume

    _affinity_zarr(tmp_path / "warm.zarr", _grid_cells((2, 64, 64), 20), 0)
    _affinity_zarr(tmp_path / "big.zarr", _grid_cells((24, 512, 512), 40), 1)  # affinities 3 x 24 x 512^2: 75 MB
    small = _affinity_zarr(tmp_path / "small.zarr", _grid_cells((4, 200, 180), 30), 2)
    headroom = 48 * 2**20  # less than the affinity volume itself
    out = run_capped(SEGMENT_CHILD, tmp_path, headroom)
    assert out["in_memory"] == "MemoryError"  # the cap is real
    with open_volume(tmp_path / "big_seg.zarr") as v:
        assert list(v.shape) == [24, 512, 512] and v.voxel_nm == [50.0, 10.0, 10.0]

    ref, _ = segment_affinities(small, [0.5], dim=2)  # in memory, uncapped
    with open_volume(tmp_path / "small_seg.zarr") as v:
        capped = v.read()
    split, merge = voi_from_table(contingency_table(capped, ref[0.5].astype(np.int64) + 1)[0])
    assert split + merge <= 0.01


STAGES_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from srseg.align import run_align
    from srseg.ingest import run_ingest
    from srseg.io import read_image
    from srseg.pairs import run_pairs

    d, headroom = sys.argv[1], int(sys.argv[2])
    def vm():  # bytes of address space in use
        return int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    def run(name):  # ingest, align and pairs of the specimen in d/name, as the workflow runs them
        s = f"{d}/{name}"
        spec = json.load(open(f"{s}/spec.json"))
        run_ingest(f"{s}/raw_lr.tif", f"{s}/raw_hr.tif", f"{s}/in/lr.tif", f"{s}/in/hr.tif", f"{s}/in/meta.json",
                   specimen="s", spec=spec)
        run_align(f"{s}/in/lr.tif", f"{s}/in/hr.tif", f"{s}/in/meta.json", f"{s}/al/transform.json",
                  f"{s}/al/qc.png", f"{s}/al/qc.json", params={})
        run_pairs(f"{s}/in/lr.tif", f"{s}/in/hr.tif", f"{s}/in/meta.json", f"{s}/al/transform.json",
                  f"{s}/pa/lr.tif", f"{s}/pa/hr.tif", f"{s}/pa/pairs.json", {})
    run("small")  # uncapped: the reference, and imports, thread pools, caches
    cap = vm() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    run("big")
    try:  # the whole-volume read the stages did before, under the same cap: the LR overview as float32
        read_image(f"{d}/big/in/lr.tif")
        whole = "fits"
    except (MemoryError, ValueError) as exc:  # read_tiff reports a failed read as an InputError (a ValueError)
        whole = "MemoryError" if isinstance(exc, MemoryError) or "Unable to allocate" in str(exc) else repr(exc)
    print(json.dumps({"cap": cap, "whole_read": whole}))
    """
)


def _overview_specimen(d, lr_shape, field, at=(1, 300, 420)):
    """A phantom specimen's LR field pasted into a larger LR overview (constant elsewhere), written section by
    section as an uncompressed ImageJ TIFF (raw_lr.tif) beside its HR field (raw_hr.tif) and spec.json."""
    from srseg.io import from_float, tiff_options

    lr = from_float(field["lr"], "uint8")
    (z0, y0, x0), (n, h, w) = at, lr.shape
    background = np.uint8(np.rint(lr.mean()))

    def sections():
        for k in range(lr_shape[0]):
            plane = np.full(lr_shape[1:], background, np.uint8)
            if z0 <= k < z0 + n:
                plane[y0 : y0 + h, x0 : x0 + w] = lr[k - z0]
            yield plane

    d.mkdir(parents=True)
    opts = {k: v for k, v in tiff_options(np.uint8, field["lr_voxel_nm"]).items() if k != "compression"}
    tifffile.imwrite(d / "raw_lr.tif", sections(), shape=tuple(lr_shape), dtype=np.uint8, **opts)
    write_tiff(d / "raw_hr.tif", from_float(field["hr"], "uint8"), field["hr_voxel_nm"])
    vox, off = field["lr_voxel_nm"], field["hr_offset_nm"]
    write_json(d / "spec.json", {"hr_offset_nm": [float(off[i]) + at[i] * vox[i] for i in range(3)]})


def test_ingest_align_pairs_stream_an_lr_overview_larger_than_their_memory_cap(tmp_path):
    from helpers import demo_specimen

    from srseg.io import read_json
    from srseg.volumes import open_volume

    field = demo_specimen("alpha")  # LR 3 x 160 x 160 px, HR 3 x 288 x 288 px
    _overview_specimen(tmp_path / "small", (5, 1024, 1024), field)
    _overview_specimen(tmp_path / "big", (320, 1024, 1024), field)  # 320 MB uint8, 1.3 GB as float32
    headroom = 64 * 2**20  # a fifth of the LR overview's uint8 bytes
    out = run_capped(STAGES_CHILD, tmp_path, headroom)
    assert out["whole_read"] == "MemoryError"  # the cap is real: the old whole-volume reads do not fit under it

    small, big = tmp_path / "small", tmp_path / "big"
    with open_volume(small / "in/lr.tif") as s, open_volume(big / "in/lr.tif") as b:
        assert b.shape == (320, 1024, 1024) and b.voxel_nm == s.voxel_nm
        np.testing.assert_array_equal(b[0:5], s.read())  # the sections both have, bytes as the small run's
        np.testing.assert_array_equal(b[319], s[4])
    meta_s, meta_b = read_json(small / "in/meta.json"), read_json(big / "in/meta.json")
    assert meta_b["lr_shape"] == [320, 1024, 1024]
    for m in (meta_s, meta_b):
        del m["lr_shape"], m["sources"]
    assert meta_b == meta_s
    t_s, t_b = read_json(small / "al/transform.json"), read_json(big / "al/transform.json")
    assert t_b.pop("lr_shape") == [320, 1024, 1024] and t_s.pop("lr_shape") == [5, 1024, 1024]
    assert t_b == t_s  # the same placement, to the last bit
    assert read_json(big / "al/qc.json") == read_json(small / "al/qc.json")
    assert read_json(big / "al/qc.json")["n_sections_ecc_ok"] == 3
    for name in ("in/hr.tif", "al/qc.png", "pa/lr.tif", "pa/hr.tif", "pa/pairs.json"):
        assert (big / name).read_bytes() == (small / name).read_bytes(), name


def test_every_ingest_source_is_read_lazily_and_ingests_to_the_same_bytes(tmp_path, monkeypatch):
    import cv2

    from srseg import stacks
    from srseg.ingest import run_ingest
    from srseg.io import to_full_range
    from srseg.volumes import write_ome_zarr

    rng = np.random.default_rng(3)
    lr = rng.integers(0, 4096, (6, 40, 40)).astype(np.uint16)  # 12-bit data in uint16: rescaled on the way
    hr = rng.integers(0, 256, (4, 64, 64)).astype(np.uint8)
    lr_vox = [50.0, 33.0, 33.0]
    write_tiff(tmp_path / "lr.tif", lr, lr_vox)
    write_tiff(tmp_path / "hr.tif", hr, [50.0, 10.0, 10.0])
    (tmp_path / "png").mkdir()
    for z in range(lr.shape[0]):
        cv2.imwrite(str(tmp_path / "png" / f"s{z + 1}.png"), lr[z])
    write_ome_zarr(tmp_path / "lr.zarr", lr, lr_vox)

    reads = []
    png = stacks._read_png_file
    monkeypatch.setattr(stacks, "_read_png_file", lambda f: reads.append(f) or png(f))
    vol, _ = stacks.open_stack(str(tmp_path / "png"))
    assert vol.shape == lr.shape and len(reads) == 1  # opening a folder reads its first file only
    np.testing.assert_array_equal(vol[4], lr[4])
    assert reads[-1].endswith("s5.png") and len(reads) == 2  # a section: its own file only

    expected = tmp_path / "expected.tif"
    write_tiff(expected, to_full_range(lr, 12), lr_vox)
    for name in ("lr.tif", "png", "lr.zarr"):
        out = tmp_path / "out" / name
        meta = run_ingest(
            str(tmp_path / name),
            str(tmp_path / "hr.tif"),
            out / "lr.tif",
            out / "hr.tif",
            out / "meta.json",
            specimen="s",
            spec={"lr_voxel_nm": lr_vox, "hr_offset_nm": [0, 300, 300]},
        )
        assert meta["lr_bit_depth"] == 12 and meta["lr_shape"] == [6, 40, 40]
        assert (out / "lr.tif").read_bytes() == expected.read_bytes(), name  # write_tiff's bytes of the whole


TRAIN_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from srseg.config import model_spec
    from srseg.io import read_image
    from srseg.training import run_train

    d, headroom = sys.argv[1], int(sys.argv[2])
    spec = model_spec(
        {"arch": "srcnn", "loss": {"l1": 1}, "steps": 2, "batch": 2, "patch": 16, "val_patches": 2, "val_every": 2}
    )
    def train(name):
        out = f"{d}/{name}"
        return run_train(spec, [f"{d}/{name}_lr.tif"], [f"{d}/{name}_hr.tif"], f"{out}/model.pt",
                         f"{out}/log.csv", f"{out}/train.json", device="cpu")
    def vm():  # bytes of address space in use
        return int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    train("small")  # imports, thread pools, caches
    cap = vm() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    info = train("big")
    try:  # what training read before: both volumes whole, as float32
        volumes = [read_image(f"{d}/big_{w}.tif")[0] for w in ("lr", "hr")]
        whole = "fits"
    except MemoryError:
        whole = "MemoryError"
    print(json.dumps({"steps": info["steps"], "whole": whole}))
    """
)


def test_sr_training_reads_patches_of_hr_fields_larger_than_its_memory_cap(tmp_path):
    """SR training keeps its pairs in their stored dtype (data.StoredVolume) and converts only patches: a
    105 MB uint8 HR field (420 MB as float32) trains under a cap the whole float32 volumes do not fit in."""
    from srseg.io import write_tiff

    rng = np.random.default_rng(0)
    for name, (z, side) in {"small": (4, 24), "big": (100, 256)}.items():
        lr = (rng.random((z, side, side)) * 255).astype(np.uint8)
        write_tiff(tmp_path / f"{name}_lr.tif", lr, [50, 40, 40])
        hr = np.repeat(np.repeat(lr, 4, axis=1), 4, axis=2)  # 100 x 1024 x 1024 for big: 105 MB
        write_tiff(tmp_path / f"{name}_hr.tif", hr, [50, 10, 10])
    out = run_capped(TRAIN_CHILD, tmp_path, 200 * 2**20)  # > the uint8 volumes (112 MB), < their float32 (447 MB)
    assert out == {"steps": 2, "whole": "MemoryError"}


CHUNKED_TRAIN_CHILD = TRAIN_CHILD.replace(
    "from srseg.training import run_train\n",
    "from srseg.training import run_train\nimport srseg.data\nsrseg.data.WHOLE_READ_BYTES = 0  # all by chunks\n",
).replace('read_image(f"{d}/big_{w}.tif")[0]', 'srseg.data.read_tiff(f"{d}/big_{w}.tif")[0]')


def test_sr_training_reads_patches_from_chunks_of_a_field_larger_than_its_memory_cap(tmp_path):
    """A compressed HR field above data.WHOLE_READ_BYTES is never read whole, not even in its stored dtype:
    each patch decodes the TIFF strips it covers. The 105 MB uint8 field trains under 48 MB of headroom, in
    which reading it whole (in uint8, as smaller fields are) fails."""
    from srseg.io import write_tiff

    rng = np.random.default_rng(0)
    for name, (z, side) in {"small": (4, 24), "big": (100, 256)}.items():
        lr = (rng.random((z, side, side)) * 255).astype(np.uint8)
        write_tiff(tmp_path / f"{name}_lr.tif", lr, [50, 40, 40])
        hr = np.repeat(np.repeat(lr, 4, axis=1), 4, axis=2)
        write_tiff(tmp_path / f"{name}_hr.tif", hr, [50, 10, 10])
    assert run_capped(CHUNKED_TRAIN_CHILD, tmp_path, 48 * 2**20) == {"steps": 2, "whole": "MemoryError"}


def test_a_jobs_volumes_are_read_whole_only_while_they_fit_the_budget_together(tmp_path):
    from srseg.data import ChunkedSections, ReadBudget

    for name in "abc":
        write_tiff(tmp_path / f"{name}.tif", np.full((4, 50, 50), 7, np.uint8), [50, 10, 10])  # 10 kB each
    budget = ReadBudget(25_000)
    kinds = [type(budget.open(tmp_path / f"{name}.tif").array) for name in "abc"]
    assert kinds == [np.ndarray, np.ndarray, ChunkedSections] and budget.left == 5_000


def test_chunked_sections_index_as_numpy_does(tmp_path):
    import zarr

    from srseg.data import ChunkedSections

    vol = np.arange(7 * 9 * 11, dtype=np.uint16).reshape(7, 9, 11)
    arr = zarr.create_array(str(tmp_path / "v.zarr"), shape=vol.shape, chunks=(2, 4, 4), dtype=vol.dtype)
    arr[...] = vol
    whole = ChunkedSections(arr)
    view, part = whole.sections(slice(2, 6)), vol[2:6]
    keys = [
        (1, slice(2, 7), slice(None)),
        (slice(None, None, -1), slice(8, 1, -3), 4),
        (np.array([0, 0, 3, 2, -1]), slice(1, 5), slice(3, 10)),
        (Ellipsis, slice(2, 5)),
        (2,),
        (slice(3, 3),),
        (np.array([[1, 2], [3, 0]]), 0, np.array([4, 5])),
    ]
    for key in keys:
        assert np.array_equal(whole[key], vol[key]), key
        assert np.array_equal(view[key], part[key]), key
    assert view.shape == part.shape and view.sections(slice(1, None)).shape == (3, 9, 11)
    with pytest.raises(IndexError):
        view[4]


def test_stored_volume_patches_are_the_float32_volume_patches(tmp_path):
    from srseg.data import ChunkedSections, PatchSampler, StoredVolume
    from srseg.io import read_image, write_tiff
    from srseg.volumes import write_ome_zarr

    rng = np.random.default_rng(1)
    for dtype, scale in ((np.uint8, 255), (np.uint16, 65535)):
        vol = (rng.random((5, 40, 40)) * scale).astype(dtype)
        write_tiff(tmp_path / "v.tif", vol, [50, 10, 10])  # zlib: read in the stored dtype
        tifffile.imwrite(tmp_path / "raw.tif", vol)  # uncompressed: memory-mapped
        assert isinstance(StoredVolume.open(tmp_path / "raw.tif").array, np.memmap)
        assert np.array_equal(
            StoredVolume.open(tmp_path / "raw.tif")[:, 3:9, 2:7], read_image(tmp_path / "raw.tif")[0][:, 3:9, 2:7]
        )
        stored, whole = StoredVolume.open(tmp_path / "v.tif"), read_image(tmp_path / "v.tif")[0]
        assert stored.array.dtype == dtype and stored.shape == whole.shape
        assert isinstance(stored[1:3], StoredVolume) and np.array_equal(stored[1:3][0], whole[1])
        a = PatchSampler([(stored[:, ::4, ::4], stored)], 8, 4, np.random.default_rng(2), context=1).batch(6)
        b = PatchSampler([(whole[:, ::4, ::4], whole)], 8, 4, np.random.default_rng(2), context=1).batch(6)
        assert all(np.array_equal(x, y) and x.dtype == np.float32 for x, y in zip(a, b))
        # above the whole-read budget (here 0), a TIFF or an OME-Zarr is read by chunks: the same patches
        write_ome_zarr(tmp_path / f"v{dtype.__name__}.zarr", vol, [50, 10, 10])
        assert isinstance(StoredVolume.open(tmp_path / f"v{dtype.__name__}.zarr").array, np.ndarray)  # small: whole
        for chunked in (
            StoredVolume.open(tmp_path / "v.tif", 0),
            StoredVolume.open(tmp_path / f"v{dtype.__name__}.zarr", 0),
        ):
            assert isinstance(chunked.array, ChunkedSections) and chunked.voxel_nm == [50, 10, 10]
            lr, hr = StoredVolume.open(tmp_path / "v.tif")[:, ::4, ::4], chunked[1:]  # LR in memory, HR by chunks
            a = PatchSampler([(lr[1:], hr)], 8, 4, np.random.default_rng(2), context=1).batch(6)
            b = PatchSampler([(whole[1:, ::4, ::4], whole[1:])], 8, 4, np.random.default_rng(2), context=1).batch(6)
            assert all(np.array_equal(x, y) and x.dtype == np.float32 for x, y in zip(a, b))
