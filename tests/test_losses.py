"""Each loss against a value computed by hand (or by an independent library)."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from srseg.io import InputError
from srseg.losses import LOSSES, EMSRLoss, build_loss, neighbour_differences, ssim


def _t(a):
    return torch.tensor(a, dtype=torch.float32).view(1, 1, *np.shape(a))


class Identity(torch.nn.Module):
    def forward(self, x):
        return x


class Double(torch.nn.Module):
    def forward(self, x):
        return 2 * x


def test_registry_names():
    assert {"l1", "mse", "charbonnier", "ssim", "gloss", "emsr"} <= set(LOSSES)


def test_l1_mse_charbonnier_hand_values():
    pred, target = _t([[0.0, 0.5], [1.0, 0.25]]), _t([[0.5, 0.5], [0.0, 0.75]])
    # differences: -0.5, 0, 1, -0.5
    model = Identity()
    assert build_loss({"l1": 1})(model, pred, target)[0].item() == pytest.approx((0.5 + 0 + 1 + 0.5) / 4)
    assert build_loss({"mse": 1})(model, pred, target)[0].item() == pytest.approx((0.25 + 0 + 1 + 0.25) / 4)
    eps = 1e-3
    ch = (2 * math.sqrt(0.25 + eps**2) + eps + math.sqrt(1 + eps**2)) / 4
    assert build_loss({"charbonnier": 1})(model, pred, target)[0].item() == pytest.approx(ch, rel=1e-6)


def test_weighted_sum_and_named_terms():
    pred, target = _t([[0.0, 1.0]]), _t([[1.0, 1.0]])
    total, terms = build_loss({"l1": 2, "mse": 0.5})(Identity(), pred, target)
    assert set(terms) == {"l1", "mse"}
    assert total.item() == pytest.approx(2 * 0.5 + 0.5 * 0.5)


def test_ssim_of_constant_images_has_closed_form():
    a, b = 0.2, 0.7
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # contrast/structure terms are c2/c2 = 1
    pred, target = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    assert ssim(pred, target).item() == pytest.approx(expected, abs=1e-4)  # float32 variances
    assert build_loss({"ssim": 1})(Identity(), target, target)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_matches_skimage_gaussian_window():
    rng = np.random.default_rng(0)
    x = rng.random((32, 40)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    ref = structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(_t(x), _t(y)).item() == pytest.approx(ref, abs=1e-5)


def test_ssim_rejects_patches_smaller_than_its_window():
    with pytest.raises(InputError, match="SSIM"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_gloss_hand_values():
    # a ramp rising by 1 per pixel along x: the 6 neighbours left/right differ by 1, the 2 above/below by 0
    ramp = _t([[0.0, 1.0, 2.0]] * 3)
    zero = torch.zeros_like(ramp)
    assert neighbour_differences(ramp).abs().flatten().tolist() == [1, 0, 1, 1, 1, 1, 0, 1]
    assert build_loss({"gloss": 1})(Identity(), zero, ramp)[0].item() == pytest.approx(6 / 8)
    # a constant offset has no gradient: G-Loss is blind to it
    assert build_loss({"gloss": 1})(Identity(), ramp + 0.3, ramp)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_gloss_pooled_terms_by_hand():
    # 12 x 12 ramp rising 1 per pixel along x; 2x2 mean pooling doubles the slope per level:
    # level 0 (12 px, slope 1), level 1 (6 px, slope 2), level 2 (3 px, slope 4); each level's
    # mean |G_k| is slope * 6/8 (6 of the 8 neighbours differ along x), averaged over the 3 levels
    ramp = torch.arange(12.0).repeat(12, 1).view(1, 1, 12, 12)
    zero = torch.zeros_like(ramp)
    assert build_loss({"gloss": 1})(Identity(), zero, ramp)[0].item() == pytest.approx((1 + 2 + 4) / 3 * 6 / 8)
    # 8 x 8: the third level would be 2 x 2 (< 3 x 3) and is left out
    assert build_loss({"gloss": 1})(Identity(), zero[..., :8, :8], ramp[..., :8, :8])[0].item() == pytest.approx(
        (1 + 2) / 2 * 6 / 8
    )
    with pytest.raises(InputError, match="3 x 3"):
        build_loss({"gloss": 1})(Identity(), zero[..., :2, :2], ramp[..., :2, :2])


def test_emsr_loss_three_terms_by_hand():
    torch.manual_seed(0)
    lr = torch.rand(3, 1, 6, 6)
    hr = torch.rand(3, 1, 6, 6)
    model = Double()
    spec = {"emsr": {"l1": 1, "lambdas": [1.0, 0.5, 0.25], "noise_sigma": 5}}
    loss = build_loss(spec)
    torch.manual_seed(42)
    total, terms = loss(model, lr, hr)
    torch.manual_seed(42)
    emsr = loss.terms[0][2]
    y = emsr.augment_input(lr)  # the same draws the loss made: noise on the input y, then y'
    noisy = emsr.noisier(y)
    assert not torch.equal(y, lr)
    t1 = (2 * y - hr).abs().mean()
    t2 = (2 * noisy - hr).abs().mean()
    t3 = (2 * y - 2 * noisy).abs().mean()
    assert terms["emsr_sup"].item() == pytest.approx(t1.item())
    assert terms["emsr_noisy"].item() == pytest.approx(t2.item())
    assert terms["emsr_consistency"].item() == pytest.approx(t3.item())
    assert total.item() == pytest.approx((t1 + 0.5 * t2 + 0.25 * t3).item())
    assert t3.item() > 0


def test_emsr_noise_is_zero_mean_gaussian_up_to_sigma_on_8bit_scale():
    torch.manual_seed(0)
    lr = torch.full((64, 1, 32, 32), 0.5)
    loss = EMSRLoss(noise_sigma=5, input_noise_sigma=5)
    n = loss.augment_input(lr) - lr  # the input y: one sigma ~ U[0, 5/255] per image
    std = n.std(dim=(1, 2, 3))
    assert std.max().item() < 5 / 255 * 1.15 and std.min().item() < 1 / 255
    assert abs(n.mean().item()) < 1e-3
    # y': one sigma per batch (the reference's EMSR_trainer), U[0, 5/255] over batches
    per_batch = []
    for _ in range(32):
        std = (loss.noisier(lr) - lr).std(dim=(1, 2, 3))
        assert std.max().item() < 1.15 * std.min().item() + 1e-4
        per_batch.append(std.mean().item())
    assert max(per_batch) < 5 / 255 * 1.05 and min(per_batch) < 1 / 255
    quiet = EMSRLoss(noise_sigma=0, input_noise_sigma=0)
    assert quiet.noisier(lr).equal(lr) and quiet.augment_input(lr).equal(lr)


def test_emsr_with_mse_base_and_zero_noise():
    lr, hr = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    spec = {"emsr": {"mse": 1, "lambdas": [1, 1, 1], "noise_sigma": 0, "input_noise_sigma": 0}}
    total, terms = build_loss(spec)(Identity(), lr, hr)
    mse = ((lr - hr) ** 2).mean().item()
    assert terms["emsr_consistency"].item() == 0
    assert total.item() == pytest.approx(2 * mse)


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"vgg_l9": 1}, "unknown loss"),
        ({}, "at least one loss"),
        ({"l1": "one"}, "must be a number"),
        ({"emsr": 1}, "mapping"),
        ({"emsr": {"lambdas": [1, 1]}}, "three weights"),
        ({"emsr": {"ssim2": 1}}, "unknown pixel loss"),
        ({"emsr": {"l1": 1, "sigma": 3}}, "loss.emsr"),
    ],
)
def test_bad_loss_specs(spec, words):
    with pytest.raises(InputError, match=words):
        build_loss(spec)
