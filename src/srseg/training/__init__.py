"""One training engine for every kind of network the workflow trains.

    run_train(spec, lr_paths, hr_paths, model, log_csv, train_json)   # rule train: one SR model

`engine` holds the loop, checkpoints with fingerprinted resume, validation scheduling and
the outputs; `weights` the fine-tuning options (`init:`, `freeze:`); `kinds` what each SR
training kind adds (supervised, gan, diffusion: optimisers and one step function),
chosen through the `KINDS` registry by the slice's `kind` (the arch's `training`
attribute). Affinity training (srseg.affinity) is a kind of the same engine.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..config.checks import ENTRY_KEYS, training_keys
from ..io import InputError
from .engine import KINDS, Kind, fingerprint, train
from .weights import adapt_channels, check_freeze, freeze_parameters, load_init

__all__ = [
    "KINDS",
    "Kind",
    "adapt_channels",
    "check_freeze",
    "fingerprint",
    "freeze_parameters",
    "kind_class",
    "kind_module",
    "load_init",
    "run_train",
    "train",
]
SR_KINDS = ("supervised", "gan", "diffusion")


def kind_module(kind: str) -> str:
    """The module that registers an SR training kind (the train rule digests exactly this one)."""
    return f"{__name__}.kinds.{kind}"


def kind_class(kind: str, where: str = "") -> type[Kind]:
    """The registered Kind class of `kind`, importing its module first for the SR kinds."""
    if kind in SR_KINDS:
        importlib.import_module(kind_module(kind))
    return KINDS.get(kind, where)


def check_slice(spec: dict, where: str) -> None:
    """A partial entry would fail deep in training; say at once how to complete it."""
    if "kind" not in spec and "arch" in spec:
        raise InputError(
            f"{where}: arch {spec['arch']!r} has no trainable parameters; it needs no training "
            f"(list it as an untrained baseline)"
        )
    missing = [k for k in (*ENTRY_KEYS, *training_keys()) if k not in spec]
    if missing:
        raise InputError(
            f"{where}: the training settings lack {', '.join(missing)}; pass the model's complete slice "
            f"(srseg.config.model_settings or model_spec)"
        )


def run_train(
    spec: dict,
    lr_paths: list[str],
    hr_paths: list[str],
    model: str,
    log_csv: str,
    train_json: str,
    device: str = "auto",
    threads: int | None = 1,
    log: str | None = None,
    name: str | None = None,
    checkpoint: str | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """Rule train: train one SR model (its complete config slice `spec`) on LR/HR TIFF pairs.

    Writes model.pt, log.csv and train.json (returned as a dict); `name` is the model's
    config name, used in error messages (models.<name>.freeze ...). The checkpoint
    (default checkpoint.pt beside `model`) is kept, so raising `steps` continues.
    """
    where = f"models.{name or spec.get('arch')}"
    check_slice(spec, where)
    kind = kind_class(spec["kind"], f"{where}.arch")(spec, lr_paths, hr_paths)
    return train(
        kind,
        model=model,
        log_csv=log_csv,
        train_json=train_json,
        checkpoint=checkpoint,
        device=device,
        threads=threads,
        log=log,
        where=where,
        on_step=on_step,
    )
