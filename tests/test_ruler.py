"""The ruler's thresholds: one definition of validation sections, and each row's own threshold on its own output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import cells

from srseg import affinity, ruler, ruler_spec, segment
from srseg.affinity import AffinityUNet
from srseg.config import section
from srseg.data import split_sections, validation_sections
from srseg.infer import super_resolve
from srseg.io import InputError, read_json, write_image, write_json, write_labels
from srseg.models import build_model
from srseg.runtime import save_checkpoint


def test_sr_and_affinity_training_hold_back_the_same_sections():
    for n in (2, 5, 8, 30):
        train, val = validation_sections(n, 0.25)
        assert train.stop == val.start and val.stop == n and 1 <= val.stop - val.start <= n - 1
        lr, hr = np.zeros((n, 4, 4)), np.zeros((n, 8, 8))
        train_pairs, val_pairs = split_sections([(lr, hr)], 0.25)
        sr_train, sr_val = train_pairs[0][0], val_pairs[0][0]
        split = affinity.split_specimens({"s": (hr, hr.astype(np.uint64))}, 0.25)["s"]
        assert len(sr_val) == split[2][1] - split[2][0] == val.stop - val.start  # SR and affinity agree
        assert len(sr_train) == val.start


def test_each_row_chooses_its_threshold_on_its_own_validation_output(tmp_path, monkeypatch):
    """row_threshold super-resolves only the validation sections of the training specimens and scores those."""
    rng = np.random.default_rng(0)
    lr_paths, label_paths, pairs_paths, truths = [], [], [], {}
    for name in ("a", "b"):
        image, labels = cells((8, 48, 48), 12, seed=int(rng.integers(100)))
        lr = image[:, ::3, ::3]
        d = tmp_path / name
        write_image(d / "lr.tif", lr, [50, 30, 30], "float32")
        write_labels(d / "labels.tif", labels, [50, 10, 10])
        write_json(d / "pairs.json", {"scale": 3, "hr_voxel_nm": [50, 10, 10]})
        lr_paths.append(str(d / "lr.tif"))
        label_paths.append(str(d / "labels.tif"))
        pairs_paths.append(str(d / "pairs.json"))
        truths[name] = (lr, labels)
    torch.manual_seed(0)
    net = AffinityUNet(2, 4, 2)
    params = section("affinity", {"tile": 32, "overlap": 8})
    save_checkpoint(tmp_path / "ruler.pt", {"net": net.config(), "state_dict": net.state_dict(), "params": params})
    seen = {}

    def spy(predict, validation, thresholds, **kw):
        seen.update(validation)
        return {
            "best_threshold": 0.7,
            "fragments": segment.default_fragments({}),
            "scores": {},
            "per_specimen": {},
            "criterion": "voi_sum",
        }

    monkeypatch.setattr(ruler, "choose_threshold", spy)
    out = tmp_path / "row.json"
    ruler.run_row_threshold(
        lr_paths,
        label_paths,
        pairs_paths,
        str(tmp_path / "ruler.pt"),
        str(out),
        arch_spec={"arch": "bicubic", "net": {}},
        validation={"fraction": 0.25},
        segmentation={"thresholds": [0.3, 0.7]},
        infer={"tile": 16, "overlap": 4},
        device="cpu",
    )
    assert read_json(out)["best_threshold"] == 0.7
    assert read_json(out)["validation_sections"] == {"a": [6, 8], "b": [6, 8]}
    bicubic = build_model({"arch": "bicubic"}, 3)
    for name, (lr, labels) in truths.items():
        sr, truth = seen[name]
        assert sr.shape == (2, 48, 48) and np.array_equal(truth, labels[6:8])  # the validation sections only
        expected = super_resolve(bicubic, lr.astype(np.float32), 3, 16, 4, 8, "cpu", progress=False)[6:8]
        np.testing.assert_allclose(sr, expected, atol=1e-6)  # the row's own output, not HR


# --------------------------------------------------------------------------- a lab's own ruler (affinity.model)

OWN = {"features": 4, "depth": 2, "tile": 32, "overlap": 8, "long_range": [[0, -4, 0], [0, 0, -4]]}


def _specimens(root):
    hr, labels = [], []
    for name, seed in (("a", 2), ("b", 3)):
        image, lab = cells((4, 40, 40), 10, seed)
        write_image(root / name / "hr.tif", image, [50, 10, 10], "uint8")
        write_labels(root / name / "labels.tif", lab, [50, 10, 10])
        hr.append(str(root / name / "hr.tif"))
        labels.append(str(root / name / "labels.tif"))
    return hr, labels


def _run_train(root, out, settings):
    hr, labels = _specimens(root)
    ruler.run_train_affinity(
        hr=hr,
        labels=labels,
        model=str(out / "model.pt"),
        log_csv=str(out / "log.csv"),
        train_json=str(out / "train.json"),
        threshold_json=str(out / "threshold.json"),
        affinity=section("affinity", settings),
        segmentation=section("segmentation", {"thresholds": [0.3, 0.7]}),
        device="cpu",
    )


def test_own_ruler_is_used_without_training(tmp_path):
    torch.manual_seed(3)
    net = affinity.build_network(section("affinity", {**OWN, "lsd": {"enabled": False}}))
    torch.save(net.state_dict(), tmp_path / "lab_ruler.pt")  # a bare state_dict, as a lab would save it
    settings = {**OWN, "model": str(tmp_path / "lab_ruler.pt"), "normalize": {"mean": 0.5, "std": 0.25}}
    ruler_spec.check_ruler_model(section("affinity", settings))  # the plan-time check passes
    out = tmp_path / "aff"
    _run_train(tmp_path, out, settings)
    info = read_json(out / "train.json")
    assert info["trained"] is False and info["model"] == settings["model"]
    assert not (out / "checkpoint.pt").exists() and len(pd.read_csv(out / "log.csv")) == 0  # no step was run
    assert read_json(out / "threshold.json")["ruler"]["trained"] is False
    used = affinity.load_affinity_model(out / "model.pt")
    assert used.offsets == [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, -4, 0], [0, 0, -4]]
    assert (used.mean, used.std) == (0.5, 0.25)  # the declared input normalisation
    for k, v in net.state_dict().items():
        assert torch.equal(v, used.state_dict()[k]), k
    # rule train_affinity's model.pt is itself a valid own ruler (e.g. trained on a GPU cluster)
    again = {**OWN, "model": str(out / "model.pt"), "normalize": {"mean": 0.5, "std": 0.25}}
    ruler_spec.check_ruler_model(section("affinity", again))
    _run_train(tmp_path, tmp_path / "again", again)
    assert read_json(tmp_path / "again" / "train.json")["trained"] is False


def test_a_wrong_own_ruler_fails_before_any_job_naming_affinity_model(tmp_path):
    torch.manual_seed(0)
    nearest_only = affinity.build_network(section("affinity", {**OWN, "long_range": []}))
    torch.save(nearest_only.state_dict(), tmp_path / "nn.pt")
    save_checkpoint(tmp_path / "sr.pt", {"arch": "edsr", "state_dict": {}})
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    cases = [
        ("missing.pt", "does not exist"),
        ("nn.pt", "predicts 2 affinity channels, but affinity.dim 2 and affinity.long_range declare 4"),
        ("sr.pt", "trained as arch 'edsr'"),
        ("notes.txt", "not a PyTorch checkpoint"),
    ]
    for name, message in cases:
        settings = section("affinity", {**OWN, "model": str(tmp_path / name)})
        with pytest.raises(InputError, match=r"^affinity\.model: .*" + message.replace("(", r"\(")):
            ruler_spec.check_ruler_model(settings)
    # torch-free: the check runs on a login node without torch
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from srseg.ruler_spec import check_ruler_model\n"
        f"check_ruler_model({{'model': {str(tmp_path / 'nn.pt')!r}, 'dim': 2, 'depth': 2, 'long_range': []}})\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "ok", done.stderr


def test_augmentation_lengths_are_hr_pixels_whatever_the_ruler_downsampling():
    """A 2x-downsampled ruler deforms, blurs and shifts the tissue by the same nm as a full-resolution one."""
    aug = section("affinity")["augment"] | {"blur_sigma": 1.5, "elastic_sigma": 2.0, "elastic_spacing": 40.0}
    aug |= {"shift_px": 4, "shifted_section": 0.1}
    full = {"dim": 3, "downsample": 1, "augment": aug}
    half = ruler_spec.network_augment(full | {"downsample": 2})
    assert ruler_spec.network_augment(full) == aug
    lengths = ("blur_sigma", "elastic_sigma", "elastic_spacing", "shift_px")
    assert [half[k] for k in lengths] == [0.75, 1.0, 20.0, 2]
    # angles, probabilities and intensities are not lengths
    others = ("rotate_deg", "prob", "noise", "gamma")
    assert [half[k] for k in others] == [aug[k] for k in others]
    # the misalignment a 3D patch can get is context its targets need, on the network's grid
    settings = section("affinity") | {"dim": 3, "long_range": [], "lsd": {"enabled": False}}
    assert affinity.Targets(settings | {"augment": aug, "downsample": 2}).required == 2
    assert affinity.Targets(settings | {"augment": aug, "downsample": 1}).required == 4
    assert ruler_spec.network_augment({"augment": None, "downsample": 2}) is None


def test_a_downsampled_ruler_of_the_block_mean_grid_is_refused_naming_the_file(tmp_path):
    """A 2x-downsampled srseg ruler trained before its image pixels were centred on the label samples (its
    targets half an HR pixel off) is refused at plan time and at load time, with the fix; odd downsampling,
    whose blocks were always centred, and a checkpoint of now pass."""
    from srseg.runtime import load_checkpoint

    for f, marked, refused in [(2, True, False), (2, False, True), (3, False, False)]:
        settings = section("affinity", {**OWN, "long_range": [[0, -6, 0]], "downsample": f})
        path = tmp_path / f"ruler_{f}_{marked}.pt"
        affinity.save_ruler(str(path), affinity.build_network(settings), settings, seed=0)
        if not marked:  # a model.pt of before: no image_grid entry
            state = load_checkpoint(path)
            del state["image_grid"]
            save_checkpoint(path, state)
        own = {**settings, "model": str(path)}
        checks = [(ruler_spec.check_ruler_model, own), (affinity.load_ruler, own), (affinity.load_affinity_model, path)]
        for check, arg in checks:
            if refused:
                with pytest.raises(InputError, match=r"block means half an HR pixel off .*retrain it") as err:
                    check(arg)
                assert str(path) in str(err.value)
            else:
                check(arg)
    with pytest.raises(InputError, match=r"^affinity\.model: "):
        ruler_spec.check_ruler_model({**settings, "downsample": 2, "model": str(tmp_path / "ruler_2_False.pt")})
