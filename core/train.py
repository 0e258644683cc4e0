"""Compile and fit one model: optimizers, schedules, early stopping, label smoothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.config import Experiment, TrainConfig
from core.data import Dataset, to_tf
from core.models import build_model

EpochSink = Callable[[int, dict[str, float]], None]


@dataclass
class FitResult:
    model: object
    history: dict[str, list[float]] = field(default_factory=dict)
    epoch_times: list[float] = field(default_factory=list)
    train_time_s: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    import keras

    lr = cfg.lr
    if cfg.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg.lr, max(1, cfg.epochs * steps_per_epoch))
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamax":
        return keras.optimizers.Adamax(lr)
    return keras.optimizers.SGD(lr, momentum=cfg.momentum)


def _epoch_logger(sink: EpochSink | None, times: list[float]):
    import keras

    class EpochLogger(keras.callbacks.Callback):
        """Per-epoch metrics + current lr + wall time, handed to `sink` in one call."""

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            dt = time.perf_counter() - self._t0
            times.append(dt)
            row = {k: float(v) for k, v in (logs or {}).items()
                   if k in ("loss", "accuracy", "val_loss", "val_accuracy")}
            lr = self.model.optimizer.learning_rate
            row["lr"] = float(keras.ops.convert_to_numpy(lr))
            row["epoch_time_s"] = dt
            if sink:
                sink(epoch, row)

    return EpochLogger()


def callbacks(cfg: TrainConfig, sink: EpochSink | None, times: list[float]) -> list:
    import keras

    cbs = [keras.callbacks.TerminateOnNaN(), _epoch_logger(sink, times)]
    if cfg.early_stopping_patience:
        cbs.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.early_stopping_patience, restore_best_weights=True))
    if cfg.lr_schedule == "reduce_on_plateau":
        cbs.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, cfg.early_stopping_patience // 2 or 2),
            min_lr=cfg.lr * 1e-3))
    return cbs


def compile_model(model, exp: Experiment, steps_per_epoch: int) -> None:
    import keras

    model.compile(
        optimizer=make_optimizer(exp.train, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=exp.train.label_smoothing),
        metrics=["accuracy"],
        jit_compile=False if exp.train.deterministic == "strict" else "auto",
    )


def fit(exp: Experiment, data: Dataset, seed: int, sink: EpochSink | None = None,
        model=None) -> FitResult:
    """Build (unless given), compile and fit. Seeding is the caller's job (see core.seeding)."""
    bs = exp.train.batch_size
    train = to_tf(data.x_train, data.y_train, data.n_classes, bs, seed, shuffle=True)
    val = to_tf(data.x_val, data.y_val, data.n_classes, bs, seed, shuffle=False)
    if model is None:
        model = build_model(exp, data.input_shape, data.n_classes)
    steps = -(-len(data.y_train) // bs)
    compile_model(model, exp, steps)
    times: list[float] = []
    t0 = time.perf_counter()
    hist = model.fit(train, validation_data=val, epochs=exp.train.epochs, verbose=0, shuffle=False,
                     callbacks=callbacks(exp.train, sink, times))
    return FitResult(model, {k: [float(x) for x in v] for k, v in hist.history.items()}, times,
                     time.perf_counter() - t0)


def predict(model, x, batch_size: int = 256, tta: int = 0):
    """Class probabilities; with tta=N, the mean over N views through the model's own
    augmentation layers (training=True on those layers only)."""
    import numpy as np

    try:
        aug = model.get_layer("augment")
    except ValueError:
        aug = None

    def run(view: bool) -> np.ndarray:
        # Eager batched calls: one pass over the test split does not repay tracing a
        # tf.function as model.predict would (~0.3-0.5 s per trial).
        out = []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            if view and aug is not None:
                xb = aug(xb, training=True)
            out.append(np.asarray(model(xb, training=False), dtype="float32"))
        return np.concatenate(out)

    proba = run(view=False)
    if tta <= 0:
        return proba, None
    return proba, np.mean([run(view=True) for _ in range(tta)], axis=0)
