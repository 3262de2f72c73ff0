"""Canonical params and code digests: a rule reruns when, and only when, its meaning changes.

Snakemake compares a job's params by their `repr`, so a dict whose keys come in another order
would look changed: `canonical` sorts keys at every depth. Snakemake does not look into the
library a rule's script imports: `code_digest` hashes the code a rule executes (its entry
module and, transitively, every srseg module that imports statically, plus files named
explicitly, such as one model's `*_arch.py`), so editing `models/edsr_arch.py` reruns what
edsr trained and inferred and nothing else. Comments, docstrings and formatting do not
count: the hash is over the module's syntax tree with docstrings removed.

`srseg.config` itself is left out of every digest: what it computes (defaults, slices)
is the params themselves. Hand-written: no library computes import closures of source
files without importing them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from functools import cache, lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
EXCLUDED = ("srseg.config",)


def canonical(value):
    """Dicts with sorted keys and lists for tuples, at every depth (a stable repr for Snakemake)."""
    if isinstance(value, dict):
        return {str(k): canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Every module of the srseg package: dotted name -> file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _package_of(name: str) -> str:
    return name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]


CACHE = Path(os.environ.get("SRSEG_CACHE_DIR", Path.home() / ".cache" / "srseg")) / "code-digests.json"


@lru_cache(maxsize=1)
def _cache() -> dict:
    """Parse results of earlier runs, keyed by module name and a hash of its bytes (always valid)."""
    try:
        return json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return {}


def _save_cache() -> None:
    try:
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        tmp = CACHE.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_cache()))
        os.replace(tmp, CACHE)
    except OSError:  # a read-only home only costs the parse next time
        pass


@cache
def _analysis(name: str) -> tuple[frozenset[str], str]:
    """(srseg modules `name` imports, digest of its code): one parse per file content, cached on disk.

    Planning parses no file twice, and a second `snakemake` call parses none (parsing is
    most of the cost of the digests).
    """
    source = modules()[name].read_bytes()
    key = f"{name}:{hashlib.sha256(source).hexdigest()}"
    hit = _cache().get(key)
    if hit is None:
        tree = ast.parse(source, filename=str(modules()[name]))
        found = _imported_names(name, tree)
        digest = hashlib.sha256(ast.dump(_strip_docstrings(tree)).encode()).hexdigest()
        hit = _cache()[key] = [sorted(found), digest]
        _save_cache()
    return frozenset(hit[0]), hit[1]


def _imported_names(name: str, tree: ast.Module) -> set[str]:
    """srseg modules `name` imports anywhere in its code (top level or inside functions)."""
    known = modules()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name).split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from . import data` imports a module
    out = set()
    for mod in found:
        while mod and mod not in known:  # `import srseg.x.y` also runs srseg.x and srseg
            mod = mod.rpartition(".")[0]
        parts = mod.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
    return {m for m in out if m != name}


def imports(name: str) -> frozenset[str]:
    """srseg modules `name` imports anywhere in its code (top level or inside functions)."""
    return _analysis(name)[0]


def closure(*names: str) -> list[str]:
    """The modules `names` execute: themselves and everything they import, transitively (minus srseg.config)."""
    seen, stack = set(), list(names)
    while stack:
        mod = stack.pop()
        if mod in seen or mod.startswith(EXCLUDED):
            continue
        if mod not in modules():
            raise KeyError(f"{mod}: not a module of the srseg package")
        seen.add(mod)
        stack.extend(imports(mod))
        parts = mod.split(".")  # importing a submodule runs its packages' __init__ first
        stack.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return sorted(seen)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def module_digest(name: str) -> str:
    """Hash of a module's syntax tree without docstrings (comments and formatting never count)."""
    return _analysis(name)[1]


@cache
def code_digest(*names: str) -> str:
    """A short hash of the code of `names` and their static imports (see the module docstring)."""
    h = hashlib.sha256()
    for mod in closure(*names):
        h.update(f"{mod}:{module_digest(mod)}\n".encode())
    return h.hexdigest()[:16]
