"""Segmentation: fragments, waterz agglomeration, threshold choice on validation data, reference labels."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.metrics import adapted_rand_error

from srseg import affinity, reference, ruler, segment
from srseg.affinity import AffinityUNet, affinity_targets
from srseg.config import section
from srseg.io import InputError, read_json, read_labels, write_image, write_json, write_labels
from srseg.metrics import section_mean_scores, segmentation_scores
from srseg.runtime import save_checkpoint

THRESHOLDS = [0.1, 0.3, 0.5, 0.7, 0.9]


def voronoi(shape, n_cells, seed, membrane=2, groups=None):
    """Voronoi cells (IDs 1..n, slowly drifting through z) with `membrane`-px label-0 boundaries.

    With `groups` (number of coarse cells) also return the coarse labels: each
    fine cell joins the coarse cell nearest its seed, and only boundaries
    between different coarse cells are membranes there.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    pts = rng.uniform(0, [ny, nx], (n_cells, 2))
    drift = rng.normal(0, 0.5, (n_cells, 2))
    yy, xx = np.mgrid[0:ny, 0:nx]
    grid = np.stack([yy.ravel(), xx.ravel()], 1)
    cells = np.stack([cKDTree(pts + z * drift).query(grid)[1].reshape(ny, nx) + 1 for z in range(nz)])
    group_of = None
    if groups:
        centres = rng.uniform(0, [ny, nx], (groups, 2))
        group_of = np.concatenate([[0], cKDTree(centres).query(pts)[1] + 1])

    def with_membranes(lab):
        edge = np.zeros(lab.shape, bool)
        edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
        edge[:, :, 1:] |= lab[:, :, 1:] != lab[:, :, :-1]
        edge = ndimage.binary_dilation(edge, np.ones((1, membrane, membrane), bool)) if membrane > 1 else edge
        return np.where(edge, 0, lab).astype(np.uint64)

    fine = with_membranes(cells)
    if groups:
        return fine, with_membranes(group_of[cells])
    return fine


def render(labels, seed, noise=0.03):
    """EM-like image: bright cytoplasm, dark membranes, a little noise."""
    rng = np.random.default_rng(seed)
    img = np.where(labels > 0, 0.75, 0.2).astype(np.float32)
    img = ndimage.gaussian_filter(img, (0, 0.7, 0.7)) + rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.mark.parametrize("dim", [2, 3])
def test_waterz_on_true_affinities_recovers_labels(dim):
    labels = voronoi((4, 96, 96), 30, seed=1)
    affs = affinity_targets(labels, dim=dim)
    segs, timing = segment.segment_affinities(affs, [0.5], seed_min_distance=3, dim=dim)
    truth = segment.per_section_labels(labels) if dim == 2 else labels
    seg = segs[0.5]
    fg = truth > 0
    error, _, _ = adapted_rand_error(truth[fg].astype(np.int64), seg[fg].astype(np.int64))
    assert error < 0.01
    assert segmentation_scores(seg, truth)["arand"] < 0.01
    assert timing["n_fragments"] >= truth.max() / (1 if dim == 2 else 4)


def test_fragments_never_cross_a_closed_boundary():
    labels = voronoi((2, 80, 80), 25, seed=2)
    frags = segment.fragments_from_affinities(affinity_targets(labels, 2), seed_min_distance=2)
    assert frags.dtype == np.uint64 and frags.min() >= 1  # every voxel has a fragment
    for f in np.unique(frags):
        inside = np.unique(labels[frags == f])
        assert len(inside[inside > 0]) <= 1, "a fragment spans two cells"
    assert frags.max() >= len(np.unique(labels[0])) - 1 + len(np.unique(labels[1])) - 1


def test_2d_mode_never_merges_across_sections():
    labels = voronoi((3, 64, 64), 12, seed=3)
    affs = affinity_targets(labels, 3)
    affs[0] = 1.0  # z affinities that would merge everything through z in 3D
    segs, _ = segment.segment_affinities(affs, [0.9], dim=2)
    seg = segs[0.9]
    ids = [set(np.unique(seg[z])) for z in range(3)]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    segs3, _ = segment.segment_affinities(affs, [0.9], dim=3)
    assert set(np.unique(segs3[0.9][0])) & set(np.unique(segs3[0.9][1]))


def test_higher_threshold_merges_more():
    labels = voronoi((1, 64, 64), 20, seed=4)
    affs = affinity_targets(labels, 2)
    affs[1:][labels[None].repeat(2, 0) == 0] = 0.4  # weak membranes: merged once 1 - 0.4 < t
    segs, _ = segment.segment_affinities(affs, THRESHOLDS, dim=2)
    counts = [len(np.unique(segs[t])) for t in THRESHOLDS]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_bad_affinities_raise_input_error():
    affs = np.ones((3, 2, 16, 16), np.float32)
    affs[1, 0, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        segment.fragments_from_affinities(affs)
    with pytest.raises(InputError, match="shape"):
        segment.fragments_from_affinities(np.ones((2, 2, 16, 16), np.float32))
    with pytest.raises(InputError, match="shape"):
        segment.agglomerate(np.ones((3, 2, 16, 16), np.float32), np.ones((2, 16, 15), np.uint64), [0.5])


def test_blank_section_is_one_fragment():
    frags = segment.fragments_from_affinities(np.zeros((3, 2, 16, 16), np.float32))
    assert [len(np.unique(frags[z])) for z in range(2)] == [1, 1]


def test_pick_best_threshold_lowest_mean_voi_ties_to_lowest():
    scores = {
        "a": {0.1: {"voi_sum": 1.0}, 0.5: {"voi_sum": 0.2}, 0.9: {"voi_sum": 0.2}},
        "b": {0.1: {"voi_sum": 0.0}, 0.5: {"voi_sum": 0.4}, 0.9: {"voi_sum": 0.4}},
    }
    best, mean = segment.pick_best_threshold(scores)
    assert best == 0.5 and mean[0.1]["voi_sum"] == pytest.approx(0.5)


def _two_level_scenario(seed):
    """Image, fine labels, coarse labels and oracle affinities where group-mates share weak (0.45) membranes.

    Thresholds <= 0.5 keep fine cells apart (best against fine truth);
    0.7 and 0.9 merge group-mates (best against coarse truth).
    """
    fine, coarse = voronoi((8, 64, 64), 24, seed=seed, groups=8)
    a_fine, a_coarse = affinity_targets(fine, 2), affinity_targets(coarse, 2)
    affs = a_fine + 0.45 * (a_coarse - a_fine)
    image = render(fine, seed)
    table = {image[z].tobytes(): affs[:, z] for z in range(image.shape[0])}
    oracle = lambda img: np.stack([table[s.tobytes()] for s in img], axis=1)  # noqa: E731 - stands in for the net
    return image, fine, coarse, oracle


def test_choose_threshold_uses_validation_not_test(tmp_path, monkeypatch):
    """Validation truth (coarse) and test truth (fine) prefer different thresholds: validation must win."""
    image, fine, coarse, oracle = _two_level_scenario(seed=5)
    # training specimen: fine labels in its training sections, coarse in the held-back last quarter
    train_labels = fine.copy()
    train_labels[6:] = coarse[6:]
    test_image, test_fine, _, test_oracle = _two_level_scenario(seed=6)

    test_pick = segment.choose_threshold(test_oracle, {"test": (test_image, test_fine)}, THRESHOLDS)
    assert test_pick["best_threshold"] <= 0.5  # the test specimen alone would pick a low threshold

    # the whole training rule, with the oracle in place of the trained network's predictions
    monkeypatch.setattr(affinity, "predict_affinities", lambda net, img, *a, **k: oracle(img))
    hr, lab = tmp_path / "pairs" / "s1" / "hr.tif", tmp_path / "pairs" / "s1" / "labels.tif"
    write_image(hr, image, [50, 10, 10], "float32")
    write_labels(lab, train_labels, [50, 10, 10])
    out = tmp_path / "affinity"
    ruler.run_train_affinity(
        hr=[str(hr)],
        labels=[str(lab)],
        model=str(out / "model.pt"),
        log_csv=str(out / "log.csv"),
        train_json=str(out / "train.json"),
        threshold_json=str(out / "threshold.json"),
        affinity=section(
            "affinity",
            {
                "features": 4,
                "depth": 2,
                "steps": 2,
                "batch": 1,
                "patch": 16,
                "augment": {"flip": False, "prob": 0.0},
                "long_range": [],  # the oracle predicts the nearest neighbours only
            },
        ),
        segmentation=section("segmentation", {"thresholds": THRESHOLDS}),
        seed=0,
        device="cpu",
    )
    choice = read_json(out / "threshold.json")
    assert choice["best_threshold"] >= 0.7
    assert choice["criterion"] == "voi_sum"
    assert choice["validation_sections"] == {"s1": [6, 8]}
    assert set(choice["scores"]) == {str(t) for t in THRESHOLDS}
    assert choice["scores"][str(choice["best_threshold"])]["voi_sum"] == min(
        s["voi_sum"] for s in choice["scores"].values()
    )


def test_choose_threshold_scores_in_the_unit_the_tables_report():
    """One rule (scores_in_3d): 3D labels -> the whole volume, even for a 2D segmentation; else per section."""
    image, fine, _, oracle = _two_level_scenario(seed=7)
    segs, _ = segment.segment_affinities(oracle(image), THRESHOLDS, dim=2)
    flat = segment.per_section_labels(fine)
    choice = segment.choose_threshold(oracle, {"linked": (image, fine), "flat": (image, flat)}, THRESHOLDS)
    assert choice["in_3d"] == {"linked": True, "flat": False}
    for t in THRESHOLDS:
        linked, per = choice["per_specimen"]["linked"][str(t)], choice["per_specimen"]["flat"][str(t)]
        # 3D: the 2D segmentation's z-splits count; per section: the mean of section scores, as seg_metrics
        assert linked["voi_sum"] == pytest.approx(segmentation_scores(segs[t], fine)["voi_sum"])
        assert per["voi_sum"] == pytest.approx(section_mean_scores(segs[t], flat)["voi_sum"])
        assert linked["voi_split"] > per["voi_split"] + 1.0  # 8 sections unlinked: up to 3 bits of z-split


def test_run_segment_writes_one_volume_per_threshold(tmp_path):
    torch.manual_seed(0)
    net = AffinityUNet(2, 4, 2)
    model = tmp_path / "model.pt"
    save_checkpoint(
        model,
        {
            "net": net.config(),
            "state_dict": net.state_dict(),
            "params": section("affinity", {"tile": 32, "overlap": 8, "batch": 2}),
        },
    )
    image = tmp_path / "img.tif"
    write_image(image, render(voronoi((2, 40, 44), 8, seed=7), 7), [50, 10, 10], "uint8")
    segs = [str(tmp_path / "seg" / f"{segment.threshold_name(t)}.tif") for t in THRESHOLDS]
    segment.run_segment(
        str(image),
        str(model),
        segs,
        str(tmp_path / "seg" / "segment.json"),
        {"thresholds": THRESHOLDS},
        cache_dir=str(tmp_path / "cache"),
        device="cpu",
    )
    for path in segs:
        lab, voxel = read_labels(path)
        assert lab.shape == (2, 40, 44) and voxel == pytest.approx([50, 10, 10])
    info = read_json(tmp_path / "seg" / "segment.json")
    assert info["affinity_voxels_per_second"] > 0 and info["agglomeration_voxels_per_second"] > 0
    assert info["dim"] == 2  # seg_metrics reads it: a 3D segmentation is scored on the volume
    assert info["voxels"] == 2 * 40 * 44 and set(info["segments"]) == {str(t) for t in THRESHOLDS}
    with pytest.raises(InputError, match="name it t0.1.tif"):
        segment.run_segment(str(image), str(model), segs[::-1], str(tmp_path / "x.json"), {"thresholds": THRESHOLDS})


def test_threshold_name():
    assert segment.threshold_name(0.5) == "t0.5" and segment.threshold_name(0.1) == "t0.1"


def test_reference_from_labels_or_hr_segmentation(tmp_path):
    labels = voronoi((2, 32, 32), 6, seed=8)
    write_labels(tmp_path / "labels.tif", labels, [50, 10, 10])
    reference.run_reference(str(tmp_path / "ref.tif"), str(tmp_path / "ref.json"), labels=str(tmp_path / "labels.tif"))
    assert read_json(tmp_path / "ref.json")["source"] == "labels"
    assert read_json(tmp_path / "ref.json")["labels_3d"] is True  # the cells run through both sections
    assert np.array_equal(read_labels(tmp_path / "ref.tif")[0], labels)

    segs = []
    for i, t in enumerate(THRESHOLDS):
        segs.append(str(tmp_path / f"t{t}.tif"))
        write_labels(segs[-1], labels + i, [50, 10, 10])
    write_json(tmp_path / "threshold.json", {"best_threshold": 0.7})
    reference.run_reference(
        str(tmp_path / "ref2.tif"),
        str(tmp_path / "ref2.json"),
        threshold_json=str(tmp_path / "threshold.json"),
        segmentations=segs,
        thresholds=THRESHOLDS,
    )
    meta = read_json(tmp_path / "ref2.json")
    assert meta["source"] == "hr_segmentation" and meta["threshold"] == 0.7
    write_labels(tmp_path / "flat.tif", segment.per_section_labels(labels), [50, 10, 10])  # a 2D segmentation
    reference.run_reference(str(tmp_path / "r4.tif"), str(tmp_path / "r4.json"), labels=str(tmp_path / "flat.tif"))
    assert read_json(tmp_path / "r4.json")["labels_3d"] is False
    assert np.array_equal(read_labels(tmp_path / "ref2.tif")[0], labels + 3)

    write_labels(tmp_path / "empty.tif", np.zeros((2, 8, 8), np.uint16), [50, 10, 10])
    with pytest.raises(InputError, match="all background"):
        reference.run_reference(str(tmp_path / "r3.tif"), str(tmp_path / "r3.json"), labels=str(tmp_path / "empty.tif"))
    assert not (tmp_path / "r3.tif").exists()


def test_per_section_labels():
    lab = np.array([[[1, 1, 0, 2]], [[1, 2, 2, 0]]])
    out = segment.per_section_labels(lab)
    assert out.tolist() == [[[1, 1, 0, 2]], [[3, 4, 4, 0]]]


def test_long_range_affinities_close_a_gap_in_the_membrane():
    """Two cells whose nearest-neighbour affinities leak through a gap: the long-range ones keep them apart."""
    labels = np.zeros((1, 32, 40), np.uint64)
    labels[0, :, :19], labels[0, :, 21:] = 1, 2  # a 2-px membrane at x = 19, 20
    offsets = [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, 0, -6]]
    affs = affinity.offset_affinities(labels, offsets)
    affs[1:3, 0, 8:24, 17:23] = 1.0  # the short affinities miss the membrane over half its length
    for weight, merged in ((0.0, True), (0.7, False)):
        segs, _ = segment.segment_affinities(affs, [0.6], offsets=offsets, long_range_weight=weight)
        seg = segs[0.6][0]
        assert bool(seg[16, 5] == seg[16, 35]) is merged, weight
    folded = segment.fold_long_range(affs, offsets, 0.5)
    # an x edge inside the gap: spanned by x - 6 pairs that cross the membrane (0), so its score halves
    assert folded[2, 0, 16, 20] == pytest.approx(0.5) and folded[2, 0, 16, 5] == pytest.approx(1.0)
    assert np.array_equal(folded[:2], affs[:2])  # nothing long-range along z and y
    with pytest.raises(InputError, match="nearest neighbours"):
        segment.fold_long_range(affs, [[0, 0, -6], *offsets[:3]], 0.5)


def test_size_filter_floods_small_segments():
    labels = voronoi((2, 64, 64), 12, seed=9)
    affs = affinity_targets(labels, 2)
    seg, _ = segment.segment_affinities(affs, [0.5])
    seg = seg[0.5]
    tiny = seg.copy()
    tiny[0, 30:33, 30:33] = seg.max() + 1  # a 9-px speck
    boundary = segment.boundary_map(affs)
    out = segment.filter_small(tiny, boundary, 10)
    assert seg.max() + 1 not in out and np.array_equal(out[1], tiny[1])
    assert np.array_equal(segment.filter_small(tiny, boundary, 0), tiny)


def test_oracle_agglomeration_bounds_what_merging_the_fragments_can_reach():
    truth = np.zeros((1, 20, 20), np.uint32)
    truth[0, :, :9], truth[0, :, 11:] = 1, 2  # two cells, a 2 px membrane between them
    fragments = np.zeros((1, 20, 20), np.uint64)
    fragments[0, :10, :] = 1  # oversegmented: top and bottom halves...
    fragments[0, 10:, :] = 2
    fragments[0, :, 12:] = 3  # ...and a fragment inside cell 2
    fragments[0, 10:, 10:12] = 4  # a fragment on the membrane and a column of cell 2
    fragments[0, :10, 9:11] = 5  # a fragment on membrane only
    oracle = segment.oracle_agglomeration(fragments, truth)
    # fragment 1 (cell 1 and the top of cell 2's first column) and 2 join cell 1; 3 and 4 (mostly cell 2) cell 2
    assert set(np.unique(oracle[fragments == 1])) == {1} and set(np.unique(oracle[fragments == 2])) == {1}
    assert set(np.unique(oracle[fragments == 3])) == {2} and set(np.unique(oracle[fragments == 4])) == {2}
    # no foreground under fragment 5: an ID of its own, above the truth IDs
    assert len(np.unique(oracle[fragments == 5])) == 1 and oracle[fragments == 5][0] > 2
    # every pixel of cell 1 right; cell 2 loses only the 10 px fragment 1 took
    assert np.all(oracle[truth == 1] == 1) and np.count_nonzero(oracle[truth == 2] != 2) == 10
    # already the truth: unchanged partition
    assert np.array_equal(segment.oracle_agglomeration(truth.astype(np.uint64), truth)[truth > 0], truth[truth > 0])
    # no cell at all: every fragment stays itself
    assert len(np.unique(segment.oracle_agglomeration(fragments, np.zeros_like(truth)))) == 5
    with pytest.raises(ValueError, match="differ in shape"):
        segment.oracle_agglomeration(fragments[:, :10], truth)


def test_fragment_settings_are_chosen_on_validation_and_used_by_segment(tmp_path):
    image, fine, _, oracle = _two_level_scenario(seed=10)
    seg_cfg = {"thresholds": [0.3, 0.5], "seed_min_distance": [2, 5], "min_size": [0, 30], "long_range_weight": 0.5}
    choice = segment.choose_threshold(oracle, {"v": (image, fine)}, [0.3, 0.5], segmentation=seg_cfg)
    assert len(choice["candidates"]) == 2 * 2
    best = min(choice["candidates"], key=lambda c: c["voi_sum"])
    assert choice["fragments"] == {k: best[k] for k in segment.TUNED_KEYS}
    assert segment.default_fragments(seg_cfg) == {
        "seed_min_distance": 2,
        "boundary_threshold": 0.5,
        "long_range_weight": 0.5,
        "min_size": 0,
    }
    # rule segment reads the row's choice
    torch.manual_seed(0)
    net = AffinityUNet(2, 4, 2)
    save_checkpoint(
        tmp_path / "model.pt",
        {"net": net.config(), "state_dict": net.state_dict(), "params": section("affinity", {"tile": 32})},
    )
    write_image(tmp_path / "img.tif", render(voronoi((1, 32, 32), 5, seed=7), 7), [50, 10, 10], "uint8")
    write_json(tmp_path / "choice.json", {"best_threshold": 0.5, "fragments": {**choice["fragments"], "min_size": 7}})
    segment.run_segment(
        str(tmp_path / "img.tif"),
        str(tmp_path / "model.pt"),
        [str(tmp_path / "seg" / "t0.3.tif"), str(tmp_path / "seg" / "t0.5.tif")],
        str(tmp_path / "seg" / "segment.json"),
        seg_cfg,
        device="cpu",
        choice=str(tmp_path / "choice.json"),
    )
    assert read_json(tmp_path / "seg" / "segment.json")["fragments"]["min_size"] == 7
    write_json(tmp_path / "bad.json", {"best_threshold": 0.5})
    with pytest.raises(InputError, match="fragments"):
        segment.run_segment(
            str(tmp_path / "img.tif"),
            str(tmp_path / "model.pt"),
            [str(tmp_path / "seg" / "t0.3.tif"), str(tmp_path / "seg" / "t0.5.tif")],
            str(tmp_path / "seg" / "x.json"),
            seg_cfg,
            device="cpu",
            choice=str(tmp_path / "bad.json"),
        )
