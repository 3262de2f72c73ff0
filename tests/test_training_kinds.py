"""Every engine feature works for every training kind: supervised SR, GAN (wgan, esrgan), diffusion (sr3), affinity.

Per kind: freeze keeps the named parameters bit-identical while the others train; init:
loads weights; a wrong freeze prefix fails before the first step naming the config key;
2.5D context trains where the arch takes in_channels; a killed run resumes to exactly the
weights of an uninterrupted one (CPU); a checkpoint of other settings or inputs is ignored.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import cells, train_entry, train_outputs, write_pairs

from srseg import affinity
from srseg.config import section
from srseg.io import InputError, read_image, read_json, write_image, write_labels
from srseg.models import ARCHS, build_model, load_trained, save_trained
from srseg.ruler_spec import network_augment
from srseg.runtime import load_checkpoint, save_checkpoint
from srseg.training import KINDS
from srseg.training.engine import fingerprint

NAME = "tiny"
TRAINING = {"steps": 4, "batch": 2, "patch": 8, "checkpoint_every": 2, "val_every": 2, "val_patches": 2, "seed": 3}
SR_ENTRIES = {
    "edsr": {"arch": "edsr", "net": {"n_feats": 8, "n_blocks": 1}, "loss": {"l1": 1}},
    "wgan": {
        "arch": "wgan",
        "net": {"n_feats": 8, "n_blocks": 1, "noise": True},
        "critic": {"channels": [8, 16]},
        "loss": {"l1": 100, "wgan_gp": {"weight": 1}},
        "n_critic": 2,
    },
    "esrgan": {
        "arch": "esrgan",
        "net": {"n_feats": 8, "n_blocks": 1, "growth": 4},
        "critic": {"n_feats": 8},
        "loss": {"l1": 1, "ragan": {"weight": 0.01}},
        "gan_start": 1,
    },
    "sr3": {
        "arch": "sr3",
        "net": {"channels": 8, "mults": [1, 2], "res_blocks": 1, "attention": False, "sample_steps": 2},
        "loss": {"mse": 1},
    },
}
# a prefix that names part (not all) of each network
FREEZE = {"edsr": "head.", "wgan": "head.", "esrgan": "conv_first.", "sr3": "unet.head.", "affinity": "down.0."}
AFFINITY = {
    "features": 4,
    "depth": 2,
    "batch": 2,
    "patch": 16,
    "steps": 4,
    "checkpoint_every": 2,
    "val_every": 2,
    "log_every": 1,
    "tile": 32,
    "overlap": 8,
}


class SRCase:
    """One SR arch trained through run_train on one small LR/HR pair."""

    def __init__(self, arch: str, root):
        self.arch, self.where = arch, f"models.{NAME}"
        self.pairs = write_pairs(root, names=("s",), z=4)
        self.lr = Path(self.pairs[0][0])

    def entry(self, **over) -> dict:
        return {**SR_ENTRIES[self.arch], **TRAINING, **over}

    def run(self, out, on_step=None, device="cpu", **over) -> dict:
        return train_entry(self.entry(**over), self.pairs, out, name=NAME, device=device, on_step=on_step)

    def weights(self, out) -> dict:
        return load_trained(out / "model.pt")[0].state_dict()

    def save_init(self, path) -> dict:
        torch.manual_seed(123)  # not the training seed: loaded weights differ from the seeded start
        entry = self.entry()
        model = build_model(entry, 2)
        save_trained(path, model, entry, 2)
        return model.state_dict()

    def change_inputs(self) -> None:
        lr = np.flip(read_image(self.lr)[0], axis=2).copy()
        write_image(self.lr, lr, [50, 20, 20])


class AffinityCase:
    """The affinity U-Net trained through train_affinity_network on two labelled specimens."""

    arch, where = "affinity", "affinity"

    def __init__(self, root):
        self.hr, self.labels = [], []
        for name, seed in (("a", 2), ("b", 3)):
            image, labels = cells((4, 32, 32), 8, seed)
            write_image(root / name / "hr.tif", image, [50, 10, 10], "uint8")
            write_labels(root / name / "labels.tif", labels, [50, 10, 10])
            self.hr.append(str(root / name / "hr.tif"))
            self.labels.append(str(root / name / "labels.tif"))

    def run(self, out, on_step=None, device="cpu", **over) -> dict:
        settings = section("affinity", {**AFFINITY, **over})
        affinity.train_affinity_network(
            self.hr, self.labels, *train_outputs(out), settings, seed=1, device=device, on_step=on_step
        )
        return read_json(out / "train.json")

    def weights(self, out) -> dict:
        return load_checkpoint(out / "model.pt")["state_dict"]

    def save_init(self, path) -> dict:
        torch.manual_seed(123)
        net = affinity.build_network(section("affinity", AFFINITY))  # same offsets and LSD head as `run`
        save_checkpoint(path, {"arch": "affinity", "net": net.config(), "state_dict": net.state_dict()})
        return net.state_dict()

    def change_inputs(self) -> None:
        image, _, _ = read_image(self.hr[0])
        write_image(self.hr[0], np.flip(image, axis=2).copy(), [50, 10, 10], "uint8")


KIND_CASES = ["edsr", "wgan", "esrgan", "sr3", "affinity"]


@pytest.fixture(params=KIND_CASES)
def case(request, tmp_path):
    return AffinityCase(tmp_path / "data") if request.param == "affinity" else SRCase(request.param, tmp_path / "data")


def test_every_trained_arch_names_a_registered_kind():
    import srseg.affinity  # noqa: F401  (registers the affinity kind)
    from srseg.training import kind_class

    for name, cls in ARCHS.items():
        if getattr(cls, "trainable", True):
            assert kind_class(getattr(cls, "training", "supervised"), name), name
    assert {"supervised", "gan", "diffusion", "affinity"} <= set(KINDS)
    with pytest.raises(InputError, match="unknown training kind 'gann'; did you mean gan"):
        KINDS.get("gann")


def test_init_loads_weights_and_freeze_keeps_them_bit_identical(case, tmp_path):
    start = case.save_init(tmp_path / "init.pt")
    prefix = FREEZE[case.arch]
    info = case.run(tmp_path / "run", init=str(tmp_path / "init.pt"), freeze=[prefix])
    assert info["init"]["loaded"] == len(start) and info["init"]["missing"] == []
    assert info["frozen_parameters"] and all(n.startswith(prefix) for n in info["frozen_parameters"])
    after = case.weights(tmp_path / "run")
    params = set(info["frozen_parameters"]) | {n for n in after if n.endswith(("weight", "bias"))}
    for name in sorted(params):
        same = torch.equal(start[name], after[name])
        assert same == name.startswith(prefix), name  # frozen: the init weights, bit for bit; the rest trained


def test_wrong_freeze_prefix_fails_before_the_first_step(case, tmp_path):
    steps = []
    out = tmp_path / "run"
    with pytest.raises(
        InputError,
        match=rf"^{case.where}.freeze: prefix 'nope.' matches no parameter; "
        rf"valid top-level prefixes are .*{FREEZE[case.arch].split('.')[0]}\.",
    ):
        case.run(out, on_step=steps.append, freeze=["nope."])
    assert steps == [] and not out.exists()
    with pytest.raises(InputError, match="freezes every parameter"):
        case.run(
            out,
            on_step=steps.append,
            freeze=[p + "." for p in {n.split(".")[0] for n in case.save_init(tmp_path / "i.pt")}],
        )
    assert steps == []


def test_cuda_without_a_gpu_fails_before_the_first_step(case, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    steps = []
    with pytest.raises(InputError, match="asks for cuda"):
        case.run(tmp_path / "run", on_step=steps.append, device="cuda")
    assert steps == []


def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(case, tmp_path):
    straight = case.run(tmp_path / "straight")
    assert straight["amp"] is False  # AMP is a CUDA feature: a no-op on CPU

    class Killed(Exception):
        pass

    def kill_at_3(step):  # after the step-2 checkpoint
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        case.run(tmp_path / "killed", on_step=kill_at_3)
    assert not (tmp_path / "killed" / "model.pt").exists()
    resumed = case.run(tmp_path / "killed")
    assert resumed["resumed_from_step"] == 2 and resumed["steps_this_run"] == 2
    a, b = case.weights(tmp_path / "straight"), case.weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight" / "model.pt").read_bytes() == (tmp_path / "killed" / "model.pt").read_bytes()
    la, lb = pd.read_csv(tmp_path / "straight" / "log.csv"), pd.read_csv(tmp_path / "killed" / "log.csv")
    pd.testing.assert_frame_equal(la.drop(columns="seconds"), lb.drop(columns="seconds"))
    if case.arch == "wgan":  # the critic and its optimiser resume too
        ca = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["parts"]
        cb = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["parts"]
        assert all(torch.equal(ca["critic"][k], cb["critic"][k]) for k in ca["critic"])


def test_checkpoint_of_other_settings_or_inputs_is_ignored(case, tmp_path):
    out = tmp_path / "run"
    case.run(out, lr=1e-3)
    assert (out / "checkpoint.pt").exists()  # kept after training
    assert case.run(out, lr=1e-3)["resumed_from_step"] == 4  # same settings: nothing left to train
    other = case.run(out, lr=5e-4)
    assert other["resumed_from_step"] is None and other["steps_this_run"] == 4
    fresh = case.run(tmp_path / "fresh", lr=5e-4)
    a, b = case.weights(out), case.weights(tmp_path / "fresh")
    assert all(torch.equal(a[k], b[k]) for k in a) and fresh["resumed_from_step"] is None
    case.change_inputs()  # same settings, other input bytes
    assert case.run(out, lr=5e-4)["resumed_from_step"] is None


@pytest.mark.parametrize("arch", ["edsr", "wgan", "esrgan", "sr3"])
def test_context_trains_25d_input(arch, tmp_path):
    case = SRCase(arch, tmp_path / "data")
    info = case.run(tmp_path / "run", context=1, steps=2, checkpoint_every=2)
    assert info["context"] == 1 and np.isfinite(info["final_val_l1"]) and np.isfinite(info["val_bicubic_psnr"])
    model, meta = load_trained(tmp_path / "run" / "model.pt")
    assert meta["context"] == 1
    with torch.no_grad():
        assert model(torch.rand(1, 3, 6, 6)).shape == (1, 1, 12, 12)  # three sections in, the centre one out


def test_gan_onecycle_schedule_restarts_when_steps_change(tmp_path):
    """OneCycleLR spreads over `steps`, so raising steps is another trajectory; the step schedule continues."""
    case = SRCase("wgan", tmp_path / "data")
    case.run(tmp_path / "step", steps=2)
    assert case.run(tmp_path / "step", steps=4)["resumed_from_step"] == 2
    case.run(tmp_path / "cycle", steps=2, schedule="onecycle")
    assert case.run(tmp_path / "cycle", steps=4, schedule="onecycle")["resumed_from_step"] is None


def test_validation_does_not_change_the_trajectory(tmp_path):
    """Validating draws noise (wgan with noise, sr3 sampling) from its own RNG: val_every leaves the weights alone."""
    for arch in ("wgan", "sr3"):
        case = SRCase(arch, tmp_path / arch)
        case.run(tmp_path / arch / "often", val_every=1)
        case.run(tmp_path / arch / "rarely", val_every=4)
        a, b = case.weights(tmp_path / arch / "often"), case.weights(tmp_path / arch / "rarely")
        assert all(torch.equal(a[k], b[k]) for k in a), arch


def test_a_downsampled_rulers_checkpoint_is_not_resumed_across_a_change_of_its_grid():
    """Checkpoints of 2x-downsampled rulers from before the augmentation lengths became HR pixels (same
    settings, twice the nm) or before the image pixels were centred on the label samples are fingerprinted
    apart; full-resolution and odd-downsampled rulers keep their fingerprint."""

    def kind(**over):
        settings = section("affinity", {**AFFINITY, **over})
        k = SimpleNamespace(settings=settings, augment=network_augment(settings), name="affinity", inputs={})
        k.untracked_settings = lambda: affinity.AffinityTraining.untracked
        k.derived_settings = lambda: affinity.AffinityTraining.derived_settings(k)
        return k

    half, full = kind(downsample=2), kind(downsample=1)
    assert half.derived_settings()["network_augment"]["blur_sigma"] == half.settings["augment"]["blur_sigma"] / 2
    assert half.derived_settings()["image_grid"] == "label_samples"
    assert full.derived_settings() == {}
    assert "image_grid" not in kind(downsample=3).derived_settings()  # odd: centred blocks all along
    grid_before = SimpleNamespace(**{**vars(half), "derived_settings": lambda: {"network_augment": half.augment}})
    assert fingerprint(half.settings, half) != fingerprint(half.settings, grid_before)
    as_before = SimpleNamespace(**{**vars(half), "derived_settings": lambda: {}})  # the fingerprint of then
    assert fingerprint(half.settings, half) != fingerprint(half.settings, as_before)
    full_before = SimpleNamespace(**{**vars(full), "derived_settings": lambda: {}})
    assert fingerprint(full.settings, full) == fingerprint(full.settings, full_before)
