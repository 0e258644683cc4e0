"""Classifier heads: GlobalAveragePooling vs Flatten+Dense vs GAP+Dense. Registry metadata:
`dense` (the head has a hidden Dense layer, so model.head_units and activation act on it)."""

from __future__ import annotations

from collections.abc import Callable

from core.models._base import activation_layer
from core.registry import Registry
from core.schema import ModelConfig

HEADS: Registry[Callable] = Registry("model.head")


@HEADS.register("gap", dense=False)
def gap(x, cfg: ModelConfig):
    import keras

    return keras.layers.GlobalAveragePooling2D(name="gap")(x)


@HEADS.register("flatten_dense", dense=True)
def flatten_dense(x, cfg: ModelConfig):
    import keras

    x = keras.layers.Flatten(name="flatten")(x)
    return activation_layer(cfg.activation)(keras.layers.Dense(cfg.head_units, name="fc")(x))


@HEADS.register("gap_dense", dense=True)
def gap_dense(x, cfg: ModelConfig):
    import keras

    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return activation_layer(cfg.activation)(keras.layers.Dense(cfg.head_units, name="fc")(x))
