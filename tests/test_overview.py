"""`snakemake overview`: the row choice, the plan-time checks and the resumable segmentation of a whole SR overview
(the workflow run itself is in test_workflow.py, on the shared finished tiny run)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from helpers import ROOT, load_config

from srseg.io import InputError

# --------------------------------------------------------------------------- choose_row

COLUMNS = ["model", "data", "voi_sum_3d_mean", "voi_sum_mean"]


def write_summary(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)
    return path


def test_choose_row_takes_the_lowest_headline_voi_sum_hr_excluded(tmp_path):
    from srseg.overview import choose_row

    table = write_summary(
        tmp_path / "summary.csv",
        [
            ["bicubic", "none", 3.4, 0.1],
            ["edsr", "real", 3.2, 0.9],
            ["edsr", "bicubic", 3.2, 0.2],  # a tie with edsr/real: the first row of the table wins
            ["srcnn", "real", "", 0.05],  # no 3D score: not a candidate by the 3D headline
            ["hr", "none", 2.9, 0.01],  # the upper bound is never the overview row
        ],
    )
    assert choose_row(table) == {"model": "edsr", "data": "real", "by": "voi_sum_3d_mean", "value": 3.2}
    # the config's rows only (a stale table's rows are ignored); bicubic is a candidate like any model
    got = choose_row(table, rows=[("bicubic", "none"), ("srcnn", "real")])
    assert (got["model"], got["data"], got["value"]) == ("bicubic", "none", 3.4)
    # explicit row: taken as is, with its headline score where the table has it
    assert choose_row(table, "srcnn", "real") == {"model": "srcnn", "data": "real", "by": "config", "value": None}
    assert choose_row(None, "edsr", "real")["by"] == "config"  # no table needed
    # per-section VOI where no row has a 3D one
    per_section = write_summary(tmp_path / "s2.csv", [["edsr", "real", "nan", 0.5], ["srcnn", "real", "", 0.4]])
    assert choose_row(per_section)["model"] == "srcnn" and choose_row(per_section)["by"] == "voi_sum_mean"
    with pytest.raises(InputError, match="no summary table"):
        choose_row(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="no row has a finite"):
        choose_row(write_summary(tmp_path / "s3.csv", [["hr", "none", 1.0, 1.0]]))
    with pytest.raises(InputError, match="both or neither"):
        choose_row(table, model="edsr")


def test_run_overview_choice_writes_the_choice(tmp_path):
    from srseg.io import read_json
    from srseg.overview import run_overview_choice

    table = write_summary(tmp_path / "summary.csv", [["bicubic", "none", 3.4, 0.4], ["edsr", "real", 3.1, 0.3]])
    run_overview_choice(str(tmp_path / "choice.json"), str(table))
    assert read_json(tmp_path / "choice.json") == {
        "model": "edsr",
        "data": "real",
        "by": "voi_sum_3d_mean",
        "value": 3.1,
    }


# --------------------------------------------------------------------------- plan-time checks


@pytest.mark.parametrize(
    "overview, message",
    [
        ({"model": "edsr"}, r"^overview\.data: null while overview\.model is set"),
        ({"model": "edsx", "data": "real"}, r"^overview\.model: unknown model 'edsx'"),
        ({"model": "bicubic", "data": "real"}, r"^overview\.data: 'real' is not a training data of model bicubic"),
        ({"model": "edsr", "data": "none"}, r"^overview\.data: 'none'"),
        ({"specimens": ["alpha"]}, r"^overview\.specimens: 'alpha' is no fold's test specimen"),
        ({"specimens": ["delta"]}, r"^overview\.specimens: unknown specimen 'delta'"),
        ({"threshold": 0.4}, r"^overview\.threshold: 0\.4 is not one of segmentation\.thresholds"),
        ({"context": [0, 0, 8]}, r"^overview\.context: .* no y context"),
    ],
)
def test_overview_misconfigurations_fail_at_plan_time(overview, message):
    from srseg.config import resolve

    cfg = {**load_config("tiny"), "overview": overview}
    with pytest.raises(InputError, match=message):
        resolve(cfg, ROOT)


def test_overview_defaults_select_every_test_specimen():
    from srseg.config import folds, resolve
    from srseg.config.checks import overview_fold, overview_specimens

    cfg = resolve({**load_config("tiny"), "overview": {"model": "edsr", "data": "real", "threshold": 0.5}}, ROOT)
    assert overview_specimens(cfg, folds(cfg)) == ["gamma"] and overview_fold(cfg, folds(cfg), "gamma") == "gamma"
    loo = resolve({k: v for k, v in load_config("tiny").items() if k != "splits"}, ROOT)
    assert overview_specimens(loo, folds(loo)) == ["alpha", "beta", "gamma"]
    assert overview_fold(loo, folds(loo), "beta") == "beta"  # leave-one-out: the fold that holds it out


# --------------------------------------------------------------------------- resumable segmentation


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def overview_inputs(tmp_path_factory):
    """A small SR OME-Zarr (6 x 64 x 72, 12 blocks of 2 x 32 x 40), an untrained oracle affinity net and a row json."""
    from test_blockwise import cells, oracle_net, render

    from srseg.config import section
    from srseg.io import write_json
    from srseg.runtime import save_checkpoint
    from srseg.volumes import write_ome_zarr

    d = tmp_path_factory.mktemp("overview")
    net = oracle_net(2)
    params = section("affinity", {"dim": 2, "tile": 48, "overlap": 8, "batch": 4, "test_time_flips": False})
    save_checkpoint(
        d / "model.pt", {"net": net.config(), "state_dict": net.state_dict(), "params": params, "offsets": net.offsets}
    )
    image = np.rint(render(cells((6, 64, 72), 12, seed=4), 5) * 255).astype(np.uint8)
    write_ome_zarr(d / "sr.zarr", image, [50.0, 11.0, 11.0], [0.0, -11.0, -11.0])
    fragments = {"seed_min_distance": 3, "boundary_threshold": 0.5, "long_range_weight": 0.5, "min_size": 10}
    write_json(d / "row.json", {"best_threshold": 0.5, "fragments": fragments})
    return d


def overview_run(d, name, **kw):
    from srseg.overview import run_overview_segment

    kw = {"model": str(d / "model.pt"), **kw}
    return run_overview_segment(
        image=str(d / "sr.zarr"),
        out_zarr=str(d / name / "segmentation.zarr"),
        out_json=str(d / name / "segmentation.json"),
        work=str(d / name / "work"),
        threshold_json=str(d / "row.json"),
        segmentation={"thresholds": [0.3, 0.5, 0.7]},
        block=(2, 32, 40),
        context=(2, 16, 16),
        cache_dir=str(d / "cache"),
        device="cpu",
        **kw,
    )


def test_overview_segment_resumes_where_a_killed_run_stopped(overview_inputs):
    from srseg.volumes import open_volume

    d = overview_inputs
    whole = overview_run(d, "whole")
    assert whole["n_blocks"] == 12 and whole["threshold"] == 0.5 and not whole["resumed"]
    assert whole["computed"] == {"affinities": 3, "fragments": 12, "merges": 12, "relabel": 12, "filter": 12}
    assert not (d / "whole" / "work").exists()  # removed after success
    assert whole["peak_rss_mb"] > 0

    def fail_at(stage, after):
        seen = []

        def hook(name, index):
            if name == stage:
                seen.append(index)
                if len(seen) == after:
                    raise Stop(f"killed after {after} {stage} blocks")

        return hook

    with pytest.raises(Stop):  # killed during the affinities: 1 of 3 z-blocks done
        overview_run(d, "resumed", on_block=fail_at("affinities", 1))
    work = d / "resumed" / "work"
    assert sorted(p.name for p in (work / "affs.zarr.done").iterdir()) == ["0"]
    with pytest.raises(Stop):  # killed during the merges: 5 of 12 blocks done
        overview_run(d, "resumed", on_block=fail_at("merges", 5))
    blocks = work / "seg.zarr" / "blocks"
    assert len(list(blocks.glob("*.fragments.json"))) == 12 and len(list(blocks.glob("*.merges.npz"))) == 5
    done = {p: p.stat().st_mtime_ns for p in [*blocks.iterdir(), *(work / "affs.zarr.done").iterdir()]}
    calls = []
    info = overview_run(d, "resumed", on_block=lambda name, index: calls.append((name, index)), keep_work=True)
    assert info["resumed"]
    assert info["computed"] == {"affinities": 0, "fragments": 0, "merges": 7, "relabel": 12, "filter": 12}
    assert not any(name in ("affinities", "fragments") for name, _ in calls)
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished blocks were not redone
    a, b = open_volume(d / "whole" / "segmentation.zarr"), open_volume(d / "resumed" / "segmentation.zarr")
    np.testing.assert_array_equal(a.read(), b.read())  # the resumed result is the uninterrupted one
    assert a.shape == (6, 64, 72) and a.voxel_nm == [50.0, 11.0, 11.0] and a.offset_nm == [0.0, -11.0, -11.0]
    assert a.read().max() > 1 and a.format == "ome-zarr"
    # other settings: the work folder is not reused
    again = overview_run(d, "resumed", threshold=0.7, keep_work=True)
    assert not again["resumed"] and again["computed"]["fragments"] == 12 and again["threshold"] == 0.7
    models = pytest.importorskip("ome_zarr_models")
    import zarr

    models.open_ome_zarr(zarr.open_group(str(d / "whole" / "segmentation.zarr"), mode="r"))
    assert math.isfinite(whole["seconds"])


# --------------------------------------------------------------------------- scattered affinities and blocks


def ruler_3d(path):
    """A randomly initialised 3D AffinityUNet of depth 2 (3x3x3 convolutions, GroupNorm) saved as a ruler."""
    import torch

    from srseg.affinity import AffinityUNet
    from srseg.config import section
    from srseg.ruler_spec import NEAREST
    from srseg.runtime import save_checkpoint

    torch.manual_seed(3)
    net = AffinityUNet(3, 4, 2)
    params = section(
        "affinity", {"dim": 3, "tile": 48, "overlap": 8, "batch": 3, "tile_z": 4, "test_time_flips": False}
    )
    offsets = [list(o) for o in NEAREST]
    save_checkpoint(path, {"net": net.config(), "state_dict": net.state_dict(), "params": params, "offsets": offsets})
    return path


@pytest.mark.parametrize("dim", [2, 3])
def test_scattered_affinity_and_block_jobs_give_the_affinities_and_labels_of_one_job(overview_inputs, tmp_path, dim):
    """overview.segment_jobs with overview.blocks_z = 2: checkpoint overview_work, two affinity jobs (runs of whole
    z-blocks, run here in reverse order), the block passes and the export give the one-job run_overview_segment's
    affinities byte for byte (both the whole-volume prediction, also for a 3D net's z tiles) and its labels."""
    import zarr

    from srseg.affinity import load_affinity_model, predict
    from srseg.overview import (
        PASSES,
        run_overview_affinities,
        run_overview_export,
        run_overview_pass,
        run_overview_work,
    )
    from srseg.volumes import open_volume

    d = overview_inputs
    model = d / "model.pt" if dim == 2 else ruler_3d(tmp_path / "model3d.pt")
    extra = {n: str(tmp_path / "one" / f"{n}.zarr") for n in ("affinities", "fragments")}  # overview.intermediates
    one = overview_run(
        d,
        f"one{dim}",
        model=str(model),
        keep_work=True,
        out_affinities=extra["affinities"],
        out_fragments=extra["fragments"],
    )
    common = {"threshold_json": str(d / "row.json"), "segmentation": {"thresholds": [0.3, 0.5, 0.7]}}
    work_json = tmp_path / "jobs" / "work" / "work.json"
    meta = run_overview_work(
        str(d / "sr.zarr"), str(model), str(work_json), block=(2, 32, 40), context=(2, 16, 16), blocks_z=2, **common
    )
    # 3 z-blocks of 2 sections: 2 jobs; the fragments of a block (no z context) wait for the job of its sections
    assert meta["affinity_jobs"] == [[0, 4], [4, 6]] and meta["n_blocks"] == 12
    assert meta["block_affinity_jobs"] == [[0]] * 8 + [[1]] * 4
    markers = [run_overview_affinities(str(work_json), i, device="cpu") for i in (1, 0)]
    assert [m.name for m in markers] == ["1.json", "0.json"]
    jobs = zarr.open_array(str(work_json.parent / "affs.zarr"), mode="r")[:]
    ref = zarr.open_array(str(d / f"one{dim}" / "work" / "affs.zarr"), mode="r")[:]
    net = load_affinity_model(model)
    with open_volume(d / "sr.zarr") as vol:
        whole = predict(net, vol.read().astype(np.float32) / 255, "cpu", net.params)
    assert jobs.tobytes() == ref.tobytes() == whole.tobytes()
    n = meta["n_blocks"]
    for name in PASSES:
        for i in [None] if name in ("luts", "sizes") else range(n):
            run_overview_pass(str(work_json), name, i)
    scattered = {n: str(tmp_path / "jobs" / f"{n}.zarr") for n in ("affinities", "fragments")}
    info = run_overview_export(
        str(work_json),
        str(tmp_path / "seg.zarr"),
        str(tmp_path / "seg.json"),
        out_affinities=scattered["affinities"],
        out_fragments=scattered["fragments"],
    )
    assert info["affinity_jobs"] == [[0, 4], [4, 6]] and info["device"] == "cpu" and info["dim"] == dim
    labels = open_volume(tmp_path / "seg.zarr").read()
    expected = open_volume(d / f"one{dim}" / "segmentation.zarr").read()
    assert labels.max() > 1 and np.array_equal(labels, expected) and info["n_fragments"] == one["n_fragments"]
    # overview.intermediates: the affinities (a channel axis) and fragments as OME-Zarr, the same from both paths
    from srseg.segment import threshold_name

    merged = [  # before the size filter (its flooding is voxel by voxel)
        zarr.open_group(str(w / "seg.zarr"), mode="r")[f"seg/{threshold_name(0.5)}"][:]
        for w in (d / f"one{dim}" / "work", work_json.parent)
    ]
    check_intermediates(extra, whole, merged[0])
    check_intermediates(scattered, whole, merged[1])
    assert np.array_equal(*(zarr.open_group(p["fragments"], mode="r")["0"][:] for p in (extra, scattered)))
    assert info["affinities_export_seconds"] > 0 and one["fragments_export_seconds"] > 0


def check_intermediates(paths, affinities, labels):
    """affinities.zarr holds `affinities` at level 0 with axes c, z, y, x at the SR's scale and offset; every
    segment of `labels` is a union of fragments.zarr's fragments."""
    import pandas as pd
    import zarr

    group = zarr.open_group(paths["affinities"], mode="r")
    assert group["0"][:].tobytes() == affinities.tobytes()
    ms = group.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"] and ms["axes"][0]["type"] == "channel"
    scale, trans = (t[k] for t, k in zip(ms["datasets"][0]["coordinateTransformations"], ("scale", "translation")))
    assert scale == [1.0, 50.0, 11.0, 11.0] and trans == [0.0, 0.0, -11.0, -11.0]
    fragments = zarr.open_group(paths["fragments"], mode="r")["0"][:]
    assert fragments.shape == labels.shape and fragments.max() > labels.max() > 1
    per_fragment = pd.Series(labels.ravel()).groupby(fragments.ravel()).nunique()
    assert (per_fragment == 1).all()
    models = pytest.importorskip("ome_zarr_models")
    for path in paths.values():
        models.open_ome_zarr(zarr.open_group(path, mode="r"))
