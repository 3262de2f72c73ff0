"""Pairs: HR exactly scale x LR, registered block-for-pixel, labels carried along, bad input refused."""

import numpy as np
import pytest
from helpers import demo_specimen

from srseg.degrade import degrade_volume
from srseg.geometry import apply
from srseg.io import InputError, read_image, read_json, read_labels, write_image, write_json, write_labels
from srseg.pairs import integer_scale, make_pairs, pair_labels, run_pairs, run_pairs_labels

LR_VOX, HR_VOX = [50.0, 30.0, 30.0], [50.0, 10.0, 10.0]


def block_aligned(n=2, s=3, lr_hw=(30, 34), at=(4, 6), hr_lr_hw=(20, 22), seed=0):
    """LR noise and an HR field that is exactly its LR pixels blown up s x s, starting at LR pixel `at`."""
    rng = np.random.default_rng(seed)
    lr = rng.random((n, *lr_hw)).astype(np.float32)
    r, c = at
    h, w = hr_lr_hw
    hr = np.stack([np.kron(sec[r : r + h, c : c + w], np.ones((s, s), np.float32)) for sec in lr])
    # HR pixel x -> LR coordinate c + (x + 0.5) / s - 0.5
    m = [[1 / s, 0, c + 0.5 / s - 0.5], [0, 1 / s, r + 0.5 / s - 0.5]]
    return lr, hr, {"matrices": [m] * n, "lr_z": list(range(n)), "hr_shape": list(hr.shape)}


def test_block_convention_is_exact():
    lr, hr, t = block_aligned()
    lp, hp, info = make_pairs(lr, hr, t, LR_VOX, HR_VOX, {"margin_lr_px": 0})
    assert info["scale"] == 3 and info["lr_origin"] == [4, 6]
    np.testing.assert_array_equal(lp, lr[:, 4:24, 6:28])
    assert hp.shape == (2, 60, 66)
    np.testing.assert_allclose(hp, hr, atol=1e-6)  # HR block (i, j) covers LR pixel (i // 3, j // 3)
    # the default safety margin drops the outermost LR pixel ring, keeping the registration
    lp, hp, info = make_pairs(lr, hr, t, LR_VOX, HR_VOX)
    assert info["lr_origin"] == [5, 7] and hp.shape == tuple(np.multiply(lp.shape, (1, 3, 3)))
    np.testing.assert_allclose(hp, hr[:, 3:-3, 3:-3], atol=1e-6)
    assert info["hr_voxel_nm"] == [50.0, 10.0, 10.0]


def test_labels_follow_the_image_grid():
    lr, hr, t = block_aligned()
    labels = (np.arange(hr[0].size).reshape(hr.shape[1:]) * 7 + 2**40).astype(np.uint64)  # IDs > 32 bits
    labels = np.stack([labels, labels + 1])
    _, _, info = make_pairs(lr, hr, t, LR_VOX, HR_VOX)
    out = pair_labels(labels, t, info)
    assert out.dtype == np.uint64
    np.testing.assert_array_equal(out, labels[:, 3:-3, 3:-3])


def ncc(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def phantom():
    return demo_specimen("alpha")


def test_phantom_pairs_are_registered(phantom):
    truth = phantom["truth"]
    lr, hr = phantom["lr"], phantom["hr"]
    lp, hp, info = make_pairs(lr, hr, truth, phantom["lr_voxel_nm"], phantom["hr_voxel_nm"])
    s = info["scale"]
    assert s == 3  # 33 / 10 = 3.3 -> 3
    assert hp.shape == (lp.shape[0], s * lp.shape[1], s * lp.shape[2])
    assert info["hr_voxel_nm"] == [50.0, 11.0, 11.0]
    # every paired HR pixel lies inside the HR field of its own section (per-section drift included)
    h, w = hp.shape[1:]
    corners = [[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]]
    for m in info["pair_to_hr"]:
        xy = apply(np.array(m), corners)
        assert xy.min() >= -0.5 and xy[:, 0].max() <= hr.shape[2] - 0.5 and xy[:, 1].max() <= hr.shape[1] - 0.5
    # the paired HR, downsampled, matches the paired LR far better than a 1-px shifted LR
    for down in (
        hp.reshape(hp.shape[0], h // s, s, w // s, s).mean((2, 4)),
        degrade_volume(hp, s, {"kind": "bicubic"}, seed=0),
    ):
        inner = (slice(None), slice(2, -2), slice(2, -2))
        at0 = ncc(down[inner], lp[inner])
        shifted = [ncc(down[inner], np.roll(lp, d, axis=ax)[inner]) for d in (1, -1) for ax in (1, 2)]
        assert at0 > 0.7 and at0 > max(shifted) + 0.15, (at0, shifted)


def test_drop_empty_sections():
    lr, hr, t = block_aligned(n=3)
    hr[1] = 0.5  # a blank HR section (beam off, outside the tissue)
    lp, hp, info = make_pairs(lr, hr, t, LR_VOX, HR_VOX, {"drop_empty": True})
    assert info["hr_sections"] == [0, 2] and info["lr_sections"] == [0, 2] and "1" in info["dropped"]
    assert lp.shape[0] == hp.shape[0] == 2
    np.testing.assert_array_equal(lp[1], lr[2, 5:23, 7:27])
    _, hp, info = make_pairs(lr, hr, t, LR_VOX, HR_VOX, {"drop_empty": False})
    assert hp.shape[0] == 3 and info["dropped"] == {}


def test_sections_outside_the_lr_stack_are_dropped():
    lr, hr, t = block_aligned(n=3)
    t["lr_z"] = [1, 2, 3]  # HR section 2 lies beyond the last LR section
    _, _, info = make_pairs(lr, hr, t, LR_VOX, HR_VOX)
    assert info["hr_sections"] == [0, 1] and info["lr_sections"] == [1, 2]
    t["lr_z"] = [5, 6, 7]
    with pytest.raises(InputError, match="no HR section overlaps"):
        make_pairs(lr, hr, t, LR_VOX, HR_VOX)


def test_integer_scale():
    assert integer_scale([50, 33, 33], [50, 10, 10]) == 3
    assert integer_scale([50, 50, 50], [50, 15, 15]) == 3
    assert integer_scale([50, 48, 48], [50, 10, 10]) == 5
    with pytest.raises(InputError, match="at least 2"):
        integer_scale([50, 14, 14], [50, 10, 10])
    with pytest.raises(InputError, match="differs between y and x"):
        integer_scale([50, 30, 40], [50, 10, 10])


def test_run_pairs_and_labels_write_files(tmp_path):
    lr, hr, t = block_aligned()
    labels = np.repeat(np.arange(hr.shape[2], dtype=np.uint32)[None, None], hr.shape[1], axis=1).repeat(2, 0)
    write_image(tmp_path / "lr.tif", lr, LR_VOX)
    write_image(tmp_path / "hr.tif", hr, HR_VOX)
    write_labels(tmp_path / "labels.tif", labels, HR_VOX)
    write_json(tmp_path / "meta.json", {"lr_voxel_nm": LR_VOX, "hr_voxel_nm": HR_VOX, "hr_offset_nm": [0, 0, 0]})
    write_json(tmp_path / "transform.json", t)
    o = tmp_path / "pairs"
    run_pairs(
        tmp_path / "lr.tif",
        tmp_path / "hr.tif",
        tmp_path / "meta.json",
        tmp_path / "transform.json",
        o / "lr.tif",
        o / "hr.tif",
        o / "pairs.json",
        {"drop_empty": True},
    )
    run_pairs_labels(tmp_path / "labels.tif", tmp_path / "transform.json", o / "pairs.json", o / "labels.tif")
    info = read_json(o / "pairs.json")
    plr, lvox, ldt = read_image(o / "lr.tif")
    phr, hvox, hdt = read_image(o / "hr.tif")
    plab, _ = read_labels(o / "labels.tif")
    assert ldt == hdt == "uint8"  # the input's on-disk dtype
    assert list(plr.shape) == info["lr_shape"] and list(phr.shape) == info["hr_shape"] == list(plab.shape)
    np.testing.assert_allclose(lvox, LR_VOX)
    np.testing.assert_allclose(hvox, [50, 10, 10])
    np.testing.assert_array_equal(plab[0, 0], np.arange(3, hr.shape[2] - 3))
    # labels of another stack shape are refused
    write_labels(tmp_path / "labels.tif", labels[:, :-1], HR_VOX)
    with pytest.raises(InputError, match="labels have shape"):
        run_pairs_labels(tmp_path / "labels.tif", tmp_path / "transform.json", o / "pairs.json", o / "l2.tif")
    assert not (o / "l2.tif").exists()
