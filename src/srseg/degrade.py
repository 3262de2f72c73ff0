"""Synthetic LR from paired HR, one recipe per entry under `degradations:` in config.yaml.

Kinds (each recipe names one with `kind:`; numbers come from the recipe):
- bicubic: bicubic downsampling only -- the EMSR study's Synthetic (I).
- blur_noise: isotropic Gaussian blur sigma in `blur_sigma` (HR px), Gaussian
  noise sigma in `noise_pre`, bicubic down, Gaussian noise sigma in
  `noise_post` -- Synthetic (II) (ranges [0, 3], [20, 40], [5, 15] there).
- pssr: Gaussian noise with local variance `noise_gain` x (HR blurred with
  `blur_sigma`), then bilinear down -- PSSR's EM "crappifier" (there: sigma 5,
  gain 0.5, plus salt-and-pepper that we leave out).
- blur_bilinear: Gaussian blur `blur_sigma` (3 HR px), then bilinear down --
  the WGAN-GP study.
A range [lo, hi] is drawn uniformly per section; a number is used as is.
Noise sigmas are on the 8-bit scale (sigma / 255 in our [0, 1] images); blur
sigmas are in paired-HR pixels. The result is clipped to [0, 1] once, at the end.

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
from skimage.util import random_noise
from tqdm import tqdm

from .config import checks, section
from .io import InputError, read_image, read_json, write_image
from .log import get_logger
from .registry import Registry
from .streams import derive_seed  # noqa: F401  (re-exported: the recipe seeds)

logger = logging.getLogger("srseg.degrade")

#: kind -> f(hr section, scale, recipe, rng, antialias) -> (lr section, drawn parameters). A new kind is one
#: registered function here plus its keys and defaults under `degradations` in schemas/config.schema.yaml.
KINDS: Registry = Registry("degradation kind")


def check_recipe(recipe: dict, name: str = "recipe") -> dict:
    """A recipe with its kind's defaults (schemas/config.schema.yaml) filled in; InputError names the bad key."""
    recipe = section("degradations.*", recipe, where=f"degradations.{name}")
    checks.check_recipe(name, recipe)
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
    return make(hr2d.astype(np.float32), scale, recipe, rng, bool(recipe["antialias"]))


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


@KINDS.register("pssr")
def _pssr(x, scale, recipe, rng, aa):
    drawn = {k: draw(recipe[k], rng) for k in ("blur_sigma", "noise_gain")}
    local_var = drawn["noise_gain"] * blur(np.clip(x, 0, 1), drawn["blur_sigma"]) + 1e-10
    # skimage's localvar mode is PSSR's own call; it clips to [0, 1].
    x = random_noise(np.clip(x, 0, 1), mode="localvar", local_vars=local_var, rng=rng).astype(np.float32)
    return resize_down(x, scale, "bilinear", aa), drawn


@KINDS.register("blur_bilinear")
def _blur_bilinear(x, scale, recipe, rng, aa):
    drawn = {"blur_sigma": draw(recipe["blur_sigma"], rng)}
    return resize_down(blur(x, drawn["blur_sigma"]), scale, "bilinear", aa), drawn


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
    hr_path, pairs_json, out_lr, recipe: dict, recipe_name: str, specimen: str, seed: int, log=None
) -> None:
    """The `degrade` rule: degrade the paired HR of one specimen with one recipe."""
    get_logger(logger.name, log)
    recipe = check_recipe(recipe, recipe_name)
    info = read_json(pairs_json)
    hr, _, dtype = read_image(hr_path)
    scale = int(info["scale"])
    if list(hr.shape) != list(info["hr_shape"]):
        raise InputError(f"{hr_path}: shape {list(hr.shape)} differs from pairs.json's {info['hr_shape']}; rerun pairs")
    s = derive_seed(seed, recipe_name, specimen)
    lr, drawn = degrade_volume(hr, scale, recipe, s, return_params=True)
    logger.info("degrade %s/%s: seed %d, LR %s, per-section parameters %s", recipe_name, specimen, s, lr.shape, drawn)
    write_image(out_lr, lr, info["lr_voxel_nm"], dtype)
