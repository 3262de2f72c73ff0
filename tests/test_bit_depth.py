"""Bit depth: 12-bit data in uint16 is read relative to its real range, so it degrades like its 8-bit version."""

import numpy as np
import pytest
from scipy import ndimage

from srseg import io
from srseg.degrade import degrade_volume, run_degrade
from srseg.ingest import run_ingest
from srseg.io import InputError, read_image, read_json, read_tiff, write_json, write_tiff
from srseg.simulate import load_source

LR_VOX, HR_VOX, OFFSET = [50.0, 30.0, 30.0], [50.0, 10.0, 10.0], [0.0, 300.0, 300.0]


def image(shape, seed):
    """A smooth image filling [0, 1] (so its maximum reaches the bit depth's top)."""
    x = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 2, axes=(-2, -1))
    return (x - x.min()) / (x.max() - x.min())


def quantise(x, bits, dtype):
    return np.rint(x * (2**bits - 1)).astype(dtype)


def ingest(tmp_path, name, lr, hr, **spec):
    d = tmp_path / name
    write_tiff(d / "in_lr.tif", lr, LR_VOX)
    write_tiff(d / "in_hr.tif", hr, HR_VOX)
    outs = {"out_lr": d / "lr.tif", "out_hr": d / "hr.tif", "out_meta": d / "meta.json"}
    meta = run_ingest(
        str(d / "in_lr.tif"), str(d / "in_hr.tif"), specimen=name, spec={"hr_offset_nm": OFFSET, **spec}, **outs
    )
    return meta, outs


@pytest.mark.parametrize(
    "top, bits", [(200, 8), (255, 8), (1000, 10), (4095, 12), (4096, 14), (16383, 14), (16384, 16), (65535, 16)]
)
def test_detect_bit_depth_of_uint16(top, bits):
    vol = np.zeros((1, 4, 4), np.uint16)
    vol[0, 0, 0] = top
    assert io.detect_bit_depth(vol) == bits


def test_uint8_is_8_bit_and_float_has_no_depth():
    assert io.detect_bit_depth(np.full((1, 2, 2), 3, np.uint8)) == 8
    assert io.detect_bit_depth(np.zeros((1, 2, 2), np.float32)) is None
    assert io.resolve_bit_depth(np.zeros((1, 2, 2), np.float32), 12, "k", "s") is None


@pytest.mark.parametrize("bits", [8, 10, 12, 14])
def test_full_range_map_is_lossless(bits):
    raw = np.arange(2**bits, dtype=np.uint16)
    full = io.to_full_range(raw, bits)
    assert full[0] == 0 and full[-1] == 65535 and np.all(np.diff(full.astype(np.int64)) > 0)  # injective
    np.testing.assert_array_equal(io.from_full_range(full, bits), raw)
    # read back as [0, 1], a value is raw / (2**bits - 1) to within half a uint16 step
    assert np.abs(io.to_float(full) - raw / (2**bits - 1)).max() <= 0.5 / 65535 + 1e-7
    assert io.full_range_scale("uint16", bits) == pytest.approx(65535 / (2**bits - 1))
    np.testing.assert_array_equal(io.to_full_range(raw.astype(np.uint16), 16), raw)  # 16 bit: unchanged


def test_ingest_rescales_12_bit_data_and_records_the_depth(tmp_path):
    lr, hr = quantise(image((2, 48, 48), 1), 12, np.uint16), quantise(image((2, 96, 96), 2), 12, np.uint16)
    meta, outs = ingest(tmp_path, "s1", lr, hr)
    assert meta["lr_bit_depth"] == meta["hr_bit_depth"] == 12 and meta["hr_bit_depth_from"] == "detected"
    assert meta["hr_value_scale"] == pytest.approx(65535 / 4095) and meta["dtype"] == "uint16"
    stored, _ = read_tiff(outs["out_hr"])
    assert stored.dtype == np.uint16 and stored.max() == 65535
    np.testing.assert_array_equal(io.from_full_range(stored, 12), hr)  # lossless
    assert read_json(outs["out_meta"]) == meta


def test_declared_bit_depth_wins_and_is_checked(tmp_path):
    lr, hr = quantise(image((2, 48, 48), 1), 12, np.uint16), quantise(image((2, 96, 96), 2), 12, np.uint16)
    meta, outs = ingest(tmp_path, "s1", lr, hr, bit_depth=16)  # a dim 16-bit stack stays as it is
    assert meta["hr_bit_depth"] == 16 and meta["hr_bit_depth_from"] == "config" and meta["hr_value_scale"] == 1.0
    np.testing.assert_array_equal(read_tiff(outs["out_hr"])[0], hr)
    with pytest.raises(InputError, match=r"specimens\.s2\.bit_depth = 10: HR stack .* values up to 4095"):
        ingest(tmp_path, "s2", lr // 4, hr, bit_depth=10)
    assert not (tmp_path / "s2" / "hr.tif").exists() and not (tmp_path / "s2" / "meta.json").exists()
    with pytest.raises(InputError, match=r"specimens\.s3\.bit_depth = 12: LR stack .* uint8, which holds 1 to 8"):
        ingest(
            tmp_path,
            "s3",
            quantise(image((2, 48, 48), 1), 8, np.uint8),
            quantise(image((2, 96, 96), 2), 8, np.uint8),
            bit_depth=12,
        )


def test_12_bit_stack_degrades_like_its_8_bit_version(tmp_path):
    """Through ingest + degrade: 12-bit-in-uint16 and 8-bit give the same LR to quantisation; read by the
    dtype's range instead (no fix), the 12-bit data would get noise 16x too strong for its signal."""
    x_lr, x_hr = image((2, 48, 48), 1), image((2, 96, 96), 2)
    recipe = {"kind": "blur_noise", "blur_sigma": 1.0, "noise_pre": 30.0, "noise_post": 10.0}
    info = {"scale": 3, "lr_shape": [2, 32, 32], "hr_shape": [2, 96, 96], "lr_voxel_nm": LR_VOX, "hr_voxel_nm": HR_VOX}
    write_json(tmp_path / "pairs.json", info)
    lrs = {}
    for bits, dtype in ((12, np.uint16), (8, np.uint8)):
        name = f"b{bits}"
        _, outs = ingest(tmp_path, name, quantise(x_lr, bits, dtype), quantise(x_hr, bits, dtype))
        out = tmp_path / name / "deg.tif"
        run_degrade(outs["out_hr"], tmp_path / "pairs.json", out, recipe, "blur_noise", "same", seed=0)
        lrs[bits] = read_image(out)[0]
    # every stage reads the ingested stacks with read_image (training -- EMSR's sigma / 255 noise --,
    # metrics -- PSNR's peak 1 --): the 12-bit and the 8-bit HR are the same [0, 1] image
    hr12, hr8 = (read_image(tmp_path / f"b{b}" / "hr.tif")[0] for b in (12, 8))
    assert np.abs(hr12 - hr8).max() <= 0.5 / 255 + 0.5 / 4095 + 1e-6
    # the same noise (same seed) on the same signal: equal to the 8-bit quantisation (input + output)
    assert np.abs(lrs[12] - lrs[8]).max() <= 1.5 / 255
    assert np.abs(lrs[12] - lrs[8]).mean() < 0.3 / 255
    # without the fix: the 12-bit data read as uint16 / 65535 spans [0, 1/16]; the same noise sigma (on
    # the "8-bit scale") is then 16x stronger relative to the signal (weak noise: no clipping at 0)
    weak = {"kind": "blur_noise", "blur_sigma": 1.0, "noise_pre": 0.0, "noise_post": 2.0}
    snr = {}
    for fixed in (True, False):
        hr = read_image(tmp_path / "b12" / "hr.tif")[0] if fixed else io.to_float(quantise(x_hr, 12, np.uint16))
        clean = degrade_volume(hr, 3, {**weak, "noise_post": 0.0}, seed=0)
        inside = clean > 0.5 * clean.max()  # > 3 noise sd from the clip at 0 in both
        snr[fixed] = (degrade_volume(hr, 3, weak, seed=0) - clean)[inside].std() / np.ptp(clean)
    assert snr[False] / snr[True] == pytest.approx(65535 / 4095, rel=0.03)


def test_simulate_reads_a_12_bit_source_relative_to_its_depth(tmp_path):
    src = quantise(image((2, 64, 64), 3), 12, np.uint16)
    write_tiff(tmp_path / "src.tif", src, [50.0, 10.0, 10.0])
    params = {"source": str(tmp_path / "src.tif"), "lr_voxel_nm": [50, 40, 40]}
    img, _, _, prov = load_source(params)
    assert prov["source_bit_depth"] == 12 and img.max() == pytest.approx(1.0)
    np.testing.assert_allclose(img, src / 4095, atol=1e-5)
    img16, _, _, prov16 = load_source(params, bit_depth=16)
    assert prov16["source_bit_depth"] == 16 and img16.max() == pytest.approx(4095 / 65535)
    with pytest.raises(InputError, match=r"simulate\.bit_depth = 8"):
        load_source(params, bit_depth=8)
