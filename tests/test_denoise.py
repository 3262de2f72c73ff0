"""Denoised HR targets: measured noise goes down, structure stays, bad settings fail early."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from srseg.denoise import check_denoise, denoise_volume, noise_sigma, run_denoise
from srseg.io import InputError, read_image, read_json, write_image


def _phantom(noise=0.08, seed=0):
    """Smooth 'cells' with dark membranes (clean) and the same plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    blobs = gaussian_filter(rng.random((3, 64, 64)), (0, 4, 4))
    blobs = (blobs - blobs.min()) / (blobs.max() - blobs.min())
    clean = np.where(np.abs(blobs - 0.5) < 0.04, 0.2, 0.7).astype(np.float32)  # membranes at the 0.5 level set
    clean = gaussian_filter(clean, (0, 0.7, 0.7)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, noise, clean.shape), 0, 1).astype(np.float32)
    return clean, noisy


def _rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_nl_means_rule_output_is_less_noisy_than_its_input(tmp_path):
    clean, noisy = _phantom()
    write_image(tmp_path / "hr.tif", noisy, [50, 10, 10], "uint8")
    info = run_denoise(
        str(tmp_path / "hr.tif"),
        str(tmp_path / "out" / "hr.tif"),
        str(tmp_path / "out" / "denoise.json"),
        {"method": "nl_means", "h": 0.8, "patch_size": 5, "patch_distance": 6},
    )
    den, voxel, dtype = read_image(tmp_path / "out" / "hr.tif")
    noisy_disk, _, _ = read_image(tmp_path / "hr.tif")
    assert den.shape == noisy.shape and dtype == "uint8" and voxel == pytest.approx([50, 10, 10])
    # measured two ways: against the clean phantom, and by the blind noise estimate
    assert _rmse(den, clean) < 0.6 * _rmse(noisy_disk, clean)
    assert info["noise_sigma_after"] < 0.5 * info["noise_sigma_before"]
    assert info["noise_sigma_before"] == pytest.approx(0.08, rel=0.25)
    assert read_json(tmp_path / "out" / "denoise.json")["settings"]["method"] == "nl_means"
    # membranes survive: dark pixels stay darker than cell interiors
    membrane = clean < 0.45
    assert den[membrane].mean() < den[~membrane].mean() - 0.3


@pytest.mark.parametrize("params", [{"method": "tv", "weight": 0.1}, {"method": "gaussian", "sigma": 1.0}])
def test_other_denoisers_lower_the_noise(params):
    clean, noisy = _phantom(seed=1)
    den = denoise_volume(noisy, params, progress=False)
    assert _rmse(den, clean) < _rmse(noisy, clean)
    assert np.mean([noise_sigma(s) for s in den]) < 0.6 * np.mean([noise_sigma(s) for s in noisy])


def test_noise_estimate_recovers_the_sigma_of_white_noise_and_ignores_smooth_structure():
    rng = np.random.default_rng(3)
    ramp = np.linspace(0.2, 0.8, 128)[None, :].repeat(128, 0)
    assert noise_sigma(ramp) < 1e-6  # no noise: the Haar diagonal detail of a ramp is 0
    assert noise_sigma(ramp + rng.normal(0, 0.05, ramp.shape)) == pytest.approx(0.05, rel=0.05)


def test_defaults_and_bad_settings(tmp_path):
    assert check_denoise({}) == {"method": "nl_means", "h": 0.8, "patch_size": 5, "patch_distance": 6}
    for params, words in [
        ({"method": "bm3d"}, r"denoise\.method: 'bm3d' is not one of"),
        ({"method": "tv", "h": 1}, r"denoise\.h: unknown key"),
        ({"h": -1}, r"denoise\.h: -1.0 must be >= 0"),
    ]:
        with pytest.raises(InputError, match=words):
            check_denoise(params)
    _, noisy = _phantom()
    write_image(tmp_path / "hr.tif", noisy, [50, 10, 10], "uint8")
    with pytest.raises(InputError, match=r"denoise\.method"):
        run_denoise(
            str(tmp_path / "hr.tif"), str(tmp_path / "o" / "hr.tif"), str(tmp_path / "o" / "d.json"), {"method": "x"}
        )
    assert not (tmp_path / "o" / "hr.tif").exists()
