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
from srseg.simulate import cell_mask_to_instances, load_source

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


def double_membrane_mask() -> np.ndarray:
    """Two cells either side of a membrane drawn as two lines with a 1 px gap between them
    (a 1 x 40 = 40 px sliver), and a 3 x 3 hole (9 px) left inside a thick-drawn membrane."""
    m = np.full((1, 43, 40), 255, np.uint8)
    m[0, 20, :] = 0  # upper line
    m[0, 22, :] = 0  # lower line: row 21 is the gap between them
    m[0, 0:5, 18] = m[0, 0:5, 22] = 0  # a thick-drawn junction of the upper cell's membrane ...
    m[0, 0, 18:23] = m[0, 4, 18:23] = 0  # ... with a 3 x 3 hole left inside it
    return m


def test_small_components_of_a_cell_mask_become_membrane():
    mask = double_membrane_mask()
    kept = cell_mask_to_instances(mask, "2d")
    assert len(np.unique(kept[kept > 0])) == 4  # the two cells, the sliver and the hole
    clean = cell_mask_to_instances(mask, "2d", min_area_px=50)
    sizes = np.unique(clean[clean > 0], return_counts=True)[1]
    assert len(sizes) == 2 and sizes.min() > 50  # only the real cells are left
    assert np.all(clean[0, 21] == 0) and np.all(clean[0, 1:4, 19:22] == 0)  # sliver and hole are membrane now
    assert np.array_equal(clean > 0, (kept > 0) & (clean > 0)) and set(np.unique(clean)) <= set(np.unique(kept))
    # 3d: a component is dropped only if its largest cross-section is small (a thin neurite is kept)
    thin_then_wide = np.zeros((3, 12, 12), np.uint8)
    thin_then_wide[0, 5:7, 5:7] = 255  # 4 px
    thin_then_wide[1:, 2:10, 2:10] = 255  # 64 px: the same neurite, wider
    thin_then_wide[2, 0, 0] = 0
    speck = thin_then_wide.copy()
    speck[0, 0:2, 0:2] = 255  # a 4 px speck on its own
    lab3 = cell_mask_to_instances(speck, "3d", min_area_px=10)
    assert lab3[0, 5, 5] > 0 and lab3[0, 5, 5] == lab3[2, 5, 5] and lab3[0, 0, 0] == 0


def test_simulate_cleans_its_cell_mask_by_area_in_nm2(tmp_path):
    mask = double_membrane_mask()
    write_tiff(tmp_path / "src.tif", (mask // 2 + 64).astype(np.uint8), [50.0, 4.0, 4.0])
    write_tiff(tmp_path / "cells.tif", mask, [50.0, 4.0, 4.0])
    params = {"source": str(tmp_path / "src.tif"), "labels": str(tmp_path / "cells.tif"),
              "labels_kind": "cell_mask", "lr_voxel_nm": [50, 16, 16]}  # fmt: skip
    counts = {}
    for area_nm2 in (0, 16 * 50, 400):  # 0 px, 50 px, 25 px at 4 nm
        lab = load_source({**params, "labels_min_area_nm2": area_nm2})[2]
        counts[area_nm2] = len(np.unique(lab[lab > 0]))
    assert counts == {0: 4, 800: 2, 400: 3}  # 400 nm^2 (the default) drops the 9 px hole, keeps the 40 px sliver


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
