"""Classifier heads: GlobalAveragePooling vs Flatten+Dense vs GAP+Dense. Registry metadata:
`dense` (the head has a hidden Dense layer, so model.head_units and activation act on it)."""

from __future__ import annotations

from collections.abc import Callable

from core.models._base import activation_layer
from core.registry import Registry
from core.schema import ModelConfig


def _plugin(fn: Callable, path: str) -> Callable:
    """A user's `head(options, features) -> tensor` as a head."""

    def head(x, cfg: ModelConfig):
        from core.plugins import bind

        return fn(bind(fn, cfg.options, "model", path), x)

    return head


HEADS: Registry[Callable] = Registry("model.head", adapt=_plugin)


def _pool(x):
    """Global average pooling of a feature map; a feature vector (a plugin backbone may
    return one) passes as it is."""
    import keras

    return keras.layers.GlobalAveragePooling2D(name="gap")(x) if len(x.shape) == 4 else x


@HEADS.register("gap", dense=False)
def gap(x, cfg: ModelConfig):
    return _pool(x)


@HEADS.register("flatten_dense", dense=True)
def flatten_dense(x, cfg: ModelConfig):
    import keras

    x = keras.layers.Flatten(name="flatten")(x) if len(x.shape) > 2 else x
    return activation_layer(cfg.activation)(keras.layers.Dense(cfg.head_units, name="fc")(x))


@HEADS.register("gap_dense", dense=True)
def gap_dense(x, cfg: ModelConfig):
    import keras

    return activation_layer(cfg.activation)(keras.layers.Dense(cfg.head_units,
                                                                name="fc")(_pool(x)))
