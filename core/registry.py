"""A named registry: the one pattern behind data sources, backbones, heads, augmentation and
fine-tune policies, activations, optimizers, schedules, samplers and pruners.

Each registry is the single source of its names: config validation, `ablab axes` and the
registry-parametrized tests all read them from here. A `module:function` import path is
accepted wherever a name is (core/plugins.py): `adapt` turns the user's function, with its
one documented signature, into an item called as the registered ones are.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> items for the config field `field` (e.g. 'model.head')."""

    def __init__(self, field: str, adapt: Callable[[Callable, str], T] | None = None) -> None:
        self.field = field
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self.adapt = adapt  # plugin function, its path -> an item (None: no plugins here)

    def plugin(self, path: str) -> Callable:
        """The user's function behind an import path, imported and its signature checked."""
        from core import plugins

        return plugins.load(path, self.field)

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
        if name not in self._meta:  # a plugin: metadata it declares as `fn.ablab_meta`
            return {"plugin": True, **getattr(self.plugin(name), "ablab_meta", {})}
        return self._meta[name]

    def check(self, name: str) -> str:
        """`name` if registered (or an importable plugin path), else a ConfigError naming the
        field, the closest name and every valid one."""
        if name in self._items:
            return name
        from core.plugins import is_path

        if is_path(name) and self.adapt is not None:
            self.plugin(name)
            return name
        hint = difflib.get_close_matches(str(name), self.names(), n=1)
        raise ConfigError(f"{self.field}: unknown {name!r}"
                          + (f"; did you mean {hint[0]}?" if hint else "")
                          + f" (known: {', '.join(self.names())}"
                          + (", or module:function" if self.adapt else "") + ")")

    def __getitem__(self, name: str) -> T:
        if name not in self._items and self.adapt is not None:
            self.check(name)
            return self.adapt(self.plugin(name), name)
        return self._items[self.check(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
