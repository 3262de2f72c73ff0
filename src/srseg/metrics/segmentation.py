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

Scoring unit (DESIGN.md: "scored on the volume when sections are contiguous"):

- `scores_in_3d(seg_dim, labels)` is the one rule, used by `seg_metrics` and by the
  threshold choice (srseg.segment.choose_threshold): the volume is scored at once when
  the segmentation links sections (affinity.dim 3) or the reference labels do (an ID
  that occurs in two or more sections, `labels_are_3d`). A 2D segmentation (IDs unique
  per section) scored against 3D labels then shows its z-splits; that is the point.
  Otherwise each section is scored on its own and the unit is the mean over sections.
- The `seg_metrics` CSV has one row per (section, threshold): the registered metrics of
  that section (`voi_sum`, ...), and the volume's scores at that threshold as a second
  column set `<metric>_3d` (`voi_sum_3d`, ...), repeated on each of the volume's section
  rows (count it once per specimen and threshold) and NaN where 3D does not apply;
  `in_3d` says which.
- 3D scores need no registration: the same functions score a `LabelPair` of volumes.
  The contingency table is accumulated section by section, so a large volume costs
  memory in the number of (truth, seg) overlaps, not in voxels.

Each score column of the `seg_metrics` CSV is one metric registered below
(srseg.metrics.registry), scored on a `LabelPair`.
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


def _section_pairs(seg2d: np.ndarray, truth2d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth label, seg label, pixel count) of every overlap in one section's truth foreground."""
    fg = truth2d != 0
    t_ids, t_idx = np.unique(truth2d[fg], return_inverse=True)
    s_ids, s_idx = np.unique(seg2d[fg], return_inverse=True)
    code, counts = np.unique(t_idx.astype(np.int64) * max(s_ids.size, 1) + s_idx, return_counts=True)
    return t_ids[code // max(s_ids.size, 1)], s_ids[code % max(s_ids.size, 1)], counts


def contingency_table(seg: np.ndarray, truth: np.ndarray):
    """Pixel counts of (truth label, seg label) pairs over truth foreground.

    Returns (table, truth_ids, seg_ids): `table` is a scipy CSR array of shape
    (len(truth_ids), len(seg_ids)) with table[i, j] = #pixels labelled
    truth_ids[i] (never 0) in truth and seg_ids[j] in seg. Labels are compacted
    with np.unique, so huge label IDs (waterz uint64) cost nothing. A volume is
    accumulated section by section: memory grows with the number of overlaps.
    """
    seg = np.asarray(seg)
    truth = np.asarray(truth)
    if seg.shape != truth.shape:
        raise InputError(
            f"segmentation shape {seg.shape} differs from reference shape {truth.shape}; "
            "score a segmentation of the reference's image"
        )
    chunks = [(seg, truth)] if truth.ndim < 3 else ((seg[z], truth[z]) for z in range(truth.shape[0]))
    return contingency_table_from_blocks(chunks)


def contingency_table_from_blocks(blocks):
    """`contingency_table` of a volume given as (seg block, truth block) pairs of any shapes (same per pair).

    The blocks partition the volume (e.g. sections or chunks read one by one from OME-Zarr), so
    the counts, and every score from them, equal those of the whole volume in memory; memory
    holds one block and the distinct overlaps, never the volume.
    """
    parts = []
    for seg, truth in blocks:
        seg, truth = np.asarray(seg), np.asarray(truth)
        if seg.shape != truth.shape:
            raise InputError(
                f"segmentation block shape {seg.shape} differs from the reference block {truth.shape}; "
                "score a segmentation of the reference's image"
            )
        for name, arr in (("segmentation", seg), ("reference", truth)):
            if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
                raise InputError(f"{name} labels have dtype {arr.dtype}; pass integer instance IDs")
        parts.append(_section_pairs(seg, truth))
        if len(parts) > 64:  # fold the overlaps found so far into one: memory stays with the distinct pairs
            parts = [_merge_pairs(parts)]
    t_lab, s_lab, counts = (
        _merge_pairs(parts) if parts else (np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0))
    )
    truth_ids, t_idx = np.unique(t_lab, return_inverse=True)
    seg_ids, s_idx = np.unique(s_lab, return_inverse=True)
    # COO -> CSR sums the duplicate (i, j) entries (the same overlap in several blocks).
    table = sparse.coo_array(
        (counts.astype(np.float64), (t_idx.ravel(), s_idx.ravel())), shape=(truth_ids.size, seg_ids.size)
    ).tocsr()
    return table, truth_ids, seg_ids


def _merge_pairs(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth label, seg label, count) triples of several blocks, the same pair's counts summed (integers: exact)."""
    t = np.concatenate([p[0] for p in parts])
    s = np.concatenate([p[1] for p in parts])
    c = np.concatenate([p[2] for p in parts]).astype(np.int64)
    pairs, inverse = np.unique(np.stack([t.astype(np.uint64), s.astype(np.uint64)]), axis=1, return_inverse=True)
    return pairs[0], pairs[1], np.bincount(inverse.ravel(), weights=c).astype(np.int64)


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

    def __init__(self, seg: np.ndarray | None, truth: np.ndarray | None, blocks=None):
        """A pair of label arrays, or `blocks`: (seg block, truth block) pairs that partition a volume."""
        if blocks is not None:
            self.table, self.truth_ids, self.seg_ids = contingency_table_from_blocks(blocks)
        else:
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


VOLUME_SUFFIX = "_3d"  # the seg_metrics column set of whole-volume scores: voi_sum_3d, ...


def labels_are_3d(labels: np.ndarray) -> bool:
    """True when some label ID (not 0) occurs in two or more sections of a (z, y, x) volume.

    Such labels link sections: one object through z. Per-section labels (IDs unique per
    section, as 2D segmentations and `labels_connectivity: 2d` cell masks have) are not 3D.
    Instance labels whose IDs restart in every section read as 3D: make them unique first.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.shape[0] < 2:
        return False
    per_section = [u[u != 0] for u in (np.unique(labels[z]) for z in range(labels.shape[0]))]
    ids = np.concatenate(per_section)
    return bool(np.unique(ids).size < ids.size)


def scores_in_3d(seg_dim: int, labels) -> bool:
    """The scoring unit, one rule for seg_metrics and the threshold choice: True = the volume at once.

    3D when the segmentation links sections (`seg_dim` 3, segment.json's `dim`) or the
    reference labels do (`labels`: a label volume, tested with `labels_are_3d`, or that
    answer as a bool); else per section.
    """
    labels_3d = labels if isinstance(labels, (bool, np.bool_)) else labels_are_3d(labels)
    return int(seg_dim) == 3 or bool(labels_3d)


def section_mean_scores(seg: np.ndarray, truth: np.ndarray) -> dict:
    """Every registered segmentation metric per section of a (z, y, x) pair, averaged over sections.

    Sections without truth foreground (all NaN) are skipped; the per-section unit of the tables.
    """
    per = [score(SEGMENTATION, LabelPair(seg[z], truth[z])) for z in range(truth.shape[0])]
    out = {}
    for name in per[0] if per else []:
        values = np.asarray([p[name] for p in per], dtype=np.float64)
        out[name] = float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else float("nan")
    return out


def unit_scores(seg: np.ndarray, truth: np.ndarray, in_3d: bool) -> dict:
    """Scores in the reporting unit: of the whole volume (`in_3d`), else the mean over its sections."""
    return segmentation_scores(seg, truth) if in_3d else section_mean_scores(seg, truth)


def _crop_yx(vol: np.ndarray, border: int) -> np.ndarray:
    return vol[..., border : vol.shape[-2] - border, border : vol.shape[-1] - border] if border else vol


def _read_key(path, key: str):
    meta = read_json(path)
    if key not in meta:
        raise InputError(f"{path}: missing key '{key}'; rerun the rule that writes this file")
    return meta[key]


def _segmentation_dim(segment_json, segmentation_paths: list[str]) -> int:
    """segment.json's `dim`; without a segment.json, 3 if the first segmentation's IDs link sections."""
    if segment_json is not None:
        dim = int(_read_key(segment_json, "dim"))
        if dim not in (2, 3):
            raise InputError(f"{segment_json}: 'dim' is {dim}; it must be 2 or 3 (rerun the segment rule)")
        return dim
    return 3 if labels_are_3d(read_labels(segmentation_paths[0])[0]) else 2


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
    segment_json: str | None = None,
    hr_threshold_json: str | None = None,
) -> pd.DataFrame:
    """Score each thresholded segmentation against the reference labels: per section and, where 3D applies, whole.

    `threshold_json` holds the row's own validation-chosen threshold (`is_best`);
    `hr_threshold_json` the one chosen on real HR, the reported alternative (`is_hr_best`;
    None: the same file).

    `segmentations[k]` is the segmentation at `segmentation["thresholds"][k]`; `metrics` is
    config['metrics'] (missing keys take the schema's defaults). `segment_json` is the segment
    rule's segment.json (its `dim`; without it the segmentation's own IDs decide). The volume
    is scored at once when `scores_in_3d(dim, reference labels)`. Writes `out_csv` atomically
    (one row per section and threshold: a column per registered segmentation metric of that
    section, the `<metric>_3d` volume scores of that threshold repeated, NaN without 3D, and
    `in_3d`) and returns it.
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
    hr_best = float(_read_key(hr_threshold_json or threshold_json, "best_threshold"))
    truth, _ = read_labels(reference)
    if min(truth.shape[-2:]) - 2 * border < 1:
        raise InputError(
            f"metrics.border_crop {border} leaves nothing of the {truth.shape[-2:]} sections of "
            f"{reference}; lower metrics.border_crop"
        )
    full_shape = truth.shape
    in_3d = scores_in_3d(_segmentation_dim(segment_json, segmentations), truth)
    truth = _crop_yx(truth, border)
    ids = {"model": model, "data": data, "fold": fold, "specimen": specimen}
    names = [m.name for m in of_kind(SEGMENTATION)]
    no_volume = {f"{n}{VOLUME_SUFFIX}": float("nan") for n in names}

    rows = []
    bar = tqdm(
        total=len(thresholds) * (truth.shape[0] + in_3d),
        file=sys.stderr,
        desc=f"seg metrics {model}/{data}/{fold}/{specimen}",
    )
    for thr, path in zip(thresholds, segmentations):
        seg, _ = read_labels(path)
        if seg.shape != full_shape:
            raise InputError(
                f"{path}: shape {seg.shape} differs from the reference {reference} shape {full_shape}; "
                "segment the image that belongs to this reference"
            )
        seg = _crop_yx(seg, border)
        volume = no_volume
        if in_3d:
            volume = {f"{k}{VOLUME_SUFFIX}": v for k, v in score(SEGMENTATION, LabelPair(seg, truth)).items()}
            bar.update()
        for z in range(truth.shape[0]):
            rows.append(
                {
                    **ids,
                    "section": z,
                    "threshold": thr,
                    **score(SEGMENTATION, LabelPair(seg[z], truth[z])),
                    **volume,
                    "reference": source,
                    "in_3d": in_3d,
                    "is_best": bool(np.isclose(thr, best)),
                    "is_hr_best": bool(np.isclose(thr, hr_best)),
                    "is_fixed": bool(fixed is not None and np.isclose(thr, float(fixed))),
                }
            )
            bar.update()
    bar.close()
    table = pd.DataFrame(rows).sort_values(["section", "threshold"], kind="stable").reset_index(drop=True)
    write_csv(out_csv, table)
    summary_names = [m.name for m in of_kind(SEGMENTATION) if m.summary]
    summary = table.groupby("threshold")[summary_names].mean()
    logger.info("%s: mean per-section scores by threshold\n%s", out_csv, summary.to_string())
    if in_3d:
        volume_names = [f"{n}{VOLUME_SUFFIX}" for n in summary_names]
        logger.info("%s: 3D scores by threshold\n%s", out_csv, table.groupby("threshold")[volume_names].first())
    else:
        logger.info("%s: sections scored on their own (2D segmentation, per-section reference labels)", out_csv)
    return table
