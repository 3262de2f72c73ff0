"""VGG19 feature extractor (Simonyan & Zisserman 2015) for perceptual losses, without torchvision.

The layer indices match torchvision's ``vgg19().features`` so that its state dict (keys
``features.N.weight`` or ``N.weight``) loads directly; the user supplies the file, nothing
is downloaded. Grey EM images are repeated to three channels and ImageNet-normalised.
Layer names follow ESRGAN: conv{block}_{i} is the i-th conv of a block, taken before its ReLU.
"""

from __future__ import annotations

import torch
from torch import nn

from ..io import InputError
from ..runtime import load_checkpoint

_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def layer_names() -> dict[str, int]:
    """conv{b}_{i} / relu{b}_{i} / pool{b} -> index in torchvision's vgg19().features."""
    names, block, conv, idx = {}, 1, 0, 0
    for v in _CFG:
        if v == "M":
            names[f"pool{block}"] = idx
            idx, block, conv = idx + 1, block + 1, 0
        else:
            conv += 1
            names[f"conv{block}_{conv}"], names[f"relu{block}_{conv}"] = idx, idx + 1
            idx += 2
    return names


def vgg19_features() -> nn.Sequential:
    layers, c = [], 3
    for v in _CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
            c = v
    return nn.Sequential(*layers)


class VGGFeatures(nn.Module):
    """Frozen VGG19 up to the deepest requested layer; forward returns {layer name: features}."""

    def __init__(self, weights_path: str, layers: list[str]):
        super().__init__()
        index = layer_names()
        bad = [n for n in layers if n not in index]
        if bad:
            raise InputError(f"perceptual loss: unknown VGG19 layer(s) {bad}; use names like conv5_4 or relu3_4")
        self.layers = {n: index[n] for n in layers}
        features = vgg19_features()
        state = load_checkpoint(weights_path)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
        try:
            features.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InputError(
                f"{weights_path}: not a VGG19 state dict ({str(exc).splitlines()[0]}); give torchvision vgg19 weights"
            ) from exc
        self.features = features[: max(self.layers.values()) + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = (x.float().expand(-1, 3, -1, -1) - self.mean) / self.std
        out, wanted = {}, {i: n for n, i in self.layers.items()}
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in wanted:
                out[wanted[i]] = h
        return out
