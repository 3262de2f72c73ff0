"""The acquisition simulator (srseg.simulate): real EM in, a known LR/HR geometry out that
the align stage recovers; seeded; pseudo-specimens never share a section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from srseg.align import align_volume
from srseg.config import resolve
from srseg.config.checks import check_section_blocks
from srseg.io import InputError, read_image, read_json, read_labels
from srseg.simulate import (
    load_source,
    poisson_gaussian,
    run_simulate,
    scanline_offsets,
    simulate_volume,
    source_sections,
)

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012"
needs_isbi = pytest.mark.skipif(
    not (ISBI / "raw.tif").is_file(), reason=f"ISBI 2012 data not found at {ISBI} (real-data tests skipped)"
)


def params(**kw):
    p = {
        "source": str(ISBI / "raw.tif"),
        "labels": str(ISBI / "cells.tif"),
        "labels_kind": "cell_mask",
        "sections": [3, 6],
        "lr_voxel_nm": [50, 16, 16],
        "seed": 5,
    }
    p.update(kw)
    return p


@pytest.fixture(scope="module")
def isbi():
    return load_source(params())


@needs_isbi
@pytest.mark.parametrize(
    "lr_nm, overrides",
    [
        (16.0, {}),  # 4x, random geometry
        (13.2, {"rotation_deg": -2.7, "scale": 1.025, "offset_error_lr_px": [18.0, -15.0]}),  # 3.3x, large errors
    ],
)
def test_align_recovers_the_true_transform_on_isbi(isbi, lr_nm, overrides):
    src, vox, lab, _ = isbi
    sim = simulate_volume(src, vox, params(lr_voxel_nm=[50, lr_nm, lr_nm]), labels=lab, geometry_overrides=overrides)
    res = align_volume(
        sim["lr"],
        sim["hr"],
        sim["lr_voxel_nm"],
        sim["hr_voxel_nm"],
        sim["hr_offset_nm"],
        {"search_margin_lr_px": 26},
        truth=sim["truth"],
    )
    assert res["qc"]["error_px_max"] <= 0.25
    assert res["lr_z"] == sim["truth"]["lr_z"]


@needs_isbi
def test_metadata_is_what_a_microscope_reports(isbi):
    src, vox, lab, _ = isbi
    sim = simulate_volume(src, vox, params(offset_error_lr_px=4), labels=lab)
    t = sim["truth"]
    assert sim["hr_voxel_nm"] == [50.0, 4.0, 4.0] and sim["lr_voxel_nm"] == [50.0, 16.0, 16.0]
    # the stage offset in the metadata is the true one plus the drawn error, in LR pixels
    err = np.subtract(sim["hr_offset_nm"], t["hr_offset_nm_true"])[1:] / 16.0
    assert err == pytest.approx(t["offset_error_lr_px"]) and 1.2 <= np.abs(err).max() <= 4
    # HR is a crop of the source (plus its own noise), labels the same crop
    (x0, y0), (_, h, w) = t["hr_origin_in_source_xy"][0], sim["hr"].shape
    assert np.corrcoef(sim["hr"][0].ravel(), src[0, y0 : y0 + h, x0 : x0 + w].ravel())[0, 1] > 0.95
    assert sim["labels"].shape == sim["hr"].shape and sim["labels"].max() > 50


@needs_isbi
def test_same_seed_same_bytes_and_noise_leaves_geometry_alone(isbi):
    src, vox, lab, _ = isbi
    a = simulate_volume(src, vox, params(), labels=lab)
    b = simulate_volume(src, vox, params(), labels=lab)
    c = simulate_volume(src, vox, params(lr_dose=50), labels=lab)
    assert np.array_equal(a["lr"], b["lr"]) and np.array_equal(a["hr"], b["hr"]) and a["truth"] == b["truth"]
    assert a["truth"]["matrices"] == c["truth"]["matrices"] and not np.array_equal(a["lr"], c["lr"])


def test_poisson_gaussian_and_scanline_noise_have_the_asked_statistics():
    rng = np.random.default_rng(0)
    img = np.full((200, 200), 0.5, np.float32)
    noisy = poisson_gaussian(img, dose=100, read_noise=0.02, rng=rng)
    assert noisy.mean() == pytest.approx(0.5, abs=0.005)
    assert noisy.var() == pytest.approx(0.5 / 100 + 0.02**2, rel=0.05)  # shot + read variance
    off = scanline_offsets(4, 4000, sd=0.03, corr=0.7, rng=rng)[..., 0]
    assert off.std() == pytest.approx(0.03, rel=0.1)
    r = np.corrcoef(off[:, 1:].ravel(), off[:, :-1].ravel())[0, 1]
    assert r == pytest.approx(0.7, abs=0.05)  # neighbouring scan lines are correlated


def test_overlapping_section_blocks_of_one_source_are_refused():
    spec = lambda s: {"simulate": {"source": "data/raw.tif", "sections": s, "lr_voxel_nm": [50, 16, 16]}}
    check_section_blocks({"a": spec([0, 10]), "b": spec([10, 20]), "c": spec([20, 30])})
    with pytest.raises(InputError, match="overlap"):
        check_section_blocks({"a": spec([0, 10]), "b": spec([9, 20])})
    with pytest.raises(InputError, match="overlap"):  # no `sections`: the whole stack
        check_section_blocks({"a": spec([0, 10]), "b": {"simulate": {"source": "data/raw.tif"}}})
    other = {"simulate": {"source": "data/other.tif", "sections": [0, 10]}}
    check_section_blocks({"a": spec([0, 10]), "b": other})  # another stack may reuse indices
    gapped = lambda s, gap: {"simulate": {**spec(s)["simulate"], "min_gap_sections": gap}}
    check_section_blocks({"a": gapped([0, 10], 2), "b": gapped([12, 20], 2)})
    with pytest.raises(InputError, match="min_gap_sections"):  # neighbouring sections are nearly one image
        check_section_blocks({"a": gapped([0, 10], 2), "b": gapped([11, 20], 2)})


@needs_isbi
def test_isbi_config_leave_one_out_never_tests_on_a_training_section():
    cfg = resolve(yaml.safe_load((ROOT / "config" / "isbi.yaml").read_text()))
    specimens = cfg["specimens"]
    assert cfg["splits"] == "leave_one_out" and len(specimens) == 3
    check_section_blocks(specimens)
    for test in specimens:
        train = set().union(*(source_sections(specimens[s]) for s in specimens if s != test))
        assert not train & source_sections(specimens[test])
        assert len(source_sections(specimens[test])) == 8
        near = {(src, k + d) for src, k in source_sections(specimens[test]) for d in range(-3, 4)}
        assert not train & near  # at least 3 sections between a test block and any training block


@needs_isbi
def test_run_simulate_writes_phantom_like_outputs(tmp_path):
    out = {
        k: str(tmp_path / f"{k}.{'json' if k in ('meta', 'truth') else 'tif'}")
        for k in ("lr", "hr", "labels", "meta", "truth")
    }
    p = params(sections=[0, 2], crop=[0, 256, 0, 256])
    run_simulate(p, out["lr"], out["hr"], out["labels"], out["meta"], out["truth"], specimen="s", progress=False)
    lr, lr_vox, dtype = read_image(out["lr"])
    hr, hr_vox, _ = read_image(out["hr"])
    lab, _ = read_labels(out["labels"])
    meta, truth = read_json(out["meta"]), read_json(out["truth"])
    assert dtype == "uint8" and lr.shape == (2, 64, 64) and lr_vox == pytest.approx([50, 16, 16])
    assert hr_vox == pytest.approx([50, 4, 4]) and lab.shape == hr.shape and lab.max() > 0
    assert {"lr_voxel_nm", "hr_voxel_nm", "hr_offset_nm"} <= set(meta) and truth["lr_z"] == [0, 1]
    assert truth["sections"] == [0, 2] and len(truth["matrices"]) == 2


def test_bad_simulate_config_fails_before_writing(tmp_path):
    outs = [str(tmp_path / n) for n in ("lr.tif", "hr.tif", "labels.tif", "meta.json", "truth.json")]
    with pytest.raises(InputError, match="labels"):
        run_simulate({"source": "x.tif", "lr_voxel_nm": [50, 16, 16]}, *outs, specimen="s")
    with pytest.raises(InputError, match="unknown key"):
        run_simulate({"source": "x.tif", "labels": "y.tif", "lr_voxel_nm": [50, 16, 16], "lr_dos": 3}, *outs)
    with pytest.raises(InputError, match="must equal"):
        simulate_volume(np.zeros((2, 64, 64), np.float32), [50, 4, 4], {"source": "x", "lr_voxel_nm": [40, 16, 16]})
    assert not list(tmp_path.iterdir())
