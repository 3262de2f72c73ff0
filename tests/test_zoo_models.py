"""RCAN, SwinIR, EDT, PSSR ResUNet and the 2.5D (z-context) option.

Output shapes at scales 2, 3, 4, 8 for every registered arch are in tests/test_models.py
(TINY there lists these archs too); here: training lowers the loss, save/load, window
attention details, and z-context from the sampler through training to tiled inference.
"""

import numpy as np
import pytest
import torch
from helpers import synthetic_pair, train_entry, write_pairs
from scipy.ndimage import zoom

from srseg.data import PatchSampler, context_indices
from srseg.infer import run_infer, super_resolve
from srseg.io import InputError, read_image, read_json
from srseg.losses import build_loss
from srseg.models import build_model, load_trained, save_trained
from srseg.models.swinir_arch import SwinLayer, relative_position_index

TINY = {
    "rcan": {"n_feats": 8, "n_groups": 2, "n_blocks": 1, "reduction": 4},
    "swinir": {"embed_dim": 8, "depths": [2], "heads": 2, "window": 4, "upsample_feats": 8},
    "edt": {"embed_dim": 8, "depths": [2], "heads": 2, "window": [2, 6], "num_feat": 4, "head_depth": 1},
    "pssr": {"features": 4, "depth": 2, "n_blocks": 1},
}
CONTEXT_ARCHS = ["srcnn", "edsr", "rcan", "pssr", "swinir"]
TINY_CTX = {**TINY, "srcnn": {"features": [8, 4]}, "edsr": {"n_feats": 8, "n_blocks": 1}}


@pytest.mark.parametrize("arch", sorted(TINY))
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(arch):
    torch.manual_seed(0)
    lr, hr = synthetic_pair(np.random.default_rng(1), z=4, n=12)
    x, y = torch.from_numpy(lr[:, None]), torch.from_numpy(hr[:, None])
    model = build_model({"arch": arch, "net": TINY[arch]}, 2)
    loss = build_loss({"l1": 1})
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = loss(model, x, y)[0].item()
    for _ in range(15):
        total, _ = loss(model, x, y)
        opt.zero_grad()
        total.backward()
        opt.step()
    assert loss(model, x, y)[0].item() < 0.8 * first


@pytest.mark.parametrize("arch", sorted(TINY))
def test_save_load_round_trip_gives_same_outputs(tmp_path, arch):
    torch.manual_seed(1)
    spec = {"arch": arch, "net": TINY[arch], "context": 1}
    model = build_model(spec, 3).eval()
    save_trained(tmp_path / "model.pt", model, spec, 3)
    loaded, meta = load_trained(tmp_path / "model.pt")
    assert meta["arch"] == arch and loaded.context == spec["context"]
    x = torch.rand(1, 2 * spec["context"] + 1, 10, 13)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_paper_sizes_build():
    # RCAN paper: 10 groups x 20 RCABs, 64 features, reduction 16 -> ~15.4 M parameters (grey in/out, x4)
    rcan = build_model({"arch": "rcan", "net": {"n_groups": 10, "n_blocks": 20}}, 4)
    assert 15.0e6 < sum(p.numel() for p in rcan.parameters()) < 15.8e6
    edt = build_model({"arch": "edt"}, 2)  # EDT-B; its parameter count is in tests/test_published_models.py
    block = edt.body.layers[0].residual_group.blocks[1]
    assert [(a.wh, a.ww, a.heads) for a in block.attns] == [(6, 24, 6), (24, 6, 6)] and block.shifted
    assert edt.pad_to == 24
    swin = build_model({"arch": "swinir"}, 2)
    assert len(swin.body) == 4 and swin.body[0].layers[1].shifted and not swin.body[0].layers[0].shifted


def test_relative_position_index_covers_the_bias_table_of_a_rectangular_window():
    idx = relative_position_index(2, 3)
    assert idx.shape == (6, 6)
    assert set(idx.flatten().tolist()) == set(range((2 * 2 - 1) * (2 * 3 - 1)))
    assert (idx.diagonal() == (2 - 1) * (2 * 3 - 1) + (3 - 1)).all()  # offset (0, 0) is the table's centre


@pytest.mark.parametrize("crossed", [False, True])
def test_windows_confine_attention_and_shifted_windows_do_not_wrap_around(crossed):
    torch.manual_seed(0)
    h = w = 8

    def seen_from(layer, y, x):  # which input pixels reach output pixel (y, x)
        inp = torch.rand(1, h, w, 8, requires_grad=True)
        layer(inp)[0, y, x].sum().backward()
        return inp.grad[0].abs().sum(-1) > 0

    for shifted in (False, True):
        layer = SwinLayer(8, 2, (4, 4) if not crossed else (2, 4), crossed, shifted, 2.0)
        centre = seen_from(layer, 3, 3)
        # plain windows end at 4: (3, 3) cannot see (4, 4); shifted windows straddle that border
        assert bool(centre[4, 4]) == shifted
        # the cyclic shift brings the far corner next to (0, 0); the mask must keep it out
        corner = seen_from(layer, 0, 0)
        assert corner[0, 1] and corner[1, 0] and not corner[h - 1, w - 1]


def test_context_sampler_stacks_neighbouring_sections_with_replicated_edges():
    vol = np.repeat(np.arange(5, dtype=np.float32)[:, None, None], 8, 1).repeat(8, 2) / 10
    vol = vol + np.random.default_rng(0).random(vol.shape).astype(np.float32) * 0.05  # not empty
    hr = zoom(vol, (1, 2, 2), order=0)
    sampler = PatchSampler([(vol, hr)], 4, 2, np.random.default_rng(0), context=2)
    lr_b, hr_b = sampler.batch(16)
    assert lr_b.shape == (16, 5, 4, 4) and hr_b.shape == (16, 1, 8, 8)
    assert context_indices(0, 2, 5).tolist() == [0, 0, 0, 1, 2] and context_indices(4, 1, 5).tolist() == [3, 4, 4]
    for lr_p, hr_p in zip(lr_b, hr_b):  # centre channel is the HR's section; neighbours are z-1, z+1, ...
        z = round(float(hr_p.mean()) * 10 - 0.25)
        expect = context_indices(z, 2, 5) / 10
        assert np.allclose(lr_p.mean(axis=(1, 2)), expect + lr_p.mean() - expect.mean(), atol=0.03)


@pytest.mark.parametrize("arch", CONTEXT_ARCHS)
def test_context_reaches_the_network(arch):
    torch.manual_seed(0)
    model = build_model({"arch": arch, "net": TINY_CTX[arch], "context": 1}, 2).eval()
    vol = np.random.default_rng(0).random((3, 10, 12)).astype(np.float32)
    out = super_resolve(model, vol, 2, tile=8, overlap=2, batch=4, progress=False)
    assert out.shape == (3, 20, 24)
    vol2 = vol.copy()
    vol2[2] = 1 - vol2[2]  # change only the neighbour of section 1
    out2 = super_resolve(model, vol2, 2, tile=8, overlap=2, batch=4, progress=False)
    assert not np.allclose(out[1], out2[1])  # section 1 sees its neighbour
    assert np.array_equal(out[0], out2[0])  # section 0 (neighbours 0, 0, 1) does not


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"arch": "emsr", "context": 1}, "cannot take z-context"),
        ({"arch": "bicubic", "context": 2}, "cannot take z-context"),
        ({"arch": "edsr", "context": -1}, "integer >= 0"),
        ({"arch": "edsr", "context": 1.5}, "integer >= 0"),
        ({"arch": "edsr", "net": {"in_channels": 3}}, "unknown key"),
        ({"arch": "swinir", "net": {"embed_dim": 10, "heads": 4}}, "divisible"),
        ({"arch": "swinir", "net": {"window": [4, 0]}}, "window"),
        ({"arch": "edt", "net": {"heads": 3, "embed_dim": 8}}, "divisible by heads"),
        ({"arch": "rcan"}, "cannot upsample by 5"),
    ],
)
def test_bad_specs_raise_input_error(spec, words):
    with pytest.raises(InputError, match=words):
        build_model(spec, 5 if spec["arch"] == "rcan" else 2)


def test_context_model_trains_and_infers_a_volume(tmp_path):
    lrs, hrs = write_pairs(tmp_path, z=5)
    info = train_entry(
        {
            "arch": "rcan",
            "net": TINY["rcan"],
            "context": 1,
            "loss": {"l1": 1},
            "steps": 4,
            "batch": 2,
            "patch": 8,
            "checkpoint_every": 4,
            "val_every": 4,
            "val_patches": 2,
        },
        (lrs, hrs),
        tmp_path / "train",
    )
    assert info["context"] == 1 and np.isfinite(info["final_val_l1"])
    res = run_infer(
        lrs[0],
        str(tmp_path / "sr.tif"),
        str(tmp_path / "sr.json"),
        model_path=str(tmp_path / "train" / "model.pt"),
        settings={"tile": 8, "overlap": 2, "batch": 4},
        device="cpu",
    )
    sr, _, dtype = read_image(tmp_path / "sr.tif")
    assert sr.shape == (5, 32, 32) and dtype == "uint8" and res["context"] == 1
    assert read_json(tmp_path / "sr.json")["hr_shape"] == [5, 32, 32]
