"""A named registry: the one pattern behind data sources, backbones, heads, augmentation and
fine-tune policies, activations, optimizers, schedules, samplers and pruners.

Each registry is the single source of its names: config validation, `ablab axes` and the
registry-parametrized tests all read them from here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> items for the config field `field` (e.g. 'model.head')."""

    def __init__(self, field: str) -> None:
        self.field = field
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """`@REG.register("name")` adds the decorated item; `meta` describes it (e.g. whether a
        backbone has ImageNet weights)."""

        def deco(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.field}: {name!r} registered twice")
            self._items[name] = item
            self._meta[name] = meta
            return item

        return deco

    def add(self, name: str, item: T, **meta: Any) -> T:
        return self.register(name, **meta)(item)

    def names(self) -> list[str]:
        return list(self._items)

    def meta(self, name: str) -> dict[str, Any]:
        self.check(name)
        return self._meta[name]

    def check(self, name: str) -> str:
        """`name` if registered, else a ConfigError naming the field, the closest name and
        every valid one."""
        if name in self._items:
            return name
        hint = difflib.get_close_matches(str(name), self.names(), n=1)
        raise ConfigError(f"{self.field}: unknown {name!r}"
                          + (f"; did you mean {hint[0]}?" if hint else "")
                          + f" (known: {', '.join(self.names())})")

    def __getitem__(self, name: str) -> T:
        return self._items[self.check(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
