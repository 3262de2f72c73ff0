"""Where a network's weights start and which of them train: `init:` and `freeze:` for every kind.

`load_init` starts a network from a user's weights (an srseg model.pt or checkpoint, a
BasicSR file, a bare state_dict), fitting RGB or 2D checkpoints to grey / 2.5D networks
with `adapt_channels`; `freeze_parameters` keeps parameters named by prefix fixed. Both
name the config key (`models.<name>.init`, `affinity.freeze`, ...) in their errors.
"""

from __future__ import annotations

import torch

from ..io import InputError
from ..runtime import load_checkpoint

# keys under which known checkpoint layouts keep their weights, in order of preference
WEIGHT_KEYS = ("state_dict", "model", "model_state_dict", "params_ema", "params")  # srseg, EMSR, BasicSR


def load_init(model: torch.nn.Module, path: str, arch: str, where: str = "model") -> dict:
    """Load a user's weights non-strictly into `model`; returns what fitted and what did not.

    Tensors whose shape differs (e.g. another scale's upsampler) are skipped and reported
    like missing keys, unless `adapt_channels` knows how to fit them.
    """
    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("arch"), str) and state["arch"] != arch:
        raise InputError(
            f"{where}.init: {path} was trained as arch {state['arch']!r}, this model is {arch!r}; "
            f"point init: to a {arch} checkpoint"
        )
    weights = _weights_of(state)
    if weights is None:
        raise InputError(
            f"{where}.init: {path} holds no weight dictionary; give an srseg model.pt or a state_dict file"
        )
    own = model.state_dict()
    adapted = {}
    for k, v in weights.items():
        if k in own and own[k].shape != v.shape and (fitted := adapt_channels(v, own[k].shape)) is not None:
            adapted[k] = fitted
    mismatched = sorted(k for k, v in weights.items() if k in own and own[k].shape != v.shape and k not in adapted)
    usable = {k: adapted.get(k, v) for k, v in weights.items() if k in own and k not in mismatched}
    if not usable:
        raise InputError(
            f"{where}.init: none of the weights in {path} fit arch {arch!r} with these settings; check init: and net:"
        )
    result = model.load_state_dict(usable, strict=False)
    return {
        "path": str(path),
        "loaded": len(usable),
        "missing": sorted(result.missing_keys),
        "unexpected": sorted(k for k in weights if k not in own),
        "shape_mismatch": mismatched,
        "channel_adapted": sorted(adapted),
    }


def _weights_of(state) -> dict | None:
    weights = state
    if isinstance(state, dict):
        weights = next((state[k] for k in WEIGHT_KEYS if isinstance(state.get(k), dict)), state)
    if isinstance(weights, dict) and weights and all(isinstance(v, torch.Tensor) for v in weights.values()):
        return weights
    return None


def adapt_channels(w: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """Fit a checkpoint tensor built for other colour / section channels to our shape, or None.

    * input conv, RGB -> grey (weight (C, 3, k, k) -> (C, 1, k, k)): SUM over the colour
      axis. A grey image fed to the RGB net as three equal channels gives exactly the same
      activations, so this is "replicate the grey channel to 3" folded into the weights.
    * output conv, RGB -> grey (weight (3, C, k, k) -> (1, C, k, k), bias (3,) -> (1,)):
      MEAN over the output colours, i.e. the grey value the net would give as (R+G+B)/3.
    * input conv, 1 -> 2k+1 sections (fine-tuning a 2.5D model from a 2D one): the weights
      go to the centre section and the neighbours start at 0, so the start is the 2D model.
    """
    if w.ndim != len(shape):
        return None
    if w.ndim == 4 and w.shape[0] == shape[0] and w.shape[2:] == shape[2:]:
        if w.shape[1] == 3 and shape[1] == 1:
            return w.sum(dim=1, keepdim=True)
        if w.shape[1] == 1 and shape[1] % 2 == 1 and shape[1] > 1:
            out = w.new_zeros(shape)
            out[:, shape[1] // 2] = w[:, 0]
            return out
    if w.shape[0] == 3 and shape[0] == 1 and w.shape[1:] == shape[1:]:
        return w.mean(dim=0, keepdim=True)
    return None


def check_freeze(model: torch.nn.Module, prefixes, where: str = "model") -> None:
    """Every prefix must name at least one parameter (a typo would silently train everything)."""
    if isinstance(prefixes, str) or not all(isinstance(p, str) and p for p in prefixes):
        raise InputError(
            f"{where}.freeze: give a list of parameter-name prefixes such as [head., body.0.], got {prefixes!r}"
        )
    names = [n for n, _ in model.named_parameters()]
    for p in prefixes:
        if not any(n.startswith(p) for n in names):
            tops = sorted({n.split(".")[0] + "." for n in names})
            raise InputError(
                f"{where}.freeze: prefix {p!r} matches no parameter; valid top-level prefixes are {', '.join(tops)}"
            )
    if all(n.startswith(tuple(prefixes)) for n in names):
        raise InputError(
            f"{where}.freeze: {list(prefixes)} freezes every parameter, so nothing would train; "
            f"name only the parts to keep fixed"
        )


def freeze_parameters(model: torch.nn.Module, prefixes, where: str = "model") -> list[str]:
    """Stop training every parameter whose name starts with one of `prefixes`; returns the frozen names."""
    if not prefixes:
        return []
    check_freeze(model, prefixes, where)
    frozen = []
    for n, param in model.named_parameters():
        if n.startswith(tuple(prefixes)):
            param.requires_grad_(False)
            frozen.append(n)
    return frozen


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters an optimiser gets: frozen ones never reach it."""
    return [p for p in model.parameters() if p.requires_grad]
