"""Classifier heads: GlobalAveragePooling vs Flatten+Dense vs GAP+Dense."""

from __future__ import annotations

from core.config import ModelConfig
from core.models._base import activation_layer


def gap(x, cfg: ModelConfig):
    import keras

    return keras.layers.GlobalAveragePooling2D(name="gap")(x)


def flatten_dense(x, cfg: ModelConfig):
    import keras

    x = keras.layers.Flatten(name="flatten")(x)
    return activation_layer(cfg.activation)(keras.layers.Dense(cfg.head_units, name="fc")(x))


def gap_dense(x, cfg: ModelConfig):
    import keras

    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return activation_layer(cfg.activation)(keras.layers.Dense(cfg.head_units, name="fc")(x))


HEADS = {"gap": gap, "flatten_dense": flatten_dense, "gap_dense": gap_dense}
