"""Tiled inference: equals untiled inference, no seams, HR grid metadata, bad input."""

import itertools
import json

import numpy as np
import pytest
import tifffile
import torch

from srseg.infer import run_infer, super_resolve
from srseg.io import InputError, read_image, write_image, write_json
from srseg.models import build_model, save_trained
from srseg.tiling import blend_weights, tile_starts


def _vol(shape=(2, 70, 53), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _whole(model, vol):
    with torch.no_grad():
        return model(torch.from_numpy(vol)[:, None])[:, 0].clamp(0, 1).numpy()


def test_tiles_cover_every_pixel_with_positive_weight():
    for n, tile, overlap in [(70, 24, 8), (53, 24, 8), (24, 24, 8), (10, 24, 8), (100, 30, 0)]:
        starts = tile_starts(n, tile, overlap)
        t = min(tile, n)
        assert starts[0] == 0 and starts[-1] + t == n
        assert all(b - a <= t - overlap for a, b in itertools.pairwise(starts))
        cover = np.zeros(n * 3)
        for a, w in zip(starts, blend_weights(starts, t, overlap, 3)):
            cover[a * 3 : (a + t) * 3] += w
        assert cover.min() > 0.2


def test_bicubic_tiled_equals_whole_image():
    vol = _vol()
    model = build_model({"arch": "bicubic"}, 3)
    tiled = super_resolve(model, vol, 3, tile=24, overlap=8, batch=5, progress=False)
    assert tiled.shape == (2, 210, 159)
    np.testing.assert_allclose(tiled, _whole(model, vol), atol=1e-5)


def test_small_receptive_field_model_tiled_equals_whole_image_everywhere():
    # srcnn 5-3-3 on a x2 bicubic input reaches 2 LR px + 3 HR px: inside the 4 LR px blend margin of overlap 16
    torch.manual_seed(0)
    model = build_model({"arch": "srcnn", "net": {"features": [8, 4], "kernels": [5, 3, 3]}}, 2).eval()
    vol = _vol((1, 75, 61), seed=1)
    tiled = super_resolve(model, vol, 2, tile=36, overlap=16, batch=3, progress=False)
    np.testing.assert_allclose(tiled, _whole(model, vol), atol=1e-5)


def test_deep_model_tiled_matches_inside_tiles_and_has_no_seam():
    torch.manual_seed(0)
    model = build_model({"arch": "edsr", "net": {"n_feats": 8, "n_blocks": 2}}, 2).eval()
    vol = _vol((1, 64, 64), seed=2)
    tiled = super_resolve(model, vol, 2, tile=32, overlap=8, batch=4, progress=False)[0]
    whole = _whole(model, vol)[0]
    # tile starts are 0, 24, 32: far from every tile edge (the receptive field is 6 LR px) the output is exact
    np.testing.assert_allclose(tiled[20:28, 20:28], whole[20:28, 20:28], atol=1e-5)
    # no seam: abutting tiles (overlap 0) leave each tile's zero-padding artefacts at the cut;
    # blending must remove almost all of them
    cut = super_resolve(model, vol, 2, tile=32, overlap=0, batch=4, progress=False)[0]
    blended_err, cut_err = np.abs(tiled - whole), np.abs(cut - whole)
    assert blended_err.max() < 0.05 * cut_err.max()
    assert blended_err.mean() < 0.05 * cut_err.mean()


def test_emsr_runs_tiled_on_a_volume_smaller_than_a_tile():
    model = build_model({"arch": "emsr", "net": {"channels": 8, "n_basic": 1, "n_res": 1, "heads": 2}}, 3)
    out = super_resolve(model, _vol((2, 10, 13)), 3, tile=64, overlap=8, batch=2, progress=False, out_dtype="uint8")
    assert out.shape == (2, 30, 39) and out.dtype == np.uint8


def _specimen(tmp_path, scale=3):
    lr = _vol((2, 30, 28), seed=3)
    write_image(tmp_path / "lr.tif", lr, [50, 30, 30], "uint8")
    write_json(tmp_path / "pairs.json", {"scale": scale, "hr_voxel_nm": [50, 10, 10]})
    return lr


def test_run_infer_writes_hr_grid_tiff_and_throughput_json(tmp_path):
    _specimen(tmp_path)
    spec = {"arch": "edsr", "net": {"n_feats": 8, "n_blocks": 1}}
    save_trained(tmp_path / "model.pt", build_model(spec, 3), spec, 3)
    info = run_infer(
        str(tmp_path / "lr.tif"),
        str(tmp_path / "sr.tif"),
        str(tmp_path / "sr.json"),
        model_path=str(tmp_path / "model.pt"),
        pairs_json=str(tmp_path / "pairs.json"),
        settings={"tile": 16, "overlap": 4, "batch": 4},
        device="cpu",
    )
    vol, voxel, dtype = read_image(tmp_path / "sr.tif")
    assert vol.shape == (2, 90, 84) and dtype == "uint8"
    assert voxel == pytest.approx([50, 10, 10])
    saved = json.loads((tmp_path / "sr.json").read_text())
    assert saved["voxels_per_s"] > 0 and saved["device"] == "cpu" and saved["tile"] == 16
    assert info["hr_shape"] == [2, 90, 84]


def test_run_infer_bicubic_without_model_file(tmp_path):
    lr = _specimen(tmp_path)
    run_infer(
        str(tmp_path / "lr.tif"),
        str(tmp_path / "bic.tif"),
        str(tmp_path / "bic.json"),
        arch_spec={"arch": "bicubic"},
        pairs_json=str(tmp_path / "pairs.json"),
        settings={"tile": 24, "overlap": 8},
        device="cpu",
    )
    out = tifffile.imread(tmp_path / "bic.tif")
    lr8 = np.rint(lr * 255) / 255
    ref = _whole(build_model({"arch": "bicubic"}, 3), lr8.astype(np.float32))
    assert np.abs(out / 255.0 - ref).max() <= 0.5 / 255 + 1e-6


def test_run_infer_bad_inputs_leave_no_output(tmp_path):
    _specimen(tmp_path, scale=2)
    spec = {"arch": "edsr", "net": {"n_feats": 8, "n_blocks": 1}}
    save_trained(tmp_path / "model.pt", build_model(spec, 3), spec, 3)
    args = (str(tmp_path / "lr.tif"), str(tmp_path / "o.tif"), str(tmp_path / "o.json"))
    with pytest.raises(InputError, match="trained at scale 3"):
        run_infer(*args, model_path=str(tmp_path / "model.pt"), pairs_json=str(tmp_path / "pairs.json"), device="cpu")
    with pytest.raises(InputError, match="must be trained"):
        run_infer(*args, arch_spec=spec, scale=3, device="cpu")
    with pytest.raises(InputError, match="overlap"):
        run_infer(*args, arch_spec={"arch": "bicubic"}, scale=3, settings={"tile": 16, "overlap": 8}, device="cpu")
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="bad.pt"):
        run_infer(*args, model_path=str(tmp_path / "bad.pt"), device="cpu")
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "o.json").exists()


# ------------------------------------------------------------------- device blending, streaming, OME-Zarr


def _host_blended(model, vol, scale, tile, overlap, batch, out_dtype, noise_seed=0):
    """The former super_resolve (per-tile blending on the host, numpy float32): the bytes to keep."""
    from srseg.data import context_indices
    from srseg.infer import section_noise, tile_noise
    from srseg.io import from_float
    from srseg.tiling import tile_axis

    z, h, w = vol.shape
    (ys, ty, wy), (xs, tx, wx) = tile_axis(h, tile, overlap, scale), tile_axis(w, tile, overlap, scale)
    tiles = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    norm = np.zeros((h * scale, w * scale), np.float32)
    for i, j in tiles:
        norm[ys[i] * scale : (ys[i] + ty) * scale, xs[j] * scale : (xs[j] + tx) * scale] += np.outer(wy[i], wx[j])
    out = []
    with torch.inference_mode():
        for k in range(z):
            acc = np.zeros_like(norm)
            sec = torch.from_numpy(np.ascontiguousarray(vol[context_indices(k, getattr(model, "context", 0), z)]))
            noise = section_noise(model, h, w, noise_seed, k, "cpu")
            for b in range(0, len(tiles), batch):
                chunk = tiles[b : b + batch]
                x = torch.stack([sec[:, ys[i] : ys[i] + ty, xs[j] : xs[j] + tx] for i, j in chunk])
                y = model(x) if noise is None else model(x, noise=tile_noise(noise, chunk, ys, xs, ty, tx, 1))
                for (i, j), t in zip(chunk, y.float().clamp_(0, 1)[:, 0].numpy()):
                    acc[ys[i] * scale : (ys[i] + ty) * scale, xs[j] * scale : (xs[j] + tx) * scale] += t * np.outer(
                        wy[i], wx[j]
                    )
            res = acc / norm
            out.append(res if out_dtype == "float32" else from_float(res, out_dtype))
    return np.stack(out)


@pytest.mark.parametrize(
    "spec",
    [
        {"arch": "edsr", "net": {"n_feats": 8, "n_blocks": 1}},
        {"arch": "srcnn", "net": {"features": [8, 4]}, "context": 1},
        {"arch": "wgan", "net": {"n_feats": 8, "n_blocks": 1, "noise": True}},
    ],
    ids=lambda s: s["arch"],
)
def test_device_blending_gives_the_bytes_of_the_former_host_blending(spec):
    torch.manual_seed(0)
    model = build_model(spec, 2).eval()
    vol = _vol((3, 30, 26), seed=4)
    for dtype in ("float32", "uint8", "uint16"):
        new = super_resolve(model, vol, 2, tile=12, overlap=4, batch=3, out_dtype=dtype, progress=False, noise_seed=2)
        old = _host_blended(model, vol, 2, 12, 4, 3, dtype, noise_seed=2)
        assert new.dtype == old.dtype and np.array_equal(new, old), dtype


@pytest.mark.parametrize(
    "spec",
    [
        {"arch": "bicubic"},
        {"arch": "srcnn", "net": {"features": [8, 4]}, "context": 1},
        {"arch": "wgan", "net": {"n_feats": 8, "n_blocks": 1, "noise": True}},
    ],
    ids=lambda s: s["arch"],
)
def test_row_bands_join_to_the_whole_sections_bytes(spec):
    """iter_super_resolve_bands holds a band plus a tile's height, not the section: its bands, of any height,
    concatenate to super_resolve's sections exactly (the same additions in the same order per pixel)."""
    from srseg.infer import TiledSR, iter_super_resolve_bands

    torch.manual_seed(0)
    model = build_model(spec, 3).eval()
    vol = _vol((2, 41, 23), seed=5)
    for dtype in ("float32", "uint8"):
        whole = super_resolve(model, vol, 3, tile=10, overlap=3, batch=4, out_dtype=dtype, progress=False, noise_seed=1)
        for rows in (1, 7, 30, 64, 123, 500):
            got = {}
            it = iter_super_resolve_bands(model, vol, 3, 10, 3, 4, "cpu", True, dtype, False, 1, band_rows=rows)
            for k, y0, band in it:
                assert band.shape[0] == min(rows, 123 - y0) and y0 == sum(len(b) for b in got.get(k, []))
                got.setdefault(k, []).append(band)
            joined = np.stack([np.concatenate(got[k]) for k in range(2)])
            assert joined.dtype == whole.dtype and np.array_equal(joined, whole), (dtype, rows)
    engine = TiledSR(model, (41, 23), 3, tile=10, overlap=3, batch=4)
    stack = vol[np.clip(np.arange(-engine.context, engine.context + 1), 0, 1)].astype(np.float32)
    assert max(len(b) for _, b in engine.bands(stack, 0, rows=16)) == 16


def test_run_infer_streams_an_ome_zarr_with_the_tiff_pixels_from_tiff_or_zarr_input(tmp_path):
    zarr = pytest.importorskip("zarr")
    from srseg.volumes import open_volume, write_ome_zarr

    lr = _specimen(tmp_path)
    spec = {"arch": "edsr", "net": {"n_feats": 8, "n_blocks": 1}}
    save_trained(tmp_path / "model.pt", build_model(spec, 3), spec, 3)
    common = dict(
        model_path=str(tmp_path / "model.pt"),
        pairs_json=str(tmp_path / "pairs.json"),
        settings={"tile": 16, "overlap": 4, "batch": 4},
        device="cpu",
    )
    run_infer(str(tmp_path / "lr.tif"), str(tmp_path / "sr.tif"), str(tmp_path / "sr.json"), **common)
    info = run_infer(str(tmp_path / "lr.tif"), str(tmp_path / "sr.zarr"), str(tmp_path / "z.json"), **common)
    tif = tifffile.imread(tmp_path / "sr.tif")
    with open_volume(tmp_path / "sr.zarr") as sr:
        assert sr.voxel_nm == [50.0, 10.0, 10.0] and sr.dtype == np.uint8
        assert sr.offset_nm == pytest.approx([0.0, -10.0, -10.0])  # HR pixel centres subdivide the LR pixel at 0
        np.testing.assert_array_equal(sr.read(), tif)
        assert len(sr.levels) >= 1
    assert info["output_format"] == "ome-zarr" and info["hr_shape"] == [2, 90, 84]
    models = pytest.importorskip("ome_zarr_models")
    models.open_ome_zarr(zarr.open_group(str(tmp_path / "sr.zarr"), mode="r"))  # valid NGFF
    # the same LR as an OME-Zarr input (voxel size from its metadata)
    write_ome_zarr(tmp_path / "lr.zarr", np.rint(lr * 255).astype(np.uint8), [50, 30, 30], levels=1)
    run_infer(str(tmp_path / "lr.zarr"), str(tmp_path / "sr2.tif"), str(tmp_path / "sr2.json"), **common)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "sr2.tif"), tif)
    assert (tmp_path / "sr2.tif").read_bytes() == (tmp_path / "sr.tif").read_bytes()
