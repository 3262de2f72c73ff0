"""Ingest: every accepted input form round-trips; every bad input fails with one sentence and no output."""

import cv2
import numpy as np
import pytest
import tifffile

from srseg.ingest import read_stack, run_ingest, run_ingest_labels
from srseg.io import InputError, read_json, read_labels, read_tiff, write_tiff

LR_VOX = [50.0, 33.0, 33.0]
HR_VOX = [50.0, 10.0, 10.0]
OFFSET = [0.0, 300.0, 300.0]  # HR pixel 0 relative to LR pixel 0, nm


def _vol(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return rng.random(shape, dtype=np.float32)
    top = np.iinfo(dtype).max
    return rng.integers(0, top, size=shape, endpoint=True).astype(dtype)


def _outs(tmp_path):
    d = tmp_path / "out"
    return {"out_lr": d / "lr.tif", "out_hr": d / "hr.tif", "out_meta": d / "meta.json"}


def _assert_no_output(tmp_path):
    d = tmp_path / "out"
    assert not d.exists() or not any(d.iterdir()), f"partial output left: {list(d.iterdir())}"


def _pair(tmp_path, dtype="uint8", lr_vox=LR_VOX, hr_vox=HR_VOX):
    lr, hr = _vol((4, 40, 40), dtype, 1), _vol((4, 64, 64), dtype, 2)
    write_tiff(tmp_path / "lr.tif", lr, lr_vox)
    write_tiff(tmp_path / "hr.tif", hr, hr_vox)
    return lr, hr


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_3d_tiffs_round_trip_data_dtype_and_voxel_size_from_metadata(tmp_path, dtype):
    lr, hr = _pair(tmp_path, dtype)
    outs = _outs(tmp_path)
    meta = run_ingest(
        str(tmp_path / "lr.tif"), str(tmp_path / "hr.tif"), specimen="s1", spec={"hr_offset_nm": OFFSET}, **outs
    )
    lr2, lr_vox = read_tiff(outs["out_lr"])
    hr2, hr_vox = read_tiff(outs["out_hr"])
    assert lr2.dtype == np.dtype(dtype) and hr2.dtype == np.dtype(dtype)
    assert np.array_equal(lr2, lr) and np.array_equal(hr2, hr)
    assert lr_vox == pytest.approx(LR_VOX) and hr_vox == pytest.approx(HR_VOX)
    on_disk = read_json(outs["out_meta"])
    assert on_disk == meta
    assert on_disk["lr_voxel_nm"] == pytest.approx(LR_VOX) and on_disk["hr_voxel_nm"] == pytest.approx(HR_VOX)
    assert on_disk["hr_offset_nm"] == OFFSET
    assert on_disk["lr_shape"] == [4, 40, 40] and on_disk["hr_shape"] == [4, 64, 64]
    assert on_disk["dtype"] == dtype and on_disk["sources"]["lr"] == str(tmp_path / "lr.tif")
    assert on_disk["scale_ratio"][1:] == pytest.approx([3.3, 3.3])
    # data filling the dtype's range: the real bit depth is the dtype's, nothing rescaled (float: none)
    assert on_disk["hr_bit_depth"] == {"uint8": 8, "uint16": 16, "float32": None}[dtype]
    assert on_disk["hr_value_scale"] == {"uint8": 1.0, "uint16": 1.0, "float32": None}[dtype]


def test_config_voxel_size_wins_over_tiff_metadata(tmp_path):
    _pair(tmp_path, lr_vox=[40, 20, 20], hr_vox=[40, 5, 5])
    outs = _outs(tmp_path)
    meta = run_ingest(
        str(tmp_path / "lr.tif"),
        str(tmp_path / "hr.tif"),
        specimen="s1",
        spec={"lr_voxel_nm": LR_VOX, "hr_voxel_nm": HR_VOX, "hr_offset_nm": OFFSET},
        **outs,
    )
    assert meta["lr_voxel_nm"] == LR_VOX and meta["hr_voxel_nm"] == HR_VOX
    assert read_tiff(outs["out_hr"])[1] == pytest.approx(HR_VOX)


def test_png_folder_and_tiff_glob_are_read_in_natural_order(tmp_path):
    hr = _vol((11, 32, 48), "uint16", 3)
    lr = _vol((11, 16, 20), "uint8", 4)
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    for z in range(11):  # names s1..s11: lexical order would put s10 before s2
        cv2.imwrite(str(tmp_path / "hr" / f"s{z + 1}.png"), hr[z])
        tifffile.imwrite(tmp_path / "lr" / f"sec_{z + 1}.tif", lr[z])
    stack, vox = read_stack(str(tmp_path / "hr"))
    assert stack.dtype == np.uint16 and np.array_equal(stack, hr) and vox is None
    stack, _ = read_stack(str(tmp_path / "lr" / "sec_*.tif"))
    assert np.array_equal(stack, lr)
    outs = _outs(tmp_path)
    meta = run_ingest(
        str(tmp_path / "lr" / "sec_*.tif"),
        str(tmp_path / "hr"),
        specimen="s2",
        spec={"lr_voxel_nm": LR_VOX, "hr_voxel_nm": HR_VOX, "hr_offset_nm": [0, 100, 100]},
        **outs,
    )
    assert meta["hr_dtype"] == "uint16" and meta["lr_dtype"] == "uint8"
    assert np.array_equal(read_tiff(outs["out_hr"])[0], hr)


def test_float_outside_unit_range_is_rescaled_and_noted(tmp_path):
    lr, hr = _pair(tmp_path, "float32")
    write_tiff(tmp_path / "hr.tif", hr * 200 + 10, HR_VOX)
    outs = _outs(tmp_path)
    meta = run_ingest(
        str(tmp_path / "lr.tif"), str(tmp_path / "hr.tif"), specimen="s1", spec={"hr_offset_nm": OFFSET}, **outs
    )
    out, _ = read_tiff(outs["out_hr"])
    assert out.min() == pytest.approx(0) and out.max() == pytest.approx(1)
    assert np.allclose(out, (hr - hr.min()) / (hr.max() - hr.min()), atol=1e-5)
    assert meta["hr_notes"]["rescaled_from"] == pytest.approx([hr.min() * 200 + 10, hr.max() * 200 + 10], rel=1e-5)


# ----------------------------------------------------------------------------- bad input


def _expect_error(tmp_path, match, lr=None, hr=None, spec=None):
    outs = _outs(tmp_path)
    with pytest.raises(InputError, match=match) as err:
        run_ingest(
            str(lr or tmp_path / "lr.tif"),
            str(hr or tmp_path / "hr.tif"),
            specimen="s1",
            spec={"hr_offset_nm": OFFSET} if spec is None else spec,
            **outs,
        )
    message = str(err.value)
    assert "\n" not in message and message.count(". ") == 0  # one sentence
    _assert_no_output(tmp_path)
    return message


def test_missing_file(tmp_path):
    _pair(tmp_path)
    msg = _expect_error(tmp_path, "not found", hr=tmp_path / "nope.tif")
    assert "nope.tif" in msg


def test_corrupt_tiff(tmp_path):
    _pair(tmp_path)
    data = (tmp_path / "hr.tif").read_bytes()
    (tmp_path / "bad.tif").write_bytes(data[:8] + b"\x00garbage" * 10)
    _expect_error(tmp_path, "not a readable TIFF", hr=tmp_path / "bad.tif")


def test_empty_folder_and_unmatched_glob(tmp_path):
    _pair(tmp_path)
    (tmp_path / "empty").mkdir()
    _expect_error(tmp_path, "no .tif/.tiff/.png files", hr=tmp_path / "empty")
    _expect_error(tmp_path, "no .tif/.tiff/.png files", hr=tmp_path / "x_*.tif")


def test_4d_stack_is_refused(tmp_path):
    _pair(tmp_path)
    tifffile.imwrite(tmp_path / "4d.tif", _vol((2, 3, 64, 64), "uint8"), imagej=True, metadata={"axes": "TZYX"})
    _expect_error(tmp_path, "4D stack", hr=tmp_path / "4d.tif")


def test_rgb_stack_and_rgb_png_are_refused(tmp_path):
    _pair(tmp_path)
    tifffile.imwrite(tmp_path / "rgb.tif", _vol((4, 64, 64, 3), "uint8"), photometric="rgb")
    _expect_error(tmp_path, "RGB", hr=tmp_path / "rgb.tif")
    (tmp_path / "png").mkdir()
    cv2.imwrite(str(tmp_path / "png" / "s1.png"), _vol((64, 64, 3), "uint8"))
    _expect_error(tmp_path, "RGB", hr=tmp_path / "png")


def test_grey_stack_saved_as_planar_rgb_gets_the_fix(tmp_path):
    _pair(tmp_path)
    tifffile.imwrite(tmp_path / "p.tif", _vol((3, 64, 64), "uint8"), photometric="rgb", planarconfig="separate")
    msg = _expect_error(tmp_path, "RGB", hr=tmp_path / "p.tif")
    assert "minisblack" in msg


def test_multichannel_imagej_stack_is_refused(tmp_path):
    _pair(tmp_path)
    tifffile.imwrite(tmp_path / "c.tif", _vol((4, 2, 64, 64), "uint8"), imagej=True, metadata={"axes": "ZCYX"})
    _expect_error(tmp_path, "4D stack|channel", hr=tmp_path / "c.tif")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_is_refused(tmp_path, bad):
    _, hr = _pair(tmp_path, "float32")
    hr[2, 5, 5] = bad
    write_tiff(tmp_path / "hr.tif", hr, HR_VOX)
    _expect_error(tmp_path, "NaN/Inf", hr=tmp_path / "hr.tif")


def test_unsupported_dtype_is_refused(tmp_path):
    _pair(tmp_path)
    tifffile.imwrite(tmp_path / "i16.tif", _vol((4, 64, 64), "int16"), photometric="minisblack")
    _expect_error(tmp_path, "int16", hr=tmp_path / "i16.tif")


def test_missing_voxel_size_names_the_config_key(tmp_path):
    _pair(tmp_path)
    tifffile.imwrite(
        tmp_path / "plain.tif", _vol((4, 64, 64), "uint8"), photometric="minisblack"
    )  # no resolution metadata
    _expect_error(tmp_path, r"specimens\.s1\.hr_voxel_nm", hr=tmp_path / "plain.tif")
    # a 2D sequence knows y/x from its tags at best, never z
    (tmp_path / "seq").mkdir()
    for z in range(4):
        tifffile.imwrite(
            tmp_path / "seq" / f"{z}.tif", _vol((64, 64), "uint8"), resolution=(100, 100), resolutionunit="CENTIMETER"
        )
    _expect_error(tmp_path, r"specimens\.s1\.hr_voxel_nm", hr=tmp_path / "seq")


def test_scale_ratio_below_one_is_refused(tmp_path):
    _pair(tmp_path, lr_vox=[50, 10, 10], hr_vox=[50, 33, 33])
    _expect_error(tmp_path, r"scale ratio 0\.303 < 1")
    _pair(tmp_path, lr_vox=[50, 10, 10], hr_vox=[50, 10, 10])
    _expect_error(tmp_path, "scale ratio = 1")


def test_missing_offset_and_offset_outside_lr_field(tmp_path):
    _pair(tmp_path)
    _expect_error(tmp_path, r"specimens\.s1\.hr_offset_nm is missing", spec={})
    _expect_error(
        tmp_path,
        r"specimens\.s1\.hr_offset_nm: the HR field .* is not inside the LR field",
        spec={"hr_offset_nm": [0, 5000, 300]},
    )


def test_malformed_voxel_size_in_config(tmp_path):
    _pair(tmp_path)
    _expect_error(tmp_path, r"specimens\.s1\.lr_voxel_nm", spec={"lr_voxel_nm": [50, 33], "hr_offset_nm": OFFSET})


# ----------------------------------------------------------------------------- labels


def _ingested(tmp_path):
    _pair(tmp_path)
    outs = _outs(tmp_path)
    run_ingest(str(tmp_path / "lr.tif"), str(tmp_path / "hr.tif"), specimen="s1", spec={"hr_offset_nm": OFFSET}, **outs)
    return outs["out_meta"]


def test_labels_round_trip_with_hr_voxel_size(tmp_path):
    meta = _ingested(tmp_path)
    labels = np.zeros((4, 64, 64), np.uint32)
    labels[:, 5:30, 5:30] = 70000  # needs more than 16 bits
    labels[:, 35:60, 35:60] = 3
    tifffile.imwrite(tmp_path / "labels.tif", labels, photometric="minisblack")
    out = tmp_path / "out" / "labels.tif"
    run_ingest_labels(str(tmp_path / "labels.tif"), str(meta), str(out), specimen="s1")
    back, vox = read_labels(out)
    assert np.array_equal(back, labels) and vox == pytest.approx(HR_VOX)


def test_cell_mask_called_from_the_library_is_cleaned_as_the_workflow_cleans_it(tmp_path):
    # 10 nm pixels: the schema's 400 nm^2 is 4 px; a 1-px gap left inside a membrane is no cell
    meta = _ingested(tmp_path)
    mask = np.zeros((4, 64, 64), np.uint8)
    mask[:, 5:30, 5:30] = 255
    mask[:, 35:60, 35:60] = 255
    mask[:, 32, 32] = 255
    tifffile.imwrite(tmp_path / "mask.tif", mask, photometric="minisblack")
    out = tmp_path / "out" / "labels.tif"
    run_ingest_labels(str(tmp_path / "mask.tif"), str(meta), str(out), specimen="s1", labels_kind="cell_mask")
    back, _ = read_labels(out)
    assert back[0, 32, 32] == 0 and len(np.unique(back[0])) == 3  # two cells + membrane
    run_ingest_labels(str(tmp_path / "mask.tif"), str(meta), str(out), "s1", labels_kind="cell_mask", min_area_nm2=0)
    assert read_labels(out)[0][0, 32, 32] != 0


def test_labels_whose_shape_differs_from_hr_are_refused(tmp_path):
    meta = _ingested(tmp_path)
    tifffile.imwrite(tmp_path / "labels.tif", np.ones((4, 64, 63), np.uint16), photometric="minisblack")
    out = tmp_path / "out" / "labels.tif"
    with pytest.raises(InputError, match=r"differs from the HR stack.*specimens\.s1\.labels"):
        run_ingest_labels(str(tmp_path / "labels.tif"), str(meta), str(out), specimen="s1")
    assert not out.exists()


def test_fractional_labels_are_refused(tmp_path):
    meta = _ingested(tmp_path)
    tifffile.imwrite(tmp_path / "labels.tif", np.full((4, 64, 64), 1.5, np.float32), photometric="minisblack")
    out = tmp_path / "out" / "labels.tif"
    with pytest.raises(InputError, match="integer instance IDs"):
        run_ingest_labels(str(tmp_path / "labels.tif"), str(meta), str(out), specimen="s1")
    assert not out.exists()


# ----------------------------------------------------------------------------- config + phantom


def test_phantom_specimen_takes_voxel_sizes_and_offset_from_its_meta(tmp_path):
    from srseg.phantom import run_phantom

    geometry = {
        "hr_shape": [2, 64, 64],
        "hr_voxel_nm": HR_VOX,
        "lr_voxel_nm": LR_VOX,
        "lr_margin_nm": 300,
        "offset_error_lr_px": 2,
        "max_rotation_deg": 2,
        "max_scale_error": 0.02,
    }
    params = {"seed": 5, "cell_radius_nm": 200, "membrane_contrast": 0.5, "noise": 0.05, "lr_noise": 0.04}
    ph = tmp_path / "phantom"
    run_phantom(
        params,
        geometry,
        *(ph / n for n in ("lr.tif", "hr.tif", "labels.tif", "meta.json", "truth.json")),
        progress=False,
    )
    outs = _outs(tmp_path)
    meta = run_ingest(
        str(ph / "lr.tif"),
        str(ph / "hr.tif"),
        specimen="demo",
        spec={"phantom": params, "bit_depth": 12},  # a generated specimen's bit_depth is its source's
        phantom_meta=str(ph / "meta.json"),
        **outs,
    )
    pmeta = read_json(ph / "meta.json")
    assert meta["hr_offset_nm"] == pytest.approx(pmeta["hr_offset_nm"])
    assert meta["lr_voxel_nm"] == LR_VOX and meta["hr_voxel_nm"] == HR_VOX and meta["phantom"] is True
    assert meta["lr_bit_depth"] == meta["hr_bit_depth"] == 8 and meta["hr_value_scale"] == 1.0  # 8-bit uint8
    run_ingest_labels(str(ph / "labels.tif"), str(outs["out_meta"]), str(tmp_path / "out" / "labels.tif"), "demo")
    assert np.array_equal(read_labels(tmp_path / "out" / "labels.tif")[0], read_labels(ph / "labels.tif")[0])
