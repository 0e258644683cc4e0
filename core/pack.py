"""Seed packing: K trials that differ only in their seed, trained as K towers of one Keras
model, so K small trainings cost one launch per step instead of K.

Each tower is the model `build_model` makes for its seed (built after seeding with that seed:
its own initialization, augmentation and dropout streams, its own BatchNorm statistics), fed
its own seeded shuffle of the training data. The loss is the sum of the towers' losses; no
weight is shared, and the optimizers in use keep per-variable state, so each tower's gradient
and update are its own. Per tower: early stopping with best-weights restore, divergence (a
tower whose loss is NaN is recorded as diverged; its neighbours go on), the epoch history.
Afterwards each tower is a standalone Keras model and is evaluated and logged exactly as an
unpacked trial. A preempted pack checkpoints and resumes as one model (core.checkpoint), its
towers' early stopping with it.

A config whose training couples the towers runs unpacked, with the reason in the log:
`unpackable` says which (one optimizer's learning rate lowered on a plateau, Keras class
weights on a multi-output model, float16 loss scaling skipping a step for all towers,
two-phase fine-tuning, a data split per seed).

Layout: separate towers in one graph. `bench/pack.py` measured it against grouped
convolutions on the CPU (BENCHMARKS.md)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.schema import Experiment
from core.train import FitResult

# `train.pack: auto`: as many towers as fit a parameter budget per device, capped.
AUTO_BUDGET = {"cpu": 2_000_000, "gpu": 50_000_000}
AUTO_CAP = {"cpu": 10, "gpu": 32}


def unpackable(exp: Experiment) -> str | None:
    """Why this config cannot be packed (it then runs unpacked), or None."""
    t = exp.train
    if t.lr_schedule == "reduce_on_plateau":
        return ("lr_schedule=reduce_on_plateau lowers one optimizer's learning rate for all "
                "towers at once")
    if t.class_weight != "none":
        return "Keras does not apply class weights to a multi-output model"
    if t.mixed_precision:
        return "mixed precision's loss scaling would skip a step for every tower when one overflows"
    if exp.model.pretrained and exp.model.head_epochs > 0:
        return "two-phase fine-tuning recompiles the model between its phases"
    if exp.data.vary_split_with_seed:
        return "data.vary_split_with_seed gives each seed its own split"
    if t.fit != "keras":
        return f"train.fit={t.fit} is the user's own loop, which trains one model"
    return None


def size(exp: Experiment, device: str = "cpu", n_params: Callable[[], int] | None = None) -> int:
    """How many seeds a worker trains together for this config (1: unpacked)."""
    if unpackable(exp) is not None:
        return 1
    k = exp.train.pack
    if k != "auto":
        return int(k)
    kind = "cpu" if device == "cpu" else "gpu"
    params = n_params() if n_params else 100_000
    return max(1, min(AUTO_CAP[kind], AUTO_BUDGET[kind] // max(1, params)))


def n_params(exp: Experiment, n_classes: int = 10) -> int:
    """The model's parameter count, from a throwaway build (for `auto`)."""
    import keras

    from core.models import build_model

    shape = (exp.data.image_size, exp.data.image_size, exp.data.channels)
    n = build_model(exp, shape, n_classes).count_params()
    keras.backend.clear_session(free_memory=False)
    return n


def plan(exp: Experiment) -> tuple[object, str | None]:
    """What packing does with this config (part of what `train.pack` changes)."""
    return exp.train.pack, unpackable(exp)


@dataclass
class TowerFit(FitResult):
    """One tower's training, what the runner records for an unpacked fit and more."""

    stopped_epoch: int | None = None
    diverged: bool = False


def _keys(tower: str) -> dict[str, str]:
    """A single model's log keys -> the packed model's keys for one tower (Keras prefixes
    each output's metrics with its name: `tower_3_loss`, `val_tower_3_accuracy`)."""
    return {"loss": f"{tower}_loss", "accuracy": f"{tower}_accuracy",
            "val_loss": f"val_{tower}_loss", "val_accuracy": f"val_{tower}_accuracy"}


def _tower_callback(towers: list, fits: list[TowerFit], sinks: Sequence, patience: int):
    import keras

    class Towers(keras.callbacks.Callback):
        """Per tower: its epoch row (to its own MLflow run), divergence, early stopping with
        best-weights restore. Training ends when every tower is done."""

        def __init__(self):
            super().__init__()
            k = len(towers)
            self.done = [False] * k
            self.best = [math.inf] * k
            self.wait = [0] * k
            self.best_weights: list = [None] * k

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            dt = (time.perf_counter() - self._t0) / len(towers)
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            for k, fit in enumerate(fits):
                if self.done[k]:
                    continue
                row = {key: float(logs[name]) for key, name in _keys(towers[k].name).items()
                       if name in logs}
                for key, v in row.items():
                    fit.history.setdefault(key, []).append(v)
                fit.epoch_times.append(dt)
                if sinks[k]:
                    sinks[k](epoch, {**row, "lr": lr, "epoch_time_s": dt})
                if not all(math.isfinite(v) for v in row.values()):
                    fit.diverged, self.done[k] = True, True
                    continue
                if patience:
                    self._early_stopping(k, epoch, row.get("val_loss", math.inf))
            if all(self.done):
                self.model.stop_training = True

        def _early_stopping(self, k: int, epoch: int, val_loss: float) -> None:
            """As keras.callbacks.EarlyStopping(monitor='val_loss', restore_best_weights=True)
            does for one model."""
            self.wait[k] += 1
            if val_loss < self.best[k]:
                self.best[k], self.wait[k] = val_loss, 0
                self.best_weights[k] = towers[k].get_weights()
                return
            if self.wait[k] >= patience and epoch > 0:
                fits[k].stopped_epoch, self.done[k] = epoch, True

        last_call = True  # a resumed pack trains in several fit calls (core.train.fit_calls)

        def on_train_end(self, logs=None):
            if not (self.last_call or self.model.stop_training):
                return
            for k, w in enumerate(self.best_weights):
                if w is not None and not fits[k].diverged:
                    towers[k].set_weights(w)

        def checkpoint_state(self) -> tuple[dict, dict]:
            """What a checkpoint keeps of the towers (core.checkpoint): each one's early
            stopping, divergence and history."""
            return ({"done": list(self.done), "best": list(self.best), "wait": list(self.wait),
                     "fits": [{"history": f.history, "epoch_times": f.epoch_times,
                               "stopped_epoch": f.stopped_epoch, "nan_loss": f.diverged}
                              for f in fits]},
                    {str(k): w for k, w in enumerate(self.best_weights) if w is not None})

        def restore_state(self, own: dict, arrays: dict) -> None:
            self.done, self.best, self.wait = list(own["done"]), list(own["best"]), \
                list(own["wait"])
            self.best_weights = [arrays.get(str(k)) for k in range(len(towers))]
            for f, held in zip(fits, own["fits"], strict=True):
                f.history = {k: list(v) for k, v in held["history"].items()}
                f.epoch_times = list(held["epoch_times"])
                f.stopped_epoch, f.diverged = held["stopped_epoch"], held["nan_loss"]

    return Towers()


PACK_STEPS_PER_EXECUTION = 10


def fit_packed(exp: Experiment, data, seeds: Sequence[int], sinks: Sequence | None = None,
               resume=None, save=None, key: str = "", extra: list | None = None
               ) -> list[TowerFit]:
    """Train one tower per seed in one model; returns each tower's fit. `resume`, `save`:
    the pack's checkpoint (core.checkpoint), as for one model."""
    import keras
    import tensorflow as tf

    from core import checkpoint
    from core.data import to_tf, train_epochs
    from core.models import build_model
    from core.optim import SCHEDULES
    from core.seeding import seed_everything
    from core.train import compile_model, fit_calls

    why = unpackable(exp)
    if why:
        raise ValueError(f"this config cannot be packed: {why}")
    towers = []
    for k, seed in enumerate(seeds):
        seed_everything(seed, exp.train.deterministic)  # the tower's init and random layers
        tower = build_model(exp, data.input_shape, data.n_classes)
        tower.name = f"tower_{k}"
        towers.append(tower)
    inputs = [keras.Input(data.input_shape, name=f"image_{k}") for k in range(len(seeds))]
    packed = keras.Model(inputs, [t(x) for t, x in zip(towers, inputs, strict=True)],
                         name="packed")
    bs = exp.train.batch_size
    steps = -(-len(data.y_train) // bs)
    # K towers' losses and metrics make Keras' per-step Python work K times larger: 10 steps
    # per call cut a K = 10 step from 300 to 207 ms (bench/roofline.py); the callbacks here
    # act per epoch, and a Ctrl-C still stops at a call boundary
    compile_model(packed, exp, steps, outputs=len(seeds),
                  steps_per_execution=min(PACK_STEPS_PER_EXECUTION, steps))

    def zipped(split: list) -> object:
        return tf.data.Dataset.zip(tuple(split)).map(
            lambda *pairs: (tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)))

    def train_for(first: int, last: int, skip: int) -> object:
        return zipped([train_epochs(data.x_train, data.y_train, data.n_classes, bs, s, first,
                                    last, skip) for s in seeds])

    val_one = to_tf(data.x_val, data.y_val, data.n_classes, bs, None, shuffle=False)
    val = zipped([val_one] * len(seeds))
    fits = [TowerFit(t) for t in towers]
    cbs = [_tower_callback(towers, fits, list(sinks or [None] * len(seeds)),
                           exp.train.early_stopping_patience),
           *SCHEDULES[exp.train.lr_schedule].callbacks(exp.train), *(extra or [])]
    track = checkpoint.Tracker(key, steps, resume, save, total=exp.train.epochs)
    track.sample_from(data, bs, copies=len(seeds))
    fit_calls(packed, track, cbs, train_for, val, 0, exp.train.epochs)
    for f in fits:
        f.train_time_s = track.train_time_s / len(seeds)
        f.steps_per_epoch, f.batches_trained = steps, track.batches
        f.checkpoints, f.checkpoint_s = track.saves, track.save_s / len(seeds)
    return fits
