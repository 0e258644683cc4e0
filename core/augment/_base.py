"""Augmentation policy interface: a policy maps the config's per-op ranges to the ranges it
applies. Registry metadata: `uses_ops` (the policy reads `augment.ops.*`; only `custom` does)."""

from __future__ import annotations

from collections.abc import Callable

from core.registry import Registry
from core.schema import AugmentConfig, OpRanges

Policy = Callable[[OpRanges], OpRanges]


def _plugin(fn: Callable, path: str) -> Policy:
    """A user's `policy(options) -> [Keras layers]` applies no built-in ops: `layers` asks
    the plugin for its own."""
    return lambda ops: OpRanges()


POLICIES: Registry[Policy] = Registry("augment.strength", adapt=_plugin)
register = POLICIES.register


def is_plugin(cfg: AugmentConfig) -> bool:
    return bool(POLICIES.meta(cfg.strength).get("plugin"))


def resolve(cfg: AugmentConfig) -> OpRanges:
    """The ranges a built-in policy applies (custom policies use `augment.ops` as given)."""
    return POLICIES[cfg.strength](cfg.ops)


def layers(cfg: AugmentConfig, seed: int | None = None) -> list:
    """The policy's preprocessing layers: a plugin's own, or the built-in ops."""
    if is_plugin(cfg):
        from core.plugins import bind

        fn = POLICIES.plugin(cfg.strength)
        return list(fn(bind(fn, cfg.options, "augment", cfg.strength)))
    return build_layers(resolve(cfg), seed)


def build_layers(ops: OpRanges, seed: int | None = None) -> list:
    import keras

    L = keras.layers
    layers = []
    if ops.horizontal_flip:
        layers.append(L.RandomFlip("horizontal", seed=seed))
    if ops.rotation:
        layers.append(L.RandomRotation(ops.rotation, seed=seed))
    if ops.shear:
        layers.append(L.RandomShear(ops.shear, ops.shear, seed=seed))
    if ops.zoom:
        layers.append(L.RandomZoom(ops.zoom, seed=seed))
    if ops.translation:
        layers.append(L.RandomTranslation(ops.translation, ops.translation, seed=seed))
    if ops.brightness:
        layers.append(L.RandomBrightness(ops.brightness, value_range=(0.0, 1.0), seed=seed))
    if ops.contrast:
        layers.append(L.RandomContrast(ops.contrast, value_range=(0.0, 1.0), seed=seed))
    return layers
