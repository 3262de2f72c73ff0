"""What the ruler's network predicts and what a lab's own ruler checkpoint must hold: torch-free.

Imported by the plan-time config checks (srseg.config.checks, on a login node without torch)
and by srseg.affinity. One place defines:

- the affinity channels: the nearest neighbours first, always as (z, y, x) =
  [[-1, 0, 0], [0, -1, 0], [0, 0, -1]] (what waterz reads; a 2D network's z channel is 0),
  then `affinity.long_range`, offsets [z, y, x] in voxels to the neighbour each channel
  compares with (negative: a predecessor, the MALA / gunpowder convention). A 2D network
  predicts the in-plane ones only (its long-range offsets must have z = 0);
- the local-shape-descriptor head (`affinity.lsd`): 6 channels in 2D, 10 in 3D;
- the input normalisation (`affinity.normalize`): the network sees (image - mean) / std
  with the image in [0, 1], averaged over `downsample` x `downsample` HR pixels (a CPU-size
  ruler for finely sampled HR; offsets stay in HR voxels, long-range ones multiples of it, and
  so do the augmentation's lengths, `network_augment`);
- a lab's own network (`affinity.model: path`): an srseg affinity checkpoint (a model.pt of
  rule train_affinity, e.g. trained with the MALA preset on a GPU cluster), or a bare
  AffinityUNet state_dict whose architecture the `affinity:` keys give. `check_ruler_model`
  validates it before any job runs (file, arch, channels) from the checkpoint's plain entries
  and tensor shapes, read without torch (`peek_tensors`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .io import InputError, peek_checkpoint, unpickle_checkpoint

NEAREST = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]
LSD_CHANNELS = {2: 6, 3: 10}


def offsets(affinity: dict) -> list[list[int]]:
    """Every affinity channel's offset [z, y, x]: the 3 nearest neighbours, then `long_range`."""
    return [list(o) for o in NEAREST] + [[int(v) for v in o] for o in affinity.get("long_range", [])]


def predicted_offsets(affinity: dict) -> list[list[int]]:
    """The offsets the network itself outputs, in HR voxels: a 2D network has no z nearest-neighbour channel."""
    all_offsets = offsets(affinity)
    return all_offsets[1:] if int(affinity["dim"]) == 2 else all_offsets


def network_offsets(affinity: dict) -> list[list[int]]:
    """`predicted_offsets` in the network's own voxels: y/x of the long-range ones divided by `downsample`.

    The nearest neighbours stay nearest neighbours of the downsampled grid (they are
    interpolated back onto the HR grid as nearest-neighbour edges, srseg.affinity).
    """
    f = int(affinity.get("downsample", 1))
    out = []
    for o in predicted_offsets(affinity):
        if o in NEAREST:
            out.append(list(o))
        else:
            out.append([o[0], o[1] // f, o[2] // f])
    return out


#: `affinity.augment` keys that are lengths in HR pixels (the rotation is an angle, the rest are
#: probabilities and intensities)
AUGMENT_LENGTHS = ("elastic_sigma", "elastic_spacing", "blur_sigma", "shift_px")


def network_augment(affinity: dict) -> dict | None:
    """`affinity.augment` on the network's own grid: its lengths divided by `downsample`.

    The lengths are in HR pixels, like the long-range offsets, so that `downsample` changes
    what the network sees, not how far the training deforms, blurs or shifts the tissue
    (a 1.5 px blur at 4 nm is 6 nm wide, whether the ruler then sees 4 or 8 nm pixels).
    """
    if affinity.get("augment") is None:
        return None
    aug = dict(affinity["augment"])
    f = int(affinity.get("downsample", 1))
    for key in AUGMENT_LENGTHS:
        if key in aug and f > 1:
            aug[key] = int(aug[key]) // f if key == "shift_px" else float(aug[key]) / f
    return aug


#: where a downsampled ruler's image pixels sit, recorded in its model.pt: on the HR pixels its labels are
#: sampled at (f*j + f//2). Checkpoints of before (block means, half an HR pixel off for even f) lack it.
IMAGE_GRID = "label_samples"


def image_grid_matters(affinity: dict) -> bool:
    """Whether `downsample` is even and > 1: only then did the image grid move off the old block means."""
    f = int(affinity.get("downsample", 1))
    return f > 1 and f % 2 == 0


def check_image_grid(state: dict, where: str) -> None:
    """An srseg ruler checkpoint with an even `downsample` must have been trained on the centred image grid."""
    net = state.get("net") if isinstance(state.get("net"), dict) else {}
    if image_grid_matters(net) and state.get("image_grid") != IMAGE_GRID:
        raise InputError(
            f"{where} was trained on block means half an HR pixel off its labels (downsample {net['downsample']}, "
            "before srseg centred the image pixels on the label samples); retrain it (rule train_affinity)"
        )


def lsd_channels(affinity: dict) -> int:
    """Channels of the LSD head (0 without it)."""
    lsd = affinity.get("lsd") or {}
    return LSD_CHANNELS[int(affinity["dim"])] if lsd.get("enabled") else 0


def check_offsets(affinity: dict, key: str = "affinity") -> None:
    """Long-range offsets: [z, y, x] integers, nonzero, not a nearest neighbour, z = 0 for a 2D net."""
    seen = set()
    for i, o in enumerate(affinity.get("long_range", [])):
        where = f"{key}.long_range[{i}]"
        if len(o) != 3 or not all(isinstance(v, int) for v in o):
            raise InputError(f"{where}: {o!r} must be three integers [z, y, x] (voxels to the neighbour)")
        if not any(o):
            raise InputError(f"{where}: [0, 0, 0] compares a voxel with itself; remove it")
        if [abs(v) for v in o] in [[1, 0, 0], [0, 1, 0], [0, 0, 1]]:
            raise InputError(f"{where}: {o} is a nearest neighbour, which is always predicted; remove it")
        if int(affinity["dim"]) == 2 and o[0] != 0:
            raise InputError(f"{where}: {o} has a z offset, but affinity.dim 2 networks see one section; set z to 0")
        f = int(affinity.get("downsample", 1))
        if o[1] % f or o[2] % f:
            raise InputError(
                f"{where}: {o} is not a multiple of affinity.downsample {f} in y and x (the network predicts "
                f"on every {f}-th HR pixel); use multiples of {f}"
            )
        if tuple(o) in seen:
            raise InputError(f"{where}: {o} is listed twice; remove the duplicate")
        seen.add(tuple(o))


def peek_tensors(path: str | os.PathLike) -> tuple[dict | None, dict[str, tuple[int, ...]]]:
    """(plain entries, {state_dict key: shape}) of a torch zip checkpoint, without torch.

    Plain entries as `srseg.io.peek_checkpoint` gives them (None: not a torch zip file); the
    shapes come from the arguments torch pickles to rebuild each tensor, for a state_dict
    stored either at the top level or under `state_dict`.
    """

    class _Tensor:  # stands in for torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
        def __init__(self, *args, **kwargs):
            self.shape = tuple(args[2]) if len(args) > 2 and isinstance(args[2], (tuple, list)) else None

        def __setstate__(self, state):
            pass

    state = unpickle_checkpoint(path, tensor=_Tensor)
    if state is None:
        return None, {}
    weights = state.get("state_dict") if isinstance(state.get("state_dict"), dict) else state

    def shapes(d):
        return {str(k): v.shape for k, v in d.items() if isinstance(v, _Tensor) and v.shape is not None}

    return peek_checkpoint(path) or {}, shapes(weights)


def _net_channels(shapes: dict[str, tuple[int, ...]]) -> tuple[int | None, int | None, int | None]:
    """(input channels, affinity head channels, U-Net levels) of an AffinityUNet state_dict."""
    first = shapes.get("down.0.body.0.weight")
    head = shapes.get("head.weight")
    levels = len({k.split(".")[1] for k in shapes if k.startswith("down.")}) or None
    return (first[1] if first else None), (head[0] if head else None), levels


def check_ruler_model(affinity: dict, workdir: str | os.PathLike = ".") -> None:
    """Plan-time check of `affinity.model`, a lab's own ruler (nothing to do when it is null).

    The file must exist and be a torch checkpoint of an affinity network whose affinity
    head has exactly the channels `affinity.dim` + `affinity.long_range` declare (a 2D net:
    2 + long-range, a 3D net: 3 + long-range), with 1 input channel; an srseg checkpoint must
    also have been trained as arch `affinity`, with that `dim`, and agree with the declared
    offsets and normalisation when it records them. Raises InputError naming affinity.model.
    """
    path = affinity.get("model")
    if not path:
        return
    file = Path(path) if Path(path).is_absolute() else Path(workdir) / path
    if not file.is_file():
        raise InputError(f"affinity.model: {path!r} does not exist; give the checkpoint of your affinity network")
    meta, shapes = peek_tensors(file)
    if meta is None:
        raise InputError(
            f"affinity.model: {path} is not a PyTorch checkpoint (torch.save zip); save the network's "
            "state_dict (or srseg's model.pt) with torch.save"
        )
    dim = int(affinity["dim"])
    want = len(predicted_offsets(affinity))
    arch = meta.get("arch")
    if arch is not None and arch != "affinity":
        raise InputError(
            f"affinity.model: {path} was trained as arch {arch!r}, not as an affinity network; "
            "give an affinity checkpoint (rule train_affinity's model.pt or an AffinityUNet state_dict)"
        )
    net = meta.get("net") if isinstance(meta.get("net"), dict) else None
    if net is not None:
        check_image_grid(meta, f"affinity.model: {path}")
        if int(net.get("dim", dim)) != dim:
            raise InputError(
                f"affinity.model: {path} is a {net['dim']}D network, but affinity.dim is {dim}; "
                f"set affinity.dim: {net['dim']}"
            )
        recorded = meta.get("offsets")
        if recorded is not None and [list(o) for o in recorded] != offsets(affinity):
            raise InputError(
                f"affinity.model: {path} predicts offsets {recorded}, but affinity.long_range declares "
                f"{offsets(affinity)}; set affinity.long_range: {[list(o) for o in recorded[3:]]}"
            )
        norm = meta.get("normalize")
        if norm is not None and affinity.get("normalize") and dict(norm) != dict(affinity["normalize"]):
            raise InputError(
                f"affinity.model: {path} was trained with input normalisation {norm}, but affinity.normalize "
                f"is {affinity['normalize']}; set affinity.normalize: {norm}"
            )
    cin, cout, levels = _net_channels(shapes)
    if cout is None and net is not None:
        cout = net.get("channels")
    if cout is None:
        raise InputError(
            f"affinity.model: {path} holds no affinity head (state_dict key head.weight); give an AffinityUNet "
            "checkpoint (rule train_affinity's model.pt or its state_dict)"
        )
    if cout != want:
        raise InputError(
            f"affinity.model: {path} predicts {cout} affinity channels, but affinity.dim {dim} and "
            f"affinity.long_range declare {want} ({predicted_offsets(affinity)}); declare the network's offsets "
            "in affinity.long_range (nearest neighbours first, then the long-range ones in its channel order)"
        )
    if cin is not None and cin != 1:
        raise InputError(f"affinity.model: {path} takes {cin} input channels; the ruler feeds 1 (one grey image)")
    if net is None and levels is not None and levels != int(affinity["depth"]):
        raise InputError(
            f"affinity.model: {path} is a U-Net of {levels} levels, but affinity.depth is {affinity['depth']}; "
            f"set affinity.depth: {levels}"
        )
