"""Denoised HR targets: the EMSR study's "denoised" training strategy (Table III).

Real LR is paired with a denoised copy of the real HR, so the network is not taught to
reproduce HR acquisition noise. Each section is denoised on its own (sections of SBEM
stacks are imaged one by one; their noise level differs):

* ``nl_means`` (default): skimage.restoration.denoise_nl_means with the section's noise
  sigma (wavelet MAD estimate, `noise_sigma`) and filter strength ``h * sigma``
  (skimage's recommendation: h a bit below 1 with sigma given, fast mode);
* ``tv``: total-variation (Chambolle) with weight ``weight``;
* ``gaussian``: a Gaussian blur of ``sigma`` px (a weak baseline).

Config (the `denoise:` slice), e.g.  {method: nl_means, h: 0.8, patch_size: 5, patch_distance: 6}.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle
from tqdm import tqdm

from .config import section
from .io import InputError, read_image, write_image, write_json
from .log import get_logger  # torch-free: this stage runs in the data env


def check_denoise(params: dict | None) -> dict:
    """The `denoise:` settings with the method's defaults (schemas/config.schema.yaml); InputError names a bad key."""
    return section("denoise", params)


def noise_sigma(section: np.ndarray) -> float:
    """Gaussian noise sigma of a 2D image: Donoho's wavelet MAD estimate, median(|HH|) / 0.6745.

    HH is the finest diagonal detail of the orthonormal Haar transform, (a - b - c + d) / 2
    over 2x2 blocks, which has standard deviation sigma for white noise and is near 0 on
    smooth structure. Hand-written because skimage.restoration.estimate_sigma (the same
    estimator with a db2 wavelet) needs PyWavelets, which the environment does not have.
    """
    h, w = (section.shape[0] // 2) * 2, (section.shape[1] // 2) * 2
    s = np.asarray(section[:h, :w], np.float64)
    hh = (s[0::2, 0::2] - s[0::2, 1::2] - s[1::2, 0::2] + s[1::2, 1::2]) / 2
    return float(np.median(np.abs(hh)) / 0.6744897501960817)


def denoise_section(section: np.ndarray, method: str = "nl_means", **settings) -> np.ndarray:
    """Denoise one (y, x) float section in [0, 1]; returns float32 clipped to [0, 1]."""
    if method == "nl_means":
        sigma = noise_sigma(section)
        out = denoise_nl_means(
            section,
            h=settings["h"] * sigma,
            sigma=sigma,
            fast_mode=True,
            patch_size=int(settings["patch_size"]),
            patch_distance=int(settings["patch_distance"]),
        )
    elif method == "tv":
        out = denoise_tv_chambolle(section, weight=settings["weight"])
    elif method == "gaussian":
        out = gaussian_filter(section, settings["sigma"])
    else:  # check_denoise rejects other names first
        raise ValueError(method)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def denoise_volume(vol: np.ndarray, params: dict | None = None, progress: bool = True) -> np.ndarray:
    """Denoise a (z, y, x) float volume section by section with the `denoise:` settings."""
    cfg = check_denoise(params)
    method = cfg.pop("method")
    out = np.empty(vol.shape, np.float32)
    for k in tqdm(range(vol.shape[0]), desc=f"denoise {method}", mininterval=5, disable=not progress):
        out[k] = denoise_section(vol[k].astype(np.float32), method, **cfg)
    return out


def run_denoise(hr_path: str, out_hr: str, out_json: str, params: dict | None = None, log: str | None = None) -> dict:
    """Denoise a paired HR TIFF; write it (same dtype and voxel size) and a json with the noise before and after."""
    logger = get_logger("srseg.denoise", log)
    cfg = check_denoise(params)  # bad settings fail before any reading
    vol, voxel, dtype = read_image(hr_path)
    if vol.ndim != 3:
        raise InputError(f"{hr_path}: expected a (z, y, x) volume, got shape {vol.shape}; give the paired HR stack")
    if not np.isfinite(vol).all():
        raise InputError(f"{hr_path}: contains NaN or Inf values; fix the image")
    den = denoise_volume(vol, cfg)
    before = [noise_sigma(s) for s in vol]
    after = [noise_sigma(s) for s in den]
    write_image(out_hr, den, voxel, dtype)
    info = {
        "input": str(hr_path),
        "settings": cfg,
        "dtype": dtype,
        "sections": int(vol.shape[0]),
        "noise_sigma_before": float(np.mean(before)),
        "noise_sigma_after": float(np.mean(after)),
        "noise_sigma_before_per_section": before,
        "noise_sigma_after_per_section": after,
    }
    write_json(out_json, info)
    logger.info(
        "denoised %s (%s): estimated noise sigma %.4f -> %.4f",
        hr_path,
        cfg["method"],
        info["noise_sigma_before"],
        info["noise_sigma_after"],
    )
    return info
