"""One registry class for everything a config names: architectures, losses, degradations,
metrics, training kinds. Extending the workflow is one file that registers one name.

    ARCHS = Registry("architecture")

    @ARCHS.register("edsr")
    class EDSR(nn.Module): ...

A name registered twice is an error (two files claiming one config name would make the
result depend on import order); looking up an unknown name raises an InputError that
suggests the nearest registered name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

from .io import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, name_attr: str | None = None):
        """`name_attr`: attribute set on each registered object to its name (e.g. a class's `arch_name`)."""
        self.kind = kind
        self.name_attr = name_attr
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None):
        """Register `obj` under `name`, or return a decorator that does (the object is returned unchanged)."""

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if self.name_attr:
                setattr(item, self.name_attr, name)
            self._items[name] = item
            return item

        return add(obj) if obj is not None else add

    def get(self, name: str, where: str = "") -> T:
        """The entry `name`; InputError naming `where` (a dotted config key) and the nearest name if unknown."""
        if name not in self._items:
            near = difflib.get_close_matches(str(name), list(self._items), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}?" if near else f"registered: {', '.join(sorted(self._items))}"
            raise InputError(f"{where + ': ' if where else ''}unknown {self.kind} {name!r}; {hint}")
        return self._items[name]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def items(self):
        return self._items.items()

    def values(self):
        return self._items.values()
