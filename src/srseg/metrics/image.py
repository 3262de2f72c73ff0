"""Image quality of a super-resolved section against the paired real HR section.

All scores are computed in float64 on single 2D grey sections (y, x). Images are
float32 in [0, 1] inside the library (uint8 / uint16 by the dtype's full range), so
the data range is L = 1:

- PSNR = 10 log10(L^2 / MSE) with L = 1.0, the maximum of the data range, as in
  EMSR (eq. 18) and scikit-image with normalised images: numbers comparable with
  the papers'. `psnr_section_range` keeps R = max - min of the HR reference
  section instead (CARE/PSSR's choice; higher than the headline on a section
  that does not span the full range).
- SSIM (Wang et al. 2004) with a Gaussian window, sigma 1.5, population
  covariances and data_range L = 1.0 (scikit-image implementation; its constants
  C1 = (0.01 L)^2, C2 = (0.03 L)^2). `ssim_section_range` uses R as above.
- FRC (Fourier ring correlation, Banterle et al. 2013, Eq. 19 of the EMSR
  paper): per ring r, Re(sum F_pred conj F_ref) / sqrt(sum |F_pred|^2 sum |F_ref|^2).
  The scalar `frc_mean` is the ring average up to Nyquist (EMSR's FRC-bar);
  `frc_cutoff` is the frequency where the curve first drops below 1/7.
- "_norm" variants: the prediction is first rescaled by least squares
  (a * pred + b closest to HR, PSSR/CSBDeep's normalisation), so a global
  brightness/contrast offset of a model does not count as an error (L = 1 too).

References (`metrics.references`): every metric is scored against the acquired
(paired, noisy) HR, the plain columns; with `denoised` listed also against the
denoised HR (results/denoise, the EMSR protocol, which scores every training
strategy against denoised HR), a second column set `<metric>_denoised`.

FRC conventions (documented because FRC implementations differ):
- No apodisation window: the paper's Eq. 19 uses the plain DFT, and both
  images share the same field, so edge leakage affects both alike.
- Rings are 1 / min(ny, nx) cycles/pixel wide (one Fourier pixel for square
  sections); a frequency belongs to the ring nearest its radius.
- The DC ring (frequency 0, a single coefficient, correlation trivially +-1)
  is left out of the curve and of the mean; corner frequencies beyond
  Nyquist (0.5 cycles/pixel) are left out as well.
- A ring where either image has no energy has correlation 0.
- The 1/7 crossing is interpolated linearly between the last ring at or above
  1/7 and the first below; a curve that never drops below 1/7 reports the
  Nyquist frequency (the resolution is pixel-limited: 2 pixels).
- FRC is insensitive to a pure ring-wise real gain (e.g. a noise-free blur),
  so it rewards restored detail only relative to the noise in each ring.

Each column of the `image_metrics` CSV is one metric registered below
(srseg.metrics.registry), scored on a `SectionPair`.
"""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm import tqdm

from ..config import section
from ..io import InputError, read_image, read_json, write_csv
from ..log import get_logger
from ..volumes import read_image as read_volume
from .registry import IMAGE, columns, metric, score

DATA_RANGE = 1.0  # L of PSNR / SSIM: the maximum of the data range of normalised images
REFERENCES = ("acquired", "denoised")  # metrics.references
DENOISED_SUFFIX = "_denoised"  # the image_metrics column set against the denoised HR: psnr_denoised, ...
FRC_THRESHOLD = 1.0 / 7.0
SSIM_SIGMA = 1.5
# skimage's Gaussian window spans 2 * int(3.5 * sigma + 0.5) + 1 pixels.
MIN_SIDE = 2 * int(3.5 * SSIM_SIGMA + 0.5) + 1


def _as_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise InputError(
            f"prediction shape {pred.shape} differs from reference shape {ref.shape}; score images of the same size"
        )
    return pred, ref


def _data_range(ref: np.ndarray, data_range: float | None) -> float:
    return float(ref.max() - ref.min()) if data_range is None else float(data_range)


def psnr(pred: np.ndarray, ref: np.ndarray, data_range: float | None = DATA_RANGE) -> float:
    """PSNR in dB with L = `data_range` (1.0; None: the reference's max - min). inf if identical, nan if L == 0."""
    pred, ref = _as_pair(pred, ref)
    r = _data_range(ref, data_range)
    if r <= 0:
        return float("nan")  # a flat reference has no signal to compare against
    with np.errstate(divide="ignore"):  # MSE 0 -> +inf, which is the right answer
        return float(peak_signal_noise_ratio(ref, pred, data_range=r))


def ssim(pred: np.ndarray, ref: np.ndarray, data_range: float | None = DATA_RANGE) -> float:
    """Mean SSIM of a 2D section (Gaussian window sigma 1.5, Wang et al. 2004); L as in `psnr`."""
    pred, ref = _as_pair(pred, ref)
    if pred.ndim != 2:
        raise InputError(f"SSIM is computed per section; got an array of shape {pred.shape}, pass 2D sections")
    if min(pred.shape) < MIN_SIDE:
        raise InputError(
            f"section of shape {pred.shape} is smaller than the {MIN_SIDE}-pixel SSIM window; "
            "lower metrics.border_crop or use larger sections"
        )
    r = _data_range(ref, data_range)
    if r <= 0:
        return float("nan")
    return float(
        structural_similarity(
            ref, pred, data_range=r, gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False
        )
    )


def frc_curve(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two 2D images: (frequencies in cycles/pixel, FRC per ring).

    Rings 1 .. min(ny, nx) // 2 (DC left out, up to Nyquist); see the module docstring.
    """
    a, b = _as_pair(a, b)
    if a.ndim != 2:
        raise InputError(f"FRC is computed per section; got an array of shape {a.shape}, pass 2D sections")
    ny, nx = a.shape
    fa = np.fft.fft2(a)
    fb = np.fft.fft2(b)
    step = 1.0 / min(ny, nx)
    radius = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :])
    ring = np.rint(radius / step).astype(np.int64).ravel()
    n_rings = min(ny, nx) // 2
    # Per-ring sums by bincount; rings beyond n_rings (corners past Nyquist) are dropped below.
    cross = np.bincount(ring, weights=(fa * np.conj(fb)).real.ravel(), minlength=n_rings + 1)
    pow_a = np.bincount(ring, weights=(np.abs(fa) ** 2).ravel(), minlength=n_rings + 1)
    pow_b = np.bincount(ring, weights=(np.abs(fb) ** 2).ravel(), minlength=n_rings + 1)
    keep = slice(1, n_rings + 1)
    denom = np.sqrt(pow_a[keep] * pow_b[keep])
    frc = np.divide(cross[keep], denom, out=np.zeros(n_rings), where=denom > 0)
    freqs = np.arange(1, n_rings + 1) * step
    return freqs, frc


def _crossing(freqs: np.ndarray, frc: np.ndarray, threshold: float = FRC_THRESHOLD) -> float:
    """Frequency where `frc` first drops below `threshold` (linear interpolation; hand-written)."""
    below = np.flatnonzero(frc < threshold)
    if below.size == 0:
        return float(freqs[-1])  # never drops: resolution limited by the pixel size (Nyquist)
    i = int(below[0])
    if i == 0:
        return float(freqs[0])
    f0, f1, c0, c1 = freqs[i - 1], freqs[i], frc[i - 1], frc[i]
    return float(f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0))


def _summary_from_curve(freqs: np.ndarray, frc: np.ndarray, pixel_nm: float) -> dict:
    cutoff_per_nm = _crossing(freqs, frc) / float(pixel_nm)
    return {
        "frc_mean": float(frc.mean()),
        "frc_cutoff_per_nm": cutoff_per_nm,
        "frc_cutoff_nm": 1.0 / cutoff_per_nm,
    }


def frc_summary(a: np.ndarray, b: np.ndarray, pixel_nm: float) -> dict:
    """Mean FRC up to Nyquist and the 1/7 cutoff, as a frequency (1/nm) and a resolution (nm)."""
    freqs, frc = frc_curve(a, b)
    return _summary_from_curve(freqs, frc, pixel_nm)


def normalize_to_reference(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """a * pred + b with (a, b) minimising the squared error to `ref` (PSSR's normalisation).

    Closed-form simple linear regression; a flat prediction gets a = 0, b = mean(ref).
    """
    pred, ref = _as_pair(pred, ref)
    dp = pred - pred.mean()
    var = float(np.mean(dp * dp))
    a = float(np.mean(dp * (ref - ref.mean()))) / var if var > 0 else 0.0
    b = float(ref.mean()) - a * float(pred.mean())
    return a * pred + b


def _crop(section: np.ndarray, border: int) -> np.ndarray:
    return section[border : section.shape[0] - border, border : section.shape[1] - border] if border else section


def _check_crop(shape: tuple[int, ...], border: int) -> None:
    if border < 0:
        raise InputError(f"metrics.border_crop is {border}; set it to 0 or a positive number of HR pixels")
    side = min(shape[-2:]) - 2 * border
    if side < MIN_SIDE:
        raise InputError(
            f"metrics.border_crop {border} leaves {side} pixels of a {shape[-2:]} section, fewer "
            f"than the {MIN_SIDE} SSIM needs; lower metrics.border_crop"
        )


class SectionPair:
    """The scoring context of image metrics: an SR section and its reference section, already cropped.

    `ref` is the acquired HR or, for the `_denoised` column set, the denoised HR.
    `data_range` is L = 1.0 (the headline PSNR / SSIM); `section_range` the reference
    section's max - min. What several metrics share (the normalised prediction, the
    FRC curve) is computed once, on first use.
    """

    data_range = DATA_RANGE

    def __init__(self, pred2d: np.ndarray, ref2d: np.ndarray, pixel_nm: float):
        self.pred, self.ref = _as_pair(pred2d, ref2d)
        self.pixel_nm = float(pixel_nm)

    @cached_property
    def section_range(self) -> float:
        return _data_range(self.ref, None)

    @cached_property
    def normalized(self) -> np.ndarray:
        return normalize_to_reference(self.pred, self.ref)

    @cached_property
    def frc(self) -> tuple[np.ndarray, np.ndarray]:
        """(frequencies in cycles/pixel, FRC per ring)."""
        return frc_curve(self.pred, self.ref)

    @cached_property
    def frc_summary(self) -> dict:
        return _summary_from_curve(*self.frc, self.pixel_nm)


# --------------------------------------------------------------------------- registered metrics (CSV column order)


@metric("psnr", IMAGE, "PSNR", unit="dB", decimals=2, tested=True, strategy=True)
def _psnr(pair: SectionPair) -> float:
    return psnr(pair.pred, pair.ref, pair.data_range)


@metric("ssim", IMAGE, "SSIM", tested=True, strategy=True)
def _ssim(pair: SectionPair) -> float:
    return ssim(pair.pred, pair.ref, pair.data_range)


@metric("frc_mean", IMAGE, "FRC", strategy=True)
def _frc_mean(pair: SectionPair) -> float:
    return pair.frc_summary["frc_mean"]


@metric("frc_cutoff_nm", IMAGE, "FRC 1/7 resolution", unit="nm", higher_is_better=False, decimals=1, summary=False)
def _frc_cutoff_nm(pair: SectionPair) -> float:
    return pair.frc_summary["frc_cutoff_nm"]


@metric("psnr_section_range", IMAGE, "PSNR (section range)", unit="dB", decimals=2, summary=False)
def _psnr_section_range(pair: SectionPair) -> float:
    return psnr(pair.pred, pair.ref, pair.section_range)


@metric("ssim_section_range", IMAGE, "SSIM (section range)", summary=False)
def _ssim_section_range(pair: SectionPair) -> float:
    return ssim(pair.pred, pair.ref, pair.section_range)


@metric("psnr_norm", IMAGE, "PSNR (normalised)", unit="dB", decimals=2, summary=False)
def _psnr_norm(pair: SectionPair) -> float:
    return psnr(pair.normalized, pair.ref, pair.data_range)


@metric("ssim_norm", IMAGE, "SSIM (normalised)", summary=False)
def _ssim_norm(pair: SectionPair) -> float:
    return ssim(pair.normalized, pair.ref, pair.data_range)


@metric("frc_mean_norm", IMAGE, "FRC (normalised)", summary=False)
def _frc_mean_norm(pair: SectionPair) -> float:
    return float(frc_curve(pair.normalized, pair.ref)[1].mean())


# --------------------------------------------------------------------------- scoring


def _cropped_pair(pred2d, ref2d, pixel_nm: float, border_crop: int) -> SectionPair:
    pred, ref = _as_pair(pred2d, ref2d)
    _check_crop(pred.shape, border_crop)
    return SectionPair(_crop(pred, border_crop), _crop(ref, border_crop), pixel_nm)


def image_scores(pred2d: np.ndarray, ref2d: np.ndarray, pixel_nm: float, border_crop: int = 0) -> dict:
    """Every registered image metric of one section ({name: value}; built in: psnr, ssim, frc_mean,
    frc_cutoff_nm, psnr_section_range, ssim_section_range, psnr_norm, ssim_norm, frc_mean_norm), after
    cropping `border_crop` pixels at every edge."""
    return score(IMAGE, _cropped_pair(pred2d, ref2d, pixel_nm, border_crop))


def _pixel_nm(pairs_json: str | Path, hr_voxel: list | None, hr_path) -> float:
    """In-plane HR pixel size: pairs.json's hr_voxel_nm, else the HR TIFF's metadata."""
    meta = read_json(pairs_json) if pairs_json is not None else {}
    voxel = meta.get("hr_voxel_nm", hr_voxel)
    if voxel is None or len(voxel) != 3 or voxel[1] is None or voxel[2] is None:
        raise InputError(
            f"{pairs_json}: no 'hr_voxel_nm' [z, y, x] and {hr_path} has no voxel size; "
            "rerun the pairs stage so it records the HR voxel size"
        )
    vy, vx = float(voxel[1]), float(voxel[2])
    if not np.isclose(vy, vx, rtol=0.01):
        raise InputError(
            f"{pairs_json}: HR pixels are not square ({vy} x {vx} nm); FRC rings need square "
            "pixels, resample the HR stack to equal y/x voxel size"
        )
    return vy


def _check_unit_range(vol: np.ndarray, path, what: str) -> None:
    """PSNR's L = 1 presumes images in [0, 1]; a reference outside means a broken upstream file."""
    lo, hi = float(vol.min()), float(vol.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(
            f"{path}: {what} values span [{lo:.4g}, {hi:.4g}], outside [0, 1]; PSNR/SSIM use L = 1 for "
            "normalised images, so rerun the stage that wrote it (float TIFFs must hold values in [0, 1])"
        )


def _references(metrics: dict, denoised) -> bool:
    """Whether to score against the denoised HR too (metrics.references), checked against the inputs."""
    refs = list(metrics["references"])
    unknown = [r for r in refs if r not in REFERENCES]
    if unknown or "acquired" not in refs:
        raise InputError(
            f"metrics.references is {refs}; list acquired (always scored: the headline columns) and "
            f"optionally denoised, from {', '.join(REFERENCES)}"
        )
    if "denoised" in refs and denoised is None:
        raise InputError(
            "metrics.references lists denoised but rule image_metrics got no denoised HR; give it "
            "results/denoise/{specimen}/hr.tif (input `denoised`)"
        )
    return "denoised" in refs


def run_image_metrics(
    sr: str,
    hr: str,
    pairs: str | None,
    out_csv: str,
    out_frc: str,
    metrics: dict | None,
    model: str,
    data: str,
    fold: str,
    specimen: str,
    log: str | None = None,
    denoised: str | None = None,
) -> pd.DataFrame:
    """Score every section of the SR volume `sr` against the HR volume `hr` with every registered image metric.

    `metrics`: config['metrics'] (missing keys take the schema's defaults). With `denoised`
    in metrics.references, `denoised` (the denoised HR, same grid as `hr`) is a second
    reference: every metric again as `<name>_denoised`. Writes `out_csv` (one row per
    section, a column per metric and reference) and `out_frc` (FRC curves against the
    acquired HR, long format), both atomically; returns the per-section table.
    """
    cfg = section("metrics", metrics)
    border = cfg["border_crop"]
    with_denoised = _references(cfg, denoised)
    logger = get_logger(__name__, log)
    if denoised is not None and not with_denoised:
        logger.info("%s: metrics.references does not list denoised; the denoised HR is not scored against", denoised)
    pred, _, _ = read_volume(sr)  # TIFF, or OME-Zarr with infer.format: ome-zarr
    ref, hr_voxel, _ = read_image(hr)
    if pred.shape != ref.shape:
        raise InputError(
            f"{sr}: shape {pred.shape} differs from the HR {hr} shape {ref.shape}; "
            "rerun inference so the SR volume matches the HR pair"
        )
    if not np.all(np.isfinite(pred)):
        raise InputError(f"{sr}: contains NaN or infinite values; rerun inference (check the model's training log)")
    _check_unit_range(ref, hr, "HR")
    den = None
    if with_denoised:
        den = read_image(denoised)[0]
        if den.shape != ref.shape:
            raise InputError(
                f"{denoised}: shape {den.shape} differs from the HR {hr} shape {ref.shape}; "
                "rerun the denoise rule on this specimen's paired HR"
            )
        _check_unit_range(den, denoised, "denoised HR")
    pixel_nm = _pixel_nm(pairs, hr_voxel, hr)
    _check_crop(ref.shape, border)
    ids = {"model": model, "data": data, "fold": fold, "specimen": specimen}
    names = columns(IMAGE)
    cols = [*ids, "section", *names] + ([f"{n}{DENOISED_SUFFIX}" for n in names] if with_denoised else [])

    rows, curves = [], []
    for z in tqdm(range(ref.shape[0]), desc=f"image metrics {model}/{data}/{fold}/{specimen}", file=sys.stderr):
        pair = _cropped_pair(pred[z], ref[z], pixel_nm, border)
        row = {**ids, "section": z, **score(IMAGE, pair)}
        if with_denoised:
            against = score(IMAGE, _cropped_pair(pred[z], den[z], pixel_nm, border))
            row.update({f"{k}{DENOISED_SUFFIX}": v for k, v in against.items()})
        rows.append(row)
        freqs, frc = pair.frc
        curves.append(pd.DataFrame({**ids, "section": z, "frequency_per_nm": freqs / pixel_nm, "frc": frc}))
    table = pd.DataFrame(rows, columns=cols)
    write_csv(out_frc, pd.concat(curves, ignore_index=True))
    write_csv(out_csv, table)
    means = ", ".join(f"{name} {value:.4g}" for name, value in table[cols[len(ids) + 1 :]].mean().items())
    logger.info("%s: %d sections; means %s", sr, len(table), means)
    return table
