"""Backbone interface: a builder takes the model config and input shape and returns a Keras
model mapping images to a feature map. Heads and the classifier are shared (see heads.py)."""

from __future__ import annotations

from collections.abc import Callable

from core.config import ModelConfig
from core.registry import make_registry

Builder = Callable[[ModelConfig, tuple[int, int, int]], "object"]
BACKBONES, register = make_registry()


def activation_layer(name: str):
    import keras

    if name == "relu":
        return keras.layers.ReLU()
    if name == "prelu":
        return keras.layers.PReLU()
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.1)
    raise ValueError(f"model.activation: unknown {name!r}")
