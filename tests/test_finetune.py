"""Fine-tuning: RGB checkpoints into grey models, 2D weights into 2.5D models, freezing by name."""

import json

import pytest
import torch
from helpers import train_entry, write_pairs

from srseg.io import InputError
from srseg.models import build_model, load_trained
from srseg.training import adapt_channels, freeze_parameters, load_init

NET = {"n_feats": 8, "n_blocks": 2}


def _rgb_edsr():
    """An EDSR built for RGB (3 colours in and out), like a BasicSR checkpoint, with EDSR's mean-shift keys."""
    torch.manual_seed(4)
    rgb = build_model({"arch": "edsr", "net": NET}, 2)
    rgb.head = torch.nn.Conv2d(3, 8, 3, padding=1)
    rgb.tail = torch.nn.Conv2d(8, 3, 3, padding=1)
    return rgb


def test_rgb_checkpoint_gives_the_grey_image_the_rgb_net_would_give(tmp_path):
    rgb = _rgb_edsr().eval()
    state = dict(rgb.state_dict())
    state["sub_mean.weight"] = torch.eye(3).view(3, 3, 1, 1)  # not in our model: reported as unexpected
    torch.save({"params": state}, tmp_path / "rgb.pth")  # BasicSR layout
    grey = build_model({"arch": "edsr", "net": NET}, 2).eval()
    report = load_init(grey, str(tmp_path / "rgb.pth"), "edsr")
    assert report["channel_adapted"] == ["head.weight", "tail.bias", "tail.weight"]
    assert report["unexpected"] == ["sub_mean.weight"] and report["missing"] == [] and report["shape_mismatch"] == []
    x = torch.rand(2, 1, 9, 11)
    with torch.no_grad():
        # input conv summed over colours = the grey image replicated to RGB; output conv = mean of the colours
        expect = rgb(x.repeat(1, 3, 1, 1)).mean(dim=1, keepdim=True)
        assert torch.allclose(grey(x), expect, atol=1e-5)


def test_2d_weights_start_a_25d_model_as_the_2d_model():
    torch.manual_seed(0)
    flat = build_model({"arch": "edsr", "net": NET}, 2).eval()
    ctx = build_model({"arch": "edsr", "net": NET, "context": 2}, 2).eval()
    w = adapt_channels(flat.head.weight.detach(), ctx.head.weight.shape)
    assert w.shape == (8, 5, 3, 3) and w[:, [0, 1, 3, 4]].abs().sum() == 0
    ctx.load_state_dict({k: (w if k == "head.weight" else v) for k, v in flat.state_dict().items()})
    stack = torch.rand(1, 5, 9, 9)
    with torch.no_grad():  # the neighbours' weights start at 0: the 2D result for the centre section
        assert torch.allclose(ctx(stack), flat(stack[:, 2:3]), atol=1e-6)
    assert adapt_channels(torch.zeros(8, 2, 3, 3), torch.Size([8, 1, 3, 3])) is None  # no rule for 2 -> 1


SPEC = {
    "arch": "edsr",
    "net": NET,
    "loss": {"l1": 1},
    "steps": 4,
    "batch": 2,
    "patch": 8,
    "lr": 1e-2,
    "checkpoint_every": 4,
    "val_every": 4,
    "val_patches": 2,
    "seed": 0,
}


def test_training_from_an_rgb_checkpoint_with_frozen_parts(tmp_path):
    pairs = write_pairs(tmp_path, dtype="float32")
    torch.save(_rgb_edsr().state_dict(), tmp_path / "rgb.pt")
    start = build_model({"arch": "edsr", "net": NET}, 2)
    load_init(start, str(tmp_path / "rgb.pt"), "edsr")
    spec = {**SPEC, "init": str(tmp_path / "rgb.pt"), "freeze": ["head.", "body.0."]}
    out = tmp_path / "run"
    info = train_entry(spec, pairs, out, name="edsr_ft")
    saved = json.loads((out / "train.json").read_text())
    assert saved["init"]["channel_adapted"] == ["head.weight", "tail.bias", "tail.weight"]
    assert (
        saved["frozen_parameters"]
        == info["frozen_parameters"]
        == [
            "head.weight",
            "head.bias",
            "body.0.body.0.weight",
            "body.0.body.0.bias",
            "body.0.body.2.weight",
            "body.0.body.2.bias",
        ]
    )
    trained, _ = load_trained(out / "model.pt")
    before, after = start.state_dict(), trained.state_dict()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == name.startswith(("head.", "body.0.")), name  # frozen: unchanged; the rest: trained


def test_bad_freeze_prefix_fails_before_training(tmp_path):
    pairs = write_pairs(tmp_path, dtype="float32")
    out = tmp_path / "run"
    with pytest.raises(
        InputError,
        match=r"models.edsr_ft.freeze: prefix 'heads.' matches no parameter; "
        r"valid top-level prefixes are body., head., tail.",
    ):
        train_entry({**SPEC, "freeze": ["heads."]}, pairs, out, name="edsr_ft")
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(InputError, match="list of parameter-name prefixes"):
        freeze_parameters(build_model({"arch": "edsr", "net": NET}, 2), "head.")
