"""Augmentation policies, one file each, behind `register` / `resolve` / `build_layers`."""

from core.augment import _custom, _extreme, _moderate, _none  # noqa: F401  (registration)
from core.augment._base import POLICIES, build_layers, register, resolve

__all__ = ["POLICIES", "build_layers", "register", "resolve"]
