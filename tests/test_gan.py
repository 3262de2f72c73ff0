"""GAN SR (wgan, esrgan): shapes, adversarial losses by hand, alternation, L1 decrease, resume, perceptual."""

import numpy as np
import pytest
import torch
from helpers import train_entry, train_outputs
from scipy.ndimage import gaussian_filter

from srseg.config import model_spec
from srseg.io import InputError
from srseg.losses import LOSSES, build_loss, gradient_penalty
from srseg.models import build_model, load_trained, save_trained
from srseg.training import run_train

TINY = {
    "wgan": {
        "arch": "wgan",
        "net": {"n_feats": 8, "n_blocks": 2, "noise": True},
        "critic": {"channels": [8, 16]},
        "loss": {"l1": 100, "wgan_gp": {"weight": 1, "gp": 10}},
        "betas": [0.5, 0.9],
        "schedule": "onecycle",
    },
    "esrgan": {
        "arch": "esrgan",
        "net": {"n_feats": 8, "n_blocks": 1, "growth": 4},
        "critic": {"n_feats": 8},
        "loss": {"l1": 1, "ragan": {"weight": 0.01}},
    },
}
BASE = {
    "lr": 1e-3,
    "steps": 4,
    "batch": 2,
    "patch": 8,
    "checkpoint_every": 2,
    "val_every": 2,
    "val_patches": 2,
    "seed": 3,
    "n_critic": 3,
}


@pytest.mark.parametrize("arch", ["wgan", "esrgan"])
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_generator_output_shape(arch, scale):
    model = build_model(TINY[arch], scale)
    assert model(torch.rand(2, 1, 5, 7)).shape == (2, 1, 5 * scale, 7 * scale)


def test_critic_shapes():
    assert build_model(TINY["wgan"], 2).build_critic(channels=[8, 16])(torch.rand(3, 1, 20, 20)).shape == (3,)
    d = build_model(TINY["esrgan"], 2).build_critic(n_feats=8)
    assert d(torch.rand(3, 1, 20, 18)).shape == (3, 1, 20, 18)  # per-pixel logits, any size
    assert any("parametrizations" in k for k in d.state_dict())  # spectral norm


def test_gradient_penalty_of_linear_critic():
    """C(x) = <w, x>: grad = w everywhere, so GP = (||w|| - 1)^2 and the loss adds lambda times it."""
    w = torch.randn(1, 1, 4, 4)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    expected = (w.norm() - 1) ** 2
    assert torch.allclose(gradient_penalty(critic, real, fake), expected, atol=1e-5)
    loss = LOSSES["wgan_gp"](weight=1, gp=10)
    d_loss, terms = loss.critic_loss(critic, real, fake)
    wdist = critic(real).mean() - critic(fake).mean()
    assert torch.allclose(d_loss, -wdist + 10 * expected, atol=1e-4)
    g, _ = LOSSES["wgan_gp"](weight=0.5).generator_loss(critic, real, fake)
    assert torch.allclose(g, -0.5 * critic(fake).mean())


def test_relativistic_average_loss_by_hand():
    scores = {0: torch.tensor([2.0, 0.0]), 1: torch.tensor([1.0, -1.0])}  # real, fake critic outputs
    real, fake = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    critic = lambda x: scores[int(x.mean().item())]  # noqa: E731
    # D_ra(real, fake) = [2, 0] - 0 = [2, 0]; D_ra(fake, real) = [1, -1] - 1 = [0, -2]
    sp = torch.nn.functional.softplus
    d_expected = 0.5 * ((sp(-torch.tensor([2.0, 0.0]))).mean() + sp(torch.tensor([0.0, -2.0])).mean())
    d, _ = LOSSES["ragan"]().critic_loss(critic, real, fake)
    assert torch.allclose(d, d_expected)
    g_expected = 0.5 * (sp(torch.tensor([2.0, 0.0])).mean() + sp(-torch.tensor([0.0, -2.0])).mean())
    g, _ = LOSSES["ragan"](weight=2).generator_loss(critic, real, fake)
    assert torch.allclose(g, 2 * g_expected)


def test_adversarial_loss_needs_gan_arch(pairs, tmp_path):
    base = {k: v for k, v in BASE.items() if k != "n_critic"}
    edsr = {"arch": "edsr", "net": {"n_feats": 4, "n_blocks": 1}, "loss": {"l1": 1}, **base}
    adversarial = {"l1": 1, "wgan_gp": {"weight": 1}}
    with pytest.raises(InputError, match="no critic"):  # the config check
        train_entry({**edsr, "loss": adversarial}, pairs, tmp_path)
    with pytest.raises(InputError, match="exactly one adversarial"):
        train_entry({**TINY["wgan"], **BASE, "loss": {"l1": 1}}, pairs, tmp_path)
    out = train_outputs(tmp_path)
    with pytest.raises(InputError, match="no critic"):  # and the train job, for a slice built by hand
        run_train({**model_spec(edsr), "loss": adversarial}, *pairs, *out)
    with pytest.raises(InputError, match="exactly one adversarial"):
        run_train({**model_spec({**TINY["wgan"], **BASE}), "loss": {"l1": 1}}, *pairs, *out)


def test_generator_l1_decreases_on_fixed_batch():
    """gamma-weighted L1 + adversarial term: a few generator/critic rounds lower the L1 on a fixed batch."""
    torch.manual_seed(0)
    spec = TINY["wgan"]
    gen = build_model(spec, 2)
    critic = gen.build_critic(channels=[8, 16])
    loss_fn = build_loss(spec["loss"])
    adv = loss_fn.terms[1][2]
    y = torch.from_numpy(gaussian_filter(np.random.default_rng(1).random((2, 1, 16, 16)), (0, 0, 1.5, 1.5))).float()
    x = torch.nn.functional.avg_pool2d(y, 2)
    opt_g, opt_d = (
        torch.optim.Adam(gen.parameters(), 1e-3, betas=(0.5, 0.9)),
        torch.optim.Adam(critic.parameters(), 1e-3, betas=(0.5, 0.9)),
    )
    noise = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        l1_before = torch.nn.functional.l1_loss(gen(x, noise), y).item()
    for _ in range(25):
        d_loss, _ = adv.critic_loss(critic, y, gen(x).detach())
        opt_d.zero_grad(), d_loss.backward(), opt_d.step()
        pred = gen(x)
        total, _ = loss_fn.evaluate(pred, y, gen, x)
        total = total + adv.generator_loss(critic, y, pred)[0]
        opt_g.zero_grad(), total.backward(), opt_g.step()
    with torch.no_grad():
        l1_after = torch.nn.functional.l1_loss(gen(x, noise), y).item()
    assert l1_after < 0.85 * l1_before


def test_alternation_counts_and_resume(pairs, tmp_path):
    """n_critic = 3: each generator step follows three critic steps; a killed run resumes to the same weights."""
    seq = []
    opts = {}

    def hook(opt, args, kwargs):  # names optimizers in order of first step: o0, o1
        seq.append(opts.setdefault(id(opt), f"o{len(opts)}"))

    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(hook)
    try:
        spec = {**TINY["wgan"], **BASE}
        info = train_entry(spec, pairs, tmp_path / "full")
    finally:
        handle.remove()
    assert len(set(seq)) == 2 and len(seq) == 4 * 4
    assert seq == ["o0", "o0", "o0", "o1"] * 4  # critic first (three steps), then the generator
    assert info["counts_this_run"] == {"critic_steps": 12, "generator_steps": 4}

    class Kill(Exception):
        pass

    def kill(step):
        if step == 2:
            raise Kill

    with pytest.raises(Kill):
        train_entry(spec, pairs, tmp_path / "resumed", on_step=kill)
    info2 = train_entry(spec, pairs, tmp_path / "resumed")
    assert info2["resumed_from_step"] == 2 and info2["counts_this_run"] == {"critic_steps": 6, "generator_steps": 2}
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["parts"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["parts"]
    for part in ("model", "critic"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["opt_d"]["state"].keys() == b["opt_d"]["state"].keys()
    m, meta = load_trained(tmp_path / "full" / "model.pt")
    assert meta["arch"] == "wgan" and m(torch.rand(1, 1, 6, 6)).shape == (1, 1, 12, 12)


def test_esrgan_trains_and_round_trips(pairs, tmp_path):
    spec = {**TINY["esrgan"], **BASE, "n_critic": 1, "steps": 2, "gan_start": 1}
    info = train_entry(spec, pairs, tmp_path)
    assert info["counts_this_run"] == {"critic_steps": 1, "generator_steps": 2}
    model, _ = load_trained(tmp_path / "model.pt")
    fresh = build_model(spec, 2)
    save_trained(tmp_path / "again.pt", model, spec, 2)
    again, _ = load_trained(tmp_path / "again.pt")
    x = torch.rand(1, 1, 6, 6)
    assert fresh(x).shape == again(x).shape and torch.equal(model(x), again(x))


def test_perceptual_loss_loads_user_vgg_weights(tmp_path):
    from srseg.models.vgg import vgg19_features

    with pytest.raises(InputError, match="not found"):
        build_loss({"l1": 1, "perceptual": {"weights": str(tmp_path / "missing.pth")}})
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in vgg19_features().state_dict().items()}, tmp_path / "vgg19.pth")
    loss = build_loss({"perceptual": {"weights": str(tmp_path / "vgg19.pth"), "layers": {"conv2_2": 1}}})
    a = torch.rand(1, 1, 16, 16)
    total, terms = loss(torch.nn.Identity(), a, a)
    assert total.item() == 0.0
    total, _ = loss(torch.nn.Identity(), a, torch.rand(1, 1, 16, 16))
    assert total.item() > 0
