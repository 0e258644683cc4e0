"""Parametrized over the registries: a new head, backbone or policy is tested on registration."""

import numpy as np
import pytest

from core.augment import POLICIES, build_layers, resolve
from core.models import ACTIVATIONS, BACKBONES, HEADS, build_model
from core.optim import OPTIMIZERS, SCHEDULES
from core.schema import AugmentConfig
from core.seeding import seed_everything
from core.train import compile_model
from tests.conftest import tiny

X = np.random.default_rng(0).random((8, 8, 8, 3)).astype("float32")
Y = np.eye(3, dtype="float32")[np.arange(8) % 3]


def _one_step(exp):
    seed_everything(0, "strict")
    model = build_model(exp, (8, 8, 3), 3)
    compile_model(model, exp, steps_per_epoch=1)
    model.run_eagerly = True  # one step does not repay tracing a graph (ResNet50: ~25 s)
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(X, Y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert model(X, training=False).shape == (8, 3)
    changed = any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(),
                                                           strict=True))
    assert changed, "one training step changed no weight"
    return model


@pytest.mark.parametrize("head", HEADS.names())
def test_each_head_builds_and_trains_one_step(head):
    model = _one_step(tiny(model={"head": head, "depth": 2}))
    names = [layer.name for layer in model.layers]
    assert ("flatten" in names) == (head == "flatten_dense")
    assert ("gap" in names) == (head in ("gap", "gap_dense"))


@pytest.mark.parametrize("policy", POLICIES.names())
def test_each_augmentation_policy_builds_and_trains_one_step(policy):
    ops = {"rotation": 0.1, "contrast": 0.2} if policy == "custom" else {}
    _one_step(tiny(augment={"strength": policy, "ops": ops}))


@pytest.mark.parametrize("policy", [p for p in POLICIES.names() if p not in ("none", "custom")])
def test_augmentation_only_in_training(policy):
    import keras

    layers = build_layers(resolve(AugmentConfig(strength=policy)), seed=1)
    aug = keras.Sequential(layers)
    np.testing.assert_allclose(aug(X, training=False), X, atol=1e-6)
    assert not np.allclose(aug(X, training=True), X, atol=1e-3)


@pytest.mark.parametrize("activation", ACTIVATIONS.names())
@pytest.mark.parametrize("batchnorm", [True, False])
def test_activations_and_batchnorm(activation, batchnorm):
    model = _one_step(tiny(model={"activation": activation, "batchnorm": batchnorm,
                                  "dropout": 0.2}))
    import keras

    bn = [layer for layer in model.get_layer("backbone").layers
          if isinstance(layer, keras.layers.BatchNormalization)]
    assert bool(bn) == batchnorm


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_each_backbone_builds_and_trains_one_step(backbone):
    """8x8 inputs: keras.applications networks resize to their minimum size inside."""
    _one_step(tiny(model={"backbone": backbone}))


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
@pytest.mark.parametrize("schedule", SCHEDULES.names())
def test_optimizers_and_schedules(optimizer, schedule):
    _one_step(tiny(train={"optimizer": optimizer, "lr_schedule": schedule}))
