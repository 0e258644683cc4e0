"""Fine-tune policies for a pretrained backbone, with Keras 3 semantics.

In Keras 3, `trainable=False` on a BatchNormalization layer freezes gamma/beta *and* runs it in
inference mode (moving statistics, never updated). `trainable` must be set before compile();
changing it afterwards needs a new compile().

- head_only: the whole backbone frozen (BN in inference mode); only the head trains.
- bn_only: only BN gamma/beta of the backbone train, and BN normalizes with batch statistics
  (updating its moving statistics); convolutions stay frozen. The head trains.
- full: every backbone weight trains, except BN when bn_trainable=false: then BN stays frozen
  in inference mode (the Keras transfer-learning guide's advice). With bn_trainable=true BN
  trains like in from-scratch training: batch statistics, moving statistics and gamma/beta update.

Registry metadata: `bn_choice` (model.bn_trainable decides what BN does under this policy).
"""

from __future__ import annotations

from collections.abc import Callable

from core.models._base import leaf_layers
from core.registry import Registry

FINETUNE: Registry[Callable[[object, bool], None]] = Registry("model.finetune")




def is_bn(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


@FINETUNE.register("head_only", bn_choice=False)
def head_only(backbone, bn_trainable: bool) -> None:
    backbone.trainable = False


@FINETUNE.register("bn_only", bn_choice=False)
def bn_only(backbone, bn_trainable: bool) -> None:
    backbone.trainable = True
    for layer in leaf_layers(backbone):
        layer.trainable = is_bn(layer)


@FINETUNE.register("full", bn_choice=True)
def full(backbone, bn_trainable: bool) -> None:
    backbone.trainable = True
    for layer in leaf_layers(backbone):
        layer.trainable = bn_trainable if is_bn(layer) else True


def apply(backbone, finetune: str, bn_trainable: bool) -> None:
    FINETUNE[finetune](backbone, bn_trainable)
