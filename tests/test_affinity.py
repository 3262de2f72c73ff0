"""Affinity network: targets, U-Net shapes, training (loss goes down, resume), prediction, bad input.

Training runs through the one training engine (kind `affinity`); what every kind shares
(freeze, init, exact resume, fingerprint) is tested per kind in test_training_kinds.py.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import cells

from srseg import affinity, ruler
from srseg.affinity import AffinityTraining, AffinityUNet, affinity_targets
from srseg.config import section
from srseg.io import InputError, read_json, write_image, write_labels
from srseg.runtime import load_checkpoint
from srseg.training import train

TINY = {
    "features": 4,
    "depth": 2,
    "batch": 2,
    "patch": 24,
    "lr": 3e-3,
    "log_every": 5,
    "val_every": 10,
    "checkpoint_every": 10,
    "tile": 32,
    "overlap": 8,
}
SEGMENTATION = section("segmentation", {"thresholds": [0.3, 0.7]})
VOXEL = [50, 10, 10]


def _train(volumes: dict, settings: dict, out, seed=0, **kw) -> tuple[AffinityTraining, dict]:
    """Train on in-memory (image, labels) specimens through the engine; (kind, train.json dict)."""
    settings = {**section("affinity", settings), "seed": seed}
    volumes = {name: (*pair, VOXEL) for name, pair in volumes.items()}  # the LSD window is in nm
    kind = AffinityTraining(settings, affinity.split_specimens(volumes, section("validation")["fraction"]), inputs={})
    info = train(
        kind,
        model=str(out / "model.pt"),
        log_csv=str(out / "log.csv"),
        train_json=str(out / "train.json"),
        device="cpu",
        where="affinity",
        **kw,
    )
    return kind, info


def test_targets_hand_drawn():
    labels = np.array([[[1, 1, 2], [1, 0, 2]], [[1, 1, 1], [3, 3, 2]]])
    affs = affinity_targets(labels, dim=3)
    # z: voxel vs the one in the section before; first section has no predecessor
    assert affs[0].tolist() == [[[0, 0, 0], [0, 0, 0]], [[1, 1, 0], [0, 0, 1]]]
    # y: voxel vs the one above; the 0 (membrane) voxel has affinity 0 to everything
    assert affs[1].tolist() == [[[0, 0, 0], [1, 0, 1]], [[0, 0, 0], [0, 0, 0]]]
    # x: voxel vs its left neighbour
    assert affs[2].tolist() == [[[0, 1, 0], [0, 0, 0]], [[0, 1, 1], [0, 1, 0]]]
    two_d = affinity_targets(labels, dim=2)
    assert not two_d[0].any() and np.array_equal(two_d[1:], affs[1:])


def test_long_range_targets_hand_drawn():
    labels = np.array([[[1, 1, 1, 2, 2]]])
    affs = affinity.offset_affinities(labels, [[0, 0, -2], [0, 0, 2]])
    # x - 2: same cell at x = 2 only; x = 0, 1 have no neighbour 2 to the left
    assert affs[0, 0, 0].tolist() == [0, 0, 1, 0, 0]
    # x + 2: x = 0 -> 2 same, x = 1 -> 3 not, x = 2 -> 4 not; x = 3, 4 have none
    assert affs[1, 0, 0].tolist() == [1, 0, 0, 0, 0]
    nearest = affinity.offset_affinities(labels, [[-1, 0, 0], [0, -1, 0], [0, 0, -1]])
    assert np.array_equal(nearest, affinity_targets(labels, 3))


def test_unet_widths_depth_pool_and_lsd_head():
    net = AffinityUNet(dim=2, features=4, depth=3, growth=3, pool=3, channels=4, lsd_channels=6)
    assert net.multiple == 9 and net.down[2].body[0].out_channels == 4 * 3**2
    aff, lsd = net.forward_all(torch.zeros(1, 1, 36, 45))
    assert aff.shape == (1, 4, 36, 45) and lsd.shape == (1, 6, 36, 45)
    assert net(torch.zeros(1, 1, 36, 45)).shape == (1, 4, 36, 45)  # prediction: the affinities only
    net3 = affinity.build_network(section("affinity", {"dim": 3, "features": 4, "long_range": [[-2, 0, 0]]}))
    assert net3.channels == 4 and net3.lsd_channels == 10
    assert net3.forward_all(torch.zeros(1, 1, 3, 16, 16))[1].shape == (1, 10, 3, 16, 16)


def test_tiny_phantom_ruler_learns_lsds_and_long_range_affinities_reach_agglomeration(tmp_path):
    """Augmented multitask training: the LSD target is computed and learned; long-range channels change segments."""
    from srseg import segment

    paths = {}
    for name, seed in (("a", 4), ("b", 5)):
        image, labels = cells((4, 64, 64), 14, seed)
        paths[name] = (tmp_path / name / "hr.tif", tmp_path / name / "labels.tif")
        write_image(paths[name][0], image, VOXEL, "uint8")
        write_labels(paths[name][1], labels, VOXEL)
    settings = section(
        "affinity",
        {**TINY, "features": 8, "patch": 32, "steps": 60, "val_every": 20, "long_range": [[0, -4, 0], [0, 0, -4]]},
    )
    assert settings["lsd"]["enabled"] and settings["augment"]["elastic_sigma"] > 0  # the defaults: on
    out = tmp_path / "aff"
    ruler.run_train_affinity(
        hr=[str(p[0]) for p in paths.values()],
        labels=[str(p[1]) for p in paths.values()],
        model=str(out / "model.pt"),
        log_csv=str(out / "log.csv"),
        train_json=str(out / "train.json"),
        threshold_json=str(out / "threshold.json"),
        affinity=settings,
        segmentation=section("segmentation", {"thresholds": [0.3, 0.7], "long_range_weight": [0.0, 0.5]}),
        seed=0,
        device="cpu",
    )
    log = pd.read_csv(out / "log.csv")
    assert log["lsd_loss"].iloc[-1] < 0.8 * log["lsd_loss"].iloc[0]  # the auxiliary target is learned
    val = log["val_lsd_loss"].dropna().tolist()
    assert len(val) == 3 and val[-1] < val[0]
    choice = read_json(out / "threshold.json")
    assert {c["long_range_weight"] for c in choice["candidates"]} == {0.0, 0.5}
    net = affinity.load_affinity_model(out / "model.pt")
    image, _ = cells((2, 64, 64), 14, seed=9)
    affs = affinity.predict_affinities(net, image, tile=64, overlap=8, progress=False)
    assert affs.shape == (5, 2, 64, 64) and net.offsets[3:] == [[0, -4, 0], [0, 0, -4]]
    folded = segment.fold_long_range(affs, net.offsets, 0.5)
    assert not np.allclose(folded, affs[:3])  # the long-range channels enter the agglomeration's edges
    with_lr, _ = segment.segment_affinities(affs, [0.5], offsets=net.offsets, long_range_weight=0.5)
    without, _ = segment.segment_affinities(affs, [0.5], offsets=net.offsets, long_range_weight=0.0)
    assert not np.array_equal(with_lr[0.5], without[0.5])


def test_unet_shapes_2d_and_3d():
    net2 = AffinityUNet(dim=2, features=4, depth=3)
    assert net2(torch.zeros(2, 1, 32, 40)).shape == (2, 2, 32, 40)
    net3 = AffinityUNet(dim=3, features=4, depth=3)
    assert net3(torch.zeros(1, 1, 3, 32, 40)).shape == (1, 3, 3, 32, 40)  # z never pooled: 3 sections work


@pytest.mark.parametrize("dim", [2, 3])
def test_prediction_tiled_any_size(dim):
    torch.manual_seed(0)
    net = AffinityUNet(dim=dim, features=4, depth=3)
    image = np.random.default_rng(0).random((5, 45, 70), dtype=np.float32)
    affs = affinity.predict_affinities(net, image, tile=32, overlap=8, batch=3, tile_z=3, progress=False)
    assert affs.shape == (3, 5, 45, 70) and affs.dtype == np.float32
    assert 0 <= affs.min() and affs.max() <= 1
    if dim == 2:
        assert not affs[0].any()
        # section by section: the same section predicted alone gives the same affinities
        alone = affinity.predict_affinities(net, image[2:3], tile=32, overlap=8, progress=False)
        np.testing.assert_allclose(alone[:, 0], affs[:, 2], atol=1e-5)
    else:
        assert affs[0].std() > 0
    with pytest.raises(InputError, match="NaN"):
        bad = image.copy()
        bad[0, 0, 0] = np.nan
        affinity.predict_affinities(net, bad, progress=False)


@pytest.mark.parametrize(
    "dim, downsample, flips, batch",
    [(2, 1, False, 3), (2, 2, True, 4), (3, 1, False, 2), (3, 2, True, 3), (3, 1, False, 1)],
)
def test_prediction_of_z_blocks_is_the_whole_volume_prediction_byte_for_byte(dim, downsample, flips, batch):
    """predict_sections(z0, z1) reads prediction_window's sections only and gives exactly the bytes of the
    whole-volume prediction there: the 3D net's z tiles (GroupNorm: a tile's output depends on all of it) and
    the tile batches are the whole volume's, in 2D as in 3D."""
    torch.manual_seed(dim + downsample)
    net = AffinityUNet(dim=dim, features=4, depth=3, downsample=downsample).eval()
    net.offsets = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]
    params = section(
        "affinity", {"dim": dim, "tile": 24, "overlap": 6, "batch": batch, "tile_z": 4, "test_time_flips": flips}
    )
    volume = (np.random.default_rng(dim).random((11, 40, 36)) * 255).astype(np.uint8)
    whole = affinity.predict(net, volume.astype(np.float32) / 255, "cpu", params)
    for z0, z1 in [(0, 3), (3, 6), (6, 9), (9, 11), (5, 6), (0, 11)]:
        lo, hi = affinity.prediction_window(net, volume.shape, z0, z1, params)
        assert lo <= z0 < z1 <= hi
        got = affinity.predict_sections(net, volume, z0, z1, "cpu", params)
        assert got.shape == (3, z1 - z0, 40, 36) and got.tobytes() == whole[:, z0:z1].tobytes(), (z0, z1)
    if dim == 3:
        if batch == 1:  # z tiles of 4 at 0, 2, 4, 6, 7: section 5 needs those at 2 and 4 only
            assert affinity.prediction_window(net, volume.shape, 5, 6, params) == (2, 8)
        # what the window avoids: sections 5, 6 with a context of 2 tiled on their own (z tiles at 3 and 5, not the
        # whole volume's 0, 2, 4, 6, 7) are other values
        local = affinity.predict(net, volume[3:9].astype(np.float32) / 255, "cpu", params)
        assert not np.array_equal(local[:, 2:4], whole[:, 5:7])
    with pytest.raises(ValueError, match="not inside"):
        affinity.prediction_window(net, volume.shape, 4, 12, params)


def test_training_patches_have_true_affinities_at_patch_edges():
    """One cell filling the volume: every target is 1, also in a patch's first row and column, after flips."""
    image = np.random.default_rng(1).random((4, 40, 40), dtype=np.float32)
    labels = np.ones((4, 40, 40), np.uint64)
    rng = np.random.default_rng(0)
    for dim in (2, 3):
        aug = section("affinity", {"augment": {"prob": 0.0}})["augment"]  # flips only
        x, y = affinity.sample_batch([(image, labels)], rng, 6, 16, dim, patch_z=2, aug=aug)
        assert x.shape[-2:] == (16, 16) and y.shape[1] == (2 if dim == 2 else 3)
        assert y.min() == 1.0


def test_a_few_steps_lower_the_loss(tmp_path):
    image, labels = cells((4, 48, 48), 12, seed=0)  # 3 training sections, 1 validation section
    _, info = _train({"s": (image, labels)}, {**TINY, "steps": 40}, tmp_path)
    rows = pd.read_csv(tmp_path / "log.csv")
    assert rows["step"].tolist() == list(range(5, 41, 5))  # one row per log_every steps, loss averaged over them
    assert rows["loss"].iloc[-1] < 0.85 * rows["loss"].iloc[0]
    val = rows["val_loss"].dropna().tolist()
    assert len(val) == 4 and val[-1] < val[0]
    assert info["steps"] == 40 and info["steps_per_s"] > 0 and info["final_val_loss"] == val[-1]


def test_resume_after_checkpoint_gives_the_same_model(tmp_path):
    image, labels = cells((3, 40, 40), 10, seed=1)
    params = {**TINY, "steps": 20, "log_every": 3}  # a log interval spans the step-10 checkpoint
    ref, _ = _train({"s": (image, labels)}, params, tmp_path / "ref")

    def crash_at_15(step):  # the job dies at step 15, after the step-10 checkpoint
        if step == 15:
            raise RuntimeError("killed")

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed"):
        _train({"s": (image, labels)}, params, out, on_step=crash_at_15)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 10
    net, info = _train({"s": (image, labels)}, params, out)
    assert info["resumed_from_step"] == 10
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, net.model.state_dict()[k]), k
    a, b = pd.read_csv(tmp_path / "ref" / "log.csv"), pd.read_csv(out / "log.csv")
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    # a checkpoint written for other params is ignored, not resumed
    _, info2 = _train({"s": (image, labels)}, {**params, "lr": 1e-4}, out)
    assert info2["resumed_from_step"] is None


def test_bad_pairs_raise_input_error():
    image = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(InputError, match="shape"):
        affinity.check_pair(image, np.ones((2, 8, 9), np.uint64), "s")
    with pytest.raises(InputError, match="all background"):
        affinity.check_pair(image, np.zeros((2, 8, 8), np.uint64), "s")
    with pytest.raises(InputError, match="affinity.dim"):
        section("affinity", {"dim": 4})


def test_validation_sections_are_the_last_ones():
    train, val = affinity.validation_sections(8, 0.25)
    assert (train, val) == (slice(0, 6), slice(6, 8))
    assert affinity.validation_sections(2, 0.25) == (slice(0, 1), slice(1, 2))


def test_run_train_affinity_writes_outputs(tmp_path):
    paths = {}
    for name, seed in (("a", 2), ("b", 3)):
        image, labels = cells((4, 40, 40), 10, seed)
        paths[name] = (tmp_path / name / "hr.tif", tmp_path / name / "labels.tif")
        write_image(paths[name][0], image, [50, 10, 10], "uint8")
        write_labels(paths[name][1], labels, [50, 10, 10])
    out = tmp_path / "aff"
    ruler.run_train_affinity(
        hr=[str(p[0]) for p in paths.values()],
        labels=[str(p[1]) for p in paths.values()],
        model=str(out / "model.pt"),
        log_csv=str(out / "log.csv"),
        train_json=str(out / "train.json"),
        threshold_json=str(out / "threshold.json"),
        affinity=section("affinity", {**TINY, "steps": 10}),
        segmentation=SEGMENTATION,
        seed=0,
        device="cpu",
    )
    log = pd.read_csv(out / "log.csv")
    assert list(log.columns) == [
        "step",
        "loss",
        "affinity_loss",
        "lsd_loss",
        "lr",
        "val_loss",
        "val_affinity_loss",
        "val_lsd_loss",
        "seconds",
    ]
    assert log["step"].iloc[-1] == 10
    info = read_json(out / "train.json")
    assert info["validation_sections"] == {"a": [3, 4], "b": [3, 4]} and info["device"] == "cpu"
    assert info["train_sections"] == {"a": [0, 3], "b": [0, 3]} and info["train_specimens"] == ["a", "b"]
    assert info["torch_version"] == torch.__version__ and info["steps_per_s"] > 0
    assert read_json(out / "threshold.json")["best_threshold"] in (0.3, 0.7)
    net = affinity.load_affinity_model(out / "model.pt")
    assert net.config() == {
        "dim": 2,
        "features": 4,
        "depth": 2,
        "growth": 2,
        "pool": 2,
        "channels": 2 + 2,  # y, x and the default long-range [0, -6, 0], [0, 0, -6]
        "lsd_channels": 6,
        "mean": 0.0,
        "std": 1.0,
        "downsample": 1,
    }
    assert net.offsets == [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, -6, 0], [0, 0, -6]]
    assert net.params == section("affinity", {**TINY, "steps": 10})  # complete: segment reads its tiles
    assert (out / "checkpoint.pt").exists()  # kept, as for SR models: raising steps continues

    write_labels(paths["b"][1], np.zeros((4, 40, 40), np.uint16), [50, 10, 10])
    with pytest.raises(InputError, match="all background"):
        ruler.run_train_affinity(
            hr=[str(p[0]) for p in paths.values()],
            labels=[str(p[1]) for p in paths.values()],
            model=str(tmp_path / "x" / "model.pt"),
            log_csv=str(tmp_path / "x" / "log.csv"),
            train_json=str(tmp_path / "x" / "t.json"),
            threshold_json=str(tmp_path / "x" / "th.json"),
            affinity=section("affinity", TINY),
            segmentation=SEGMENTATION,
            device="cpu",
        )
    assert not (tmp_path / "x" / "model.pt").exists()


def test_training_pairs_stay_in_their_stored_dtype_and_give_the_same_patches(tmp_path):
    """read_training_pairs keeps the HR field as stored (uint8: a quarter of float32); augmented patches, LSD
    targets and the downsampled ruler's grid are those of the float32 volume."""
    from srseg.data import StoredVolume
    from srseg.io import read_image

    img, lab = cells((4, 72, 72), 10, seed=3)
    write_image(tmp_path / "s" / "hr.tif", img, [50, 10, 10])
    write_labels(tmp_path / "s" / "labels.tif", lab, [50, 10, 10])
    stored = affinity.read_training_pairs([str(tmp_path / "s" / "hr.tif")], [str(tmp_path / "s" / "labels.tif")])["s"]
    assert isinstance(stored[0], StoredVolume) and stored[0].array.dtype == np.uint8 and stored[2] == [50, 10, 10]
    whole = (read_image(tmp_path / "s" / "hr.tif")[0], stored[1], stored[2])
    settings = section("affinity", {"long_range": [[0, -4, 0]]})
    targets = affinity.Targets(settings)
    for f in (1, 2):
        a, b = (affinity.downsample_volume(v, f) for v in (stored, whole))
        batches = [
            affinity.sample_batch([v], np.random.default_rng(0), 3, 24, 2, aug=settings["augment"], targets=targets)
            for v in (a, b)
        ]
        assert all(np.array_equal(x, y) for x, y in zip(*batches))


def test_cpu_bf16_trains_the_ruler_in_bf16_and_records_it(tmp_path, monkeypatch):
    image, labels = cells((4, 48, 48), 12, seed=0)
    monkeypatch.setattr(affinity, "cpu_bf16_native", lambda: True)  # as on a CPU with AVX512-BF16 / AMX
    seen = []
    forward_all = AffinityUNet.forward_all

    def spy(self, x):
        out = forward_all(self, x)
        seen.append(out[0].dtype)
        return out

    monkeypatch.setattr(AffinityUNet, "forward_all", spy)
    _, info = _train({"s": (image, labels)}, {**TINY, "steps": 40, "cpu_bf16": True}, tmp_path / "bf16")
    assert set(seen) == {torch.bfloat16} and info["precision"] == "bfloat16"
    rows = pd.read_csv(tmp_path / "bf16" / "log.csv")
    assert rows["loss"].iloc[-1] < 0.85 * rows["loss"].iloc[0]  # it still learns
    # the default stays float32, and so does amp: false
    for extra in ({}, {"cpu_bf16": True, "amp": False}):
        seen.clear()
        _, info = _train({"s": (image, labels)}, {**TINY, "steps": 5, **extra}, tmp_path / f"fp32{len(extra)}")
        assert set(seen) == {torch.float32} and info["precision"] == "float32"
    # a CPU without bf16 instructions stays float32 (bf16 would be emulated there)
    monkeypatch.setattr(affinity, "cpu_bf16_native", lambda: False)
    seen.clear()
    _, info = _train({"s": (image, labels)}, {**TINY, "steps": 5, "cpu_bf16": True}, tmp_path / "no_bf16")
    assert set(seen) == {torch.float32} and info["precision"] == "float32"


@pytest.mark.parametrize("f", [2, 3])
def test_a_downsampled_rulers_image_pixels_sit_on_its_label_samples_and_go_back_there(f):
    """On a ramp (value = HR x), the network's pixel j reads the ramp at the HR pixel its label is sampled
    at, and its affinities return to the HR pixels (and edges) they were learnt for: no half-pixel shift of
    the targets for even downsampling, where block means sit between two HR pixels."""
    ny, nx = 4 * f, 8 * f
    ramp = np.broadcast_to(np.arange(nx, dtype=np.float32), (2, ny, nx))
    labels = np.broadcast_to(np.arange(nx, dtype=np.uint64) + 1, (2, ny, nx))  # one label per HR column
    image, lab, _ = affinity.downsample_volume((ramp, labels), f)
    sampled_at = lab[0, 0].astype(np.float64) - 1  # the HR x of each label sample
    inner = slice(0, nx // f - 1)  # the last box reaches past the field (edge-padded)
    np.testing.assert_allclose(image[0, 0, inner], sampled_at[inner], atol=1e-5)

    # coarse channels holding the HR x of the place they describe: pixel j at f*j + f//2, the nearest-neighbour
    # x edge j halfway between pixels j - 1 and j
    coarse_x = f * np.arange(nx // f) + f // 2
    chans = [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, 0, -2 * f]]
    affs = np.zeros((4, 1, ny // f, nx // f), np.float32)
    affs[2] = coarse_x - f / 2  # x edges
    affs[3] = coarse_x  # a long-range channel: at the pixel centres
    up = affinity.upsample_affinities(affs, chans, f, (ny, nx))
    hr_x = np.arange(nx, dtype=np.float64)
    inner = slice(f, nx - f)  # clamped at both ends
    np.testing.assert_allclose(up[3, 0, 0, inner], hr_x[inner], atol=1e-4)
    np.testing.assert_allclose(up[2, 0, 0, inner], hr_x[inner] - 0.5, atol=1e-4)  # HR edge p: between p-1 and p
