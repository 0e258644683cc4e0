"""Backbone interface: a builder takes the model config and input shape and returns a Keras
model mapping images to a feature map. Heads and the classifier are shared (see heads.py).

Registry metadata of a backbone: `imagenet` (has ImageNet weights), `channels` (the input
channels it needs, if fixed), `configurable` (it is built from model.depth/width/batchnorm)."""

from __future__ import annotations

from collections.abc import Callable

from core.registry import Registry
from core.schema import ModelConfig

Builder = Callable[[ModelConfig, tuple[int, int, int]], "object"]


def _plugin(fn: Callable, path: str) -> Builder:
    """A user's `build(options, input_shape) -> keras.Model` as a backbone."""

    def build(cfg: ModelConfig, input_shape: tuple[int, int, int]):
        from core.plugins import bind

        return fn(bind(fn, cfg.options, "model", path), input_shape)

    return build


BACKBONES: Registry[Builder] = Registry("model.backbone", adapt=_plugin)
register = BACKBONES.register

ACTIVATIONS: Registry[Callable[[], object]] = Registry("model.activation")


def leaf_layers(model):
    """Every leaf layer of a model, nested models and Sequentials opened."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from leaf_layers(layer)
        else:
            yield layer


@ACTIVATIONS.register("relu")
def _relu():
    import keras

    return keras.layers.ReLU()


@ACTIVATIONS.register("prelu")
def _prelu():
    import keras

    return keras.layers.PReLU()


@ACTIVATIONS.register("leaky_relu")
def _leaky_relu():
    import keras

    return keras.layers.LeakyReLU(negative_slope=0.1)


def activation_layer(name: str):
    return ACTIVATIONS[name]()
