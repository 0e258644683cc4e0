"""keras.applications backbones (EfficientNetB0, ResNet50, MobileNetV3Small) with their own
input preprocessing and minimum input size. Images arrive in [0, 1]; each network gets what it
was trained on. `weights: imagenet` uses Keras' real download (cached in ~/.keras/models)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from core.models._base import register
from core.schema import ModelConfig


@dataclass(frozen=True)
class App:
    constructor: str  # attribute of keras.applications
    min_size: int
    preprocess: str  # "raw255": the model rescales itself; "caffe": BGR mean subtraction


APPS = {
    "efficientnetb0": App("EfficientNetB0", 32, "raw255"),
    "resnet50": App("ResNet50", 32, "caffe"),
    "mobilenetv3small": App("MobileNetV3Small", 32, "raw255"),
}


def _weights(cfg: ModelConfig) -> str | None:
    return "imagenet" if cfg.weights == "imagenet" else None


def build_application(name: str, cfg: ModelConfig, input_shape: tuple[int, int, int]):
    import keras

    app = APPS[name]
    size = max(input_shape[0], app.min_size)
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(255.0, name="to_255")(inputs)
    if input_shape[0] < app.min_size:
        x = keras.layers.Resizing(size, size, name="to_min_size")(x)
    if app.preprocess == "caffe":
        x = keras.layers.Lambda(keras.applications.resnet50.preprocess_input,
                                name="caffe_preprocess")(x)
    try:
        net = getattr(keras.applications, app.constructor)(
            include_top=False, weights=_weights(cfg), input_shape=(size, size, 3))
    except Exception as err:  # noqa: BLE001 - the download is the only network step
        if cfg.weights != "imagenet":
            raise
        raise ConfigError(
            f"model.weights=imagenet: Keras could not download the ImageNet weights of "
            f"{app.constructor} ({type(err).__name__}: {err}). On an offline machine, copy the "
            f"weight file Keras names in that URL (…_notop.h5) into ~/.keras/models/ (or "
            f"$KERAS_HOME/models/) from an online one, or use model.weights: none or "
            f"pretrain:<experiment>.") from None
    net.name = "application"
    return keras.Model(inputs, net(x), name="backbone")


def _builder(name: str) -> Callable[..., Any]:
    return lambda cfg, shape: build_application(name, cfg, shape)


for _name in APPS:
    register(_name, imagenet=True, channels=3, configurable=False)(_builder(_name))
