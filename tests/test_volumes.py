"""Chunked volumes (srseg.volumes): OME-Zarr written section by section with its pyramid, valid NGFF that
ome-zarr reads at true scale and position; lazy readers of OME-Zarr, zarr arrays and TIFF; N5 refused;
no output that looks complete after a failure; blockwise writes joined byte for byte."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

zarr = pytest.importorskip("zarr")

from srseg.io import InputError, read_tiff, write_tiff, write_tiff_sections  # noqa: E402
from srseg.volumes import (  # noqa: E402
    OmeZarrWriter,
    TiffSink,
    concat_tiffs,
    downsample2,
    gather_blocks,
    open_sink,
    open_volume,
    tmp_path,
    write_ome_zarr,
)

VOX, OFF = [50.0, 10.0, 12.0], [100.0, 2000.0, 3000.0]


def _vol(shape=(4, 70, 53), dtype=np.uint8, seed=0):
    return (np.random.default_rng(seed).random(shape) * 200).astype(dtype)


def _tree(path) -> dict:
    return {
        str(f.relative_to(path)): hashlib.md5(f.read_bytes()).hexdigest() for f in Path(path).rglob("*") if f.is_file()
    }


def test_ome_zarr_validates_and_opens_at_true_scale_and_offset(tmp_path):
    vol = _vol()
    write_ome_zarr(tmp_path / "sr.zarr", vol, VOX, OFF, levels=3, chunk=32)
    models = pytest.importorskip("ome_zarr_models")
    from ome_zarr_models.v05 import Image

    assert isinstance(models.open_ome_zarr(zarr.open_group(str(tmp_path / "sr.zarr"), mode="r")), Image)
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(str(tmp_path / "sr.zarr")))()))
    assert [tuple(d.shape) for d in node.data] == [(4, 70, 53), (4, 35, 27), (4, 18, 14)]
    assert [a["unit"] for a in node.metadata["axes"]] == ["nanometer"] * 3
    (scale0, trans0), (scale2, trans2) = (
        [t[k] for t, k in zip(node.metadata["coordinateTransformations"][lv], ("scale", "translation"))]
        for lv in (0, 2)
    )
    assert scale0 == VOX and trans0 == OFF
    assert scale2 == [50.0, 40.0, 48.0] and trans2 == [100.0, 2015.0, 3018.0]  # level-2 voxel centres
    np.testing.assert_array_equal(np.asarray(node.data[0]), vol)


def test_reader_takes_the_root_a_level_or_a_plain_array(tmp_path):
    vol = _vol()
    write_ome_zarr(tmp_path / "a.zarr", vol, VOX, OFF, levels=2)
    v = open_volume(tmp_path / "a.zarr")
    assert v.shape == vol.shape and v.voxel_nm == VOX and v.offset_nm == OFF and v.format == "ome-zarr"
    np.testing.assert_array_equal(v[1:3], vol[1:3])
    np.testing.assert_array_equal(v.section(3), vol[3])
    assert v.level(1).voxel_nm == [50.0, 20.0, 24.0] and v.level(1).shape == (4, 35, 27)
    plain = open_volume(tmp_path / "a.zarr" / "1")  # a level as a plain array: no voxel size attribute
    assert plain.shape == (4, 35, 27) and plain.voxel_nm is None
    arr = zarr.create_array(
        str(tmp_path / "raw.zarr"), name="em/raw", shape=vol.shape, dtype="uint8", chunks=(1, 32, 32)
    )
    arr[:] = vol
    arr.attrs.update({"resolution": [40, 8, 8], "offset": [0, 80, 80]})  # N5 / CREMI style attributes
    v = open_volume(tmp_path / "raw.zarr" / "em" / "raw")
    assert v.voxel_nm == [40.0, 8.0, 8.0] and v.offset_nm == [0.0, 80.0, 80.0]
    np.testing.assert_array_equal(v.read(), vol)
    with pytest.raises(InputError, match="without OME-Zarr multiscales"):
        open_volume(tmp_path / "raw.zarr" / "em")


def test_n5_and_missing_sources_are_refused_with_the_path(tmp_path):
    (tmp_path / "vol.n5").mkdir()
    with pytest.raises(InputError, match=r"vol\.n5/raw: N5 .*convert"):
        open_volume(tmp_path / "vol.n5" / "raw")
    with pytest.raises(InputError, match="not found"):
        open_volume(tmp_path / "nothing.zarr")
    with pytest.raises(InputError, match="not found"):
        open_volume(tmp_path / "nothing.tif")


def test_a_failed_write_leaves_no_output(tmp_path):
    out = tmp_path / "sr.zarr"
    with pytest.raises(RuntimeError, match="killed"):
        with OmeZarrWriter(out, (3, 20, 20), "uint8", VOX) as w:
            w.write_section(0, np.zeros((20, 20), np.uint8))
            raise RuntimeError("killed")
    assert not out.exists() and not tmp_path_exists(out)
    w = OmeZarrWriter(out, (3, 20, 20), "uint8", VOX)
    w.write_section(0, np.zeros((20, 20), np.uint8))
    with pytest.raises(RuntimeError, match="never written"):
        w.close()
    assert not out.exists() and not tmp_path_exists(out)
    with pytest.raises(ValueError, match="stop"):
        with TiffSink(tmp_path / "sr.tif", (3, 20, 20), "uint8", VOX) as s:
            s.write_section(0, np.zeros((20, 20), np.uint8))
            raise ValueError("stop")
    assert list(tmp_path.iterdir()) == []


def tmp_path_exists(path) -> bool:
    return tmp_path(path).exists()


@pytest.mark.parametrize("kind", ["image", "labels"])
def test_row_bands_write_the_bytes_of_whole_sections(tmp_path, kind):
    """OmeZarrWriter.write_rows: bands of a multiple of 2**(levels - 1) rows (a shorter last one) give every
    pyramid level of write_section; misplaced bands are refused; a TiffSink gathers bands into pages."""
    vol = _vol((2, 70, 53), np.uint16 if kind == "image" else np.uint64, seed=3)
    write_ome_zarr(tmp_path / "whole.zarr", vol, VOX, OFF, kind, chunk=16, levels=3)
    with OmeZarrWriter(tmp_path / "bands.zarr", vol.shape, vol.dtype, VOX, OFF, kind, chunk=16, levels=3) as w:
        assert w.band_rows == 16
        for k in range(2):
            for y0 in range(0, 70, 8):
                w.write_rows(k, y0, vol[k, y0 : y0 + 8])
        with pytest.raises(ValueError, match="multiple of 4"):
            w.write_rows(0, 0, vol[0, :6])
    import zarr

    a, b = (
        zarr.open_group(str(tmp_path / "whole.zarr"), mode="r"),
        zarr.open_group(str(tmp_path / "bands.zarr"), mode="r"),
    )
    for lv in range(3):
        assert np.array_equal(a[str(lv)][...], b[str(lv)][...]), lv
    with pytest.raises(RuntimeError, match="never written"):
        with OmeZarrWriter(tmp_path / "part.zarr", vol.shape, vol.dtype, VOX, OFF, kind, levels=3) as w:
            w.write_rows(0, 0, vol[0, :8])
            w.write_section(1, vol[1])
    assert not (tmp_path / "part.zarr").exists()
    if kind == "image":
        with TiffSink(tmp_path / "bands.tif", vol.shape, vol.dtype, VOX) as sink:
            for k in range(2):
                for y0 in range(0, 70, 8):
                    sink.write_rows(k, y0, vol[k, y0 : y0 + 8])
        write_tiff(tmp_path / "whole.tif", vol, VOX)
        assert (tmp_path / "bands.tif").read_bytes() == (tmp_path / "whole.tif").read_bytes()


def test_pyramid_means_images_and_takes_the_mode_of_labels():
    img = np.array([[0, 2, 9], [4, 6, 9], [1, 1, 1]], np.uint8)
    np.testing.assert_array_equal(downsample2(img), [[3, 9], [1, 1]])
    lab = np.array([[5, 7, 3], [7, 7, 3], [1, 2, 0]], np.uint32)
    np.testing.assert_array_equal(downsample2(lab, "labels"), [[7, 3], [1, 0]])
    assert downsample2(np.ones((5, 4), np.float32)).dtype == np.float32


def test_blocks_gathered_are_the_one_job_output_byte_for_byte(tmp_path):
    vol = _vol((5, 40, 36))
    write_ome_zarr(tmp_path / "whole.zarr", vol, VOX, OFF, levels=2, chunk=16, name="joined")
    blocks = []
    for b, (z0, z1) in enumerate([(0, 2), (2, 3), (3, 5)]):
        blocks.append(tmp_path / f"block{b}.zarr")
        with open_sink(blocks[-1], vol.shape, "uint8", VOX, OFF, levels=2, chunk=16, name="sr", z_range=(z0, z1)) as w:
            for k in range(z0, z1):
                w.write_section(k, vol[k])
    gather_blocks(blocks, tmp_path / "joined.zarr")
    assert _tree(tmp_path / "joined.zarr") == _tree(tmp_path / "whole.zarr")
    with pytest.raises(InputError, match="do not cover"):
        gather_blocks(blocks[::2], tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()


def test_tiff_read_lazily_and_written_by_sections_as_by_write_tiff(tmp_path):
    vol = _vol((5, 30, 20), np.uint16)
    write_tiff(tmp_path / "whole.tif", vol, VOX)
    write_tiff_sections(tmp_path / "parts.tif", iter(vol), vol.shape, vol.dtype, VOX)
    assert (tmp_path / "whole.tif").read_bytes() == (tmp_path / "parts.tif").read_bytes()
    with open_volume(tmp_path / "parts.tif") as v:
        assert v.shape == vol.shape and v.voxel_nm == pytest.approx(VOX)
        np.testing.assert_array_equal(v.section(4), vol[4])
        np.testing.assert_array_equal(v[[3, 1]], vol[[3, 1]])
    tifffile.imwrite(tmp_path / "raw.tif", vol)  # uncompressed, no metadata
    with open_volume(tmp_path / "raw.tif") as v:
        np.testing.assert_array_equal(v.read(), vol)
    concat_tiffs([tmp_path / "whole.tif", tmp_path / "parts.tif"], tmp_path / "both.tif")
    both, voxel = read_tiff(tmp_path / "both.tif")
    np.testing.assert_array_equal(both, np.concatenate([vol, vol]))
    assert voxel == pytest.approx(VOX)
    with pytest.raises(ValueError, match="3 sections given"):
        write_tiff_sections(tmp_path / "short.tif", iter(vol[:3]), vol.shape, vol.dtype, VOX)
    assert not (tmp_path / "short.tif").exists()
