"""Synthetic LR from paired HR, one recipe per entry under `degradations:` in config.yaml.

Kinds (each recipe names one with `kind:`; numbers come from the recipe):
- bicubic: bicubic downsampling only -- the EMSR study's Synthetic (I).
- blur_noise: isotropic Gaussian blur sigma in `blur_sigma` (HR px), Gaussian
  noise sigma in `noise_pre`, bicubic down, Gaussian noise sigma in
  `noise_post` -- Synthetic (II) (ranges [0, 3], [20, 40], [5, 15] there).
- pssr: Gaussian noise of local variance `noise_gain` x (HR blurred with
  `blur_sigma`), then bilinear down -- PSSR's EM crappifier
  `em_AG_D_sameas_preprint` (utils/crappifiers.py): skimage's gaussian(x, sigma=3)
  (mode "nearest", truncate 4, used here too), random_noise(mode="localvar",
  local_vars=0.05 x that), scipy.ndimage.zoom(order=1) down; our defaults are
  those: sigma 3, gain 0.05. (sigma 5 / gain 0.5, with salt-and-pepper, is PSSR's
  *fluorescence* crappifier, not the EM one.) One difference, on purpose: the
  grid. ndimage.zoom's default (grid_mode=False) maps the first and last pixel
  centres onto each other, so PSSR's LR pixel i samples HR coordinate
  i (N - 1) / (n - 1) -- up to (s - 1) / 2 HR px (1.5 at x4) off the pixel-centre
  grid LR i <-> HR [i*s, (i+1)*s) that our pairs use, and stretched by
  (N - 1) / ((n - 1) s). We sample at the centres, i*s + (s - 1) / 2, which is
  zoom(order=1, grid_mode=True) exactly (cv2.resize INTER_LINEAR). Same noise
  before downsampling, byte for byte with the same Generator; after it the
  bilinear weights differ: ours average 2 x 2 HR pixels at even s (LR noise
  variance x 1/4) and point-sample at odd s (x 1), PSSR's drift with the
  position (x 4/9 on average), so at x4 our LR noise sd is 0.75 x PSSR's, at x3
  1.5 x (tests/test_degrade.py measures both).
- blur_bilinear: Gaussian blur `blur_sigma` (3 HR px), then bilinear down --
  the WGAN-GP study.
- fitted: the real LR's own degradation, fitted to the aligned real pairs of
  the fold's training specimens (srseg.fitting: PSF sigma, gain / offset /
  gamma, Poisson-Gaussian noise a mu + b); the caller merges the fitted
  parameters (fit.json) into the recipe as `fit`. Its downsampling is the
  pixel-area mean over HR [i*s, (i+1)*s), on the same grid.
A range [lo, hi] is drawn uniformly per section; a number is used as is.
Noise sigmas are on the 8-bit scale (sigma / 255 in our [0, 1] images) -- relative
to the data's real bit depth, because ingest maps e.g. 12-bit data stored as uint16
onto [0, 1] (srseg.ingest); blur sigmas are in paired-HR pixels. The result is
clipped to [0, 1] once, at the end.

Downsampling (`resize_down`) resizes to the exact size hr // scale with
pixel-centre alignment, so LR pixel i covers HR pixels [i*s, (i+1)*s) -- the
registration `pairs` uses. `antialias` (recipe key) widens the kernel by the
scale, as MATLAB's imresize does: PIL's resize (float "F" images), identical
to torch's interpolate(antialias=True) but without importing torch (seconds
per job). Without it, cv2.resize samples the cubic/linear kernel at the
output pixel centres. It defaults to on for the bicubic kinds (the "bicubic
downsampling" of the SR literature is MATLAB's antialiased one) and off for
the bilinear kinds (PSSR used scipy.ndimage.zoom(order=1), which point-samples;
WGAN-GP blurs with sigma 3 first, which already removes what antialiasing would).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from PIL import Image
from skimage.filters import gaussian
from skimage.util import random_noise
from tqdm import tqdm

from . import fitting
from .config import checks, section
from .io import InputError, read_image, read_json, write_image, write_json
from .log import get_logger
from .registry import Registry
from .streams import derive_seed  # noqa: F401  (re-exported: the recipe seeds)

logger = logging.getLogger("srseg.degrade")

#: kind -> f(hr section, scale, recipe, rng, antialias) -> (lr section, drawn parameters). A new kind is one
#: registered function here plus its keys and defaults under `degradations` in schemas/config.schema.yaml.
KINDS: Registry = Registry("degradation kind")


def check_recipe(recipe: dict, name: str = "recipe") -> dict:
    """A recipe with its kind's defaults (schemas/config.schema.yaml) filled in; InputError names the bad key.

    A `fitted` recipe's `fit` (the fitted parameters, merged in by run_degrade) is no config
    key: it is set aside while the recipe is checked and kept.
    """
    recipe = dict(recipe)
    fit = recipe.pop("fit", None)
    recipe = section("degradations.*", recipe, where=f"degradations.{name}")
    checks.check_recipe(name, recipe)
    if fit is not None:
        recipe["fit"] = dict(fit)
    return recipe


def draw(value, rng: np.random.Generator) -> float:
    """A recipe value: a number as is, a range [lo, hi] drawn uniformly."""
    if not isinstance(value, (list, tuple)):
        return float(value)
    lo, hi = float(value[0]), float(value[1])
    return lo if hi == lo else float(rng.uniform(lo, hi))


def resize_down(img: np.ndarray, scale: int, mode: str, antialias: bool) -> np.ndarray:
    """Downsample a (y, x) image by an exact integer factor (see the module docstring)."""
    h, w = img.shape[0] // scale, img.shape[1] // scale
    x = np.ascontiguousarray(img[: h * scale, : w * scale], dtype=np.float32)
    if antialias:
        pil = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[mode]
        return np.asarray(Image.fromarray(x).resize((w, h), pil), dtype=np.float32)
    flag = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR}[mode]
    return cv2.resize(x, (w, h), interpolation=flag)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Isotropic Gaussian blur, sigma in pixels (kernel radius 4 sigma for float images), mirrored edges."""
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def degrade_section(hr2d: np.ndarray, scale: int, recipe: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One section: (lr, the parameters drawn), by the recipe's kind."""
    make = KINDS.get(recipe["kind"], "degradations.<name>.kind")
    return make(hr2d.astype(np.float32), scale, recipe, rng, bool(recipe.get("antialias", False)))


@KINDS.register("bicubic")
def _bicubic(x, scale, recipe, rng, aa):
    return resize_down(x, scale, "bicubic", aa), {}


@KINDS.register("blur_noise")
def _blur_noise(x, scale, recipe, rng, aa):
    drawn = {k: draw(recipe[k], rng) for k in ("blur_sigma", "noise_pre", "noise_post")}
    x = blur(x, drawn["blur_sigma"])
    x = x + rng.normal(0.0, drawn["noise_pre"] / 255.0, x.shape).astype(np.float32)
    x = resize_down(x, scale, "bicubic", aa)
    x = x + rng.normal(0.0, drawn["noise_post"] / 255.0, x.shape).astype(np.float32)
    return x, drawn


def pssr_noise(x: np.ndarray, blur_sigma: float, noise_gain: float, rng: np.random.Generator) -> np.ndarray:
    """PSSR's EM noise at HR resolution: random_noise(x, "localvar", gain x gaussian(x, sigma)), clipped to [0, 1].

    skimage's gaussian with its defaults (mode "nearest", truncate 4), as PSSR calls it; + 1e-10
    because skimage refuses a zero local variance (an all-black neighbourhood).
    """
    x = np.clip(x, 0, 1).astype(np.float32)
    local_var = noise_gain * gaussian(x, sigma=blur_sigma, mode="nearest", truncate=4.0, preserve_range=True) + 1e-10
    return random_noise(x, mode="localvar", local_vars=local_var, rng=rng).astype(np.float32)


@KINDS.register("pssr")
def _pssr(x, scale, recipe, rng, aa):
    drawn = {k: draw(recipe[k], rng) for k in ("blur_sigma", "noise_gain")}
    x = pssr_noise(x, drawn["blur_sigma"], drawn["noise_gain"], rng)
    return resize_down(x, scale, "bilinear", aa), drawn


@KINDS.register("blur_bilinear")
def _blur_bilinear(x, scale, recipe, rng, aa):
    drawn = {"blur_sigma": draw(recipe["blur_sigma"], rng)}
    return resize_down(blur(x, drawn["blur_sigma"]), scale, "bilinear", aa), drawn


@KINDS.register("fitted")
def _fitted(x, scale, recipe, rng, aa):
    fit = recipe.get("fit")
    if not fit:
        raise InputError("degradations.<name>: kind fitted needs the fitted parameters (fit.json of the fold)")
    if int(fit["scale"]) != int(scale):
        raise InputError(
            f"degradations.<name>: fitted at scale {fit['scale']} but these pairs have scale {scale}; "
            f"a fold's training specimens and its fit must share the scale"
        )
    lr = fitting.synthesize(x, scale, fit, rng, recipe["blur"], recipe["intensity"], recipe["noise"])
    return lr, {}


def degrade_volume(hr: np.ndarray, scale: int, recipe: dict, seed: int, return_params: bool = False):
    """Synthetic LR (z, y // scale, x // scale) float32 in [0, 1] from HR (z, y, x), seeded.

    One Generator for the whole volume, so section k's draws depend on the seed
    and k only: the same seed gives the same bytes.
    """
    recipe = check_recipe(recipe)
    if int(scale) < 1:
        raise InputError(f"degradation scale must be a positive integer, got {scale}")
    rng = np.random.default_rng(int(seed))
    out, drawn = [], []
    for sec in tqdm(hr, desc=f"degrade: {recipe['kind']}", unit="section"):
        lr, d = degrade_section(sec, int(scale), recipe, rng)
        out.append(np.clip(lr, 0.0, 1.0))
        drawn.append(d)
    lr = np.stack(out).astype(np.float32)
    return (lr, drawn) if return_params else lr


def run_degrade(
    hr_path, pairs_json, out_lr, recipe: dict, recipe_name: str, specimen: str, seed: int, log=None, fit_json=None
) -> None:
    """The `degrade` rule: degrade the paired HR of one specimen with one recipe.

    fit_json: a `fitted` recipe's parameters (run_fit_degradation's output for the fold);
    required for that kind, refused for the others. The noise seed is (seed, recipe,
    specimen) whatever the fold: folds differ only in their fitted parameters.
    """
    get_logger(logger.name, log)
    recipe = check_recipe(recipe, recipe_name)
    if (recipe["kind"] == "fitted") != (fit_json is not None):
        raise ValueError(f"run_degrade: fit_json is required for kind fitted and only for it ({recipe_name})")
    if fit_json is not None:
        recipe["fit"] = {k: read_json(fit_json)[k] for k in fitting.PARAMS}
    info = read_json(pairs_json)
    hr, _, dtype = read_image(hr_path)
    scale = int(info["scale"])
    if list(hr.shape) != list(info["hr_shape"]):
        raise InputError(f"{hr_path}: shape {list(hr.shape)} differs from pairs.json's {info['hr_shape']}; rerun pairs")
    s = derive_seed(seed, recipe_name, specimen)
    lr, drawn = degrade_volume(hr, scale, recipe, s, return_params=True)
    logger.info("degrade %s/%s: seed %d, LR %s, per-section parameters %s", recipe_name, specimen, s, lr.shape, drawn)
    write_image(out_lr, lr, info["lr_voxel_nm"], dtype)


def run_fit_degradation(lr_paths, hr_paths, pairs_jsons, out_json, recipe: dict, recipe_name: str, log=None) -> dict:
    """The `fit_degradation` rule: fit a `fitted` recipe to the real pairs of one fold's training specimens.

    lr_paths, hr_paths, pairs_jsons: the paired real LR, HR and pairs.json of the fold's
    training specimens only (never a test specimen's). Writes out_json: the fitted parameters
    (srseg.fitting.PARAMS), diagnostics and the sources; returns it.
    """
    get_logger(logger.name, log)
    recipe = check_recipe(recipe, recipe_name)
    if recipe["kind"] != "fitted":
        raise ValueError(f"run_fit_degradation: degradations.{recipe_name} is kind {recipe['kind']}, not fitted")
    if not (len(lr_paths) == len(hr_paths) == len(pairs_jsons)) or not lr_paths:
        raise ValueError("run_fit_degradation: give one LR, HR and pairs.json per training specimen")
    pairs, scales = [], {}
    for lp, hp, pj in zip(lr_paths, hr_paths, pairs_jsons):
        info = read_json(pj)
        lr, _, _ = read_image(lp)
        hr, _, _ = read_image(hp)
        if list(lr.shape) != list(info["lr_shape"]) or list(hr.shape) != list(info["hr_shape"]):
            raise InputError(f"{lp}, {hp}: shapes differ from {pj}'s; rerun pairs")
        scales[str(pj)] = int(info["scale"])
        pairs.append((lr, hr))
    if len(set(scales.values())) != 1:
        raise InputError(
            f"degradations.{recipe_name}: kind fitted fits one scale per fold, but the fold's training "
            f"specimens have scales {scales}; split them into folds of one scale"
        )
    fit = fitting.fit_degradation(
        pairs, next(iter(scales.values())), max_blur_sigma=recipe["max_blur_sigma"], fit_pixels=recipe["fit_pixels"]
    )
    fit["recipe"] = recipe_name
    fit["sources"] = {"lr": [str(p) for p in lr_paths], "hr": [str(p) for p in hr_paths]}
    logger.info(
        "fit_degradation %s: sigma %.3f HR px, gain %.4f, offset %.4f, gamma %.4f, noise var %.3g mu + %.3g "
        "(rmse %.4f, r2 %.3f, %d LR px of %d sections)%s",
        recipe_name,
        fit["sigma"],
        fit["gain"],
        fit["offset"],
        fit["gamma"],
        fit["noise_a"],
        fit["noise_b"],
        fit["rmse"],
        fit["r2"],
        fit["n_pixels"],
        fit["n_sections"],
        "; sigma at the search bound: raise max_blur_sigma" if fit["sigma_at_bound"] else "",
    )
    write_json(out_json, fit)
    return fit
