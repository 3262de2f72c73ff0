"""The configuration schema: the one place that holds every key, its type, range and default.

`schemas/config.schema.yaml` is read once; `normalise` layers a user's config on its
defaults (and turns YAML's number spellings into one type: `1e-3` is a string for YAML 1.1,
`1` and `1.0` are an int and a float), and `validate` checks the result with jsonschema and
turns the most specific error into one sentence naming the dotted key and the fix.

Written by hand where jsonschema has no answer: applying defaults through `$ref`, `oneOf` and
`if/then` branches (its validators only check), and the one-line messages with a "did you
mean" suggestion (its messages print whole sub-schemas).
"""

from __future__ import annotations

import copy
import difflib
from functools import lru_cache
from pathlib import Path

import yaml

from ..io import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "config.schema.yaml"


@lru_cache(maxsize=1)
def load_schema() -> dict:
    if not SCHEMA_PATH.is_file():
        raise InputError(
            f"{SCHEMA_PATH}: the config schema is missing; install srseg from its repository (pip install -e .)"
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser: the schema is read at every plan
    return yaml.load(SCHEMA_PATH.read_text(), Loader=loader)  # noqa: S506 - a safe loader


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(load_schema())


def is_valid(value, schema: dict) -> bool:
    """`value` against a sub-schema of the config schema (its $refs resolve against the root)."""
    return _validator().evolve(schema=schema).is_valid(value)


def deref(schema: dict) -> dict:
    """A sub-schema with its `$ref` (a JSON pointer into the root) merged under its own keys."""
    while isinstance(schema, dict) and "$ref" in schema:
        target = load_schema()
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def subschema(*path: str) -> dict:
    """The schema of a dotted path, e.g. subschema("affinity", "augment"); map entries by "*"."""
    schema = deref(load_schema())
    for key in path:
        if key == "*":
            schema = deref(schema["additionalProperties"])
        else:
            schema = deref(schema["properties"][key])
    return schema


# --------------------------------------------------------------------------- defaults + number types


def _types(schema: dict) -> set[str]:
    t = schema.get("type")
    return set(t) if isinstance(t, list) else {t} if t else set()


def _coerce(value, schema: dict):
    """One spelling per number: numbers are floats, integers ints, YAML 1.1's '1e-3' a float."""
    types = _types(schema)
    if isinstance(value, bool):
        return value
    if "boolean" in types and "string" not in types and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"  # `--config overview={segment_jobs: true}` gives text too
    if "integer" in types and isinstance(value, float) and value.is_integer():
        return int(value)
    if "integer" in types and isinstance(value, str) and "string" not in types and value.strip().lstrip("-").isdigit():
        return int(value)  # `--config infer={blocks_z: 2}` on the command line gives text
    if "number" in types and "integer" not in types:
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str) and "string" not in types:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def normalise(value, schema: dict | None = None):
    """A deep copy of `value` with every absent key that has a default filled in, numbers coerced.

    Objects get their properties' defaults, map entries (additionalProperties) are normalised
    each, `allOf` parts apply (an `if/then` part only where its `if` holds), and of `oneOf` /
    `anyOf` the first branch that the normalised value satisfies is taken.
    """
    schema = deref(load_schema() if schema is None else schema)
    value = copy.deepcopy(value)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            for branch in schema[key]:
                candidate = normalise(value, branch)
                if is_valid(candidate, deref(branch)):
                    return candidate
    value = _coerce(value, schema)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, sub in props.items():
            sub = deref(sub)
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key in list(value):
            if key in props:
                value[key] = normalise(value[key], props[key])
            elif isinstance(extra, dict):
                value[key] = normalise(value[key], extra)
        for part in schema.get("allOf", []):
            part = deref(part)
            if "if" in part:
                branch = part.get("then") if is_valid(value, part["if"]) else part.get("else")
                if branch is not None:
                    value = normalise(value, branch)
            else:
                value = normalise(value, part)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [normalise(v, schema["items"]) for v in value]
    return value


def defaults(*path: str) -> dict:
    """The defaults of one section, e.g. defaults("affinity") or defaults("models", "*") (none)."""
    return normalise({}, subschema(*path))


def section(path: str, given: dict | None = None, where: str | None = None) -> dict:
    """`given` (a partial slice, e.g. a library caller's) over the defaults of `path`, validated.

    `path` is dotted, "*" standing for an entry of a map ("degradations.*"); `where` is the
    key errors name (default: `path`). The workflow passes complete slices (then this only
    checks); library callers and tests may pass only what differs.
    """
    schema = subschema(*path.split("."))
    value = normalise(dict(given or {}), schema)
    validate(value, schema, where=where or path)
    return value


# --------------------------------------------------------------------------- one-line errors


def dotted(path) -> str:
    """models.edsr.net.depths[0]: keys joined by dots, list indexes in brackets."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def suggest(word: str, options) -> str:
    """'; did you mean X?' for the nearest option, else the list of options."""
    options = sorted(str(o) for o in options)
    near = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    if near:
        return f"; did you mean {near[0]}?"
    return f"; valid: {', '.join(options)}" if options else ""


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _leaves(error):
    """The errors under a oneOf/anyOf (its context), else the error itself."""
    if error.context and error.validator != "propertyNames":
        for sub in error.context:
            yield from _leaves(sub)
    else:
        yield error


def _most_specific(errors):
    """The deepest error (the one closest to the offending key); unknown keys and enums first among equals."""
    rank = {"additionalProperties": 0, "required": 1, "enum": 2, "const": 3}
    leaves = [leaf for e in errors for leaf in _leaves(e)]
    # a oneOf of a number and a range reports both branches; the branch of the value's own type wins
    typed = [e for e in leaves if e.validator != "type"] or leaves
    return max(typed, key=lambda e: (len(e.absolute_path), -rank.get(e.validator, 9)))


def message(error, where: str = "") -> str:
    """One sentence for a jsonschema error: the dotted key, what is wrong, the fix."""
    path = [p for p in ([where] if where else [])] + list(error.absolute_path)
    key = dotted(path) or "config"
    schema, value = error.schema, error.instance
    if error.validator == "additionalProperties":
        allowed = set(deref(schema).get("properties", {}))
        unknown = sorted(k for k in value if k not in allowed)
        if unknown:
            k = unknown[0]
            return f"{dotted(path + [k])}: unknown key{suggest(k, allowed)} (remove it or fix the spelling)"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in value]
        return f"{dotted(path + missing[:1])}: missing; this key is required here"
    if error.validator in ("enum", "const"):
        options = error.validator_value if error.validator == "enum" else [error.validator_value]
        hint = suggest(value, options) if isinstance(value, str) else ""
        hint = "" if hint.startswith("; valid") else hint
        return f"{key}: {_short(value)} is not one of {', '.join(map(str, options))}{hint}"
    if "propertyNames" in error.absolute_schema_path:  # jsonschema reports a bad name at its parent's path
        name = error.instance
        if name in ("hr", "none", "real", "denoised"):
            return f"{dotted(path + [name])}: the name {name!r} is reserved (hr, none, real, denoised); rename it"
        return f"{dotted(path + [name])}: invalid name; use letters, digits, _ and - (starting with a letter or digit)"
    if error.validator == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"{key}: {_short(value)} should be of type {want}"
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[error.validator]
        return f"{key}: {_short(value)} must be {op} {error.validator_value}"
    if error.validator in ("minItems", "maxItems"):
        return f"{key}: {_short(value)} has the wrong length ({error.validator} {error.validator_value})"
    if error.validator == "minProperties":
        return f"{key}: needs at least {error.validator_value} entries"
    if error.validator == "uniqueItems":
        return f"{key}: {_short(value)} lists an entry twice; give each once"
    if error.validator == "pattern":
        hint = deref(schema).get("description", f"match {error.validator_value}")
        return f"{key}: {_short(value)} is not valid; expected {hint}"
    return f"{key}: {_short(value)} is invalid ({error.validator})"


def validate(value, schema: dict | None = None, where: str = "") -> None:
    """Raise InputError with one sentence for the most specific schema violation of `value`."""
    validator = _validator() if schema is None else _validator().evolve(schema=schema)
    errors = list(validator.iter_errors(value))
    if errors:
        raise InputError(message(_most_specific(errors), where))


# --------------------------------------------------------------------------- documentation


def leaves(schema: dict | None = None, path: tuple = ()):
    """(dotted key, schema, note) of every key: map entries as <name>, kind-specific keys with their kind."""
    schema = deref(load_schema() if schema is None else schema)
    branches = [deref(p) for p in schema.get("allOf", []) if "then" in deref(p)]
    required = set(schema.get("required", []))
    for key, sub in schema.get("properties", {}).items():
        if key in required:
            sub = {**deref(sub), "_required": True}
        per_branch = branches and all(
            not deref(deref(b["then"]).get("properties", {}).get(key, {})).get("const")
            and key in deref(b["then"]).get("properties", {})
            for b in branches
        )
        if not per_branch:
            yield from _leaf_or_deeper(sub, path + (key,), "")
    for branch in branches:
        cond = deref(branch["if"]).get("properties", {})
        note = ", ".join(f"{k}: {v.get('const')}" for k, v in cond.items())
        for key, sub in deref(branch["then"]).get("properties", {}).items():
            if "const" not in deref(sub):
                yield from _leaf_or_deeper(sub, path + (key,), note)


def _leaf_or_deeper(sub, path, note):
    """A leaf key, or a section (yielded as a heading) followed by its keys."""
    sub = deref(sub)
    extra = sub.get("additionalProperties")
    if sub.get("properties") and sub.get("type") == "object":
        yield ".".join(path), {**sub, "_section": True}, note
        yield from leaves(sub, path)
    elif isinstance(extra, dict) and (deref(extra).get("properties") or deref(extra).get("allOf")):
        yield ".".join(path), sub, note
        yield from leaves(extra, path + ("<name>",))
    else:
        yield ".".join(path), sub, note


def _type_text(sch: dict) -> str:
    sch = deref(sch)
    if "enum" in sch:
        return " \\| ".join(map(str, sch["enum"]))
    if "const" in sch:
        return str(sch["const"])
    if "oneOf" in sch or "anyOf" in sch:
        return " or ".join(_type_text(b) for b in sch.get("oneOf", sch.get("anyOf")))
    t = sch.get("type", "any")
    t = " or ".join(t) if isinstance(t, list) else t
    if t == "array" and isinstance(sch.get("items"), dict):
        t = f"list of {_type_text(sch['items'])}"
    return t


def _default_text(sch: dict) -> str:
    import json

    if "default" not in sch:
        return "required" if sch.get("_required") else "—"
    text = json.dumps(sch["default"])
    return f"`{text}`" if len(text) <= 40 else "(see schema)"


def markdown_table() -> str:
    """The README's table of every config key (tests/test_config.py keeps the two equal)."""
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, sch, note in leaves():
        if sch.get("_section"):
            continue
        desc = " ".join(sch.get("description", "").split()).replace("|", "\\|")
        if note:
            desc = f"({note}) {desc}"
        default = _default_text(sch)
        inherited = key.removeprefix("models.<name>.")
        if (
            key.startswith("models.<name>.")
            and inherited in deref(load_schema()["properties"]["training"])["properties"]
        ):
            default = f"`training.{inherited}`"
        rows.append(f"| `{key}` | {_type_text(sch)} | {default} | {desc} |")
    return "\n".join(rows)
