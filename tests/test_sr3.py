"""SR3 diffusion: shapes, eps-loss decreases, 1000- and 20-step DDIM, seamless tiles, variance maps, resume.

The reference's continuous noise level, its ancestral sampler and the paper-size U-Net are in
tests/test_published_models.py. TINY uses the default sampler (ancestral).
"""

import json

import numpy as np
import pytest
import torch
from helpers import train_outputs
from scipy.ndimage import gaussian_filter

from srseg.config import model_spec
from srseg.infer import run_infer, super_resolve
from srseg.io import read_image
from srseg.losses import build_loss
from srseg.models import build_model, load_trained
from srseg.training import run_train
from srseg.training.kinds.diffusion import diffusion_loss

TINY = {
    "arch": "sr3",
    "net": {"channels": 8, "mults": [1, 2], "res_blocks": 1, "attention": True, "timesteps": 1000, "sample_steps": 4},
    "loss": {"mse": 1},
}


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_output_shape(scale):
    assert build_model(TINY, scale)(torch.rand(2, 1, 5, 7)).shape == (2, 1, 5 * scale, 7 * scale)


def test_eps_mse_decreases_on_fixed_batch():
    torch.manual_seed(0)
    model = build_model(TINY, 2)
    loss_fn = build_loss({"mse": 1})
    y = torch.from_numpy(gaussian_filter(np.random.default_rng(1).random((4, 1, 16, 16)), (0, 0, 1.5, 1.5))).float()
    x = torch.nn.functional.avg_pool2d(y, 2)
    opt = torch.optim.Adam(model.parameters(), 2e-3)

    def fixed_loss():  # same t and eps each time: a fixed batch of the diffusion objective
        torch.manual_seed(123)
        with torch.no_grad():
            return diffusion_loss(model, loss_fn, x, y)[0].item()

    before = fixed_loss()
    for i in range(30):
        torch.manual_seed(i)
        loss, _ = diffusion_loss(model, loss_fn, x, y)
        opt.zero_grad(), loss.backward(), opt.step()
    assert fixed_loss() < 0.8 * before


def test_sampling_with_1000_and_20_steps():
    model = build_model(TINY, 2).eval()
    assert model.step_schedule(1000) == list(range(999, -1, -1)) and len(model.step_schedule(20)) == 20
    x, noise = torch.rand(1, 1, 4, 4), torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        a, b = model.sample(x, noise, steps=1000, sampler="ddim"), model.sample(x, noise, steps=20, sampler="ddim")
        again = model.sample(x, noise, steps=20, sampler="ddim")
    assert a.shape == b.shape == (1, 1, 8, 8) and torch.isfinite(a).all() and torch.isfinite(b).all()
    assert torch.equal(b, again)  # DDIM eta = 0: deterministic given the initial noise


def test_tiles_join_without_seam():
    """Column-to-column change across tile borders is no larger than inside tiles."""
    torch.manual_seed(0)
    model = build_model(TINY, 2).eval()
    lr = gaussian_filter(np.random.default_rng(0).random((1, 12, 40)), 1.0).astype(np.float32)
    out = super_resolve(model, lr, 2, tile=16, overlap=6, batch=4, progress=False)[0]
    d = np.abs(np.diff(out, axis=1)).mean(axis=0)  # d[c]: change from HR column c to c+1
    starts = [0, 10, 20, 24]  # infer.tile_starts(40, 16, 6)
    borders = sorted({2 * s - 1 for s in starts[1:]} | {2 * (s + 16) - 1 for s in starts[:-1]})
    inside = np.setdiff1d(np.arange(len(d)), borders)
    assert d[borders].max() <= d[inside].max()
    whole = super_resolve(model, lr, 2, tile=64, overlap=6, progress=False)[0]  # one tile
    assert np.abs(out - whole).mean() < 0.1


def test_train_resume_and_variance_map(pairs, tmp_path):
    spec = model_spec(
        {
            **TINY,
            "lr": 1e-3,
            "steps": 4,
            "batch": 2,
            "patch": 8,
            "checkpoint_every": 2,
            "val_every": 4,
            "val_patches": 2,
            "seed": 1,
        }
    )
    full = run_train(spec, *pairs, *train_outputs(tmp_path / "full"), device="cpu")

    def kill(step):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train(spec, *pairs, *train_outputs(tmp_path / "res"), device="cpu", on_step=kill)
    res = run_train(spec, *pairs, *train_outputs(tmp_path / "res"), device="cpu")
    assert res["resumed_from_step"] == 2 and full["timesteps"] == 1000
    a, _ = load_trained(tmp_path / "full" / "model.pt")
    b, _ = load_trained(tmp_path / "res" / "model.pt")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))

    info1, info3 = (
        run_infer(
            pairs[0][0],
            str(tmp_path / f"{out}.tif"),
            str(tmp_path / f"{out}.json"),
            str(tmp_path / "full" / "model.pt"),
            settings={"tile": 8, "overlap": 2, "samples": samples},
            device="cpu",
        )
        for out, samples in (("one", 1), ("s", 3))
    )
    assert info1["variance_mean"] is None and not (tmp_path / "one_std.tif").exists()
    std, _, _ = read_image(tmp_path / "s_std.tif")
    assert info3["variance_mean"] > 0 and std.shape == (3, 32, 32)
    assert json.loads((tmp_path / "s.json").read_text())["std_path"].endswith("s_std.tif")
    # sample 0 is the samples=1 output: asking for variance does not change the SR
    assert np.array_equal(read_image(tmp_path / "one.tif")[0], read_image(tmp_path / "s.tif")[0])
