"""Architecture registry: shapes at every scale, build errors, save/load round trip."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srseg.io import InputError
from srseg.models import ARCHS, build_model, load_trained, save_trained
from srseg.models.emsr_arch import atrous_wavelet

# small nets so the whole file runs in seconds; defaults are paper-sized
TINY = {
    "bicubic": {},
    "srcnn": {"features": [8, 4]},
    "edsr": {"n_feats": 8, "n_blocks": 2},
    "emsr": {"channels": 8, "n_basic": 1, "n_res": 1, "heads": 2},
    # helper G's zoo (tests in tests/test_zoo_models.py)
    "rcan": {"n_feats": 8, "n_groups": 1, "n_blocks": 1, "reduction": 4},
    "swinir": {"embed_dim": 8, "depths": [2], "heads": 2, "window": 4, "upsample_feats": 8},
    "edt": {"embed_dim": 8, "depths": [2], "heads": 2, "window": [2, 6], "num_feat": 4, "head_depth": 1},
    "pssr": {"features": 4, "depth": 2, "n_blocks": 1},
    # helper H's GAN / diffusion archs (tests in tests/test_gan.py, tests/test_sr3.py)
    "wgan": {"n_feats": 8, "n_blocks": 2},
    "esrgan": {"n_feats": 8, "n_blocks": 1, "growth": 4},
    "sr3": {"channels": 8, "mults": [1, 2], "res_blocks": 1, "timesteps": 100, "sample_steps": 2},
}


def test_every_registered_arch_has_a_tiny_test_config():
    assert set(ARCHS) == set(TINY)


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_output_shape_single_channel(arch, scale):
    torch.manual_seed(0)
    model = build_model({"arch": arch, "net": TINY[arch]}, scale)
    x = torch.rand(2, 1, 11, 14)  # odd sizes: windows and pixel shuffle must not assume multiples
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 1, 11 * scale, 14 * scale)
    assert torch.isfinite(y).all()


def test_paper_default_emsr_builds_with_paper_sizes():
    model = build_model({"arch": "emsr"}, 3)
    block = model.BasicBlocks[0]
    assert len(model.BasicBlocks) == 3 and len(block.stageI) == 4 and len(block.stageII_att) == 2
    assert block.att.attn.heads == 16 and block.att.window == 4
    assert model.conv_1.out_channels == 64


def test_bicubic_is_clamped_torch_bicubic():
    x = torch.rand(1, 1, 9, 9)
    ref = F.interpolate(x, scale_factor=3, mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.allclose(build_model({"arch": "bicubic"}, 3)(x), ref)
    assert sum(p.numel() for p in build_model({"arch": "bicubic"}, 3).parameters()) == 0


def test_atrous_wavelet_details_sum_back_to_the_image_minus_coarse():
    torch.manual_seed(0)
    img = torch.rand(1, 1, 20, 20)
    d = atrous_wavelet(img, 3)
    assert d.shape == (1, 3, 20, 20)
    # constant image: no edges at any scale
    assert atrous_wavelet(torch.full((1, 1, 8, 8), 0.3), 3).abs().max() < 1e-6
    # a step edge shows up in every detail plane, strongest next to the step
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1
    e = atrous_wavelet(step, 3)[0, 0, 8]
    assert e[8] > 0.1 and e[7] < -0.1 and abs(float(e[0])) < 1e-6


@pytest.mark.parametrize(
    "spec, scale, words",
    [
        ({"arch": "swinfoo"}, 2, "unknown architecture"),
        ({"arch": "edsr", "net": {"n_feat": 8}}, 2, "unknown key"),
        ({"arch": "edsr"}, 5, "cannot upsample by 5"),
        ({"arch": "emsr", "net": {"channels": 10, "heads": 4}}, 2, "divisible"),
        ({"arch": "srcnn"}, 2.5, "positive integer"),
        ({"arch": "srcnn", "net": {"features": [8], "kernels": [9, 5, 5]}}, 2, "kernel"),
        ({"net": {}}, 2, "arch"),
    ],
)
def test_bad_specs_raise_input_error(spec, scale, words):
    with pytest.raises(InputError, match=words):
        build_model(spec, scale)


@pytest.mark.parametrize("arch", ["srcnn", "edsr", "emsr"])
def test_save_load_round_trip_gives_same_outputs(tmp_path, arch):
    torch.manual_seed(1)
    spec = {"arch": arch, "net": TINY[arch]}
    model = build_model(spec, 3).eval()
    save_trained(tmp_path / "model.pt", model, spec, 3, extra={"train": {"steps": 5}})
    loaded, meta = load_trained(tmp_path / "model.pt")
    assert meta["arch"] == arch and meta["scale"] == 3 and meta["train"]["steps"] == 5
    x = torch.rand(1, 1, 10, 12)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_load_trained_rejects_corrupt_foreign_and_mismatched_files(tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="corrupt.pt"):
        load_trained(bad)
    torch.save({"weights": {}}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not an srseg model file"):
        load_trained(tmp_path / "foreign.pt")
    spec = {"arch": "edsr", "net": {"n_feats": 8, "n_blocks": 2}}
    save_trained(tmp_path / "m.pt", build_model(spec, 2), spec, 2)
    state = torch.load(tmp_path / "m.pt", weights_only=False)
    state["arch"], state["net"] = "emsr", {"channels": 8, "heads": 2}  # one arch's weights labelled as another
    torch.save(state, tmp_path / "relabelled.pt")
    with pytest.raises(InputError, match="do not fit arch 'emsr'"):
        load_trained(tmp_path / "relabelled.pt")
    with pytest.raises(InputError, match="not found"):
        load_trained(tmp_path / "missing.pt")


def test_model_is_deterministic_from_seed():
    torch.manual_seed(3)
    a = build_model({"arch": "edsr", "net": TINY["edsr"]}, 2).state_dict()
    torch.manual_seed(3)
    b = build_model({"arch": "edsr", "net": TINY["edsr"]}, 2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.isfinite(sum(float(v.sum()) for v in a.values()))
