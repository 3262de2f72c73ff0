"""The configuration: one schema with every default, strict at every depth, checked before any job.

    cfg = resolve(user_config)          # defaults layered under the user's keys, validated, cross-checked
    model_settings(cfg, "edsr")         # one model's complete slice (what its train job gets)
    folds(cfg)                          # fold -> {train, test}

`schemas/config.schema.yaml` holds every key, type, range, default and description
(`schema`); the cross-checks that a schema cannot express live in `checks`; `catalog`
reads the architectures and losses without torch; `digest` makes params canonical and
hashes the library code each rule runs. Nothing here imports torch, OpenCV or waterz, so
planning a run is light. Library functions take their defaults from `section(...)`: no
default lives in Python code.
"""

from __future__ import annotations

from pathlib import Path

from . import catalog, checks, digest, schema
from .checks import GAN_KEYS, folds, training_keys
from .digest import canonical, code_digest
from .schema import defaults, load_schema, normalise, section, subschema, validate

__all__ = [
    "resolve",
    "model_settings",
    "model_spec",
    "folds",
    "section",
    "defaults",
    "canonical",
    "code_digest",
    "load_schema",
    "normalise",
    "validate",
    "subschema",
    "catalog",
    "checks",
    "digest",
    "schema",
    "GAN_KEYS",
]


def resolve(config: dict, workdir: str | Path = ".") -> dict:
    """The user's config over the schema's defaults, schema-validated and cross-checked (InputError: one sentence)."""
    cfg = normalise(dict(config))
    validate(cfg)
    checks.check(cfg, workdir)
    return cfg


def _slice(entry: dict, training: dict, seed: int, validation: dict) -> dict:
    arch = catalog.archs()[entry["arch"]]
    net = {**arch.net_defaults(), **entry.get("net", {})}
    if not arch.trained:
        return canonical({"arch": arch.name, "net": net})
    keys = training_keys() + (tuple(k for k in GAN_KEYS if k != "critic") if arch.kind == "gan" else ())
    out = {k: training[k] for k in keys}
    out.update({k: v for k, v in entry.items() if k in keys})
    out.update(
        arch=arch.name,
        kind=arch.kind,
        net=net,
        loss=entry["loss"],
        init=entry["init"],
        context=entry["context"],
        val_fraction=validation["fraction"],  # the shared validation sections (data.validation_sections)
        freeze=entry["freeze"],
        seed=entry.get("seed", seed),
    )
    if arch.kind == "gan":
        out["critic"] = entry.get("critic", {})
    return canonical(out)


def model_settings(config: dict, name: str) -> dict:
    """A resolved config's model `name`: its entry over `training:`, only the keys its arch kind uses.

    `kind` (supervised, gan, diffusion) is added from the architecture; `net:` gets the
    arch's defaults, so writing a default out explicitly is the same model.
    """
    return _slice(config["models"][name], config["training"], config["seed"], config["validation"])


def model_spec(
    entry: dict,
    training: dict | None = None,
    seed: int = 0,
    name: str = "model",
    workdir: str | Path = ".",
    validation: dict | None = None,
) -> dict:
    """For library callers and tests: a (partial) model entry -> its complete, checked slice."""
    entry_schema = subschema("models", "*")
    full = normalise(dict(entry), entry_schema)
    validate(full, entry_schema, where=f"models.{name}")
    checks.check_model(name, full, Path(workdir))
    return _slice(full, section("training", training), seed, section("validation", validation))
