"""Models as published: parameter counts at paper size, the reference code's structure, and what each trains with.

Targets (grey in/out; the reference codes' counts computed with 1 input / output channel):
EMSR x3 3.16 M (reference SRNET; paper 3.2 M), WGAN-GP critic 1.6 M and generator 1.4 M (thesis
Tables 1-2), SR3 97.8 M (the reference UNet of sr_sr3_16_128.json; the SR3 paper's nets are not
public), EDT-B 11.48 M at x2 (reference Network; EDT paper 11.5 M). Paper-size models are built on
the meta device (no memory, no forward); forward passes use tiny nets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import ROOT

from srseg.io import InputError
from srseg.losses import SIGMA_UNIT, EMSRLoss, build_loss
from srseg.models import build_model
from srseg.models.emsr_arch import AttentionBranch, atrous_wavelet
from srseg.models.sr3_arch import SelfAttention, hashed_normal, noise_key, sinusoidal

ZOO = yaml.safe_load((ROOT / "config" / "zoo.yaml").read_text())["models"]

TINY = {
    "emsr": {"channels": 8, "n_basic": 1, "n_res": 1, "n_path": 2, "heads": 2},
    "wgan": {"n_feats": 8, "n_blocks": 2},
    "edt": {"embed_dim": 8, "depths": [2], "heads": 2, "window": [2, 6], "num_feat": 4, "head_depth": 1},
    "sr3": {"channels": 8, "mults": [1, 2], "res_blocks": 1, "attn_res": [4], "image_size": 8, "timesteps": 10},
}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def paper_size(arch: str, scale: int, net: dict | None = None) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model({"arch": arch, "net": net or {}}, scale)


def within(value: float, target: float, tol: float = 0.05) -> bool:
    return abs(value - target) <= tol * target


# ------------------------------------------------------------------------- parameter counts


def test_emsr_paper_size_has_the_reference_parameter_count():
    n = n_params(paper_size("emsr", 3))
    # the reference SRNET (grey) has 3,164,992, of which 40,960 in layers whose output is never used
    assert n == 3_164_992 - 40_960
    assert within(n, 3.16e6) and within(n, 3.2e6)  # reference and paper (Table IV)
    zoo = ZOO["emsr"]
    assert n_params(paper_size("emsr", 3, zoo["net"])) == n


def test_wgan_critic_and_generator_match_the_thesis_tables():
    gen = paper_size("wgan", 4, ZOO["wgan"]["net"])
    with torch.device("meta"):
        critic = gen.build_critic(**ZOO["wgan"]["critic"])
    assert n_params(critic) == 1_554_433 and within(n_params(critic), 1.6e6)
    assert within(n_params(gen), 1.4e6)
    convs = [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.out_channels) for c in convs] == [
        ((3, 3), (2, 2), 64),
        ((3, 3), (2, 2), 128),
        ((3, 3), (2, 2), 256),
        ((3, 3), (2, 2), 512),
        ((3, 3), (1, 1), 1),
    ]
    norms = [m for m in critic.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == 4 and not any(m.affine for m in norms)


def test_sr3_paper_size_equals_the_reference_unet():
    model = paper_size("sr3", 4, ZOO["sr3"]["net"])
    assert n_params(model) == 97_804_033  # Janspiry UNet(in_channel=2, out_channel=1, sr_sr3_16_128.json)
    assert n_params(paper_size("sr3", 4)) == 97_804_033  # the defaults are that config
    # attention at 16 px of 128 (level 3: 2 blocks down, 3 up) and at the bottleneck
    attn = [m for m in model.modules() if isinstance(m, SelfAttention)]
    assert len(attn) == 6 and all(a.qkv.bias is None and a.qkv.in_channels == 512 for a in attn)
    assert model.attn_levels == [3]


@pytest.mark.parametrize("scale, reference", [(2, 11_477_625), (3, 11_662_265), (4, 11_625_337)])
def test_edt_b_equals_the_reference_network(scale, reference):
    model = paper_size("edt", scale, ZOO["edt_mse"]["net"])
    assert n_params(model) == reference  # fenglinglwb/EDT Network, EDT-B config, IN_CHANNEL = 1
    assert within(n_params(model), 11.5e6)  # the EDT paper's EDT-B


# ------------------------------------------------------------------------- EMSR structure and loss


@pytest.mark.parametrize("scale", [2, 4])
def test_tiny_models_forward_shapes(scale):
    torch.manual_seed(0)
    x = torch.rand(2, 1, 9, 13)
    for arch in ("emsr", "wgan", "edt", "sr3"):
        with torch.no_grad():
            y = build_model({"arch": arch, "net": TINY[arch]}, scale).eval()(x)
        assert y.shape == (2, 1, 9 * scale, 13 * scale) and torch.isfinite(y).all(), arch


def test_emsr_basic_block_has_no_skip_and_runs_the_edge_path_twice():
    torch.manual_seed(0)
    model = build_model({"arch": "emsr", "net": TINY["emsr"]}, 2)
    block = model.BasicBlocks[0]
    assert len(block.stageII_coarse) == len(block.stageII_fine) == len(block.stageII_att) == 2
    torch.nn.init.zeros_(block.conv_4.weight)
    x, y = torch.randn(1, 8, 8, 8), torch.rand(1, 1, 8, 8)
    with torch.no_grad():  # a zero last conv gives zero: no residual connection around the block
        assert block(x, atrous_wavelet(y)).abs().max() == 0
    assert all(c.bias is None for c in model.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3))


def test_emsr_attention_branch_is_the_reference_formula():
    torch.manual_seed(0)
    branch, e = AttentionBranch(4), torch.randn(2, 4, 6, 6)
    gate = torch.sigmoid(branch.k2(F.leaky_relu(branch.k1(e), 0.2)))
    assert torch.allclose(branch(e), branch.k4(branch.k3(e) * gate))


def test_emsr_edges_reference_zero_padding_and_replicate_default():
    flat = torch.full((1, 1, 40, 40), 0.4)
    assert atrous_wavelet(flat).abs().max() < 1e-6  # replicate: a constant image has no edges
    zeros = atrous_wavelet(flat, pad="zeros")  # the reference's padding: the border becomes an edge
    assert zeros[..., 0, 0].abs().min() > 0.01 and zeros[..., 20, 20].abs().max() < 1e-6  # reach: 16 px
    with pytest.raises(InputError, match="edge_pad"):
        build_model({"arch": "emsr", "net": {**TINY["emsr"], "edge_pad": "reflect"}}, 2)


class Recorder(torch.nn.Module):
    """Identity network that keeps every input it sees."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return x


def test_emsr_main_term_is_computed_on_a_noised_input():
    torch.manual_seed(0)
    lr, hr = torch.full((16, 1, 16, 16), 0.5), torch.rand(16, 1, 16, 16)
    loss = build_loss({"emsr": {"l1": 1, "lambdas": [1, 1, 1], "noise_sigma": 5, "input_noise_sigma": 5}})
    net = Recorder()
    torch.manual_seed(3)
    _, terms = loss(net, lr, hr)
    y, y_noisier = net.inputs  # f(y) for the supervised and consistency terms, f(y') for the noisy term
    assert not torch.equal(y, lr)
    sigma = (y - lr).std(dim=(1, 2, 3))
    assert sigma.max() < 5 * SIGMA_UNIT * 1.2 and sigma.std() > 0  # per-image sigma ~ U[0, 5/255]
    assert terms["emsr_sup"].item() == pytest.approx((y - hr).abs().mean().item())
    torch.manual_seed(3)  # the same draws, replayed: y = augment_input(lr), y' = noisier(y)
    emsr = loss.terms[0][2]
    again = emsr.augment_input(lr)
    assert torch.equal(again, y) and torch.equal(emsr.noisier(again), y_noisier)
    # input_noise_sigma: 0 gives the acquired input itself
    net = Recorder()
    build_loss({"emsr": {"l1": 1, "input_noise_sigma": 0}})(net, lr, hr)
    assert torch.equal(net.inputs[0], lr)
    with pytest.raises(InputError, match="noise sigma"):
        EMSRLoss(noise_sigma=-1)


# ------------------------------------------------------------------------- SR3


def test_sr3_trains_on_a_continuous_noise_level_between_schedule_points():
    # wide steps, so that float32 cannot round a draw onto a schedule point
    model = build_model({"arch": "sr3", "net": {**TINY["sr3"], "beta_start": 1e-3, "beta_end": 0.1}}, 2)
    gammas = model.gammas.double()  # gamma_0 = 1 > gamma_1 > ... > gamma_T
    seen = []
    for seed in range(20):
        torch.manual_seed(seed)
        g = model.noise_level(4, "cpu").double()
        t = int(
            torch.searchsorted(-gammas, -g.max(), right=True).item()
        )  # the interval (gamma_t, gamma_{t-1}) of the batch
        assert ((g <= gammas[t - 1]) & (g >= gammas[t])).all()  # one step t per batch, gamma per image
        seen.append(g)
    seen = torch.cat(seen)
    assert torch.cdist(seen[:, None], gammas[:, None]).min() > 1e-6  # never on a schedule point


def test_sr3_unet_is_conditioned_on_gamma():
    torch.manual_seed(0)
    model = build_model({"arch": "sr3", "net": {**TINY["sr3"], "dropout": 0.0}}, 2)
    lr, hr = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 8, 8)
    seen = {}
    model.unet.register_forward_pre_hook(lambda m, args: seen.update(inp=args[0], level=args[1]))
    model.unet.emb.register_forward_pre_hook(lambda m, args: seen.update(enc=args[0]))
    torch.manual_seed(5)
    _, eps = model.diffusion_pair(lr, hr)
    torch.manual_seed(5)
    gamma = model.noise_level(3, "cpu")
    assert torch.equal(seen["level"], gamma)
    g = gamma.view(-1, 1, 1, 1)  # x_noisy = gamma x0 + sqrt(1 - gamma^2) eps
    assert torch.allclose(seen["inp"][:, 1:], g * (2 * hr - 1) + (1 - g * g).sqrt() * eps, atol=1e-6)
    # the reference's (WaveGrad) encoding of gamma itself: gamma * 10000^(-k / (C/2))
    k = torch.arange(4, dtype=torch.float32) / 4
    enc = gamma[:, None] * torch.exp(-math.log(1e4) * k)[None]
    assert torch.allclose(seen["enc"], torch.cat([enc.sin(), enc.cos()], 1))
    assert torch.allclose(sinusoidal(gamma, 8), seen["enc"])


def reference_p_sample_loop(model, lr, noise):
    """Janspiry GaussianDiffusion.p_sample_loop over the full schedule, written out (float64 coefficients)."""
    betas = np.linspace(1e-6, 1e-2, model.timesteps)
    ab = np.cumprod(1 - betas)
    ab_prev = np.append(1.0, ab[:-1])
    coef1, coef2 = betas * np.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * np.sqrt(1 - betas) / (1 - ab)
    logvar = np.log(np.maximum(betas * (1 - ab_prev) / (1 - ab), 1e-20))
    cond, x, key = model.condition(lr), noise[:, :1], noise_key(noise)
    for t in reversed(range(model.timesteps)):
        level = torch.full((x.shape[0],), math.sqrt(ab[t]))
        eps = model._eps(cond, x, level)
        x0 = (math.sqrt(1 / ab[t]) * x - math.sqrt(1 / ab[t] - 1) * eps).clamp(-1, 1)
        x = coef1[t] * x0 + coef2[t] * x
        if t > 0:
            x = x + math.exp(0.5 * logvar[t]) * hashed_normal(key, t)
    return x


def test_sr3_ancestral_sampler_is_the_reference_chain():
    torch.manual_seed(0)
    model = build_model({"arch": "sr3", "net": {**TINY["sr3"], "sample_steps": 10}}, 2).eval()
    lr, noise = torch.rand(2, 1, 4, 4), torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        ours = model.sample(lr, noise)
        ref = reference_p_sample_loop(model, lr, noise)
    assert torch.allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_sr3_samplers_are_in_range_and_deterministic_given_the_seed(sampler):
    net = {**TINY["sr3"], "sampler": sampler, "sample_steps": 4}
    torch.manual_seed(0)
    model = build_model({"arch": "sr3", "net": net}, 2).eval()
    assert model.noise_channels == (2 if sampler == "ancestral" else 1)
    lr = torch.rand(2, 1, 5, 6)
    outs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            outs.append(model(lr))
    assert outs[0].shape == (2, 1, 10, 12) and outs[0].min() >= 0 and outs[0].max() <= 1
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    noise = torch.randn(2, model.noise_channels, 10, 12)
    other_key = noise.clone()
    other_key[:, 1:] = torch.randn(2, model.noise_channels - 1, 10, 12)
    with torch.no_grad():
        same_start = torch.equal(model(lr, noise=noise), model(lr, noise=other_key))
    assert same_start == (sampler == "ddim")  # only the ancestral chain draws fresh noise per step


def test_sr3_step_noise_is_gaussian_per_pixel_and_the_same_in_every_tile():
    noise = torch.randn(1, 2, 64, 64)
    z = torch.stack([hashed_normal(noise_key(noise), t) for t in range(6)]).flatten(1)
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
    assert torch.corrcoef(z).fill_diagonal_(0).abs().max() < 0.05  # steps independent
    crop = noise[..., 10:30, 5:40]  # a tile's cut of the section's noise planes
    assert torch.equal(hashed_normal(noise_key(crop), 3), hashed_normal(noise_key(noise), 3)[..., 10:30, 5:40])


def test_sr3_bad_sampler_settings():
    with pytest.raises(InputError, match="sampler"):
        build_model({"arch": "sr3", "net": {**TINY["sr3"], "sampler": "ddpm"}}, 2)
    with pytest.raises(InputError, match="sample_steps"):
        build_model({"arch": "sr3", "net": {**TINY["sr3"], "sample_steps": 0}}, 2)


# ------------------------------------------------------------------------- EDT


def test_edt_has_lepe_and_convffn_and_no_position_bias():
    model = build_model({"arch": "edt", "net": TINY["edt"]}, 2)
    blocks = list(model.body.layers[0].residual_group.blocks)
    for block in blocks:
        for attn in block.attns:  # LePE: depthwise 3x3 conv on V
            assert attn.lepe.kernel_size == (3, 3) and attn.lepe.groups == attn.lepe.in_channels == 4
        assert block.mlp.dwconv.kernel_size == (5, 5) and block.mlp.dwconv.groups == block.mlp.dwconv.in_channels
    assert [b.shifted for b in blocks] == [False, True]
    names = [n for n, _ in model.named_parameters()]
    assert not any("bias_table" in n for n in names)
    assert {
        "head_sr_x2.0.weight",
        "head_sr_x2.1.shortcut.weight",
        "body.patch_embed.norm.weight",
        "body.layers.0.residual_group.blocks.1.attns.1.lepe.weight",
        "body.layers.0.residual_group.blocks.0.mlp.dwconv.weight",
        "body.conv_after_body.weight",
        "tail_sr_x2.0.block.conv_1.weight",
        "tail_sr_x2.1.0.weight",
        "tail_sr_x2.2.weight",
    } <= set(names)  # the reference's state-dict keys
    swin = build_model({"arch": "swinir", "net": {"embed_dim": 8, "depths": [2], "heads": 2, "window": 4}}, 2)
    swin_names = [n for n, _ in swin.named_parameters()]
    assert any("bias_table" in n for n in swin_names) and not any("lepe" in n for n in swin_names)


def test_edt_lepe_reaches_the_output():
    torch.manual_seed(0)
    model = build_model({"arch": "edt", "net": TINY["edt"]}, 2).eval()
    x = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        before = model(x)
        for block in model.body.layers[0].residual_group.blocks:
            for attn in block.attns:
                attn.lepe.weight.add_(0.5)
        assert not torch.allclose(before, model(x))


# ------------------------------------------------------------------------- the zoo's schedules


def test_zoo_uses_the_papers_schedules():
    emsr = ZOO["emsr"]
    assert (emsr["lr"], emsr["lr_halve_every"], emsr["steps"], emsr["batch"]) == (1e-4, 50000, 200000, 2)
    assert emsr["loss"]["emsr"]["input_noise_sigma"] == 5 and emsr["net"]["n_path"] == 2
    wgan = ZOO["wgan"]  # the EM table, not the N-body one
    assert (wgan["lr"], wgan["d_lr"], wgan["steps"], wgan["n_critic"]) == (5e-4, 5e-4, 18000, 5)
    assert wgan["loss"]["l1"] in (200, 100, 50)
    sr3 = ZOO["sr3"]
    assert (
        sr3["loss"] == {"l1": 1} and sr3["net"]["sampler"] in ("ancestral", "ddim") and sr3["net"]["attn_res"] == [16]
    )
    assert all("crossed" not in ZOO[m]["net"] for m in ("edt_mse", "edt_ssim", "edt_gloss"))
