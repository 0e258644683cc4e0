"""Optimizers and learning-rate schedules by name (registries of train.optimizer and
train.lr_schedule). An unknown name is a config error listing the valid ones, never a silent
fallback. Registry metadata of an optimizer: `uses` (the train.* fields it reads)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.registry import Registry
from core.schema import TrainConfig


def _plugin_optimizer(fn: Callable, path: str) -> Callable:
    """A user's `make(options, learning_rate) -> keras optimizer`."""

    def make(lr, cfg: TrainConfig):
        from core.plugins import bind

        return fn(bind(fn, cfg.options, "train", path), lr)

    return make


OPTIMIZERS: Registry[Callable[[object, TrainConfig], object]] = Registry(
    "train.optimizer", adapt=_plugin_optimizer)


def _keras_optimizer(name: str, *fields: str) -> tuple[Callable, dict[str, Any]]:
    """A Keras optimizer class built from the lr and the train.* `fields` it takes."""

    def make(lr, cfg: TrainConfig):
        import keras

        return getattr(keras.optimizers, name)(lr, **{f: getattr(cfg, f) for f in fields})

    return make, {"uses": tuple(f"train.{f}" for f in fields)}


for _name, _cls, *_fields in (("adam", "Adam"), ("adamw", "AdamW", "weight_decay"),
                              ("adamax", "Adamax"), ("sgd", "SGD", "momentum")):
    _make, _meta = _keras_optimizer(_cls, *_fields)
    OPTIMIZERS.add(_name, _make, **_meta)


@dataclass(frozen=True)
class Schedule:
    """`lr(base_lr, total_steps, cfg)` -> a float or a Keras schedule; `callbacks(cfg)` -> the
    Keras callbacks that drive it (e.g. ReduceLROnPlateau)."""

    lr: Callable[[float, int, TrainConfig], object] = lambda lr, steps, cfg: lr
    callbacks: Callable[[TrainConfig], list] = field(default=lambda cfg: [])


def _plugin_schedule(fn: Callable, path: str) -> Schedule:
    """A user's `schedule(options, lr, total_steps)` -> a float or a Keras schedule."""

    def lr(base: float, steps: int, cfg: TrainConfig):
        from core.plugins import bind

        return fn(bind(fn, cfg.options, "train", path), base, steps)

    return Schedule(lr=lr)


SCHEDULES: Registry[Schedule] = Registry("train.lr_schedule", adapt=_plugin_schedule)
SCHEDULES.add("constant", Schedule())


def _cosine(lr: float, steps: int, cfg: TrainConfig):
    import keras

    return keras.optimizers.schedules.CosineDecay(lr, max(1, steps))


SCHEDULES.add("cosine", Schedule(lr=_cosine))


def _plateau(cfg: TrainConfig) -> list:
    import keras

    return [keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=max(1, cfg.early_stopping_patience // 2 or 2),
        min_lr=cfg.lr * 1e-3)]


SCHEDULES.add("reduce_on_plateau", Schedule(callbacks=_plateau))


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int, lr_scale: float = 1.0,
                   epochs: int | None = None):
    lr = SCHEDULES[cfg.lr_schedule].lr(cfg.lr * lr_scale, (epochs or cfg.epochs)
                                       * steps_per_epoch, cfg)
    return OPTIMIZERS[cfg.optimizer](lr, cfg)
