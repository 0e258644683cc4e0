"""Augmentation policies, one file each, behind `register` / `resolve` / `build_layers`."""

# Import order is the order `ablab axes` lists them in.
from core.augment import _none, _moderate, _extreme, _custom  # noqa: F401, I001  (registration)
from core.augment._base import POLICIES, build_layers, is_plugin, layers, register, resolve

__all__ = ["POLICIES", "build_layers", "is_plugin", "layers", "register", "resolve"]
