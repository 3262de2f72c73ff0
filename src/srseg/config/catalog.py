"""What the config checks need to know about architectures and losses, read without torch.

Planning a run (snakemake -n, on a login node) must not import torch: this module reads
`src/srseg/models/*_arch.py` and `src/srseg/losses.py` as source (Python's `ast`) and
collects, per registered name, what a config entry may say:

* architectures (`@register("name")` classes): the keyword arguments of `__init__` (the
  `net:` keys, with their literal defaults), whether `in_channels` is accepted (2.5D
  `context:`), the training kind (class attribute `training`: supervised, gan, diffusion;
  `trainable = False`: untrained), the keywords of a GAN's `build_critic` (the `critic:`
  keys) and the file, whose code digest the train/infer jobs of that arch carry;
* losses (`@register_loss("name")` classes): pixel, model-aware (emsr) or adversarial, and
  their option keys.

tests/test_catalog.py checks that this agrees with the registries torch builds.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
MODELS_DIR = PACKAGE / "models"
LOSSES_FILE = PACKAGE / "losses.py"
NO_DEFAULT = object()  # a parameter without a (literal) default


@dataclass(frozen=True)
class ArchInfo:
    name: str
    module: str  # e.g. srseg.models.edsr_arch
    path: Path
    params: dict = field(default_factory=dict)  # net key -> literal default (or NO_DEFAULT)
    kind: str = "supervised"  # supervised | gan | diffusion | untrained
    context: bool = False  # accepts in_channels: z-context (2.5D) input
    critic_params: tuple = ()  # GAN archs: build_critic keywords

    @property
    def trained(self) -> bool:
        return self.kind != "untrained"

    @property
    def training_module(self) -> str | None:
        """The module of its training kind (srseg.training.kind_module), named without importing torch."""
        return f"srseg.training.kinds.{self.kind}" if self.trained else None

    def net_defaults(self) -> dict:
        return {k: v for k, v in self.params.items() if v is not NO_DEFAULT}


@dataclass(frozen=True)
class LossInfo:
    name: str
    role: str  # pixel | model | adversarial | options (a pixel-like loss with options)
    options: tuple = ()  # keys of its mapping form
    takes_pixel_losses: bool = False  # **kwargs of pixel losses (emsr's l_p)


def _literal(node):
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return NO_DEFAULT
    return _listify(value)


def _listify(value):
    """Tuples as lists: YAML configs give lists, so defaults compare equal to what users write."""
    if isinstance(value, tuple):
        return [_listify(v) for v in value]
    return value


def _signature(fn: ast.FunctionDef, skip=("self", "scale", "in_channels")) -> tuple[dict, bool, bool]:
    """(keyword -> default, accepts in_channels, has **kwargs) of a def."""
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [NO_DEFAULT] * (len(positional) - len(args.defaults)) + [_literal(d) for d in args.defaults]
    params = {a.arg: d for a, d in zip(positional, defaults)}
    params.update(
        {a.arg: (_literal(d) if d is not None else NO_DEFAULT) for a, d in zip(args.kwonlyargs, args.kw_defaults)}
    )
    in_channels = "in_channels" in params
    return {k: v for k, v in params.items() if k not in skip}, in_channels, args.kwarg is not None


def _decorator_name(cls: ast.ClassDef, decorator: str) -> str | None:
    for d in cls.decorator_list:
        if isinstance(d, ast.Call) and getattr(d.func, "id", None) == decorator and d.args:
            if isinstance(d.args[0], ast.Constant) and isinstance(d.args[0].value, str):
                return d.args[0].value
    return None


def _class_attr(cls: ast.ClassDef, name: str):
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", None) == name for t in stmt.targets):
            return _literal(stmt.value)
    return NO_DEFAULT


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    return next((s for s in cls.body if isinstance(s, ast.FunctionDef) and s.name == name), None)


def _lookup(cls: ast.ClassDef, classes: dict[str, ast.ClassDef], get):
    """get(cls) on the class, else on its bases defined in the same file (single inheritance chain)."""
    seen = set()
    while cls is not None and cls.name not in seen:
        seen.add(cls.name)
        found = get(cls)
        if found is not None and found is not NO_DEFAULT:
            return found
        base = next((classes[b.id] for b in cls.bases if isinstance(b, ast.Name) and b.id in classes), None)
        cls = base
    return None


def _parse(path: Path) -> tuple[ast.Module, dict[str, ast.ClassDef]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return tree, {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


@lru_cache(maxsize=1)
def archs() -> dict[str, ArchInfo]:
    """Registered architectures by name, from models/*_arch.py (sorted by file name)."""
    out: dict[str, ArchInfo] = {}
    for path in sorted(MODELS_DIR.glob("*_arch.py")):
        _, classes = _parse(path)
        for cls in classes.values():
            name = _decorator_name(cls, "register")
            if name is None:
                continue
            init = _lookup(cls, classes, lambda c: _method(c, "__init__"))
            params, context, _ = _signature(init) if init is not None else ({}, False, False)
            trainable = _lookup(cls, classes, lambda c: _class_attr(c, "trainable"))
            kind = _lookup(cls, classes, lambda c: _class_attr(c, "training")) or "supervised"
            if trainable is False:
                kind = "untrained"
            critic = _lookup(cls, classes, lambda c: _method(c, "build_critic"))
            critic_params = tuple(_signature(critic, skip=())[0]) if critic is not None else ()
            if name in out:
                raise ValueError(f"architecture {name!r} is registered twice ({out[name].path.name} and {path.name})")
            out[name] = ArchInfo(name, f"srseg.models.{path.stem}", path, params, kind, context, critic_params)
    return out


@lru_cache(maxsize=1)
def losses() -> dict[str, LossInfo]:
    """Registered losses by name, from losses.py."""
    _, classes = _parse(LOSSES_FILE)

    def ancestors(cls: ast.ClassDef) -> set[str]:
        names, stack = set(), [cls]
        while stack:
            for b in stack.pop().bases:
                n = b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                if n not in names:
                    names.add(n)
                    if n in classes:
                        stack.append(classes[n])
        return names

    out: dict[str, LossInfo] = {}
    for cls in classes.values():
        name = _decorator_name(cls, "register_loss")
        if name is None:
            continue
        init = _lookup(cls, classes, lambda c: _method(c, "__init__"))
        options, _, var_kw = _signature(init, skip=("self",)) if init is not None else ({}, False, False)
        kinds = ancestors(cls)
        if "AdversarialLoss" in kinds:
            role = "adversarial"
        elif _lookup(cls, classes, lambda c: _class_attr(c, "needs_model")) is True:
            role = "model"
        elif "PixelLoss" in kinds:
            role = "pixel"
        else:
            role = "options"
        if name in out:
            raise ValueError(f"loss {name!r} is registered twice in {LOSSES_FILE.name}")
        out[name] = LossInfo(name, role, tuple(options), var_kw)
    return out
