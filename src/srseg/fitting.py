"""Fitted degradation: the real LR acquisition, estimated from aligned real pairs, then synthesised.

Every published synthetic degradation (bicubic, blur + noise, PSSR's crappifier) is a guess.
Here the degradation is *measured*: from the aligned real (LR, HR) pairs of a fold's training
specimens only, fit the forward model that maps the paired HR to the real LR,

    u   = A_s(G_sigma * h)                   PSF blur, then integration over the LR pixel
    mu  = offset + gain * u ** gamma         the detector's intensity response
    lr  = mu + n,   Var(n | mu) = a * mu + b Poisson-Gaussian noise (in LR units)

and synthesise LR from HR with it (degradation kind `fitted`, srseg.degrade). h is the paired HR
(float [0, 1]); G_sigma a Gaussian PSF of sigma HR pixels (0: none, mirrored edges); A_s the mean
over the s x s block of HR pixels [i*s, (i+1)*s) -- LR pixel i's footprint on the pairs grid
(srseg.pairs), so no shift is introduced. The noise is synthesised as its Gaussian approximation
N(0, max(a * mu + b, 0)) (Foi et al. 2008); a is the shot-noise gain (1 / electrons per unit
intensity), b the read-noise variance (it may come out negative when the detector has a pedestal).
The blur comes before the response, as in the microscope (and in srseg.simulate).

Estimators (`fit_degradation`):
1. sigma, gain, offset, gamma: least squares of lr against mu over the sampled LR pixels, by
   variable projection -- for each sigma, gamma by a bounded 1-D search in log gamma whose gain and
   offset are the closed-form linear fit of lr on u ** gamma; sigma itself by a grid over
   [0, max_blur_sigma] refined with bounded Brent around the best grid point. Ordinary least
   squares is consistent under heteroscedastic noise; clipped LR pixels (0 or 1) are left out.
2. a, b: the residuals r = lr - mu_hat, binned by mu_hat (equal-count bins); per bin the
   variance after a 5-MAD outlier cut; then weighted least squares of var_k = a mu_k + b with
   weights n_k / var_k^2 (the inverse variance of a sample variance), once re-weighted with the
   fitted line. Bins within 3 sd of the clip range are left out; a < 0 refits with a = 0.

Limits, stated rather than hidden: the residual also holds the HR's own noise, blurred and
integrated (variance ~ (gain gamma u^(gamma-1))^2 sum(k^2) var_hr, a few percent of the LR noise
for s >= 3), so the fitted noise is slightly high; residual misregistration of the pairs widens
the fitted PSF; scan-line and other correlated noise is not modelled (it enters as white noise of
the same variance); one global model per fold (per-section brightness drift enters the noise).
The sampling of pixels is deterministic (evenly spaced sections, centre crops): no seed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.optimize import minimize_scalar

from .io import InputError

#: the keys of a `fitted` recipe the fit depends on (the others only change the synthesis)
FIT_KEYS = ("kind", "max_blur_sigma", "fit_pixels")
#: the fitted parameters, as fit.json and the recipe's merged `fit` dict hold them
PARAMS = ("scale", "sigma", "gain", "offset", "gamma", "noise_a", "noise_b")
MODEL = "lr = offset + gain * box_s(gauss_sigma(hr)) ** gamma + N(0, noise_a * mu + noise_b)"

_GAMMA = (0.2, 5.0)  # search range of gamma
_BINS = 24  # noise bins
_GRID = 13  # sigma grid points before the Brent refinement


# ------------------------------------------------------------------------------------- forward model


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian PSF of `sigma` pixels (0: none), mirrored edges, float32."""
    img = np.asarray(img, np.float32)
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img, (0, 0), float(sigma), borderType=cv2.BORDER_REFLECT)


def box_down(img: np.ndarray, scale: int) -> np.ndarray:
    """Mean over each s x s block: LR pixel i integrates HR pixels [i*s, (i+1)*s) (the pairs grid)."""
    s = int(scale)
    h, w = img.shape[0] // s, img.shape[1] // s
    return img[: h * s, : w * s].reshape(h, s, w, s).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def response(u: np.ndarray, gain: float, offset: float, gamma: float) -> np.ndarray:
    """The detector's intensity response offset + gain * u ** gamma (u clipped at 0)."""
    return (offset + gain * np.power(np.clip(u, 0.0, None), gamma)).astype(np.float32)


def noise_sd(mu: np.ndarray, a: float, b: float) -> np.ndarray:
    """sqrt(max(a * mu + b, 0)): the Poisson-Gaussian noise sd at mean mu."""
    return np.sqrt(np.clip(a * mu + b, 0.0, None)).astype(np.float32)


def synthesize(
    hr2d: np.ndarray,
    scale: int,
    fit: dict,
    rng: np.random.Generator | None,
    blur_on: bool = True,
    intensity: bool = True,
    noise: bool = True,
) -> np.ndarray:
    """One synthetic LR section from HR with the fitted parameters (not clipped; see the module docstring).

    blur_on / intensity / noise switch the fitted parts off (pixel-area integration only /
    identity response / no noise): ablations of the matched degradation.
    """
    u = box_down(blur(hr2d, fit["sigma"] if blur_on else 0.0), scale)
    mu = response(u, fit["gain"], fit["offset"], fit["gamma"]) if intensity else u
    if not noise:
        return mu
    if rng is None:
        raise ValueError("synthesize: noise needs a random Generator")
    return (mu + noise_sd(mu, fit["noise_a"], fit["noise_b"]) * rng.standard_normal(mu.shape, np.float32)).astype(
        np.float32
    )


# ------------------------------------------------------------------------------------------ fitting


def _sections(pairs, scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(lr, hr) 2-D sections of every pair, checked: HR exactly scale x LR."""
    out = []
    for i, (lr, hr) in enumerate(pairs):
        lr, hr = np.asarray(lr, np.float32), np.asarray(hr, np.float32)
        if lr.ndim == 2:
            lr, hr = lr[None], hr[None]
        if lr.ndim != 3 or hr.ndim != 3 or hr.shape != (lr.shape[0], lr.shape[1] * scale, lr.shape[2] * scale):
            raise InputError(
                f"fit_degradation: pair {i} has LR {lr.shape} and HR {hr.shape}; HR must be exactly "
                f"scale ({scale}) x LR, section for section (rerun pairs)"
            )
        out.extend(zip(lr, hr))
    if not out:
        raise InputError("fit_degradation: no pairs to fit; the fold needs training specimens with pairs")
    return out


def _sample(sections, scale: int, budget: int, margin: int):
    """Evenly spaced sections, centre-cropped to at most `budget` LR pixels in all (deterministic).

    Returns (lr crops, hr crops): each LR crop keeps `margin` LR pixels on every side that the
    fit leaves out (the blur's mirrored edges); its HR crop covers it exactly (scale x).
    """
    n = len(sections)
    mean_area = float(np.mean([lr.size for lr, _ in sections]))
    k = n if mean_area * n <= budget else min(n, max(8, int(budget // mean_area)))
    picks = np.unique(np.linspace(0, n - 1, k).round().astype(int))
    per = budget // len(picks)
    lrs, hrs = [], []
    for i in picks:
        lr, hr = sections[i]
        h, w = lr.shape
        f = min(1.0, math.sqrt(per / lr.size))
        ch, cw = min(h, max(2 * margin + 4, int(h * f))), min(w, max(2 * margin + 4, int(w * f)))
        if ch <= 2 * margin or cw <= 2 * margin:
            continue
        r0, c0 = (h - ch) // 2, (w - cw) // 2
        lrs.append(lr[r0 : r0 + ch, c0 : c0 + cw])
        hrs.append(hr[r0 * scale : (r0 + ch) * scale, c0 * scale : (c0 + cw) * scale])
    if not lrs:
        raise InputError(
            f"fit_degradation: every paired section is narrower than {2 * margin + 1} LR pixels; "
            f"lower max_blur_sigma or give larger HR fields"
        )
    return lrs, hrs


class _Objective:
    """Least squares of lr against offset + gain * u(sigma) ** gamma (variable projection).

    Only the LR pixels inside the margin and unclipped (0 < lr < 1: a clipped pixel carries no
    value) enter; `u(sigma)` is the blurred, pixel-integrated HR at those pixels.
    """

    def __init__(self, lrs, hrs, scale: int, margin: int):
        self.hrs, self.scale = hrs, scale
        self.inner = (slice(margin, -margin or None), slice(margin, -margin or None))
        lr = np.concatenate([x[self.inner].ravel() for x in lrs]).astype(np.float64)
        self.keep = (lr > 0.0) & (lr < 1.0)
        if self.keep.sum() < 100:
            raise InputError("fit_degradation: fewer than 100 unclipped LR pixels; the real LR is saturated")
        self.lr = lr[self.keep]
        self.n_all = lr.size
        self._last: tuple[float, np.ndarray] | None = None  # one sigma's u: the memory of one copy

    def u(self, sigma: float) -> np.ndarray:
        """u at the kept pixels, clipped at 1e-6 (for its log)."""
        if self._last is None or self._last[0] != float(sigma):
            u = np.concatenate([box_down(blur(hr, sigma), self.scale)[self.inner].ravel() for hr in self.hrs])
            self._last = (float(sigma), np.clip(u[self.keep].astype(np.float64), 1e-6, None))
        return self._last[1]

    def linear(self, x: np.ndarray) -> tuple[float, float, float]:
        """(gain, offset, sse) of the linear least-squares fit lr ~ offset + gain * x."""
        y = self.lr
        mx, my = x.mean(), y.mean()
        dx = x - mx
        sxx = float(dx @ dx)
        gain = float(dx @ (y - my)) / sxx if sxx > 0 else 0.0
        offset = float(my - gain * mx)
        r = y - offset - gain * x
        return gain, offset, float(r @ r)

    def at_sigma(self, sigma: float) -> tuple[float, dict]:
        """The least-squares error at this sigma with the best gamma, gain and offset."""
        logu = np.log(self.u(sigma))
        res = minimize_scalar(
            lambda lg: self.linear(np.exp(math.exp(lg) * logu))[2],
            bounds=(math.log(_GAMMA[0]), math.log(_GAMMA[1])),
            method="bounded",
            options={"xatol": 1e-4},
        )
        gamma = math.exp(float(res.x))
        gain, offset, sse = self.linear(np.exp(gamma * logu))
        return sse, {"sigma": float(sigma), "gain": gain, "offset": offset, "gamma": gamma}


def _fit_noise(mu: np.ndarray, r: np.ndarray, bins: int = _BINS) -> tuple[float, float, list]:
    """(a, b, per-bin [mu, var, n]) of var(r | mu) = a mu + b; see the module docstring."""
    order = np.argsort(mu, kind="stable")
    table = []
    for idx in np.array_split(order, bins):
        if idx.size < 20:
            continue
        rr = r[idx]
        med = np.median(rr)
        mad = 1.4826 * np.median(np.abs(rr - med))
        if mad > 0:
            rr = rr[np.abs(rr - med) < 5 * mad]
        table.append([float(mu[idx].mean()), float(rr.var(ddof=1)), int(rr.size)])
    tab = np.array(table, float)
    inside = (tab[:, 0] - 3 * np.sqrt(tab[:, 1]) > 0) & (tab[:, 0] + 3 * np.sqrt(tab[:, 1]) < 1)
    use = tab[inside] if inside.sum() >= 3 else tab
    m, v, n = use[:, 0], use[:, 1], use[:, 2]

    def wls(pred):
        w = n / np.maximum(pred, 1e-12) ** 2
        a_mat = np.stack([m, np.ones_like(m)], axis=1)
        sol = np.linalg.lstsq(a_mat * np.sqrt(w)[:, None], v * np.sqrt(w), rcond=None)[0]
        if sol[0] < 0:  # no detectable shot noise: a constant variance
            return 0.0, float(np.sum(w * v) / np.sum(w))
        return float(sol[0]), float(sol[1])

    a, b = wls(v)
    a, b = wls(np.maximum(a * m + b, 0.1 * v))  # re-weighted with the fitted line
    return a, b, table


def fit_degradation(pairs, scale: int, max_blur_sigma: float | None = None, fit_pixels: int = 1_000_000) -> dict:
    """Fit the forward model (module docstring) to aligned real pairs; returns the json-ready parameters.

    pairs: [(lr, hr), ...] float [0, 1], 2-D sections or (z, y, x) volumes, HR exactly scale x LR
    and aligned with it (srseg.pairs). Returns scale, sigma (PSF, HR px), gain, offset, gamma,
    noise_a, noise_b (variance = noise_a * mu + noise_b, LR units) and diagnostics (rmse,
    r2, the noise bins, pixel counts).
    """
    scale = int(scale)
    if scale < 1:
        raise InputError(f"fit_degradation: scale must be a positive integer, got {scale}")
    smax = float(2 * scale if max_blur_sigma is None else max_blur_sigma)
    margin = int(math.ceil(4 * smax / scale)) + 1
    sections = _sections(pairs, scale)
    lrs, hrs = _sample(sections, scale, int(fit_pixels), margin)
    obj = _Objective(lrs, hrs, scale, margin)

    grid = np.linspace(0.0, smax, _GRID)
    errs = [obj.at_sigma(s)[0] for s in grid]
    j = int(np.argmin(errs))
    refined = minimize_scalar(
        lambda s: obj.at_sigma(s)[0],
        bounds=(grid[max(j - 1, 0)], grid[min(j + 1, _GRID - 1)]),
        method="bounded",
        options={"xatol": 1e-3 * scale},
    )
    sigma = float(refined.x) if float(refined.fun) <= errs[j] else float(grid[j])
    sse, params = obj.at_sigma(sigma)
    mu = response(obj.u(params["sigma"]), params["gain"], params["offset"], params["gamma"]).astype(np.float64)
    y = obj.lr
    a, b, table = _fit_noise(mu, y - mu)
    return {
        "model": MODEL,
        "scale": scale,
        **params,
        "noise_a": a,
        "noise_b": b,
        "rmse": float(math.sqrt(sse / y.size)),
        "r2": float(1.0 - sse / float(((y - y.mean()) ** 2).sum())),
        "noise_bins": table,
        "n_pixels": int(y.size),
        "n_clipped": int(obj.n_all - y.size),
        "n_sections": len(sections),
        "n_sampled": len(lrs),
        "max_blur_sigma": smax,
        "sigma_at_bound": bool(params["sigma"] >= smax - 1e-3 * scale),
    }
