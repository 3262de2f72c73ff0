"""Image metrics: PSNR / SSIM / FRC against closed forms and limiting cases, and the rule's entry point."""

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from srseg.io import InputError, write_image, write_json
from srseg.metrics import (
    frc_curve,
    frc_summary,
    image_scores,
    normalize_to_reference,
    psnr,
    run_image_metrics,
    ssim,
)


def _texture(shape=(96, 96), seed=0):
    """A smooth random texture in [0, 1] with detail at all scales (stands in for an EM section)."""
    rng = np.random.default_rng(seed)
    img = sum(gaussian_filter(rng.standard_normal(shape), s) * s for s in (1, 2, 4, 8))
    img -= img.min()
    return img / img.max()


def test_psnr_of_known_noise_matches_closed_form():
    rng = np.random.default_rng(1)
    ref = _texture()
    sigma = 0.03
    pred = ref + sigma * rng.choice([-1.0, 1.0], size=ref.shape)  # MSE is exactly sigma^2
    assert psnr(pred, ref) == pytest.approx(10 * np.log10(1.0 / sigma**2), abs=1e-9)
    # L is the maximum of the data range, 1.0 (EMSR eq. 18), whatever range the section spans ...
    narrow = 0.2 + 0.4 * ref
    assert psnr(narrow + (pred - ref), narrow) == pytest.approx(10 * np.log10(1.0 / sigma**2), abs=1e-9)
    # ... and data_range=None follows the section's own max - min (the per-section-range variant).
    assert psnr(narrow + (pred - ref), narrow, None) == pytest.approx(10 * np.log10(0.4**2 / sigma**2), abs=1e-9)
    assert psnr(ref, ref) == np.inf


def test_headline_psnr_and_ssim_use_the_full_data_range_and_the_section_range_is_a_second_column():
    """The papers' L = 1 (EMSR eq. 18; skimage with normalised images); max - min only in *_section_range."""
    rng = np.random.default_rng(11)
    ref = 0.3 + 0.5 * _texture()  # an EM section rarely spans the full range: max - min = 0.5
    pred = ref + 0.02 * rng.choice([-1.0, 1.0], size=ref.shape)
    scores = image_scores(pred, ref, pixel_nm=10.0)
    assert scores["psnr"] == pytest.approx(10 * np.log10(1.0 / 0.02**2), abs=1e-9)
    assert scores["psnr_section_range"] == pytest.approx(10 * np.log10(0.5**2 / 0.02**2), abs=1e-9)
    assert scores["psnr"] - scores["psnr_section_range"] == pytest.approx(20 * np.log10(2), abs=1e-9)  # 6.02 dB
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    assert scores["ssim"] == pytest.approx(structural_similarity(ref, pred, data_range=1.0, **kw), abs=1e-12)
    assert scores["ssim_section_range"] == pytest.approx(
        structural_similarity(ref, pred, data_range=0.5, **kw), abs=1e-12
    )
    assert scores["ssim_section_range"] < scores["ssim"]  # smaller constants: the same error weighs more


def test_ssim_and_frc_of_an_image_with_itself_are_one():
    img = _texture()
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    freqs, frc = frc_curve(img, img)
    np.testing.assert_allclose(frc, 1.0, atol=1e-12)
    assert freqs[0] == pytest.approx(1 / 96) and freqs[-1] == pytest.approx(0.5)  # rings 1 .. Nyquist
    summary = frc_summary(img, img, pixel_nm=10.0)
    assert summary["frc_mean"] == pytest.approx(1.0, abs=1e-12)
    # never drops below 1/7: cutoff at Nyquist = 0.5 cycles / 10 nm, resolution 2 pixels = 20 nm
    assert summary["frc_cutoff_per_nm"] == pytest.approx(0.05)
    assert summary["frc_cutoff_nm"] == pytest.approx(20.0)


def test_ssim_drops_with_noise():
    rng = np.random.default_rng(2)
    ref = _texture()
    mild = ssim(ref + 0.02 * rng.standard_normal(ref.shape), ref)
    strong = ssim(ref + 0.2 * rng.standard_normal(ref.shape), ref)
    assert 1.0 > mild > strong > 0.0


def test_mean_frc_of_independent_noise_is_near_zero_and_of_correlated_images_is_not():
    rng = np.random.default_rng(3)
    a, b = rng.random((128, 128)), rng.random((128, 128))
    assert abs(frc_summary(a, b, 1.0)["frc_mean"]) < 0.03
    shared = rng.random((128, 128))
    assert frc_summary(shared + 0.5 * a, shared + 0.5 * b, 1.0)["frc_mean"] > 0.6


def test_frc_cutoff_is_lower_for_a_blurred_prediction():
    rng = np.random.default_rng(4)
    clean = _texture((128, 128), seed=5)
    hr = clean + 0.05 * rng.standard_normal(clean.shape)
    sharp = clean + 0.05 * rng.standard_normal(clean.shape)
    blurred = gaussian_filter(clean, 2.0) + 0.05 * rng.standard_normal(clean.shape)
    s, b = frc_summary(sharp, hr, pixel_nm=8.0), frc_summary(blurred, hr, pixel_nm=8.0)
    assert b["frc_cutoff_per_nm"] < s["frc_cutoff_per_nm"]
    assert b["frc_cutoff_nm"] > s["frc_cutoff_nm"]  # coarser resolution
    assert b["frc_mean"] < s["frc_mean"]
    # units: halving the pixel size doubles the cutoff frequency
    assert frc_summary(sharp, hr, 4.0)["frc_cutoff_per_nm"] == pytest.approx(2 * s["frc_cutoff_per_nm"])


def test_normalisation_removes_an_affine_intensity_change():
    rng = np.random.default_rng(6)
    ref = _texture()
    pred = 0.5 * ref + 0.3 + 0.01 * rng.standard_normal(ref.shape)  # dimmer, offset, slightly noisy
    norm = normalize_to_reference(pred, ref)
    assert np.mean((norm - ref) ** 2) < 0.05 * np.mean((pred - ref) ** 2)
    # least squares: no other affine map does better
    for a, b in [(2.0, -0.6), (1.9, -0.55), (2.1, -0.65)]:
        assert np.mean((norm - ref) ** 2) <= np.mean((a * pred + b - ref) ** 2) + 1e-15
    scores = image_scores(pred, ref, pixel_nm=10.0)
    assert scores["psnr_norm"] > scores["psnr"] + 10
    assert scores["ssim_norm"] > scores["ssim"]
    flat = normalize_to_reference(np.full_like(ref, 0.7), ref)
    np.testing.assert_allclose(flat, ref.mean())


def test_border_crop_excludes_the_edges():
    ref = _texture()
    pred = ref.copy()
    pred[:3] = 1 - pred[:3]  # a wrong stripe along the top edge only
    assert image_scores(pred, ref, 10.0, border_crop=0)["psnr"] < 30
    cropped = image_scores(pred, ref, 10.0, border_crop=3)
    assert cropped["psnr"] == np.inf and cropped["ssim"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="border_crop"):
        image_scores(pred, ref, 10.0, border_crop=45)


def _write_pair(tmp_path, sr, hr, voxel=(50.0, 10.0, 10.0)):
    write_image(tmp_path / "sr.tif", sr, voxel, "float32")
    write_image(tmp_path / "hr.tif", hr, voxel, "uint8")
    write_json(tmp_path / "pairs.json", {"hr_voxel_nm": list(voxel)})


def test_run_image_metrics_writes_one_row_per_section_and_the_frc_curves(tmp_path):
    rng = np.random.default_rng(7)
    hr = np.stack([_texture((48, 48), seed=s) for s in range(3)]).astype(np.float32)
    sr = np.clip(hr + 0.05 * rng.standard_normal(hr.shape), 0, 1).astype(np.float32)
    _write_pair(tmp_path, sr, hr)
    out, frc = tmp_path / "m" / "spec.csv", tmp_path / "m" / "spec_frc.csv"
    run_image_metrics(
        str(tmp_path / "sr.tif"),
        str(tmp_path / "hr.tif"),
        str(tmp_path / "pairs.json"),
        str(out),
        str(frc),
        {"border_crop": 4, "references": ["acquired"]},
        "edsr",
        "real",
        "alpha",
        "alpha",
    )
    table = pd.read_csv(out)
    assert list(table.columns) == [
        "model",
        "data",
        "fold",
        "specimen",
        "section",
        "psnr",
        "ssim",
        "frc_mean",
        "frc_cutoff_nm",
        "psnr_section_range",
        "ssim_section_range",
        "psnr_norm",
        "ssim_norm",
        "frc_mean_norm",
    ]
    assert table["section"].tolist() == [0, 1, 2]
    assert (table["model"] == "edsr").all()
    # scores match the library function on the same (uint8-quantised) section
    from srseg.io import read_image

    hr_disk = read_image(tmp_path / "hr.tif")[0]
    expected = image_scores(sr[1], hr_disk[1], 10.0, border_crop=4)
    assert table.loc[1, "psnr"] == pytest.approx(expected["psnr"])
    assert table.loc[1, "frc_cutoff_nm"] == pytest.approx(expected["frc_cutoff_nm"])
    curves = pd.read_csv(frc)
    assert {"section", "frequency_per_nm", "frc"} <= set(curves.columns)
    assert len(curves) == 3 * (40 // 2)  # 40 px after cropping -> 20 rings per section
    assert curves["frequency_per_nm"].max() == pytest.approx(0.05)  # Nyquist of 10 nm pixels


def test_run_image_metrics_rejects_mismatched_shapes_without_output(tmp_path):
    hr = np.stack([_texture((48, 48))] * 2).astype(np.float32)
    _write_pair(tmp_path, hr[:, :40, :40], hr)
    out = tmp_path / "m" / "spec.csv"
    with pytest.raises(InputError, match="shape"):
        run_image_metrics(
            str(tmp_path / "sr.tif"),
            str(tmp_path / "hr.tif"),
            str(tmp_path / "pairs.json"),
            str(out),
            str(tmp_path / "m" / "frc.csv"),
            {"border_crop": 0, "references": ["acquired"]},
            "edsr",
            "real",
            "a",
            "a",
        )
    assert not out.exists()


def _run(tmp_path, metrics, denoised=None):
    out = tmp_path / "m" / "spec.csv"
    run_image_metrics(
        str(tmp_path / "sr.tif"),
        str(tmp_path / "hr.tif"),
        str(tmp_path / "pairs.json"),
        str(out),
        str(tmp_path / "m" / "spec_frc.csv"),
        metrics,
        "edsr",
        "denoised",
        "alpha",
        "alpha",
        denoised=denoised,
    )
    return pd.read_csv(out)


def test_image_metrics_against_the_denoised_hr_are_a_second_column_set(tmp_path):
    """EMSR's protocol: a model that learnt the denoised target scores perfectly against denoised HR."""
    rng = np.random.default_rng(12)
    clean = np.stack([_texture((48, 48), seed=s) for s in range(2)]).astype(np.float32)
    noisy = np.clip(clean + 0.05 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
    _write_pair(tmp_path, clean, noisy)  # SR = the clean image; the acquired HR is noisy
    write_image(tmp_path / "denoised.tif", clean, (50.0, 10.0, 10.0), "float32")
    plain = _run(tmp_path, {"border_crop": 2, "references": ["acquired"]})
    assert not [c for c in plain.columns if c.endswith("_denoised")]  # default: acquired only
    both = _run(tmp_path, {"border_crop": 2, "references": ["acquired", "denoised"]}, str(tmp_path / "denoised.tif"))
    names = [c for c in plain.columns if c not in ("model", "data", "fold", "specimen", "section")]
    assert list(both.columns) == list(plain.columns) + [f"{n}_denoised" for n in names]
    pd.testing.assert_frame_equal(both[plain.columns], plain)  # the acquired-HR columns do not change
    assert np.isinf(both["psnr_denoised"]).all() and np.allclose(both["ssim_denoised"], 1.0)
    assert (both["psnr"] < 30).all()  # noise sets the ceiling against the acquired HR
    with pytest.raises(InputError, match="no denoised HR"):
        _run(tmp_path, {"references": ["acquired", "denoised"]})
    with pytest.raises(InputError, match="references"):
        _run(tmp_path, {"references": ["denoised"]}, str(tmp_path / "denoised.tif"))
    write_image(tmp_path / "small.tif", clean[:, :40], (50.0, 10.0, 10.0), "float32")
    with pytest.raises(InputError, match="shape"):
        _run(tmp_path, {"references": ["acquired", "denoised"]}, str(tmp_path / "small.tif"))
