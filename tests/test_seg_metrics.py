"""Segmentation metrics: agreement with waterz and scikit-image, closed forms, edge cases, the rule's entry point."""

import numpy as np
import pandas as pd
import pytest
import waterz
from scipy import ndimage
from skimage.metrics import adapted_rand_error, variation_of_information

from srseg.io import InputError, write_json, write_labels
from srseg.metrics import (
    contingency_table,
    labels_are_3d,
    rand_from_table,
    run_seg_metrics,
    scores_in_3d,
    section_mean_scores,
    segmentation_scores,
)

SEG_NAMES = [
    "voi_split",
    "voi_merge",
    "voi_sum",
    "arand",
    "arand_precision",
    "arand_recall",
    "f1",
    "precision",
    "recall",
    "n_true",
    "n_pred",
]


def _random_pair(seed, shape=(3, 24, 24)):
    """Blocky random truth (with background 0) and an unrelated-but-overlapping segmentation."""
    rng = np.random.default_rng(seed)
    truth = np.kron(rng.integers(0, 6, (shape[0], shape[1] // 4, shape[2] // 4)), np.ones((1, 4, 4)))
    seg = np.kron(rng.integers(0, 5, (shape[0], shape[1] // 3, shape[2] // 3)), np.ones((1, 3, 3)))
    seg[rng.random(shape) < 0.1] = 7  # some salt so the segments do not align with the truth blocks
    return seg.astype(np.uint64), truth.astype(np.uint64)


def _grid_truth(n=4, side=8, sections=1):
    """n x n square objects of side `side`, labels 1..n*n."""
    blocks = np.arange(1, n * n + 1).reshape(n, n)
    return np.stack([np.kron(blocks, np.ones((side, side), dtype=np.int64))] * sections)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voi_and_rand_equal_waterz(seed, capsys):
    seg, truth = _random_pair(seed)
    scores = segmentation_scores(seg, truth)
    ref = waterz.evaluate(np.ascontiguousarray(seg), np.ascontiguousarray(truth))
    capsys.readouterr()  # waterz prints its scores to stdout
    # waterz: voi_split = H(seg | gt), voi_merge = H(gt | seg), bits, gt 0 ignored
    assert scores["voi_split"] == pytest.approx(ref["voi_split"], abs=1e-9)
    assert scores["voi_merge"] == pytest.approx(ref["voi_merge"], abs=1e-9)
    # waterz: rand_split = sum n_ij^2 / sum t_i^2 (our recall), rand_merge = ... / sum s_j^2 (our precision)
    assert scores["arand_recall"] == pytest.approx(ref["rand_split"], abs=1e-9)
    assert scores["arand_precision"] == pytest.approx(ref["rand_merge"], abs=1e-9)
    p, r = ref["rand_merge"], ref["rand_split"]
    assert scores["arand"] == pytest.approx(1 - 2 * p * r / (p + r), abs=1e-9)


@pytest.mark.parametrize("seed", [3, 4])
def test_voi_and_rand_equal_skimage_after_matching_conventions(seed):
    seg, truth = _random_pair(seed)
    scores = segmentation_scores(seg, truth)
    # skimage returns [H(image1 | image0), H(image0 | image1)] in bits = [split, merge] for (truth, seg)
    split, merge = variation_of_information(truth, seg, ignore_labels=[0])
    assert scores["voi_split"] == pytest.approx(split, abs=1e-9)
    assert scores["voi_merge"] == pytest.approx(merge, abs=1e-9)
    # skimage counts distinct pixel pairs (n(n-1)) and returns precision / recall swapped (scikit-image #6485)
    are, sk_prec, sk_rec = adapted_rand_error(truth, seg, ignore_labels=(0,))
    arand, precision, recall = rand_from_table(contingency_table(seg, truth)[0], self_pairs=False)
    assert arand == pytest.approx(are, abs=1e-9)
    assert precision == pytest.approx(sk_rec, abs=1e-9)
    assert recall == pytest.approx(sk_prec, abs=1e-9)


def test_perfect_segmentation_scores_zero_errors_and_f1_one():
    truth = _grid_truth(sections=2)
    seg = truth * 7 + 1000  # any relabelling is still perfect
    scores = segmentation_scores(seg, truth)
    assert scores["voi_split"] == pytest.approx(0, abs=1e-12)
    assert scores["voi_merge"] == pytest.approx(0, abs=1e-12)
    assert scores["arand"] == pytest.approx(0, abs=1e-12)
    assert scores["f1"] == scores["precision"] == scores["recall"] == 1.0
    assert scores["n_true"] == scores["n_pred"] == 16


def test_splitting_one_object_in_halves_costs_its_foreground_fraction_in_bits():
    truth = _grid_truth()[0]
    truth[:8, :] = 0  # a background band: must not change anything
    truth[8:16, 0:16] = 99  # object 99: 128 of the 768 foreground pixels -> p = 1/6
    seg = truth.copy()
    seg[8:16, 0:8] = 500  # its two halves become two segments
    p = np.count_nonzero(truth == 99) / np.count_nonzero(truth)
    scores = segmentation_scores(seg, truth)
    assert p == pytest.approx(1 / 6)
    assert scores["voi_split"] == pytest.approx(p * 1.0, abs=1e-12)
    assert scores["voi_merge"] == pytest.approx(0, abs=1e-12)
    assert scores["arand_precision"] == pytest.approx(1.0)  # no merge
    assert scores["arand_recall"] < 1.0
    # each half has IoU exactly 0.5 with object 99: one of them matches, the other is a false positive
    n_true = len(np.unique(truth)) - 1
    assert (scores["n_true"], scores["n_pred"]) == (n_true, n_true + 1)
    assert scores["recall"] == 1.0 and scores["precision"] == pytest.approx(n_true / (n_true + 1))


def test_merging_two_objects_is_a_merge_error():
    truth = _grid_truth()[0]
    seg = truth.copy()
    seg[seg == 2] = 1  # objects 1 and 2 (64 px each) merged
    scores = segmentation_scores(seg, truth)
    assert scores["voi_split"] == pytest.approx(0, abs=1e-12)
    assert scores["voi_merge"] == pytest.approx(128 / 1024, abs=1e-12)
    # IoU of the merged segment with either object is exactly 0.5: one match, one missed object
    assert scores["recall"] == pytest.approx(15 / 16) and scores["precision"] == 1.0


def test_f1_matches_only_at_iou_at_least_one_half():
    truth = np.zeros((1, 10, 40), dtype=np.int64)
    truth[0, :, 0:10], truth[0, :, 20:30] = 1, 2
    seg = np.zeros_like(truth)
    seg[0, :, 0:7] = 5  # IoU 0.7 with object 1
    seg[0, :, 20:24] = 6  # IoU 0.4 with object 2
    scores = segmentation_scores(seg, truth)
    assert (scores["n_true"], scores["n_pred"]) == (2, 2)
    assert scores["precision"] == scores["recall"] == scores["f1"] == 0.5


def test_pixels_outside_truth_foreground_do_not_count():
    seg, truth = _random_pair(5)
    other = seg.copy()
    rng = np.random.default_rng(0)
    bg = truth == 0
    other[bg] = rng.integers(100, 200, size=int(bg.sum()))
    a, b = segmentation_scores(seg, truth), segmentation_scores(other, truth)
    assert a == pytest.approx(b)


def test_empty_segmentation_and_empty_truth_are_well_defined():
    truth = _grid_truth(n=2)  # 4 equal objects -> H(truth) = 2 bits
    empty = segmentation_scores(np.zeros_like(truth), truth)
    assert empty["voi_split"] == pytest.approx(0, abs=1e-12)
    assert empty["voi_merge"] == pytest.approx(2.0)
    assert empty["arand_recall"] == 1.0 and empty["arand_precision"] == pytest.approx(0.25)
    assert (empty["n_pred"], empty["f1"], empty["precision"], empty["recall"]) == (0, 0.0, 0.0, 0.0)
    nothing = segmentation_scores(truth, np.zeros_like(truth))
    assert (nothing["n_true"], nothing["n_pred"]) == (0, 0)
    for key in ("voi_split", "voi_merge", "voi_sum", "arand", "f1", "precision", "recall"):
        assert np.isnan(nothing[key]), key


def test_two_d_sections_and_shape_mismatch():
    seg, truth = _random_pair(6)
    assert segmentation_scores(seg[1], truth[1])["n_true"] > 0
    with pytest.raises(InputError, match="shape"):
        segmentation_scores(seg[:, :20], truth)
    with pytest.raises(InputError, match="integer"):
        segmentation_scores(seg.astype(np.float32), truth)


def _write_inputs(tmp_path, truth, segs, source="labels", best=0.5, dim=None):
    voxel = (50.0, 10.0, 10.0)
    paths = []
    for thr, seg in segs.items():
        paths.append(str(tmp_path / f"t{thr}.tif"))
        write_labels(paths[-1], seg, voxel)
    write_labels(tmp_path / "ref.tif", truth, voxel)
    write_json(tmp_path / "ref.json", {"source": source})
    write_json(tmp_path / "threshold.json", {"best_threshold": best})
    if dim is not None:
        write_json(tmp_path / "segment.json", {"dim": dim})
    return paths


def test_run_seg_metrics_writes_one_row_per_section_and_threshold(tmp_path):
    truth = _grid_truth(sections=3)
    merged = truth.copy()
    merged[merged == 2] = 1
    paths = _write_inputs(tmp_path, truth, {0.3: truth, 0.7: merged}, source="hr_segmentation", best=0.3)
    out = tmp_path / "seg" / "spec.csv"
    run_seg_metrics(
        paths,
        str(tmp_path / "ref.tif"),
        str(tmp_path / "ref.json"),
        str(tmp_path / "threshold.json"),
        str(out),
        {"thresholds": [0.3, 0.7], "fixed_threshold": 0.7},
        {"border_crop": 2},
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
        "threshold",
        *SEG_NAMES,
        *[f"{n}_3d" for n in SEG_NAMES],  # the whole volume at that threshold (the truth links sections)
        "reference",
        "in_3d",
        "is_best",
        "is_hr_best",
        "is_fixed",
    ]
    assert len(table) == 3 * 2
    assert (table["reference"] == "hr_segmentation").all() and table["in_3d"].all()
    best = table[table["threshold"] == 0.3]
    assert best["is_best"].all() and not best["is_fixed"].any()
    assert (best["voi_sum"] == 0).all() and (best["f1"] == 1).all()
    assert (best["voi_sum_3d"] == 0).all() and (best["f1_3d"] == 1).all()
    fixed = table[table["threshold"] == 0.7]
    assert fixed["is_fixed"].all() and (fixed["voi_merge"] > 0).all()
    # one volume score per threshold, repeated on its section rows; the same merge in every section
    assert fixed["voi_merge_3d"].nunique() == 1
    assert fixed["voi_merge_3d"].iloc[0] == pytest.approx(fixed["voi_merge"].iloc[0])


def _linked_truth(sections=4):
    """4 x 4 grid objects that run through every section (3D labels, IDs 1..16)."""
    return _grid_truth(sections=sections)


def _run(tmp_path, truth, segs, dim=None, border=0):
    paths = _write_inputs(tmp_path, truth, segs, dim=dim, best=min(segs))
    out = tmp_path / "out.csv"
    run_seg_metrics(
        paths,
        str(tmp_path / "ref.tif"),
        str(tmp_path / "ref.json"),
        str(tmp_path / "threshold.json"),
        str(out),
        {"thresholds": list(segs), "fixed_threshold": None},
        {"border_crop": border},
        "edsr",
        "real",
        "alpha",
        "alpha",
        segment_json=None if dim is None else str(tmp_path / "segment.json"),
    )
    return pd.read_csv(out)


def test_broken_z_linking_raises_3d_voi_and_leaves_per_section_voi_unchanged(tmp_path):
    truth = _linked_truth(sections=4)
    broken = segment_per_section(truth)  # every section right, nothing linked through z
    table = _run(tmp_path, truth, {0.3: truth, 0.7: broken}, dim=3)
    linked, unlinked = table[table["threshold"] == 0.3], table[table["threshold"] == 0.7]
    for name in ("voi_split", "voi_merge", "voi_sum", "arand", "f1"):  # per section: no difference at all
        np.testing.assert_allclose(unlinked[name].to_numpy(), linked[name].to_numpy(), atol=1e-12)
    assert (linked["voi_sum"] == 0).all() and (linked["voi_sum_3d"] == 0).all()
    # each object cut into 4 equal pieces through z: H(seg | truth) = log2(4) = 2 bits, no merge
    assert unlinked["voi_split_3d"].iloc[0] == pytest.approx(2.0, abs=1e-12)
    assert unlinked["voi_merge_3d"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert unlinked["arand_3d"].iloc[0] > 0.5 and unlinked["f1_3d"].iloc[0] == 0.0  # IoU 1/4 < 0.5: no match
    assert table["in_3d"].all()


def test_a_z_merge_is_visible_only_in_3d(tmp_path):
    truth = _linked_truth(sections=4)
    truth[2:] += 100  # other objects in sections 2-3, at the same places
    merged = truth % 100  # one segment continues through all four sections
    table = _run(tmp_path, truth, {0.5: merged}, dim=3)
    assert (table["voi_sum"] == 0).all()  # every section on its own is perfect
    assert table["voi_merge_3d"].iloc[0] == pytest.approx(1.0, abs=1e-12)  # two equal objects per segment
    assert table["voi_split_3d"].iloc[0] == pytest.approx(0.0, abs=1e-12)


def segment_per_section(labels):
    """IDs made unique per section: what a 2D segmentation of perfectly segmented sections looks like."""
    out = np.zeros(labels.shape, np.uint64)
    for z in range(labels.shape[0]):
        out[z] = np.where(labels[z] > 0, labels[z] + 1000 * (z + 1), 0)
    return out


def test_a_2d_segmentation_against_3d_labels_is_scored_in_3d(tmp_path):
    """segment.json dim 2, but the reference links sections: its z-splits show in the 3D columns."""
    truth = _linked_truth(sections=2)
    table = _run(tmp_path, truth, {0.5: segment_per_section(truth)}, dim=2)
    assert table["in_3d"].all() and (table["voi_sum"] == 0).all()
    assert table["voi_split_3d"].iloc[0] == pytest.approx(1.0, abs=1e-12)


def test_per_section_labels_and_a_2d_segmentation_are_scored_per_section_only(tmp_path):
    truth = segment_per_section(_linked_truth(sections=3))  # 2D reference (e.g. HR segmented in 2D)
    table = _run(tmp_path, truth, {0.5: truth}, dim=2)
    assert not table["in_3d"].any()
    assert table[[f"{n}_3d" for n in SEG_NAMES]].isna().all().all()
    assert (table["voi_sum"] == 0).all()
    # without a segment.json the segmentation's own IDs decide: linked IDs -> 3D
    (tmp_path / "segment.json").unlink()
    linked = _run(tmp_path, truth, {0.5: truth % 1000}, dim=None)
    assert linked["in_3d"].all() and linked["voi_merge_3d"].iloc[0] > 0
    write_json(tmp_path / "segment.json", {"device": "cpu"})  # a segment.json from before `dim` was written
    with pytest.raises(InputError, match="missing key 'dim'"):
        run_seg_metrics(
            [str(tmp_path / "t0.5.tif")],
            str(tmp_path / "ref.tif"),
            str(tmp_path / "ref.json"),
            str(tmp_path / "threshold.json"),
            str(tmp_path / "x.csv"),
            {"thresholds": [0.5]},
            {"border_crop": 0},
            "edsr",
            "real",
            "a",
            "a",
            segment_json=str(tmp_path / "segment.json"),
        )


def test_labels_are_3d_and_the_scoring_unit():
    truth = _linked_truth(sections=2)
    assert labels_are_3d(truth) and not labels_are_3d(segment_per_section(truth))
    assert not labels_are_3d(truth[:1]) and not labels_are_3d(truth[0])
    background_only_shared = segment_per_section(truth)  # label 0 in every section does not link them
    assert not labels_are_3d(background_only_shared)
    assert scores_in_3d(3, segment_per_section(truth)) and scores_in_3d(2, truth)
    assert not scores_in_3d(2, segment_per_section(truth)) and scores_in_3d(2, True) and not scores_in_3d(2, False)


def test_section_mean_scores_average_the_sections():
    seg, truth = _random_pair(7, shape=(3, 24, 24))
    per = [segmentation_scores(seg[z], truth[z]) for z in range(3)]
    mean = section_mean_scores(seg, truth)
    for name in ("voi_sum", "arand", "f1"):
        assert mean[name] == pytest.approx(np.mean([p[name] for p in per]))
    truth[1] = 0  # a section without foreground is skipped, not a NaN mean
    assert np.isfinite(section_mean_scores(seg, truth)["voi_sum"])


def test_contingency_table_of_a_volume_equals_the_flat_count():
    seg, truth = _random_pair(8, shape=(5, 24, 24))
    table, t_ids, s_ids = contingency_table(seg, truth)
    fg = truth > 0
    pairs, counts = np.unique(np.stack([truth[fg], seg[fg]]), axis=1, return_counts=True)
    dense = table.toarray()
    assert dense.sum() == fg.sum() and np.count_nonzero(dense) == counts.size
    for (t, s), n in zip(pairs.T, counts):
        assert dense[np.searchsorted(t_ids, t), np.searchsorted(s_ids, s)] == n


def test_run_seg_metrics_rejects_bad_inputs_without_output(tmp_path):
    truth = _grid_truth(sections=2)
    out = tmp_path / "seg" / "spec.csv"
    args = (
        str(tmp_path / "ref.tif"),
        str(tmp_path / "ref.json"),
        str(tmp_path / "threshold.json"),
        str(out),
        {"thresholds": [0.5]},
        {"border_crop": 0},
        "edsr",
        "real",
        "alpha",
        "alpha",
    )
    paths = _write_inputs(tmp_path, truth, {0.5: truth[:, :, :16]})
    with pytest.raises(InputError, match="shape"):
        run_seg_metrics(paths, *args)
    paths = _write_inputs(tmp_path, truth, {0.5: truth}, source="manual")
    with pytest.raises(InputError, match="source"):
        run_seg_metrics(paths, *args)
    write_json(tmp_path / "ref.json", {"source": "labels"})
    write_json(tmp_path / "threshold.json", {"threshold": 0.5})
    with pytest.raises(InputError, match="best_threshold"):
        run_seg_metrics(paths, *args)
    assert not out.exists()


def test_blockwise_scores_equal_the_in_memory_scores():
    """Contingency tables accumulated block by block (chunks of any shape) give the same scores to 1e-12."""
    from srseg.metrics.registry import SEGMENTATION, score
    from srseg.metrics.segmentation import LabelPair

    rng = np.random.default_rng(4)
    truth = ndimage.label(rng.random((8, 64, 64)) > 0.4)[0].astype(np.uint64)
    seg = (truth * 7 + (rng.random(truth.shape) > 0.9)) % 23  # merges, splits and label 0 inside truth
    whole = score(SEGMENTATION, LabelPair(seg, truth))
    chunks = [
        (seg[z : z + 3, y : y + 20, x : x + 48], truth[z : z + 3, y : y + 20, x : x + 48])
        for z in range(0, 8, 3)
        for y in range(0, 64, 20)
        for x in range(0, 64, 48)
    ]
    blockwise = score(SEGMENTATION, LabelPair(None, None, blocks=iter(chunks)))
    for name, value in whole.items():
        assert blockwise[name] == pytest.approx(value, abs=1e-12, rel=0), name
