"""The project's own CNN: `depth` blocks of conv -> (BN) -> activation -> maxpool -> (dropout)."""

from __future__ import annotations

from core.models._base import activation_layer, register
from core.schema import ModelConfig


@register("cnn", imagenet=False, configurable=True)
def build(cfg: ModelConfig, input_shape: tuple[int, int, int]):
    import keras

    L = keras.layers
    inputs = keras.Input(input_shape)
    x = inputs
    for i in range(cfg.depth):
        x = L.Conv2D(cfg.width * 2**i, 3, padding="same", use_bias=not cfg.batchnorm,
                     name=f"conv{i}")(x)
        if cfg.batchnorm:
            x = L.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = activation_layer(cfg.activation)(x)
        x = L.MaxPooling2D(2, name=f"pool{i}")(x)
        if cfg.dropout:
            x = L.Dropout(cfg.dropout)(x)
    return keras.Model(inputs, x, name="backbone")
