"""Summary statistics over test sections: mean ± std, bootstrap CI, paired tests.

The unit of observation is one test section, identified by (fold, specimen,
section) and pooled over folds; for whole-volume (3D) segmentation scores it is one
test volume, (fold, specimen). Two caveats a reader of the tables should know:
sections of one specimen are not independent (neighbouring sections look alike),
so the bootstrap intervals and Wilcoxon p-values are optimistic; and with
leave-one-specimen-out every specimen is tested once, so "pooled over folds"
means pooled over specimens.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

PAIR_KEYS = ["fold", "specimen", "section"]


def describe(values, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean, sample std (ddof=1), n and a percentile-bootstrap CI of the mean.

    NaNs are dropped first. With n == 0 everything is NaN; with n == 1 the std
    and the CI are NaN (a single section says nothing about spread). The
    percentile method (not BCa) is used because BCa is undefined when all
    values are equal, which happens for perfect baselines (e.g. the HR row).
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    out = {"mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    if n == 0:
        return out
    out["mean"] = float(np.mean(x))
    if n < 2:
        return out
    out["std"] = float(np.std(x, ddof=1))
    out["ci_low"], out["ci_high"] = bootstrap_ci(x, n_resamples, confidence, seed)
    return out


def bootstrap_ci(x, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `x` (>= 2 finite values), seeded."""
    x = np.asarray(x, dtype=float)
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])  # every resample has the same mean
    res = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=int(n_resamples),
        confidence_level=float(confidence),
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_wilcoxon(x, y, min_pairs: int = 2) -> dict:
    """Wilcoxon signed-rank test of paired samples x vs y (two-sided).

    Pairs with a NaN on either side are dropped. p is NaN (not 1.0, which is
    what scipy returns with a warning) when fewer than `min_pairs` pairs remain
    or when every difference is zero: the test has no information then.
    `median_diff` is the median of x - y.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    out = {
        "n_pairs": int(d.size),
        "median_diff": float(np.median(d)) if d.size else math.nan,
        "statistic": math.nan,
        "p_value": math.nan,
    }
    if d.size < max(min_pairs, 1) or np.all(d == 0):
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero differences among non-zero ones are fine
        res = stats.wilcoxon(x[keep], y[keep], zero_method="wilcox", alternative="two-sided")
    out["statistic"] = float(res.statistic)
    out["p_value"] = float(res.pvalue)
    return out


def paired_against(
    sections: pd.DataFrame,
    metric: str,
    model: str,
    data: str,
    baseline: tuple[str, str] = ("bicubic", "none"),
    min_pairs: int = 2,
    keys: list[str] | None = None,
) -> dict:
    """Wilcoxon of one (model, data) row against the baseline row, paired by section.

    `sections` has one row per (model, data, fold, specimen, section) and a
    column per metric; pairs are matched on `keys`, (fold, specimen, section) by
    default; (fold, specimen) for whole-volume (3D) scores, one row per volume.
    """
    keys = PAIR_KEYS if keys is None else list(keys)

    def pick(m, d):
        rows = sections[(sections["model"] == m) & (sections["data"] == d)]
        return rows[keys + [metric]] if metric in rows else rows[keys].assign(**{metric: np.nan})

    paired = pick(model, data).merge(pick(*baseline), on=keys, suffixes=("", "_base"))
    return paired_wilcoxon(paired[metric].to_numpy(), paired[f"{metric}_base"].to_numpy(), min_pairs)


def bh_qvalues(p_values) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values; NaNs stay NaN and are not counted."""
    p = np.asarray(p_values, dtype=float)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q


def spearman(x, y) -> float:
    """Spearman rank correlation of finite pairs; NaN with fewer than 3 pairs or no spread."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return math.nan
    return float(stats.spearmanr(x[keep], y[keep]).statistic)
