"""The ruler's thresholds: one definition of validation sections, and each row's own threshold on its own output."""

from __future__ import annotations

import numpy as np
import torch
from helpers import cells

from srseg import affinity, ruler
from srseg.affinity import AffinityUNet
from srseg.config import section
from srseg.data import split_sections, validation_sections
from srseg.infer import super_resolve
from srseg.io import read_json, write_image, write_json, write_labels
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
        return {"best_threshold": 0.7, "scores": {}, "per_specimen": {}, "criterion": "voi_sum"}

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
