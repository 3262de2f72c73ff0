"""Segmentation scores against reference labels, all from one contingency table.

Conventions (DESIGN.md "Metric definitions"; checked against waterz.evaluate
and scikit-image in tests/test_seg_metrics.py):

- Only pixels where the truth is foreground (truth != 0) are scored: the
  contingency table n_ij counts pixels with truth label i != 0 and seg label j.
- Segmentation label 0 is an ordinary segment for VOI and adapted Rand (as in
  waterz.evaluate and skimage), so unlabelled seg pixels inside truth
  foreground count as one big merged segment. For F1 it means "no segment":
  it is never a predicted instance.
- VOI split = H(seg | truth), VOI merge = H(truth | seg), in bits (log2).
  Splitting a truth object holding a fraction p of the foreground into two
  equal halves adds exactly p bits of split. (waterz and skimage name them the
  same way; the sentence "split = H(truth | seg)" in the task brief had the
  two conditionals swapped.)
- Adapted Rand (SNEMI3D / CREMI, Arganda-Carreras et al. 2015): with pixel
  counts n_ij, truth sizes t_i, seg sizes s_j (over truth foreground),
  precision = sum n_ij^2 / sum s_j^2, recall = sum n_ij^2 / sum t_i^2,
  arand = 1 - 2 P R / (P + R). Squared counts include each pixel paired with
  itself, as in the SNEMI3D formula and waterz (waterz's rand_merge = P,
  rand_split = R). `self_pairs=False` counts distinct pixel pairs
  (n(n-1)) instead, which is skimage's convention; skimage also returns
  precision and recall swapped relative to its docstring
  (scikit-image issue #6485).
- Instance F1: truth and predicted segments (seg label != 0, restricted to
  truth foreground: a predicted segment counts if it overlaps truth
  foreground, and its size is its pixel count there) are matched one-to-one
  by the Hungarian algorithm (maximum total IoU) among pairs with
  IoU >= 0.5; precision = matched / n_pred, recall = matched / n_true,
  F1 = 2 matched / (n_true + n_pred).
- Degenerate inputs: a truth with no foreground gives NaN for every score
  (nothing to score; pandas means skip NaN) and n_true = n_pred = 0. An empty
  segmentation (all 0) over a non-empty truth is one merged segment for
  VOI/Rand (voi_split 0, voi_merge = H(truth)) and has n_pred = 0, so
  precision = recall = F1 = 0.

Each score column of the `seg_metrics` CSV is one metric registered below
(srseg.metrics.registry), scored on a `LabelPair` of one section (today; the
same functions score a 3D volume given a LabelPair of volumes).
"""

from __future__ import annotations

import sys
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.special import entr
from tqdm import tqdm

from ..config import section
from ..io import InputError, read_json, read_labels, write_csv
from ..log import get_logger
from .registry import SEGMENTATION, metric, of_kind, score

IOU_THRESHOLD = 0.5
REFERENCE_SOURCES = ("labels", "hr_segmentation")


def contingency_table(seg: np.ndarray, truth: np.ndarray):
    """Pixel counts of (truth label, seg label) pairs over truth foreground.

    Returns (table, truth_ids, seg_ids): `table` is a scipy CSR array of shape
    (len(truth_ids), len(seg_ids)) with table[i, j] = #pixels labelled
    truth_ids[i] (never 0) in truth and seg_ids[j] in seg. Labels are compacted
    with np.unique, so huge label IDs (waterz uint64) cost nothing.
    """
    seg = np.asarray(seg)
    truth = np.asarray(truth)
    if seg.shape != truth.shape:
        raise InputError(
            f"segmentation shape {seg.shape} differs from reference shape {truth.shape}; "
            "score a segmentation of the reference's image"
        )
    for name, arr in (("segmentation", seg), ("reference", truth)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise InputError(f"{name} labels have dtype {arr.dtype}; pass integer instance IDs")
    fg = truth.ravel() != 0
    truth_ids, t_idx = np.unique(truth.ravel()[fg], return_inverse=True)
    seg_ids, s_idx = np.unique(seg.ravel()[fg], return_inverse=True)
    # COO -> CSR sums the duplicate (i, j) entries: the contingency counts.
    table = sparse.coo_array(
        (np.ones(t_idx.size, dtype=np.float64), (t_idx.ravel(), s_idx.ravel())), shape=(truth_ids.size, seg_ids.size)
    ).tocsr()
    return table, truth_ids, seg_ids


def _marginals(table) -> tuple[np.ndarray, np.ndarray, float]:
    t = np.asarray(table.sum(axis=1)).ravel()
    s = np.asarray(table.sum(axis=0)).ravel()
    return t, s, float(t.sum())


def voi_from_table(table) -> tuple[float, float]:
    """(voi_split, voi_merge) = (H(seg | truth), H(truth | seg)) in bits; NaN for an empty table."""
    t, s, n = _marginals(table)
    if n == 0:
        return float("nan"), float("nan")

    def bits(counts):  # entropy of a count vector, in bits (scipy.special.entr is -x ln x)
        return float(entr(np.asarray(counts, dtype=np.float64) / n).sum() / np.log(2))

    h_joint = bits(table.data)
    return h_joint - bits(t), h_joint - bits(s)


def rand_from_table(table, self_pairs: bool = True) -> tuple[float, float, float]:
    """(arand, precision, recall) of the adapted Rand error; see the module docstring."""
    t, s, n = _marginals(table)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    d = table.data.astype(np.float64)
    sub = 0.0 if self_pairs else n  # distinct pairs: n(n-1) summed = sum n^2 - N
    joint = float(d @ d) - sub
    sum_t = float(t @ t) - sub
    sum_s = float(s @ s) - sub
    if sum_t <= 0 or sum_s <= 0:  # only reachable with self_pairs=False and all-singleton labels
        return float("nan"), float("nan"), float("nan")
    precision, recall = joint / sum_s, joint / sum_t
    return 1.0 - 2.0 * joint / (sum_s + sum_t), precision, recall


def _count_matches(rows: np.ndarray, cols: np.ndarray, iou: np.ndarray) -> int:
    """Size of the one-to-one assignment maximising total IoU among candidate pairs.

    The candidate graph (IoU >= 0.5) is almost a matching already, so it is cut
    into connected components (scipy) and the Hungarian algorithm runs only on
    components with more than one candidate pair; this keeps memory linear in
    the number of segments (a dense IoU matrix of a big volume would not fit).
    """
    if rows.size == 0:
        return 0
    _, r_idx = np.unique(rows, return_inverse=True)
    _, c_idx = np.unique(cols, return_inverse=True)
    n_r, n_c = int(r_idx.max()) + 1, int(c_idx.max()) + 1
    graph = sparse.coo_array((np.ones(rows.size), (r_idx, n_r + c_idx)), shape=(n_r + n_c, n_r + n_c))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[r_idx]
    edges_per_comp = np.bincount(edge_comp)
    single = edges_per_comp[edge_comp] == 1
    matched = int(single.sum())  # a lone candidate pair is its own optimal assignment
    for c in np.unique(edge_comp[~single]):
        sel = edge_comp == c
        _, ri = np.unique(r_idx[sel], return_inverse=True)
        _, ci = np.unique(c_idx[sel], return_inverse=True)
        weights = np.zeros((ri.max() + 1, ci.max() + 1))
        weights[ri, ci] = iou[sel]
        r, k = linear_sum_assignment(weights, maximize=True)
        matched += int(np.count_nonzero(weights[r, k] > 0))  # 0 marks a non-candidate pair
    return matched


def f1_from_table(table, seg_ids: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> dict:
    """Instance F1 / precision / recall / n_true / n_pred / n_matched (see the module docstring)."""
    t, s, n = _marginals(table)
    n_true = int(table.shape[0])
    pred_cols = np.flatnonzero(np.asarray(seg_ids) != 0)
    n_pred = int(pred_cols.size)
    if n_true == 0:
        return {
            "f1": float("nan"),
            "precision": float("nan"),
            "recall": float("nan"),
            "n_true": 0,
            "n_pred": n_pred,
            "n_matched": 0,
        }
    coo = table.tocoo()
    rows, cols, inter = coo.row, coo.col, coo.data.astype(np.float64)
    # IoU of every overlapping (truth, seg) pair: |A & B| / (|A| + |B| - |A & B|).
    iou = inter / (t[rows] + s[cols] - inter)
    cand = (iou >= iou_threshold) & (np.asarray(seg_ids)[cols] != 0)
    matched = _count_matches(rows[cand], cols[cand], iou[cand])
    precision = matched / n_pred if n_pred else 0.0
    recall = matched / n_true
    return {
        "f1": 2.0 * matched / (n_true + n_pred),
        "precision": precision,
        "recall": recall,
        "n_true": n_true,
        "n_pred": n_pred,
        "n_matched": matched,
    }


class LabelPair:
    """The scoring context of segmentation metrics: a segmentation and its reference labels
    (a 2D section or a 3D volume) and their contingency table; VOI, Rand and the instance
    matching are computed once, on first use."""

    def __init__(self, seg: np.ndarray, truth: np.ndarray):
        self.table, self.truth_ids, self.seg_ids = contingency_table(seg, truth)

    @cached_property
    def voi(self) -> tuple[float, float]:
        return voi_from_table(self.table)

    @cached_property
    def rand(self) -> tuple[float, float, float]:
        return rand_from_table(self.table)

    @cached_property
    def instances(self) -> dict:
        return f1_from_table(self.table, self.seg_ids)


# --------------------------------------------------------------------------- registered metrics (CSV column order)


@metric("voi_split", SEGMENTATION, "VOI split", unit="bits", higher_is_better=False)
def _voi_split(pair: LabelPair) -> float:
    return pair.voi[0]


@metric("voi_merge", SEGMENTATION, "VOI merge", unit="bits", higher_is_better=False)
def _voi_merge(pair: LabelPair) -> float:
    return pair.voi[1]


@metric("voi_sum", SEGMENTATION, "VOI sum", unit="bits", higher_is_better=False, tested=True, strategy=True)
def _voi_sum(pair: LabelPair) -> float:
    return pair.voi[0] + pair.voi[1]


@metric("arand", SEGMENTATION, "ARAND", higher_is_better=False)
def _arand(pair: LabelPair) -> float:
    return pair.rand[0]


@metric("arand_precision", SEGMENTATION, "Rand precision", summary=False)
def _arand_precision(pair: LabelPair) -> float:
    return pair.rand[1]


@metric("arand_recall", SEGMENTATION, "Rand recall", summary=False)
def _arand_recall(pair: LabelPair) -> float:
    return pair.rand[2]


@metric("f1", SEGMENTATION, "F1", tested=True, strategy=True, at_fixed_threshold=True)
def _f1(pair: LabelPair) -> float:
    return pair.instances["f1"]


@metric("precision", SEGMENTATION, "precision", summary=False)
def _precision(pair: LabelPair) -> float:
    return pair.instances["precision"]


@metric("recall", SEGMENTATION, "recall", summary=False)
def _recall(pair: LabelPair) -> float:
    return pair.instances["recall"]


@metric("n_true", SEGMENTATION, "true segments", higher_is_better=None, decimals=0, summary=False)
def _n_true(pair: LabelPair) -> int:
    return pair.instances["n_true"]


@metric("n_pred", SEGMENTATION, "predicted segments", higher_is_better=None, decimals=0, summary=False)
def _n_pred(pair: LabelPair) -> int:
    return pair.instances["n_pred"]


def segmentation_scores(seg: np.ndarray, truth: np.ndarray) -> dict:
    """Every registered segmentation metric of `seg` against `truth` (2D or 3D, same shape): {name: value}.

    Built in: voi_split, voi_merge, voi_sum (bits), arand, arand_precision, arand_recall,
    f1, precision, recall, n_true, n_pred. Truth label 0 is ignored.
    """
    return score(SEGMENTATION, LabelPair(seg, truth))


def _crop_yx(vol: np.ndarray, border: int) -> np.ndarray:
    return vol[..., border : vol.shape[-2] - border, border : vol.shape[-1] - border] if border else vol


def _read_key(path, key: str):
    meta = read_json(path)
    if key not in meta:
        raise InputError(f"{path}: missing key '{key}'; rerun the rule that writes this file")
    return meta[key]


def run_seg_metrics(
    segmentations: list[str],
    reference: str,
    reference_json: str,
    threshold_json: str,
    out_csv: str,
    segmentation: dict,
    metrics: dict | None,
    model: str,
    data: str,
    fold: str,
    specimen: str,
    log: str | None = None,
) -> pd.DataFrame:
    """Score each section of each thresholded segmentation against the reference labels.

    `segmentations[k]` is the segmentation at `segmentation["thresholds"][k]`; `metrics` is
    config['metrics'] (missing keys take the schema's defaults). Writes `out_csv` atomically
    (one row per section and threshold, a column per registered segmentation metric) and returns it.
    """
    segmentation = section("segmentation", segmentation)
    thresholds = [float(t) for t in segmentation["thresholds"]]
    if len(thresholds) != len(segmentations):
        raise ValueError(f"{len(segmentations)} segmentations for {len(thresholds)} thresholds")
    fixed = segmentation["fixed_threshold"]
    border = section("metrics", metrics)["border_crop"]
    logger = get_logger(__name__, log)
    source = _read_key(reference_json, "source")
    if source not in REFERENCE_SOURCES:
        raise InputError(f"{reference_json}: 'source' is {source!r}; it must be one of {REFERENCE_SOURCES}")
    best = float(_read_key(threshold_json, "best_threshold"))
    truth, _ = read_labels(reference)
    if min(truth.shape[-2:]) - 2 * border < 1:
        raise InputError(
            f"metrics.border_crop {border} leaves nothing of the {truth.shape[-2:]} sections of "
            f"{reference}; lower metrics.border_crop"
        )
    full_shape = truth.shape
    truth = _crop_yx(truth, border)
    ids = {"model": model, "data": data, "fold": fold, "specimen": specimen}

    rows = []
    bar = tqdm(
        total=len(thresholds) * truth.shape[0], file=sys.stderr, desc=f"seg metrics {model}/{data}/{fold}/{specimen}"
    )
    for thr, path in zip(thresholds, segmentations):
        seg, _ = read_labels(path)
        if seg.shape != full_shape:
            raise InputError(
                f"{path}: shape {seg.shape} differs from the reference {reference} shape {full_shape}; "
                "segment the image that belongs to this reference"
            )
        seg = _crop_yx(seg, border)
        for z in range(truth.shape[0]):  # per section; a 3D column set would score LabelPair(seg, truth) once
            rows.append(
                {
                    **ids,
                    "section": z,
                    "threshold": thr,
                    **score(SEGMENTATION, LabelPair(seg[z], truth[z])),
                    "reference": source,
                    "is_best": bool(np.isclose(thr, best)),
                    "is_fixed": bool(fixed is not None and np.isclose(thr, float(fixed))),
                }
            )
            bar.update()
    bar.close()
    table = pd.DataFrame(rows).sort_values(["section", "threshold"], kind="stable").reset_index(drop=True)
    write_csv(out_csv, table)
    summary = table.groupby("threshold")[[m.name for m in of_kind(SEGMENTATION) if m.summary]].mean()
    logger.info("%s: mean per-section scores by threshold\n%s", out_csv, summary.to_string())
    return table
