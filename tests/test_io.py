"""TIFF round-trips keep data and voxel size; writes are atomic."""

import numpy as np
import pytest
import tifffile

from srseg import io


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_image_roundtrip_keeps_voxel_size_and_dtype(tmp_path, dtype):
    vol = np.random.default_rng(0).random((3, 7, 9), dtype=np.float32)
    path = tmp_path / "img.tif"
    io.write_image(path, vol, [50, 10, 12], dtype)
    back, voxel, on_disk = io.read_image(path)
    assert on_disk == dtype
    assert back.shape == (3, 7, 9) and back.dtype == np.float32
    np.testing.assert_allclose(voxel, [50, 10, 12], rtol=1e-6)
    tol = {"uint8": 0.5 / 255, "uint16": 0.5 / 65535, "float32": 0}[dtype]
    assert np.abs(back - vol).max() <= tol + 1e-7


def test_imagej_metadata_is_what_fiji_reads(tmp_path):
    path = tmp_path / "img.tif"
    io.write_image(path, np.zeros((2, 4, 4), np.float32), [40, 8, 8], "uint8")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.04)
        assert tif.imagej_metadata["unit"] == "um"


def test_large_labels_roundtrip(tmp_path):
    labels = np.arange(60, dtype=np.uint64).reshape(3, 4, 5) * 100_003
    path = tmp_path / "labels.tif"
    io.write_labels(path, labels, [50, 4, 4])
    back, voxel = io.read_labels(path)
    assert np.array_equal(back, labels)
    np.testing.assert_allclose(voxel, [50, 4, 4])


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "out.tif"
    with pytest.raises(ValueError):
        io.write_image(path, np.zeros((4, 4, 4, 3), np.float32), [1, 1, 1], "uint8")
    assert list(tmp_path.iterdir()) == []


def test_missing_and_corrupt_files_raise_one_sentence(tmp_path):
    with pytest.raises(io.InputError, match="not found"):
        io.read_tiff(tmp_path / "nope.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"this is not a tiff")
    with pytest.raises(io.InputError, match="not a readable TIFF"):
        io.read_tiff(bad)
