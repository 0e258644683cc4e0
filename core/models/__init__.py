"""Model assembly: augmentation -> backbone (registered, one file each) -> head -> classifier."""

from __future__ import annotations

from core.augment import layers
from core.models import _applications, _cnn, policy  # noqa: F401  (registration)
from core.models._base import ACTIVATIONS, BACKBONES, register
from core.models.heads import HEADS
from core.models.policy import FINETUNE
from core.schema import Experiment

__all__ = ["ACTIVATIONS", "BACKBONES", "FINETUNE", "HEADS", "build_model", "register"]


def build_model(exp: Experiment, input_shape: tuple[int, int, int], n_classes: int,
                backbone=None, finetune: str | None = None):
    """`backbone`: a pretrained feature extractor (loaded from MLflow); otherwise the registered
    builder makes one (with ImageNet weights if asked). Pretrained backbones get the fine-tune
    policy (`finetune` overrides the config's, for phase 1 of two-phase fine-tuning)."""
    import keras

    inputs = keras.Input(input_shape, name="image")
    aug = layers(exp.augment)
    x = keras.Sequential(aug, name="augment")(inputs) if aug else inputs
    if backbone is None:
        backbone = BACKBONES[exp.model.backbone](exp.model, input_shape)
    backbone.name = "backbone"
    if exp.model.pretrained:
        policy.apply(backbone, finetune or exp.model.finetune, exp.model.bn_trainable)
    x = backbone(x)
    x = HEADS[exp.model.head](x, exp.model)
    if exp.model.dropout:
        x = keras.layers.Dropout(exp.model.dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32",
                                 name="classifier")(x)
    return keras.Model(inputs, outputs, name=exp.name.replace(" ", "_") or "model")
