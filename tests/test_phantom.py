"""The embedded demo data: deterministic, EM-like, LR and HR truly related by the saved transform."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from scipy import ndimage as ndi

from srseg.config import resolve
from srseg.io import InputError, read_json, read_labels, read_tiff
from srseg.phantom import generate_specimen, read_truth, run_phantom

CONFIG = resolve(yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text()))
DEMO = {name: entry["phantom"] for name, entry in CONFIG["specimens"].items() if "phantom" in entry}
# The demo geometry with a smaller field: same voxel sizes, same non-integer ratio 3.3.
SMALL = {**CONFIG["phantom"], "hr_shape": [3, 160, 160], "lr_margin_nm": 400}
WIDE = {**CONFIG["phantom"], "hr_shape": [2, 288, 288], "lr_margin_nm": 300}


@pytest.fixture(scope="module")
def small():
    return generate_specimen(DEMO["alpha"], SMALL)


@pytest.fixture(scope="module")
def demo_clean():
    """The three demo specimens without noise (noise has its own random stream)."""
    return {n: generate_specimen({**p, "noise": 0.0, "lr_noise": 0.0}, WIDE) for n, p in DEMO.items()}


def _files(d):
    return {n: (d / n).read_bytes() for n in ("lr.tif", "hr.tif", "labels.tif", "meta.json", "truth.json")}


def _run(params, out):
    run_phantom(
        params, SMALL, *(out / n for n in ("lr.tif", "hr.tif", "labels.tif", "meta.json", "truth.json")), progress=False
    )


def test_same_seed_gives_same_bytes_and_other_seed_differs(tmp_path):
    _run(DEMO["beta"], tmp_path / "a")
    _run(DEMO["beta"], tmp_path / "b")
    _run({**DEMO["beta"], "seed": 23}, tmp_path / "c")
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b
    assert a["hr.tif"] != c["hr.tif"] and a["truth.json"] != c["truth.json"]
    # written files carry voxel sizes and round-trip the arrays
    hr, vox = read_tiff(tmp_path / "a" / "hr.tif")
    assert hr.dtype == np.uint8 and vox == pytest.approx([50, 10, 10])
    lr, vox = read_tiff(tmp_path / "a" / "lr.tif")
    assert lr.dtype == np.uint8 and vox == pytest.approx([50, 33, 33])
    labels, vox = read_labels(tmp_path / "a" / "labels.tif")
    assert labels.shape == hr.shape and vox == pytest.approx([50, 10, 10])
    meta = read_json(tmp_path / "a" / "meta.json")
    assert set(meta) >= {"lr_voxel_nm", "hr_voxel_nm", "hr_offset_nm"}
    assert read_truth(tmp_path / "a" / "truth.json")["matrices"][0].shape == (2, 3)


def _lr_on_hr(lr_section, M, hr_shape):
    """Sample an LR section at the HR pixel centres given the HR->LR matrix."""
    return cv2.warpAffine(
        lr_section, np.asarray(M, np.float64), hr_shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )


def test_true_transform_maps_hr_onto_lr_and_metadata_offset_is_off(small):
    truth, g = small["truth"], SMALL
    hz, hy, hx = g["hr_shape"]
    assert small["hr"].shape == (hz, hy, hx) and small["labels"].shape == (hz, hy, hx)
    # LR field = HR field + margin on every side, at the LR pixel size
    side = (hx * 10 + 2 * g["lr_margin_nm"]) / 33
    assert small["lr"].shape == (hz, round(side), round(side))
    assert 0 < abs(truth["rotation_deg"]) <= g["max_rotation_deg"]
    assert 0 < abs(truth["scale"] - 1) <= g["max_scale_error"]
    assert truth["lr_z"] == list(range(hz))
    for k in range(hz):
        M = np.asarray(truth["matrices"][k])
        hr = cv2.GaussianBlur(small["hr"][k], (0, 0), 1.5)
        corr = lambda m, k=k, hr=hr: np.corrcoef(_lr_on_hr(small["lr"][k], m, (hy, hx)).ravel(), hr.ravel())[0, 1]
        shifted = M.copy()
        shifted[0, 2] += 1.0  # one LR pixel off
        assert corr(M) > 0.8
        assert corr(M) > corr(shifted) + 0.1
    # section 0's translation is the true stage offset; the metadata's is off by 0.3..1 x offset_error LR px
    M0 = np.asarray(truth["matrices"][0])
    true = truth["hr_offset_nm_true"]
    assert M0[:, 2] * 33 == pytest.approx([true[2], true[1]])
    err_px = (np.array(small["hr_offset_nm"][1:]) - np.array(true[1:])) / 33
    assert np.all(np.abs(err_px) <= g["offset_error_lr_px"] + 1e-9)
    assert np.all(np.abs(err_px) >= 0.3 * g["offset_error_lr_px"] - 1e-9)
    # the coarse guess from the metadata (no rotation) is worse than the truth
    guess = np.array([[10 / 33, 0, small["hr_offset_nm"][2] / 33], [0, 10 / 33, small["hr_offset_nm"][1] / 33]])
    hr0 = cv2.GaussianBlur(small["hr"][0], (0, 0), 1.5)
    c_guess = np.corrcoef(_lr_on_hr(small["lr"][0], guess, (hy, hx)).ravel(), hr0.ravel())[0, 1]
    assert c_guess < 0.6


def test_labels_are_instances_with_dark_membranes_between_them(small):
    labels, hr = small["labels"], small["hr"]
    assert labels.dtype == np.uint32
    # two different neurons never touch within a section: a membrane (0) lies between
    for a, b in ((labels[:, :, 1:], labels[:, :, :-1]), (labels[:, 1:, :], labels[:, :-1, :])):
        assert not np.any((a != b) & (a > 0) & (b > 0))
    # membranes are dark in the HR image
    assert hr[labels == 0].mean() < hr[labels > 0].mean() - 0.1
    assert 0.03 < (labels == 0).mean() < 0.3
    # each label is one connected piece per section and neurons continue through z
    for k in range(labels.shape[0]):
        for i in np.unique(labels[k][labels[k] > 0]):
            _, n = ndi.label(labels[k] == i)
            assert n <= 2  # a thin cell may be cut by the field edge into two pieces, not shattered
    ids0, ids1 = set(np.unique(labels[0])) - {0}, set(np.unique(labels[1])) - {0}
    assert len(ids0 & ids1) >= 0.8 * len(ids0)
    overlap = (labels[0] == labels[1]) & (labels[0] > 0)
    assert overlap.sum() > 0.6 * (labels[0] > 0).sum()


def test_noise_levels_are_as_configured_and_leave_the_tissue_alone():
    p = DEMO["beta"]
    noisy = generate_specimen(p, SMALL)
    clean = generate_specimen({**p, "noise": 0.0, "lr_noise": 0.0}, SMALL)
    assert np.array_equal(noisy["labels"], clean["labels"])
    assert noisy["truth"] == clean["truth"]
    assert np.std(noisy["hr"] - clean["hr"]) == pytest.approx(p["noise"], rel=0.1)
    assert np.std(noisy["lr"] - clean["lr"]) == pytest.approx(p["lr_noise"], rel=0.1)


def _noise_sigma(img):
    """Immerkaer (1996) fast noise estimate from a Laplacian-difference kernel."""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)
    r = ndi.convolve(img.astype(float), k)[1:-1, 1:-1]
    return np.sqrt(np.pi / 2) * np.abs(r).mean() / 6


def _membrane_contrast(spec):
    hr, labels = spec["hr"], spec["labels"]
    return 1 - np.median(hr[labels == 0]) / np.median(hr[labels > 0])


def _cell_radius(spec):
    """Equivalent cell radius from membrane density: for a tiling of cells of radius r the
    boundary length per area is ~1.05 / r (hexagons), so a 30 nm band covers ~31.5 / r."""
    return 31.5 / (spec["labels"] == 0).mean()


def test_demo_specimens_differ_as_configured(demo_clean):
    names = list(DEMO)
    for a in names:
        for b in names:
            if a == b:
                continue
            pa, pb, sa, sb = DEMO[a], DEMO[b], demo_clean[a], demo_clean[b]
            # membrane contrast: same order and ratio as configured
            ca, cb = _membrane_contrast(sa), _membrane_contrast(sb)
            assert (ca > cb) == (pa["membrane_contrast"] > pb["membrane_contrast"])
            assert ca / cb == pytest.approx(pa["membrane_contrast"] / pb["membrane_contrast"], rel=0.15)
            # cell size: same order and ratio as configured
            ra, rb = _cell_radius(sa), _cell_radius(sb)
            assert (ra > rb) == (pa["cell_radius_nm"] > pb["cell_radius_nm"])
            assert ra / rb == pytest.approx(pa["cell_radius_nm"] / pb["cell_radius_nm"], rel=0.2)
    for name, spec in demo_clean.items():
        assert _membrane_contrast(spec) == pytest.approx(DEMO[name]["membrane_contrast"], rel=0.35)
        assert _cell_radius(spec) == pytest.approx(DEMO[name]["cell_radius_nm"], rel=0.3)


def test_measured_noise_of_demo_specimens_matches_config():
    for p in DEMO.values():
        spec = generate_specimen(p, {**SMALL, "hr_shape": [1, 160, 160]})
        assert _noise_sigma(spec["hr"][0]) == pytest.approx(p["noise"], rel=0.15)


def test_lr_is_a_separate_acquisition_with_its_own_contrast(small):
    M = np.asarray(small["truth"]["matrices"][0])
    hr = small["hr"][0]
    lr_on_hr = _lr_on_hr(small["lr"][0], M, hr.shape)
    # different contrast curve: a linear fit LR ~ a*HR + b is far from identity
    smooth = cv2.GaussianBlur(hr, (0, 0), 2.0)
    a, b = np.polyfit(smooth.ravel(), lr_on_hr.ravel(), 1)
    assert abs(a - 1) > 0.1 or abs(b) > 0.05


def test_config_typos_and_missing_seed_are_refused():
    with pytest.raises(InputError, match="cell_radius"):
        generate_specimen({**DEMO["alpha"], "cell_radius": 300}, SMALL)
    with pytest.raises(InputError, match=r"phantom\.seed: missing"):
        generate_specimen({"noise": 0.1}, SMALL)


def test_too_small_margin_is_refused():
    with pytest.raises(InputError, match="phantom.lr_margin_nm"):
        generate_specimen(DEMO["alpha"], {**SMALL, "lr_margin_nm": 20})
