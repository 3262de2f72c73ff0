"""Every accepted input format reads to the same (z, y, x) array and voxel size, and a
cell/membrane mask becomes the expected instance labels."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import tifffile

from srseg.ingest import read_stack, run_ingest_labels
from srseg.io import InputError, read_labels, write_json, write_tiff
from srseg.simulate import cell_mask_to_instances

VOXEL = [50.0, 4.0, 4.0]


@pytest.fixture()
def vol():
    return np.random.default_rng(0).integers(0, 256, (12, 20, 24), dtype=np.uint8)


def _um(v):
    return v / 1e3


def test_3d_tiff_ome_tiff_and_imagej_tiff_agree(tmp_path, vol):
    write_tiff(tmp_path / "ij.tif", vol, VOXEL)  # ImageJ hyperstack: resolution + spacing
    tifffile.imwrite(
        tmp_path / "s.ome.tif",
        vol,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": _um(4),
            "PhysicalSizeY": _um(4),
            "PhysicalSizeZ": _um(50),
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZUnit": "µm",
        },
    )
    tifffile.imwrite(
        tmp_path / "nm.ome.tif",
        vol,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 4,
            "PhysicalSizeY": 4,
            "PhysicalSizeZ": 50,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZUnit": "nm",
        },
    )
    for name in ("ij.tif", "s.ome.tif", "nm.ome.tif"):
        arr, vox = read_stack(str(tmp_path / name))
        assert arr.dtype == np.uint8 and np.array_equal(arr, vol), name
        assert vox == pytest.approx(VOXEL), name


def test_ome_tiff_without_physical_size_has_no_voxel_size(tmp_path, vol):
    tifffile.imwrite(tmp_path / "bare.ome.tif", vol, ome=True, metadata={"axes": "ZYX"})
    arr, vox = read_stack(str(tmp_path / "bare.ome.tif"))
    assert np.array_equal(arr, vol)
    assert vox is None or all(v is None for v in vox)  # never a made-up size


def test_section_folders_and_globs_in_natural_order(tmp_path, vol):
    tifs, pngs = tmp_path / "tifs", tmp_path / "pngs"
    tifs.mkdir()
    pngs.mkdir()
    for k, sec in enumerate(vol):  # s0 .. s11: lexical order would put s10 before s2
        write_tiff(tifs / f"s{k}.tif", sec[None], VOXEL)
        cv2.imwrite(str(pngs / f"s{k}.png"), sec)
    for spec in (str(tifs), str(tifs / "s*.tif"), str(pngs), str(pngs / "*.png")):
        arr, _ = read_stack(spec)
        assert np.array_equal(arr, vol), spec
    assert read_stack(str(tifs))[1] == [None, 4.0, 4.0]  # one section per file: z spacing from config
    assert read_stack(str(pngs))[1] is None  # PNG holds no voxel size: config must give it


@pytest.mark.skipif(importlib.util.find_spec("h5py") is not None, reason="h5py is installed")
def test_hdf5_without_h5py_names_the_fix(tmp_path):
    path = tmp_path / "vol.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(InputError, match="pip install h5py"):
        read_stack(f"{path}:/volumes/raw")


@pytest.mark.skipif(importlib.util.find_spec("h5py") is None, reason="h5py not installed (optional: pip install h5py)")
def test_hdf5_dataset_reads_like_the_tiff(tmp_path, vol):
    import h5py

    with h5py.File(tmp_path / "vol.h5", "w") as f:
        ds = f.create_dataset("volumes/raw", data=vol)
        ds.attrs["resolution"] = VOXEL
    arr, vox = read_stack(f"{tmp_path / 'vol.h5'}:/volumes/raw")
    assert np.array_equal(arr, vol) and vox == pytest.approx(VOXEL)
    with pytest.raises(InputError, match="no dataset"):
        read_stack(f"{tmp_path / 'vol.h5'}:/volumes/missing")


def drawn_mask() -> np.ndarray:
    """Section 0: a membrane cross -> 4 cells, plus a diagonal membrane (8-connected pixels
    only) that must still separate the top-left quadrant into 2 cells -> 5 cells.
    Section 1: one vertical membrane -> 2 cells."""
    m = np.full((2, 21, 21), 255, np.uint8)
    m[0, 10, :] = 0
    m[0, :, 10] = 0
    for i in range(10):  # a staircase-free diagonal: neighbours touch only at corners
        m[0, i, 9 - i] = 0
    m[1, :, 7] = 0
    return m


def test_cell_mask_becomes_instances_per_section():
    lab = cell_mask_to_instances(drawn_mask(), "2d")
    assert len(np.unique(lab[0][lab[0] > 0])) == 5
    assert len(np.unique(lab[1][lab[1] > 0])) == 2
    assert np.all(lab[drawn_mask() == 0] == 0)  # membranes stay background
    ids0, ids1 = set(np.unique(lab[0])) - {0}, set(np.unique(lab[1])) - {0}
    assert not ids0 & ids1  # 2d: an ID never spans two sections


def test_cell_mask_3d_links_overlapping_cells_through_z():
    lab = cell_mask_to_instances(drawn_mask(), "3d")
    # the two cells of section 1 each overlap cells of section 0: everything connects into few objects
    assert len(np.unique(lab[lab > 0])) < 5 + 2
    assert len(set(np.unique(lab[0])) & set(np.unique(lab[1])) - {0}) >= 1


def test_ingest_labels_converts_a_cell_mask(tmp_path):
    mask = drawn_mask()
    tifffile.imwrite(tmp_path / "cells.tif", mask)
    write_json(tmp_path / "meta.json", {"hr_shape": list(mask.shape), "hr_voxel_nm": VOXEL})
    run_ingest_labels(
        str(tmp_path / "cells.tif"),
        str(tmp_path / "meta.json"),
        str(tmp_path / "labels.tif"),
        "isbi",
        labels_kind="cell_mask",
        connectivity="2d",
    )
    lab, vox = read_labels(tmp_path / "labels.tif")
    assert len(np.unique(lab[lab > 0])) == 7 and vox == pytest.approx(VOXEL)
    with pytest.raises(InputError, match="labels_connectivity"):
        cell_mask_to_instances(mask, "4d")
