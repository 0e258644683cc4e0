"""Compile and fit one model: optimizers, schedules, early stopping, label smoothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core import checkpoint
from core.data import Dataset, to_tf, train_epochs
from core.models import build_model
from core.optim import SCHEDULES, make_optimizer
from core.registry import Registry
from core.schema import Experiment, TrainConfig

EpochSink = Callable[[int, dict[str, float]], None]


@dataclass
class FitData:
    """What a `train.fit` plugin trains on: the seeded, batched tf.data pipelines ablab
    would use, and the arrays behind them (`dataset.x_train`, `dataset.class_names`, ...)."""

    train: object
    validation: object
    dataset: Dataset
    steps_per_epoch: int
    seed: int


# train.fit: "keras" is model.fit inside `fit` below; a plugin path is the user's own loop,
# `fit(model, data, config, callbacks) -> history` (core/plugins.py).
FITS: Registry[Callable] = Registry("train.fit", adapt=lambda fn, path: fn)
FITS.add("keras", lambda model, data, config, callbacks: None)


@dataclass
class FitResult:
    model: object
    history: dict[str, list[float]] = field(default_factory=dict)
    epoch_times: list[float] = field(default_factory=list)
    train_time_s: float = 0.0
    steps_per_epoch: int = 0
    batches_trained: int = 0  # in all attempts of a resumed trial
    checkpoints: int = 0
    checkpoint_s: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    @property
    def epochs_trained(self) -> float:
        """Epochs of training spent, what was trained twice after a stop included."""
        return self.batches_trained / self.steps_per_epoch if self.steps_per_epoch \
            else float(self.epochs_run)


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


def _early_stopping(patience: int):
    import keras

    class EarlyStopping(keras.callbacks.EarlyStopping):
        """Keras' own, restoring the best weights when training ends, not at the end of
        every fit call a resumed trial takes (`last_call`)."""

        last_call = True

        def on_train_end(self, logs=None):
            if self.last_call or self.model.stop_training:
                super().on_train_end(logs)

    return EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)


def callbacks(cfg: TrainConfig, sink: EpochSink | None, times: list[float],
              stopping: bool = True) -> list:
    """What every fit has: NaN stop, per-epoch logging, then early stopping and the
    schedule's callbacks. Stopping at a batch boundary is the checkpointer's job (last)."""
    import keras

    cbs = [keras.callbacks.TerminateOnNaN(), _epoch_logger(sink, times)]
    if not stopping:
        return cbs
    if cfg.early_stopping_patience:
        cbs.append(_early_stopping(cfg.early_stopping_patience))
    return cbs + SCHEDULES[cfg.lr_schedule].callbacks(cfg)


def jit_compile(exp: Experiment) -> bool | str:
    """strict: no XLA (its kernels are not deterministic); fast: Keras decides. TensorFlow's
    op determinism is process-wide, so a worker that ran a strict trial stays strict."""
    return False if exp.train.deterministic == "strict" else "auto"


def compile_model(model, exp: Experiment, steps_per_epoch: int, lr_scale: float = 1.0,
                  epochs: int | None = None, outputs: int = 1,
                  steps_per_execution: int = 1) -> None:
    """`outputs` > 1: a packed model (core/pack.py), one loss and accuracy per tower; the
    loss minimised is their sum. `steps_per_execution`: training steps per call into the
    traced function (Keras' per-step Python work is paid once per call)."""
    import keras

    def loss():
        return keras.losses.CategoricalCrossentropy(label_smoothing=exp.train.label_smoothing)

    model.compile(
        optimizer=make_optimizer(exp.train, steps_per_epoch, lr_scale, epochs),
        loss=loss() if outputs == 1 else [loss() for _ in range(outputs)],
        metrics=["accuracy"] if outputs == 1 else [["accuracy"] for _ in range(outputs)],
        jit_compile=jit_compile(exp),
        steps_per_execution=steps_per_execution,
    )


def fit(exp: Experiment, data: Dataset, seed: int, sink: EpochSink | None = None,
        model=None, backbone=None, extra: list | None = None,
        resume: checkpoint.State | None = None,
        save: Callable[[checkpoint.State], None] | None = None,
        key: str = "") -> FitResult:
    """Build (unless given), compile and fit. Seeding is the caller's job (see core.seeding).
    `resume`: a checkpoint to continue from; `save`: where checkpoints go (core.checkpoint).

    Two-phase fine-tuning (pretrained backbone, model.head_epochs = E1 > 0): the head trains
    alone for E1 epochs, then the backbone unfreezes per policy and everything is compiled
    again at lr x model.finetune_lr_factor for the remaining epochs."""
    from core.models import policy

    bs = exp.train.batch_size
    val = to_tf(data.x_val, data.y_val, data.n_classes, bs, seed, shuffle=False)
    e1 = exp.model.head_epochs if exp.model.pretrained else 0
    if model is None:
        model = build_model(exp, data.input_shape, data.n_classes, backbone=backbone,
                            finetune="head_only" if e1 else None)
    steps = -(-len(data.y_train) // bs)
    track = checkpoint.Tracker(key, steps, resume, save, total=exp.train.epochs)
    track.sample_from(data, bs)
    weights = class_weights(data.y_train, data.n_classes) \
        if exp.train.class_weight == "balanced" else None

    def run(start: int, end: int, stopping: bool) -> bool:
        cbs = callbacks(exp.train, sink, track.times, stopping) + list(extra or [])
        return fit_calls(model, track, cbs, lambda a, b, k: train_epochs(
            data.x_train, data.y_train, data.n_classes, bs, seed, a, b, k), val, start, end,
            class_weight=weights)

    if exp.train.fit != "keras":
        from core.signals import keras_callback

        compile_model(model, exp, steps)
        train = to_tf(data.x_train, data.y_train, data.n_classes, bs, seed, shuffle=True)
        track.history.update(_own_fit(exp, model, FitData(train, val, data, steps, seed),
                                      callbacks(exp.train, sink, track.times, True)
                                      + list(extra or []) + [keras_callback()]))
        track.batches = steps * len(track.history.get("loss", []))
    elif e1:
        if track.epoch < e1:
            compile_model(model, exp, steps, epochs=e1)
            run(0, e1, stopping=False)
        if all(x == x for x in track.history.get("loss", [])):  # no NaN: go on to phase 2
            policy.apply(model.get_layer("backbone"), exp.model.finetune,
                         exp.model.bn_trainable)
            compile_model(model, exp, steps, exp.model.finetune_lr_factor,
                          epochs=exp.train.epochs - e1)
            run(e1, exp.train.epochs, stopping=True)
    else:
        compile_model(model, exp, steps)
        run(0, exp.train.epochs, stopping=True)
    return FitResult(model, track.history, track.times, track.train_time_s, steps,
                     track.batches, track.saves, track.save_s)


def fit_calls(model, track: checkpoint.Tracker, cbs: list, train_for: Callable, val,
              start: int, end: int, class_weight=None) -> bool:
    """Epochs start..end-1 of one phase (from where `track` stands) as `model.fit` calls;
    False once training stopped early. A resumed epoch's remaining batches take a call of
    their own, the later epochs another: the callbacks carry their state across, and the
    checkpointer (appended last) saves it. `train_for(first, last, skip)`: the batches."""
    first, skip = max(start, track.epoch), track.step if track.epoch >= start else 0
    cbs = [*cbs, checkpoint.callback(track, cbs)]
    if model.steps_per_execution > 1:
        # Keras runs whole executions of N steps: over a pipeline of several epochs the
        # last one of an epoch would run into the next; one epoch per call ends it there
        calls = [(e, e + 1, skip if e == first else 0) for e in range(first, end)]
    else:
        calls = ([(first, first + 1, skip)] if skip else []) + (
            [(first + bool(skip), end, 0)] if first + bool(skip) < end else [])
    for i, (a, b, k) in enumerate(calls):
        for cb in cbs:
            if hasattr(cb, "last_call"):  # best weights are restored at the very end only
                cb.last_call = i == len(calls) - 1
        track.begin(a, k)
        model.fit(train_for(a, b, k), validation_data=val, initial_epoch=a, epochs=b,
                  steps_per_epoch=None if b == a + 1 else track.steps, verbose=0,
                  shuffle=False, class_weight=class_weight, callbacks=cbs)
        if model.stop_training:
            return False
    return True


def _own_fit(exp: Experiment, model, data: FitData, cbs: list) -> dict[str, list[float]]:
    """The user's loop on ablab's compiled model. ablab's callbacks (per-epoch logging, the
    stop signal, early stopping, schedules) arrive as one keras CallbackList: the loop calls
    on_train_begin, on_epoch_begin/on_epoch_end(epoch, logs) and on_train_batch_end, and stops
    when model.stop_training is set."""
    import keras

    fn = FITS[exp.train.fit]
    history = fn(model, data, exp, keras.callbacks.CallbackList(cbs, model=model))
    if not isinstance(history, dict) or "loss" not in history:
        got = sorted(history) if isinstance(history, dict) else type(history).__name__
        raise TypeError(f"train.fit={exp.train.fit} returned {got}; expected a history dict "
                        "with at least 'loss' (one value per epoch), e.g. val_loss, accuracy")
    return {k: [float(v) for v in vs] for k, vs in history.items()}


def class_weights(y, n_classes: int) -> dict[int, float]:
    """scikit-learn's "balanced" weights: n / (k x count of the class)."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    w = compute_class_weight("balanced", classes=present, y=y)
    out = dict.fromkeys(range(n_classes), 1.0)
    out.update({int(c): float(v) for c, v in zip(present, w, strict=True)})
    return out


def predict(model, x, batch_size: int | None = None, tta: int = 0):
    """Class probabilities; with tta=N, the mean over N views through the model's own
    augmentation layers (training=True on those layers only). Small images go through in
    batches of 512 (a 450-image test split in one call: 88 ms against 107 ms in two), larger
    ones in 256."""
    import numpy as np

    if batch_size is None:
        batch_size = 512 if int(np.prod(x.shape[1:])) <= 64 * 64 * 3 else 256
    try:
        aug = model.get_layer("augment")
    except ValueError:
        aug = None

    def run(view: bool) -> np.ndarray:
        # Eager batched calls: one pass over the test split does not repay tracing a
        # tf.function as model.predict would (~0.3-0.5 s per trial).
        from core.signals import check

        out = []
        for i in range(0, len(x), batch_size):
            check()  # a Ctrl-C waits for a batch boundary, not for the whole split
            xb = x[i:i + batch_size]
            if view and aug is not None:
                xb = aug(xb, training=True)
            out.append(np.asarray(model(xb, training=False), dtype="float32"))
        return np.concatenate(out)

    proba = run(view=False)
    if tta <= 0:
        return proba, None
    return proba, np.mean([run(view=True) for _ in range(tta)], axis=0)
