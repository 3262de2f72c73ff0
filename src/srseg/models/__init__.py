"""Registry of super-resolution architectures.

Each architecture lives in its own ``<name>_arch.py`` file (BasicSR style) and
registers itself with ``@register("<name>")``; adding a model is one file plus
one config entry. Every architecture maps a (B, 1, h, w) image in [0, 1] to a
(B, 1, h*scale, w*scale) image and is built from a config entry

    {"arch": "edsr", "net": {"n_feats": 32, "n_blocks": 4}}

by ``build_model(spec, scale)``. A top-level ``context: k`` (2.5D input) feeds the
2k+1 neighbouring LR sections as channels, (B, 2k+1, h, w); architectures that
accept an ``in_channels`` argument support it (the centre channel is the section
being super-resolved). A trained model is stored as ``model.pt`` holding
{"arch", "net", "scale", "state_dict", ...} so that ``load_trained`` can rebuild
it without the config.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..io import InputError
from ..registry import Registry
from ..runtime import load_checkpoint, save_checkpoint

#: arch name -> nn.Module class whose __init__ takes (scale, **net); classes get `arch_name`
ARCHS: Registry[type] = Registry("architecture", name_attr="arch_name")
#: class decorator: make an architecture buildable by its config name, @register("edsr")
register = ARCHS.register


def check_arch(name) -> type:
    return ARCHS.get(name, "the model's arch")


def check_scale(scale, allowed: Callable[[int], bool] | None = None, arch: str = "", hint: str = "") -> int:
    """Scale must be a positive integer (and, for some upsamplers, of a given form)."""
    if isinstance(scale, bool) or not float(scale).is_integer() or int(scale) < 1:
        raise InputError(
            f"scale {scale!r} for arch {arch!r} must be a positive integer; pair LR and HR at an integer ratio"
        )
    scale = int(scale)
    if allowed is not None and not allowed(scale):
        raise InputError(f"arch {arch!r} cannot upsample by {scale}; {hint}")
    return scale


def build_model(spec: dict, scale: int) -> torch.nn.Module:
    """Build the architecture named by spec["arch"] with keyword arguments spec["net"]."""
    if not isinstance(spec, dict) or "arch" not in spec:
        raise InputError("model entry has no `arch:` key; add e.g. `arch: edsr` to the model in config.yaml")
    cls = check_arch(spec["arch"])
    net = dict(spec.get("net") or {})
    params = inspect.signature(cls.__init__).parameters
    # in_channels is set from `context:`, never by hand, so a stored model always agrees with its context
    accepted = [p for p in params if p not in ("self", "scale", "in_channels")]
    unknown = sorted(set(net) - set(accepted))
    if unknown:
        raise InputError(
            f"`net:` of arch {spec['arch']!r} has unknown key(s) {', '.join(unknown)};"
            f" accepted keys: {', '.join(accepted)}"
        )
    context = check_context(spec.get("context", 0), spec["arch"], "in_channels" in params)
    if context:
        net["in_channels"] = 2 * context + 1
    model = cls(scale=scale, **net)
    model.context = context  # read by the data sampler and tiled inference: 2k+1 neighbouring sections in
    return model


def check_context(context, arch: str = "", supported: bool = True) -> int:
    """`context: k` (2.5D input of the 2k+1 neighbouring LR sections as channels) must be an integer >= 0."""
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise InputError(
            f"model key context: must be an integer >= 0 (neighbouring sections on each side), got {context!r}"
        )
    if context and not supported:
        multi = ", ".join(
            sorted(n for n, c in ARCHS.items() if "in_channels" in inspect.signature(c.__init__).parameters)
        )
        raise InputError(
            f"arch {arch!r} cannot take z-context (context: {context}); use one of {multi} or set context: 0"
        )
    return context


def model_meta(model: torch.nn.Module, spec: dict, scale: int) -> dict:
    meta = {"arch": spec["arch"], "net": dict(spec.get("net") or {}), "scale": int(scale)}
    if spec.get("context"):
        meta["context"] = int(spec["context"])
    return meta


def save_trained(
    path: str | os.PathLike, model: torch.nn.Module, spec: dict, scale: int, extra: dict | None = None
) -> None:
    """Write model.pt atomically: arch, net kwargs, scale, weights (+ extra info)."""
    state = model_meta(model, spec, scale)
    state["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    state["torch_version"] = torch.__version__
    if extra:
        state.update(extra)
    save_checkpoint(path, state)


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a model saved by `save_trained`; returns (model in eval mode on device, meta)."""
    state = load_checkpoint(path, map_location="cpu")
    if not isinstance(state, dict) or not {"arch", "scale", "state_dict"} <= set(state):
        raise InputError(
            f"{path}: not an srseg model file (needs keys arch, scale, state_dict); "
            "point to a model.pt written by the train rule"
        )
    model = build_model(
        {"arch": state["arch"], "net": state.get("net") or {}, "context": state.get("context", 0)}, state["scale"]
    )
    try:
        model.load_state_dict(state["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(
            f"{path}: weights do not fit arch {state['arch']!r} with its stored net settings ({first}); "
            "retrain or fix the file"
        ) from exc
    meta = {k: v for k, v in state.items() if k != "state_dict"}
    return model.to(device).eval(), meta


# Every models/*_arch.py registers itself when imported: adding a model is one new file.
for _path in sorted(Path(__file__).parent.glob("*_arch.py")):
    importlib.import_module(f"{__name__}.{_path.stem}")
