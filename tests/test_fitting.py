"""Fitted degradation: recovers known blur, noise and intensity response from pairs; synthesises with them."""

import numpy as np
import pytest
from scipy import ndimage

from srseg import fitting
from srseg.degrade import check_recipe, degrade_volume, run_degrade, run_fit_degradation
from srseg.io import InputError, read_image, read_json, write_image, write_json

TRUE = {"scale": 3, "sigma": 2.0, "gain": 0.8, "offset": 0.1, "gamma": 0.8, "noise_a": 0.003, "noise_b": 0.0009}


def texture(shape, seed):
    """EM-like HR: structure at 1, 3 and 8 px through a sigmoid, in [0.05, 0.95] (no clipping)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(shape, np.float64)
    for sigma, amp in ((1.0, 0.5), (3.0, 1.0), (8.0, 1.0)):
        n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, axes=(-2, -1))
        x += amp * n / n.std()
    return (0.05 + 0.9 / (1 + np.exp(-x / 1.2))).astype(np.float32)


def acquire(hr, p, seed):
    """LR from HR by an independent implementation of the model: scipy blur, block mean, response,
    *Poisson* shot noise (counts mu / a) plus Gaussian read noise of variance b."""
    rng = np.random.default_rng(seed)
    s = p["scale"]
    blurred = ndimage.gaussian_filter(hr.astype(np.float64), p["sigma"], mode="reflect", axes=(-2, -1))
    z, h, w = hr.shape[0], hr.shape[1] // s, hr.shape[2] // s
    u = blurred[:, : h * s, : w * s].reshape(z, h, s, w, s).mean(axis=(2, 4))
    mu = p["offset"] + p["gain"] * u ** p["gamma"]
    lr = rng.poisson(mu / p["noise_a"]) * p["noise_a"] + rng.normal(0, np.sqrt(p["noise_b"]), mu.shape)
    return np.clip(lr, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def pairs():
    hr = texture((6, 480, 480), 2)
    return hr, acquire(hr, TRUE, seed=7)


def test_recovers_blur_noise_and_response_of_known_pairs(pairs):
    hr, lr = pairs
    fit = fitting.fit_degradation([(lr[:3], hr[:3]), (lr[3:], hr[3:])], 3)
    assert fit["sigma"] == pytest.approx(TRUE["sigma"], rel=0.10)
    assert fit["noise_a"] == pytest.approx(TRUE["noise_a"], rel=0.10)
    assert fit["noise_b"] == pytest.approx(TRUE["noise_b"], rel=0.10)
    for mu in (0.2, 0.5, 0.8):  # the noise sd over the signal range
        sd_fit = np.sqrt(fit["noise_a"] * mu + fit["noise_b"])
        assert sd_fit == pytest.approx(np.sqrt(TRUE["noise_a"] * mu + TRUE["noise_b"]), rel=0.05)
    assert fit["gain"] == pytest.approx(TRUE["gain"], rel=0.05)
    assert fit["offset"] == pytest.approx(TRUE["offset"], abs=0.02)
    assert fit["gamma"] == pytest.approx(TRUE["gamma"], rel=0.05)
    assert fit["r2"] > 0.8 and not fit["sigma_at_bound"] and fit["n_sections"] == 6
    # seeded data, deterministic estimator: the same fit twice
    assert fitting.fit_degradation([(lr[:3], hr[:3]), (lr[3:], hr[3:])], 3) == fit


def test_fitted_kind_synthesises_what_it_fitted(pairs):
    hr, lr = pairs
    fit = {k: TRUE[k] for k in fitting.PARAMS}
    recipe = {"kind": "fitted", "fit": fit}
    syn = degrade_volume(hr, 3, recipe, seed=3)
    assert syn.shape == lr.shape and syn.dtype == np.float32
    np.testing.assert_array_equal(syn, degrade_volume(hr, 3, recipe, seed=3))
    # same model as the independent acquisition: same mean and noise level
    clean = degrade_volume(hr, 3, {**recipe, "noise": False}, seed=0)
    assert np.abs(clean - acquire(hr, {**TRUE, "noise_a": 1e-9, "noise_b": 0.0}, 0)).max() < 2e-3
    mid = (clean > 0.45) & (clean < 0.55)
    sd = np.sqrt(TRUE["noise_a"] * 0.5 + TRUE["noise_b"])
    assert (syn - clean)[mid].std() == pytest.approx(sd, rel=0.03)
    assert (lr - clean)[mid].std() == pytest.approx(sd, rel=0.03)
    # the ablations: no PSF = the pixel-area mean; no response = HR intensities
    area = degrade_volume(hr, 3, {**recipe, "blur": False, "intensity": False, "noise": False}, seed=0)
    np.testing.assert_allclose(area, hr.reshape(6, 160, 3, 160, 3).mean(axis=(2, 4)), atol=1e-6)
    # and a fit of the synthetic LR finds the parameters again
    refit = fitting.fit_degradation([(syn, hr)], 3)
    assert refit["sigma"] == pytest.approx(TRUE["sigma"], rel=0.05)
    assert refit["noise_a"] == pytest.approx(TRUE["noise_a"], rel=0.10)


def test_fitted_recipe_keys_and_defaults():
    r = check_recipe({"kind": "fitted"}, "matched")
    assert r == {
        "kind": "fitted",
        "blur": True,
        "intensity": True,
        "noise": True,
        "max_blur_sigma": None,
        "fit_pixels": 1_000_000,
    }
    assert check_recipe({"kind": "fitted", "fit": {"sigma": 1.0}}, "matched")["fit"] == {"sigma": 1.0}
    with pytest.raises(InputError, match=r"degradations\.matched\.fit_pixels"):
        check_recipe({"kind": "fitted", "fit_pixels": 10}, "matched")
    with pytest.raises(InputError, match="fit.json"):
        degrade_volume(np.full((1, 30, 30), 0.5, np.float32), 3, {"kind": "fitted"}, seed=0)


def _write_pairs(d, name, lr, hr, scale=3):
    info = {
        "scale": scale,
        "lr_shape": list(lr.shape),
        "hr_shape": list(hr.shape),
        "lr_voxel_nm": [50.0, 30.0, 30.0],
        "hr_voxel_nm": [50.0, 30.0 / scale, 30.0 / scale],
    }
    paths = [d / name / f for f in ("lr.tif", "hr.tif", "pairs.json")]
    write_image(paths[0], lr, info["lr_voxel_nm"], "uint16")
    write_image(paths[1], hr, info["hr_voxel_nm"], "uint16")
    write_json(paths[2], info)
    return paths


def test_rule_entry_points_fit_a_fold_and_degrade_with_it(tmp_path, pairs):
    hr, lr = pairs
    a = _write_pairs(tmp_path, "a", lr[:3, :150, :150], hr[:3, :450, :450])
    b = _write_pairs(tmp_path, "b", lr[3:, :150, :150], hr[3:, :450, :450])
    recipe = {"kind": "fitted"}
    fit = run_fit_degradation([a[0], b[0]], [a[1], b[1]], [a[2], b[2]], tmp_path / "fit.json", recipe, "matched")
    on_disk = read_json(tmp_path / "fit.json")
    assert on_disk["recipe"] == "matched" and on_disk["sources"]["lr"] == [str(a[0]), str(b[0])]
    assert on_disk["sigma"] == pytest.approx(fit["sigma"]) and set(fitting.PARAMS) <= set(on_disk)
    assert on_disk["sigma"] == pytest.approx(TRUE["sigma"], rel=0.10)
    out = tmp_path / "deg" / "lr.tif"
    run_degrade(a[1], a[2], out, recipe, "matched", "a", seed=0, fit_json=tmp_path / "fit.json")
    syn, vox, dtype = read_image(out)
    assert syn.shape == (3, 150, 150) and dtype == "uint16"
    assert abs(float(syn.mean()) - float(lr[:3, :150, :150].mean())) < 0.01  # the fitted response
    with pytest.raises(ValueError, match="fit_json"):
        run_degrade(a[1], a[2], tmp_path / "x.tif", recipe, "matched", "a", seed=0)
    with pytest.raises(ValueError, match="fit_json"):
        run_degrade(a[1], a[2], tmp_path / "x.tif", {"kind": "bicubic"}, "b", "a", 0, fit_json=tmp_path / "fit.json")
    c = _write_pairs(tmp_path, "c", lr[:1, :100, :100], hr[:1, :400, :400], scale=4)
    with pytest.raises(InputError, match=r"degradations\.matched: kind fitted fits one scale"):
        run_fit_degradation([a[0], c[0]], [a[1], c[1]], [a[2], c[2]], tmp_path / "f2.json", recipe, "matched")
    assert not (tmp_path / "f2.json").exists() and not (tmp_path / "x.tif").exists()
