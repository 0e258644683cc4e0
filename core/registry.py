"""A named registry: the one pattern behind data sources, backbones and augmentation policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=Callable)


def make_registry() -> tuple[dict[str, Callable], Callable[[str], Callable[[T], T]]]:
    """-> (items, register); `@register("name")` adds a function under that name."""
    items: dict[str, Callable] = {}

    def register(name: str) -> Callable[[T], T]:
        def deco(fn: T) -> T:
            items[name] = fn
            return fn

        return deco

    return items, register
