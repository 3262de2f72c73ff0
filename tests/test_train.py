"""SR training (srseg.training.run_train): loss goes down, outputs, deterministic resume after a kill, bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import synthetic_pair, train_entry, train_outputs

from srseg.config import model_spec
from srseg.io import InputError, write_image
from srseg.losses import build_loss
from srseg.models import build_model, load_trained, save_trained
from srseg.training import run_train

TINY_EMSR = {
    "arch": "emsr",
    "net": {"channels": 8, "n_basic": 1, "n_res": 1, "heads": 2},
    "loss": {"emsr": {"l1": 1, "lambdas": [1, 1, 1], "noise_sigma": 5}},
}
TINY_EDSR = {"arch": "edsr", "net": {"n_feats": 8, "n_blocks": 2}, "loss": {"l1": 1}}
BASE = {
    "optimizer": "adam",
    "lr": 1e-3,
    "lr_halve_every": 3,
    "steps": 6,
    "batch": 2,
    "patch": 8,
    "checkpoint_every": 2,
    "val_every": 3,
    "val_patches": 4,
    "amp": True,
    "seed": 5,
}


@pytest.mark.parametrize(
    "spec",
    [
        {"arch": "srcnn", "net": {"features": [8, 4]}, "loss": {"mse": 1}},
        TINY_EDSR,
        TINY_EMSR,
        {"arch": "edsr", "net": {"n_feats": 8, "n_blocks": 1}, "loss": {"charbonnier": 1, "ssim": 0.5, "gloss": 0.5}},
    ],
)
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(spec):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    lr, hr = synthetic_pair(rng, z=4, n=12)
    x, y = torch.from_numpy(lr[:, None]), torch.from_numpy(hr[:, None])
    model = build_model(spec, 2)
    loss = build_loss(spec["loss"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(15):
        torch.manual_seed(7)  # the same emsr noise draw every step: a truly fixed batch
        total, _ = loss(model, x, y)
        first = total.item() if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    torch.manual_seed(7)
    assert loss(model, x, y)[0].item() < 0.8 * first


def test_train_writes_model_log_and_json(pairs, tmp_path):
    info = train_entry({**TINY_EDSR, **BASE}, pairs, tmp_path)
    log = pd.read_csv(tmp_path / "log.csv")
    assert log["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert {"loss", "l1", "lr", "val_l1", "val_psnr", "seconds"} <= set(log.columns)
    assert log["val_psnr"].notna().tolist() == [False, False, True, False, False, True]
    assert log["lr"].tolist() == [1e-3] * 3 + [5e-4] * 3  # halved every 3 steps
    saved = json.loads((tmp_path / "train.json").read_text())
    for key in (
        "parameters",
        "steps_per_s",
        "train_seconds_total",
        "device",
        "torch_version",
        "scale",
        "arch",
        "val_bicubic_psnr",
    ):
        assert key in saved
    assert (
        saved["scale"] == 2 and saved["device"] == "cpu" and saved["steps"] == 6 and saved["resumed_from_step"] is None
    )
    assert saved["train_sections"] == 4  # last of 3 sections of each specimen held back for validation
    model, meta = load_trained(tmp_path / "model.pt")
    assert meta["arch"] == "edsr" and meta["scale"] == 2
    assert info["parameters"] == sum(p.numel() for p in model.parameters())


def _weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


def test_killed_training_resumes_from_checkpoint_and_matches_uninterrupted_run(pairs, tmp_path):
    spec = {**TINY_EMSR, **BASE}  # emsr: its noisy branch also needs the torch RNG restored
    train_entry(spec, pairs, tmp_path / "straight")

    class Killed(Exception):
        pass

    def kill_at_5(step):
        if step == 5:  # checkpoints were written at steps 2 and 4
            raise Killed

    with pytest.raises(Killed):
        train_entry(spec, pairs, tmp_path / "killed", on_step=kill_at_5)
    assert not (tmp_path / "killed" / "model.pt").exists() and (tmp_path / "killed" / "checkpoint.pt").exists()
    info = train_entry(spec, pairs, tmp_path / "killed")
    assert info["resumed_from_step"] == 4 and info["steps_this_run"] == 2

    a, b = _weights(tmp_path / "straight" / "model.pt"), _weights(tmp_path / "killed" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # same config, same bytes
    assert (tmp_path / "straight" / "model.pt").read_bytes() == (tmp_path / "killed" / "model.pt").read_bytes()
    la, lb = pd.read_csv(tmp_path / "straight" / "log.csv"), pd.read_csv(tmp_path / "killed" / "log.csv")
    assert lb["step"].tolist() == list(range(1, 7))
    cols = ["loss", "emsr_sup", "emsr_noisy", "emsr_consistency", "lr", "val_psnr"]
    pd.testing.assert_frame_equal(la[cols], lb[cols])


def test_raising_steps_continues_training_and_other_changes_restart(pairs, tmp_path):
    spec = {**TINY_EDSR, **BASE}
    train_entry({**spec, "steps": 4}, pairs, tmp_path / "short")
    info = train_entry(spec, pairs, tmp_path / "short")  # steps 4 -> 6: continue from the kept checkpoint
    assert info["resumed_from_step"] == 4
    train_entry(spec, pairs, tmp_path / "straight")
    a, b = _weights(tmp_path / "straight" / "model.pt"), _weights(tmp_path / "short" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    info = train_entry({**spec, "lr": 5e-4}, pairs, tmp_path / "short")  # another trajectory: start over
    assert info["resumed_from_step"] is None and info["steps_this_run"] == 6


def test_fine_tune_from_init_reports_keys_that_do_not_fit(pairs, tmp_path):
    spec = {**TINY_EDSR, **BASE}
    other = {"arch": "edsr", "net": {"n_feats": 8, "n_blocks": 1}}
    save_trained(tmp_path / "user.pt", build_model(other, 4), other, 4)  # fewer blocks, other scale
    info = train_entry({**spec, "init": str(tmp_path / "user.pt"), "steps": 1}, pairs, tmp_path / "ft")
    init = info["init"]
    assert init["loaded"] > 0
    assert any(k.startswith("body.1.") for k in init["missing"])  # the second block is new
    assert any(k.startswith("upsample.") for k in init["shape_mismatch"]) or any(
        k.startswith("upsample.") for k in init["unexpected"]
    )
    assert json.loads((tmp_path / "ft" / "train.json").read_text())["init"]["loaded"] == init["loaded"]


def test_bad_inputs_raise_before_training_and_leave_no_outputs(pairs, tmp_path):
    spec = {**TINY_EDSR, **BASE}
    out = tmp_path / "out"
    # the config's own checks (schema, registries) refuse these before any job
    for bad, words in [
        ({**spec, "arch": "resnet9000"}, "unknown architecture"),
        ({**spec, "loss": {"l3": 1}}, "unknown loss"),
        ({**spec, "arch": "bicubic", "net": {}}, "not trained"),
        ({**spec, "optimizer": "lbfgs"}, "optimizer"),
        ({**spec, "steps": 0}, "steps"),
    ]:
        with pytest.raises(InputError, match=words):
            train_entry(bad, pairs, out)
    # the train job's own checks
    with pytest.raises(InputError, match="smaller than the training patch"):
        train_entry({**spec, "patch": 40}, pairs, out)
    with pytest.raises(InputError, match="no trainable parameters"):
        run_train(model_spec({"arch": "bicubic"}), *pairs, *train_outputs(out))
    with pytest.raises(InputError, match="lack .*model_spec"):
        run_train(
            {"arch": "edsr", "kind": "supervised", "loss": {"l1": 1}},
            *pairs,
            *train_outputs(out),
        )
    # HR that is not an integer multiple of LR
    rng = np.random.default_rng(0)
    write_image(tmp_path / "odd_hr.tif", rng.random((3, 33, 33)).astype(np.float32), [50, 10, 10])
    with pytest.raises(InputError, match="integer multiple"):
        run_train(
            model_spec(spec),
            pairs[0][:1],
            [str(tmp_path / "odd_hr.tif")],
            *train_outputs(out),
        )
    # init checkpoints: another arch, a corrupt file (checked again by the job: the file may change after planning)
    emsr = {"arch": "emsr", "net": TINY_EMSR["net"]}
    save_trained(tmp_path / "emsr.pt", build_model(emsr, 2), emsr, 2)
    checked = model_spec(spec)
    with pytest.raises(InputError, match="models.edsr.init: .* trained as arch 'emsr'"):
        run_train({**checked, "init": str(tmp_path / "emsr.pt")}, *pairs, *train_outputs(out))
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="corrupt.pt"):
        train_entry({**spec, "init": str(tmp_path / "corrupt.pt")}, pairs, out)
    assert not out.exists() or not any(out.iterdir())
