"""Degradation recipes: shapes, registration, blur and noise statistics, seeding, bad recipes."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.special import ndtr
from skimage import filters
from skimage.util import random_noise

from srseg.degrade import check_recipe, degrade_volume, derive_seed, pssr_noise, resize_down, run_degrade
from srseg.io import InputError, read_image, write_image, write_json

CONFIG_RECIPES = {
    "bicubic": {"kind": "bicubic"},
    "blur_noise": {"kind": "blur_noise", "blur_sigma": [0, 3], "noise_pre": [20, 40], "noise_post": [5, 15]},
    "pssr": {"kind": "pssr", "blur_sigma": 2, "noise_gain": 0.1},
    "blur_bilinear": {"kind": "blur_bilinear", "blur_sigma": 3},
}


def smooth(shape, sigma, seed=0, mean=0.5, amp=0.15):
    """A smooth random image around `mean` (no clipping anywhere)."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x = ndimage.gaussian_filter(x, sigma, axes=(-2, -1))
    return (mean + amp * x / x.std()).astype(np.float32)


@pytest.mark.parametrize("name", list(CONFIG_RECIPES))
def test_shape_range_and_determinism(name):
    hr = np.stack([smooth((50, 47), 2, seed=k) for k in range(2)])
    lr = degrade_volume(hr, 3, CONFIG_RECIPES[name], seed=5)
    assert lr.shape == (2, 16, 15) and lr.dtype == np.float32
    assert lr.min() >= 0 and lr.max() <= 1
    np.testing.assert_array_equal(lr, degrade_volume(hr, 3, CONFIG_RECIPES[name], seed=5))  # same seed, same bytes
    if name in ("blur_noise", "pssr"):
        assert not np.array_equal(lr, degrade_volume(hr, 3, CONFIG_RECIPES[name], seed=6))


def test_bicubic_is_registered_with_the_lr_grid():
    # HR made of s x s blocks of a smooth LR image: bicubic-down gives that LR back, not a shifted one
    lr = smooth((40, 40), 3, seed=1)
    hr = np.kron(lr, np.ones((3, 3), np.float32))[None]
    down = degrade_volume(hr, 3, {"kind": "bicubic"}, seed=0)[0]
    inner = (slice(3, -3), slice(3, -3))
    err = np.abs(down - lr)[inner].max()
    err_shift = min(np.abs(down - np.roll(lr, 1, axis=a))[inner].max() for a in (0, 1))
    assert err < 0.02 and err_shift > 4 * err


def test_blur_noise_post_noise_std_matches():
    hr = smooth((1, 300, 300), 6)
    lr = degrade_volume(hr, 3, {"kind": "blur_noise", "blur_sigma": 0, "noise_pre": 0, "noise_post": 10}, seed=1)
    residual = lr - degrade_volume(hr, 3, {"kind": "bicubic"}, seed=0)
    assert abs(residual.mean()) < 0.002
    assert residual.std() == pytest.approx(10 / 255, rel=0.03)


def test_blur_noise_pre_noise_is_added_before_downsampling():
    hr = smooth((1, 300, 300), 6)
    lr = degrade_volume(hr, 3, {"kind": "blur_noise", "blur_sigma": 0, "noise_pre": 30, "noise_post": 0}, seed=2)
    residual = lr - degrade_volume(hr, 3, {"kind": "bicubic"}, seed=0)
    # white noise of sd sigma through a linear kernel k has sd sigma * sqrt(sum k^2); k = the weights of
    # LR pixel (5, 5), read off by downsampling one HR impulse at a time
    k = np.zeros((30, 30))
    for y, x in np.ndindex(k.shape):
        impulse = np.zeros((30, 30), np.float32)
        impulse[y, x] = 1.0
        k[y, x] = resize_down(impulse, 3, "bicubic", True)[5, 5]
    assert k.sum() == pytest.approx(1.0, abs=1e-5)
    gain = float(np.sqrt(np.sum(k**2)))
    assert 0.15 < gain < 0.6  # the antialiased kernel averages over ~9-25 HR pixels
    assert residual.std() == pytest.approx(30 / 255 * gain, rel=0.04)


def test_blur_noise_draws_per_section_parameters_from_the_ranges():
    hr = smooth((6, 30, 30), 2)
    _, drawn = degrade_volume(hr, 3, CONFIG_RECIPES["blur_noise"], seed=3, return_params=True)
    for key, (lo, hi) in (("blur_sigma", (0, 3)), ("noise_pre", (20, 40)), ("noise_post", (5, 15))):
        vals = [d[key] for d in drawn]
        assert all(lo <= v <= hi for v in vals) and len(set(vals)) == 6


def test_pssr_noise_is_local_variance():
    hr = np.full((1, 240, 240), 0.2, np.float32)
    hr[:, :, 120:] = 0.7
    gain = 0.004
    lr = degrade_volume(hr, 3, {"kind": "pssr", "blur_sigma": 2, "noise_gain": gain}, seed=4)[0]
    dark, bright = lr[:, :30] - 0.2, lr[:, 50:] - 0.7  # away from the edge
    # point-sampled (bilinear at integer scale, no antialias): the LR keeps the per-pixel variance
    assert dark.std() == pytest.approx(np.sqrt(gain * 0.2), rel=0.05)
    assert bright.std() == pytest.approx(np.sqrt(gain * 0.7), rel=0.05)


def em_AG_D_sameas_preprint(x, scale, rng, grid_mode=False):
    """PSSR's EM crappifier (BPHO-Salk/PSSR utils/crappifiers.py), with an explicit Generator.

    grid_mode=False is PSSR's npzoom(x, 1/scale, order=1); True samples at the pixel centres.
    Returns (LR, the noisy HR before downsampling).
    """
    lvar = filters.gaussian(x, sigma=3)
    x = random_noise(x, mode="localvar", local_vars=lvar * 0.05, rng=rng)
    return ndimage.zoom(x, 1 / scale, order=1, grid_mode=grid_mode, mode="nearest"), x


def test_pssr_defaults_are_pssrs_em_crappifier():
    recipe = check_recipe({"kind": "pssr"})
    assert recipe["blur_sigma"] == 3.0 and recipe["noise_gain"] == 0.05 and recipe["antialias"] is False
    for scale in (3, 4):
        hr = smooth((1, 24 * scale, 120), 3, seed=scale, amp=0.1)  # inside [0, 1]: no clipping of the input
        lr = degrade_volume(hr, scale, {"kind": "pssr"}, seed=9)[0]
        ref_lr, ref_noisy = em_AG_D_sameas_preprint(hr[0], scale, np.random.default_rng(9), grid_mode=True)
        # the same seed's noise, byte for byte (the recipe's numbers draw nothing from the Generator) ...
        np.testing.assert_allclose(pssr_noise(hr[0], 3.0, 0.05, np.random.default_rng(9)), ref_noisy, atol=1e-6)
        # ... and the same LR as PSSR's crappifier sampled at the pixel centres (zoom grid_mode=True)
        np.testing.assert_allclose(lr, np.clip(ref_lr, 0, 1), atol=1e-5)
        # PSSR's own npzoom (corner-aligned grid) gives other pixels: our LR is on the pairs grid instead
        assert np.abs(lr - em_AG_D_sameas_preprint(hr[0], scale, np.random.default_rng(9))[0]).max() > 0.05


@pytest.mark.parametrize("scale", [3, 4])
def test_pssr_noise_statistics_against_pssr_on_the_same_seed(scale):
    """Same seed, same HR noise; after downsampling the LR noise variance is the HR's times the sum of the
    squared bilinear weights: ours (pixel centres) 1/4 at x4, 1 at x3; PSSR's npzoom ~4/9, varying."""
    n = 128
    hr = np.full((1, n * scale, n * scale), 0.5, np.float32)
    ours = degrade_volume(hr, scale, {"kind": "pssr"}, seed=1)[0] - 0.5
    ref = em_AG_D_sameas_preprint(hr[0], scale, np.random.default_rng(1))[0] - 0.5
    hr_var = 0.05 * 0.5  # gain x local mean

    def weight_factor(coords):  # mean over LR pixels of sum of squared linear weights, per axis
        f = coords - np.floor(coords)
        return float(np.mean((1 - f) ** 2 + f**2))

    i = np.arange(n, dtype=np.float64)
    ours_axis = weight_factor(i * scale + (scale - 1) / 2)
    pssr_axis = weight_factor(i * (n * scale - 1) / (n - 1))
    assert ours_axis == {3: 1.0, 4: 0.5}[scale] and pssr_axis == pytest.approx(2 / 3, abs=0.02)
    # the 0.16 sd noise is clipped at 0 and 1 a little (0.2 % of pixels): a 2 % lower variance
    assert ours.var() == pytest.approx(hr_var * ours_axis**2, rel=0.05)
    assert ref.var() == pytest.approx(hr_var * pssr_axis**2, rel=0.05)
    # our LR noise sd / PSSR's: 0.75 at x4, 1.5 at x3 (the module docstring)
    assert ours.std() / ref.std() == pytest.approx({3: 1.5, 4: 0.75}[scale], rel=0.05)


def test_blur_bilinear_edge_profile():
    hr = np.full((1, 30, 120), 0.2, np.float32)
    hr[:, :, 60:] = 0.8  # a step between HR columns 59 and 60, i.e. at x = 59.5
    lr = degrade_volume(hr, 3, CONFIG_RECIPES["blur_bilinear"], seed=0)[0, 5]
    centres = 3 * np.arange(40) + 1  # LR pixel j is centred on HR column 3j + 1
    expected = 0.2 + 0.6 * ndtr((centres - 59.5) / 3.0)  # Gaussian sigma = 3 HR px
    np.testing.assert_allclose(lr, expected, atol=0.01)


@pytest.mark.parametrize(
    "recipe,key",
    [
        ({"kind": "gauss"}, "kind"),
        ({"kind": "blur_noise", "blur_sigma": [3, 1]}, "blur_sigma"),
        ({"kind": "blur_noise", "noise_pre": -5}, "noise_pre"),
        ({"kind": "pssr", "noise_gain": "high"}, "noise_gain"),
        ({"kind": "blur_bilinear", "blur_sigma": [1, 2, 3]}, "blur_sigma"),
    ],
)
def test_bad_recipes_name_the_key(recipe, key):
    with pytest.raises(InputError, match=rf"degradations\.mine\.{key}"):
        check_recipe(recipe, "mine")


def test_seed_depends_on_recipe_and_specimen():
    assert derive_seed(0, "blur_noise", "alpha") == derive_seed(0, "blur_noise", "alpha")
    seeds = {
        derive_seed(0, "blur_noise", "alpha"),
        derive_seed(0, "blur_noise", "beta"),
        derive_seed(0, "pssr", "alpha"),
        derive_seed(1, "blur_noise", "alpha"),
    }
    assert len(seeds) == 4


def test_run_degrade_writes_lr_on_the_paired_grid(tmp_path):
    hr = smooth((2, 60, 63), 2)
    info = {
        "scale": 3,
        "lr_shape": [2, 20, 21],
        "hr_shape": [2, 60, 63],
        "lr_voxel_nm": [50.0, 33.0, 33.0],
        "hr_voxel_nm": [50.0, 11.0, 11.0],
    }
    write_image(tmp_path / "hr.tif", hr, info["hr_voxel_nm"])
    write_json(tmp_path / "pairs.json", info)
    outs = {}
    for name, specimen in (("blur_noise", "alpha"), ("blur_noise", "alpha"), ("blur_noise", "beta")):
        out = tmp_path / name / specimen / f"lr{len(outs)}.tif"
        run_degrade(tmp_path / "hr.tif", tmp_path / "pairs.json", out, CONFIG_RECIPES[name], name, specimen, seed=0)
        lr, vox, dtype = read_image(out)
        assert list(lr.shape) == info["lr_shape"] and dtype == "uint8"
        np.testing.assert_allclose(vox, info["lr_voxel_nm"])
        outs[len(outs)] = lr
    np.testing.assert_array_equal(outs[0], outs[1])  # same config, same bytes
    assert not np.array_equal(outs[0], outs[2])  # another specimen draws other noise
    write_json(tmp_path / "pairs.json", {**info, "hr_shape": [2, 30, 30]})
    with pytest.raises(InputError, match="rerun pairs"):
        run_degrade(
            tmp_path / "hr.tif",
            tmp_path / "pairs.json",
            tmp_path / "x.tif",
            CONFIG_RECIPES["bicubic"],
            "bicubic",
            "alpha",
            seed=0,
        )
    assert not (tmp_path / "x.tif").exists()
