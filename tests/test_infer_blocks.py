"""Scattered inference (infer.blocks_z): the blocks of sections, run as separate jobs and
joined, give exactly the one-job result, also for 2.5D models that read neighbouring
sections across a block edge."""

import numpy as np
import pytest
import tifffile
import torch

from srseg.infer import run_infer, run_infer_gather, z_blocks
from srseg.io import InputError, read_json, write_image, write_json
from srseg.models import build_model, save_trained


def test_z_blocks_split_sections_contiguously_and_evenly():
    assert z_blocks(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert z_blocks(4, 1) == [(0, 4)]
    with pytest.raises(InputError, match="infer.blocks_z"):
        z_blocks(2, 3)
    with pytest.raises(InputError, match="infer.blocks_z"):
        z_blocks(5, 0)


@pytest.mark.parametrize("context", [0, 1])
def test_blocks_joined_equal_the_one_job_result(tmp_path, context):
    vol = np.random.default_rng(0).random((5, 20, 18)).astype(np.float32)
    write_image(tmp_path / "lr.tif", vol, [50.0, 30.0, 30.0], "uint8")
    write_json(tmp_path / "pairs.json", {"scale": 3, "hr_voxel_nm": [50.0, 10.0, 10.0]})
    spec = {"arch": "srcnn", "net": {"features": [8, 4]}, "context": context}
    torch.manual_seed(0)
    save_trained(tmp_path / "model.pt", build_model(spec, 3), spec, 3)
    common = dict(
        model_path=str(tmp_path / "model.pt"),
        pairs_json=str(tmp_path / "pairs.json"),
        settings={"tile": 12, "overlap": 4, "batch": 4},
        device="cpu",
    )
    run_infer(str(tmp_path / "lr.tif"), str(tmp_path / "whole.tif"), str(tmp_path / "whole.json"), **common)
    tifs, jsons = [], []
    for b in range(3):
        tifs.append(str(tmp_path / f"block{b}.tif"))
        jsons.append(str(tmp_path / f"block{b}.json"))
        info = run_infer(
            str(tmp_path / "lr.tif"),
            tifs[-1],
            jsons[-1],
            block=b,
            **{**common, "settings": {**common["settings"], "blocks_z": 3}},
        )
        assert info["z_range"] == list(z_blocks(5, 3)[b])
    info = run_infer_gather(tifs, jsons, str(tmp_path / "joined.tif"), str(tmp_path / "joined.json"))
    whole, joined = tifffile.imread(tmp_path / "whole.tif"), tifffile.imread(tmp_path / "joined.tif")
    assert joined.dtype == whole.dtype and np.array_equal(joined, whole)
    assert info["hr_shape"] == read_json(tmp_path / "whole.json")["hr_shape"] == [5, 60, 54]
    assert info["blocks_z"] == 3 and info["context"] == context


def test_gather_refuses_blocks_out_of_order(tmp_path):
    for b in (1, 0):
        write_json(tmp_path / f"b{b}.json", {"block": b})
    with pytest.raises(InputError, match="not 0..1 in order"):
        run_infer_gather(
            ["x", "y"],
            [str(tmp_path / "b1.json"), str(tmp_path / "b0.json")],
            str(tmp_path / "o.tif"),
            str(tmp_path / "o.json"),
        )
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize(
    "spec",
    [
        {"arch": "srcnn", "net": {"features": [8, 4]}, "context": 1},
        {"arch": "wgan", "net": {"n_feats": 8, "n_blocks": 1, "noise": True}},
    ],
    ids=["srcnn_context", "wgan_samples"],
)
def test_ome_zarr_blocks_gathered_are_the_one_job_output_byte_for_byte(tmp_path, spec):
    pytest.importorskip("zarr")
    import hashlib
    from pathlib import Path

    def tree(p):
        return {
            str(f.relative_to(p)): hashlib.md5(f.read_bytes()).hexdigest() for f in Path(p).rglob("*") if f.is_file()
        }

    vol = np.random.default_rng(1).random((5, 20, 18)).astype(np.float32)
    write_image(tmp_path / "lr.tif", vol, [50.0, 30.0, 30.0], "uint8")
    write_json(tmp_path / "pairs.json", {"scale": 2, "hr_voxel_nm": [50.0, 15.0, 15.0]})
    torch.manual_seed(0)
    save_trained(tmp_path / "model.pt", build_model(spec, 2), spec, 2)
    settings = {"tile": 12, "overlap": 4, "batch": 4, "samples": 2}
    common = dict(model_path=str(tmp_path / "model.pt"), pairs_json=str(tmp_path / "pairs.json"), device="cpu")
    (tmp_path / "one").mkdir()  # the one-job output and the joined one have the same name (the rule's output)
    one = str(tmp_path / "one" / "sr.zarr")
    run_infer(str(tmp_path / "lr.tif"), one, str(tmp_path / "whole.json"), settings=settings, **common)
    zarrs, jsons = [], []
    for b in range(3):
        zarrs.append(str(tmp_path / f"block{b}.zarr"))
        jsons.append(str(tmp_path / f"block{b}.json"))
        run_infer(
            str(tmp_path / "lr.tif"), zarrs[-1], jsons[-1], block=b, settings={**settings, "blocks_z": 3}, **common
        )
    info = run_infer_gather(zarrs, jsons, str(tmp_path / "sr.zarr"), str(tmp_path / "joined.json"))
    assert tree(tmp_path / "sr.zarr") == tree(one)
    assert info["hr_shape"] == read_json(tmp_path / "whole.json")["hr_shape"] == [5, 40, 36]
    if spec["arch"] == "wgan":
        assert info["std_path"] == str(tmp_path / "sr_std.zarr")
        assert tree(tmp_path / "sr_std.zarr") == tree(tmp_path / "one" / "sr_std.zarr")
