"""Alignment recovers known HR->LR placements (real EM content and the phantom) and refuses bad input."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from helpers import ISBI_DATA, demo_specimen

from srseg.align import align_volume, run_align
from srseg.geometry import apply, coarse_lr_z, coarse_matrix, corner_rms
from srseg.io import InputError, read_json, write_image, write_json

ISBI = ISBI_DATA / "raw.tif"
HR_NM = 4.0  # ISBI pixel
RATIO = 3.3  # LR pixel / HR pixel, non-integer like the demo
PARAMS = {"sift_ratio": 0.75, "ransac_px": 1.5, "min_inliers": 12, "search_margin_lr_px": 24, "max_scale_error": 0.05}


@pytest.fixture(scope="module")
def isbi():
    if not ISBI.exists():
        pytest.skip("ISBI 2012 stack not available")
    return tifffile.imread(ISBI, key=range(4)).astype(np.float32) / 255.0


def simulate(
    raw,
    theta_deg,
    scale_err,
    lr_origin,
    drift=None,
    ratio=RATIO,
    noise=0.03,
    seed=0,
    field=(0, 100, 120, 288, 288),
    lr_shape=(150, 150),
):
    """An LR acquisition of real EM sections with a known similarity (+ per-section drift).

    HR = a crop of each section; LR = the Gaussian-blurred section sampled at LR
    pixel centres placed by the similarity (cv2.warpAffine), plus noise.
    Returns lr, hr, true HR->LR matrices.
    """
    rng = np.random.default_rng(seed)
    _, oy, ox, h, w = field
    th = np.deg2rad(theta_deg)
    s = ratio * (1 + scale_err)
    a = s * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    lrs, hrs, mats = [], [], []
    for k, sec in enumerate(raw):
        t = np.asarray(lr_origin, float) + (np.zeros(2) if drift is None else drift[k])
        lr_to_sec = np.hstack([a, t[:, None]])
        blurred = cv2.GaussianBlur(sec, (0, 0), 0.45 * s)
        lr = cv2.warpAffine(
            blurred,
            lr_to_sec,
            lr_shape[::-1],
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
        lrs.append(np.clip(lr + rng.normal(0, noise, lr.shape), 0, 1))
        hrs.append(sec[oy : oy + h, ox : ox + w])
        ai = np.linalg.inv(a)
        mats.append(np.hstack([ai, (ai @ (np.array([ox, oy]) - t))[:, None]]))
    return np.stack(lrs).astype(np.float32), np.stack(hrs), mats


def meta_for(mats, offset_error_lr_px, lr_nm=HR_NM * RATIO):
    """Voxel sizes and a stage offset that is off by `offset_error_lr_px` (x, y)."""
    off_xy = (mats[0][:, 2] + np.asarray(offset_error_lr_px)) * lr_nm
    return [50.0, lr_nm, lr_nm], [50.0, HR_NM, HR_NM], [0.0, off_xy[1], off_xy[0]]


@pytest.mark.parametrize(
    "theta,scale_err,origin,err",
    [
        (1.5, 0.015, (5.3, -3.1), (2.7, -3.4)),
        (-2.5, -0.02, (-7.7, 12.2), (-4.0, 1.2)),
    ],
)
def test_recovers_known_similarity_on_real_em(isbi, theta, scale_err, origin, err):
    drift = np.cumsum(np.random.default_rng(1).normal(0, 0.3 * RATIO, (len(isbi), 2)), axis=0)  # stage drift, HR px
    lr, hr, mats = simulate(isbi, theta, scale_err, origin, drift=drift)
    lr_vox, hr_vox, off = meta_for(mats, err)
    res = align_volume(
        lr,
        hr,
        lr_vox,
        hr_vox,
        off,
        PARAMS,
        truth={"matrices": [m.tolist() for m in mats], "lr_z": list(range(len(isbi)))},
    )
    qc = res["qc"]
    assert qc["error_px"] <= 0.1, qc  # required: 0.25 LR px
    assert qc["z_errors"] == 0
    assert qc["n_inliers"] >= 4 * PARAMS["min_inliers"] and qc["residual_px"] < PARAMS["ransac_px"]
    # per-section matrices follow the drift, each within 0.1 px of its own truth
    for m, t in zip(res["matrices"], mats):
        assert corner_rms(np.array(m), t, hr.shape[1:]) <= 0.1
    # the reported stage-offset error is the one we put into the metadata (plus the mean drift)
    expected = np.mean([m[:, 2] for m in mats], axis=0) - (mats[0][:, 2] + err)
    assert np.hypot(*np.subtract(qc["stage_offset_error_lr_px"], expected)) < 0.1


def test_recovers_phantom_truth():
    spec = demo_specimen("beta")  # the noisiest, lowest-contrast demo specimen
    q = lambda v: np.rint(v * 255).astype(np.float32) / 255  # noqa: E731  as stored on disk (uint8)
    res = align_volume(
        q(spec["lr"]),
        q(spec["hr"]),
        spec["lr_voxel_nm"],
        spec["hr_voxel_nm"],
        spec["hr_offset_nm"],
        PARAMS,
        truth=spec["truth"],
    )
    assert res["qc"]["error_px"] <= 0.25, res["qc"]
    assert res["qc"]["z_errors"] == 0


def test_coarse_placement_convention():
    # HR pixel centre (x, y) sits at off + x * hr_nm; LR pixel centres at multiples of lr_nm
    m = coarse_matrix([50, 30, 30], [50, 10, 10], [100, 300, 600])
    np.testing.assert_allclose(apply(m, [[0, 0], [3, 6]]), [[20, 10], [21, 12]])
    np.testing.assert_array_equal(coarse_lr_z(3, [50, 30, 30], [25, 10, 10], [100, 0, 0]), [2, 3, 3])


def test_no_overlap_is_an_input_error(isbi):
    lr, hr, mats = simulate(isbi[:1], 1.0, 0.0, (0.0, 0.0))
    lr_vox, hr_vox, _ = meta_for(mats, (0, 0))
    with pytest.raises(InputError, match="does not overlap"):
        align_volume(lr, hr, lr_vox, hr_vox, [0.0, 50_000.0, 0.0], PARAMS)
    with pytest.raises(InputError, match="does not overlap"):  # z outside the LR stack
        align_volume(lr, hr, lr_vox, hr_vox, [500.0, 0.0, 0.0], PARAMS)


def test_too_few_matches_is_an_input_error(isbi):
    lr, hr, mats = simulate(isbi[:2], 1.0, 0.0, (3.0, 2.0))
    lr_vox, hr_vox, off = meta_for(mats, (1, 1))
    unrelated = np.random.default_rng(0).random(lr.shape).astype(np.float32)  # LR of something else
    with pytest.raises(InputError, match="too few SIFT matches"):
        align_volume(unrelated, hr, lr_vox, hr_vox, off, PARAMS)


def test_implausible_scale_is_an_input_error(isbi):
    # the LR was really acquired at 4.4x the HR pixel, but the metadata says 3.3x
    lr, hr, mats = simulate(isbi[:2], 1.0, 0.0, (3.0, 2.0), ratio=4.4, lr_shape=(120, 120))
    off_xy = mats[0][:, 2] * HR_NM * RATIO
    with pytest.raises(InputError, match="scale"):
        align_volume(
            lr,
            hr,
            [50, HR_NM * RATIO, HR_NM * RATIO],
            [50, HR_NM, HR_NM],
            [0.0, off_xy[1], off_xy[0]],
            {**PARAMS, "search_margin_lr_px": 60},
        )


def test_run_align_writes_outputs_and_nothing_on_failure(isbi, tmp_path):
    lr, hr, mats = simulate(isbi[:2], -1.0, 0.01, (4.0, 6.0))
    lr_vox, hr_vox, off = meta_for(mats, (2, -2))
    write_image(tmp_path / "lr.tif", lr, lr_vox)
    write_image(tmp_path / "hr.tif", hr, hr_vox)
    write_json(tmp_path / "meta.json", {"lr_voxel_nm": lr_vox, "hr_voxel_nm": hr_vox, "hr_offset_nm": off})
    write_json(tmp_path / "truth.json", {"matrices": [m.tolist() for m in mats], "lr_z": [0, 1]})
    out = {
        "transform_path": tmp_path / "a" / "transform.json",
        "qc_png": tmp_path / "a" / "qc.png",
        "qc_json": tmp_path / "a" / "qc.json",
    }

    def align():
        run_align(
            tmp_path / "lr.tif",
            tmp_path / "hr.tif",
            tmp_path / "meta.json",
            params=PARAMS,
            truth_path=tmp_path / "truth.json",
            **out,
        )

    align()
    t = read_json(out["transform_path"])
    assert np.asarray(t["matrices"]).shape == (2, 2, 3) and t["lr_z"] == [0, 1]
    qc = read_json(out["qc_json"])
    for key in ("n_matches", "n_inliers", "residual_px", "error_px"):
        assert key in qc
    assert qc["error_px"] <= 0.25
    assert out["qc_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = out["transform_path"].read_bytes()
    align()
    assert out["transform_path"].read_bytes() == first  # same input, same bytes

    # a wrong stage offset: InputError, and no output that looks complete
    write_json(tmp_path / "meta.json", {"lr_voxel_nm": lr_vox, "hr_voxel_nm": hr_vox, "hr_offset_nm": [0, -9e4, 0]})
    bad = {k: tmp_path / "b" / Path(v).name for k, v in out.items()}
    with pytest.raises(InputError):
        run_align(tmp_path / "lr.tif", tmp_path / "hr.tif", tmp_path / "meta.json", params=PARAMS, **bad)
    assert not any(Path(v).exists() for v in bad.values())
