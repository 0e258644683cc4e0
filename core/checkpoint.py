"""Checkpoints of a trial in progress: what a worker anywhere needs to continue a preempted
trial as if it had never stopped (README "Preemption and resume").

A `State` holds every variable of the model (weights, BatchNorm statistics, and the seed
generators of its random layers: the augmentation and dropout streams), the optimizer's (step
count, learning rate, moments: the schedule continues), the compiled metrics' running sums (a
resumed epoch reports the mean over all its batches), the epoch and the batch reached in it
(the data order is a pure function of (seed, epoch): `core.data.epoch_order`), the stateful
callbacks (early stopping's best value, wait count and best weights; ReduceLROnPlateau's), the
metric history and epoch times so far, and how many batches were trained in all attempts.

It lives in the trial run's artifacts under `checkpoint/` (an MLflow server hands it to any
node), one per run, overwritten. It is written at an epoch end when the last one is at least
`ABLAB_CHECKPOINT_EVERY_S` old (default 60 s: a trial of short epochs writes none), and at the
next batch boundary after a preemption (SIGTERM, SIGUSR1), before the trial goes back to the
queue. A preemption that arrives while the epoch's validation runs is honoured at that epoch's
end, so the checkpoint never sits between training and validation.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core import signals

if TYPE_CHECKING:
    from mlflow import MlflowClient

FORMAT = 1
ARTIFACT_PATH = "checkpoint"
STATE_FILE, ARRAYS_FILE = "state.json", "arrays.npz"
EVERY_S = 60.0  # default of ABLAB_CHECKPOINT_EVERY_S


def every_s() -> float:
    """The least time between two epoch-end checkpoints (`ABLAB_CHECKPOINT_EVERY_S`; 0:
    every epoch; "inf": only when preempted)."""
    return float(os.environ.get("ABLAB_CHECKPOINT_EVERY_S", EVERY_S))

# The attributes that carry a stateful Keras callback from one fit call, or process, to the
# next (each resets them in on_train_begin). A callback of one's own joins with `state_attrs`.
CALLBACK_STATE = {"EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch",
                                    "best_weights"),
                  "ReduceLROnPlateau": ("wait", "cooldown_counter", "best")}


class Unreadable(Exception):
    """A checkpoint that cannot be used: missing, corrupt, or from other code or config."""


@dataclass
class State:
    """Where a trial stands: `epoch` epochs done and `step` batches of the next."""

    key: str  # what it belongs to: the trial and its code (`key`)
    epoch: int
    step: int
    steps_per_epoch: int
    history: dict[str, list[float]] = field(default_factory=dict)
    epoch_times: list[float] = field(default_factory=list)
    train_time_s: float = 0.0  # of the progress saved (work lost to a stop is not in it)
    batches_trained: int = 0  # in all attempts: what was trained twice is in it
    paths: list[str] = field(default_factory=list)  # the model's variables, in order
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def position(self) -> float:
        """How far training got, in epochs."""
        return self.epoch + self.step / self.steps_per_epoch


def key(trial_hash: str, code: str) -> str:
    return f"{FORMAT}:{trial_hash}:{code}"


# ------------------------------------------------------------------------ files


def write(state: State, folder: Path) -> None:
    """`arrays.npz` first, then `state.json` with the arrays' digest: a checkpoint cut short
    (a kill mid-upload) reads as corrupt, never as a mix of two."""
    buf = io.BytesIO()
    named: dict[str, Any] = {f"{group}/{i}": a for group, arrs in state.arrays.items()
                             for i, a in enumerate(arrs)}
    np.savez(buf, **named)
    blob = buf.getvalue()
    (folder / ARRAYS_FILE).write_bytes(blob)
    meta: dict[str, Any] = {f.name: getattr(state, f.name) for f in fields(State)
                            if f.name != "arrays"}
    meta["counts"] = {g: len(a) for g, a in state.arrays.items()}
    meta["sha256"] = hashlib.sha256(blob).hexdigest()
    (folder / STATE_FILE).write_text(json.dumps(meta))


def read(folder: Path, want_key: str) -> State:
    try:
        meta = json.loads((folder / STATE_FILE).read_text())
        blob = (folder / ARRAYS_FILE).read_bytes()
    except (OSError, ValueError) as err:
        raise Unreadable(f"cannot read it ({type(err).__name__}: {err})") from None
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise Unreadable("its arrays do not match their digest (corrupt or cut short)")
    if meta.get("key") != want_key:
        raise Unreadable(f"it belongs to other code or config ({meta.get('key')}, this trial "
                         f"is {want_key})")
    with np.load(io.BytesIO(blob)) as npz:
        arrays = {g: [npz[f"{g}/{i}"] for i in range(n)] for g, n in meta["counts"].items()}
    fields = {k: v for k, v in meta.items() if k in State.__dataclass_fields__}
    return State(**{**fields, "arrays": arrays})


class RunStore:
    """A trial run's checkpoint, in its MLflow artifacts."""

    def __init__(self, c: MlflowClient, run_id: str):
        self.c, self.run_id = c, run_id

    @property
    def uri(self) -> str:
        return f"runs:/{self.run_id}/{ARTIFACT_PATH}"

    def put(self, state: State) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            write(state, Path(tmp))
            self.c.log_artifacts(self.run_id, tmp, ARTIFACT_PATH)

    def get(self, want_key: str) -> State:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                got = self.c.download_artifacts(self.run_id, ARTIFACT_PATH, tmp)
            except Exception as err:  # noqa: BLE001 - absent or unreachable: the same to us
                raise Unreadable(f"there is none ({type(err).__name__})") from None
            return read(Path(got), want_key)

    def delete(self) -> None:
        """Once the trial has ended (its artifact store permitting: local, or an MLflow
        server's proxied artifacts)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        uri = self.c.get_run(self.run_id).info.artifact_uri
        with contextlib.suppress(FileNotFoundError):
            get_artifact_repository(uri).delete_artifacts(ARTIFACT_PATH)


# ------------------------------------------------------------------------ Keras state


def watched(cbs: list) -> list[tuple[str, Any, tuple[str, ...]]]:
    """The stateful callbacks of a list, each named by its class and rank among them."""
    out: list[tuple[str, Any, tuple[str, ...]]] = []
    for cb in cbs:
        attrs = getattr(cb, "state_attrs", None) or next(
            (v for k, v in CALLBACK_STATE.items()
             if any(c.__name__ == k for c in type(cb).__mro__)), None)
        if attrs:
            out.append((f"{len(out)}.{type(cb).__name__}", cb, tuple(attrs)))
    return out


def callback_state(cbs: list) -> tuple[dict[str, dict[str, Any]], dict[str, list[np.ndarray]]]:
    """Their state: scalars (JSON), and lists of arrays (best weights) apart. A callback
    with `checkpoint_state()` -> (JSON dict, {name: arrays}) and `restore_state(json,
    arrays)` says its own (the packed towers' early stopping)."""
    scalars: dict[str, dict[str, Any]] = {}
    arrays: dict[str, list[np.ndarray]] = {}
    for i, cb in enumerate(c for c in cbs if hasattr(c, "checkpoint_state")):
        own, arrs = cb.checkpoint_state()
        scalars[f"own.{i}"] = own
        arrays.update({f"own.{i}.{k}": [np.array(x) for x in v] for k, v in arrs.items()})
    for name, cb, attrs in watched(cbs):
        row: dict[str, Any] = {}
        for a in attrs:
            v = getattr(cb, a, None)
            if isinstance(v, list | tuple) and v and isinstance(v[0], np.ndarray):
                arrays[f"{name}.{a}"] = [np.array(x) for x in v]
                row[a] = {"arrays": f"{name}.{a}"}
            else:
                row[a] = None if v is None else (float(v) if isinstance(v, np.floating | float)
                                                 else v)
        scalars[name] = row
    return scalars, arrays


def set_callback_state(cbs: list, scalars: dict[str, dict[str, Any]],
                       arrays: dict[str, list[np.ndarray]]) -> None:
    for i, cb in enumerate(c for c in cbs if hasattr(c, "checkpoint_state")):
        if f"own.{i}" in scalars:
            prefix = f"own.{i}."
            cb.restore_state(scalars[f"own.{i}"], {k[len(prefix):]: list(v) for k, v in
                                                   arrays.items() if k.startswith(prefix)})
    for name, cb, attrs in watched(cbs):
        row = scalars.get(name)
        if row is None:
            continue
        for a in attrs:
            if a not in row:
                continue
            v = row[a]
            setattr(cb, a, list(arrays[v["arrays"]]) if isinstance(v, dict) else v)


def _values(variables) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def _assign(variables, values: list[np.ndarray], what: str) -> None:
    variables = list(variables)
    if len(variables) != len(values):
        raise Unreadable(f"its {what} has {len(values)} variables, this one {len(variables)}")
    for v, a in zip(variables, values, strict=True):
        if tuple(v.shape) != a.shape:
            raise Unreadable(f"{what} variable {v.path}: shape {a.shape}, here {v.shape}")
    for v, a in zip(variables, values, strict=True):
        v.assign(a)


def optimizer_variables(model) -> list:
    opt = model.optimizer
    if not opt.built:
        opt.build(model.trainable_variables)
    return list(opt.variables)


def check_fits(model, state: State) -> None:
    """Raise Unreadable when the checkpoint's model is not this one (before any change)."""
    paths = [v.path for v in model.variables]
    if paths != state.paths:
        diff = next((f"{a} vs {b}" for a, b in zip(state.paths, paths, strict=False) if a != b),
                    f"{len(state.paths)} variables vs {len(paths)}")
        raise Unreadable(f"its model is not this one ({diff})")


def weights_digest(model) -> str:
    """sha256 over the model's weights, in order: equal digests, bit-identical models (what
    shows a resumed trial ended as the uninterrupted one)."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def spent(result) -> dict[str, float]:
    """What stops cost a trial (a core.train.FitResult): epochs of training spent in all,
    how many of them were trained twice (work after the last checkpoint, lost at a stop),
    and the checkpoints written."""
    return {"epochs_trained": float(result.epochs_trained),
            "epochs_trained_twice": max(0.0, result.epochs_trained - result.epochs_run),
            "checkpoints": float(result.checkpoints),
            "checkpoint_s": float(result.checkpoint_s)}


# ------------------------------------------------------------------------ while training


class Tracker:
    """One trial's training progress across the fit calls (and processes) it takes: what a
    checkpoint is made of, what is restored, and when one is written."""

    def __init__(self, key: str, steps_per_epoch: int, resume: State | None = None,
                 save: Callable[[State], None] | None = None, every: float | None = None,
                 total: int = 0):
        self.key, self.steps = key, steps_per_epoch
        self.resume, self.save = resume, save
        self.every_s = every_s() if every is None else every
        self.epoch = resume.epoch if resume else 0
        self.step = resume.step if resume else 0
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (
            resume.history.items() if resume else ())}
        self.times: list[float] = list(resume.epoch_times) if resume else []
        self.batches = resume.batches_trained if resume else 0
        self.time_before = resume.train_time_s if resume else 0.0
        self.carry: tuple[dict, dict] | None = (
            (resume.callbacks, resume.arrays) if resume else None)
        self.restore_metrics: list[np.ndarray] | None = None
        self.total = total  # epochs the trial trains at most (no checkpoint after the last)
        self.offset = 0  # batches of the first epoch of this fit call left out
        self.first = 0
        self.t0 = time.perf_counter()
        self.last_save = time.monotonic()
        self.saves, self.save_s = 0, 0.0
        self.sample: tuple | None = None  # one batch (x, y): builds what Keras builds lazily

    def sample_from(self, data, batch_size: int, copies: int = 0) -> None:
        """For a resumed trial: one batch of its training data (`copies`: one per packed
        tower), which `restore` builds the compiled metrics with."""
        if self.resume is None:
            return
        few = np.arange(min(batch_size, len(data.y_train)))
        x = np.asarray(data.x_train[few], "float32")
        y = np.eye(data.n_classes, dtype="float32")[data.y_train[few]]
        self.sample = (tuple([x] * copies), tuple([y] * copies)) if copies else (x, y)

    @property
    def train_time_s(self) -> float:
        return self.time_before + time.perf_counter() - self.t0

    def begin(self, first: int, skip: int) -> None:
        """A fit call of epochs first.. starts, its first `skip` batches left out."""
        self.first, self.offset = first, skip

    def state(self, model, cbs: list) -> State:
        scalars, arrays = callback_state(cbs)
        return State(
            self.key, self.epoch, self.step, self.steps, {k: list(v) for k, v in
                                                          self.history.items()},
            list(self.times), self.train_time_s, self.batches,
            [v.path for v in model.variables], scalars,
            {"model": _values(model.variables), "optimizer": _values(
                optimizer_variables(model)), "metrics": _values(model.metrics_variables),
             **arrays})

    def checkpoint(self, model, cbs: list) -> None:
        if self.save is None:
            return
        t0 = time.perf_counter()
        self.save(self.state(model, cbs))
        self.save_s += time.perf_counter() - t0
        self.saves += 1
        self.last_save = time.monotonic()

    def restore(self, model, cbs: list) -> None:
        """At the first fit call's start (the optimizer and metrics are built by then)."""
        s = self.resume
        if s is None:
            return
        self.resume = None
        check_fits(model, s)
        if self.sample is not None:
            # Keras creates the compiled metrics' variables while tracing the first step;
            # its own symbolic build creates them now, so their running sums can be restored
            model._symbolic_build(data_batch=self.sample)
        opt = optimizer_variables(model)
        _assign(opt, s.arrays["optimizer"], "optimizer")
        _assign(model.variables, s.arrays["model"], "model")
        if s.step:
            self.restore_metrics = s.arrays["metrics"]


def callback(tracker: Tracker, peers: list):
    """The Keras callback that keeps `tracker` up to date, restores a resumed trial, writes
    checkpoints, and stops training at a batch boundary on Ctrl-C or a preemption (it comes
    last in the list, after the callbacks whose state it saves)."""
    import keras

    class Checkpointer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            tracker.restore(self.model, peers)
            if tracker.carry is not None:  # callbacks reset themselves in on_train_begin
                set_callback_state(peers, *tracker.carry)

        def on_epoch_begin(self, epoch, logs=None):
            tracker.epoch = epoch
            tracker.step = tracker.offset if epoch == tracker.first else 0
            if tracker.restore_metrics is not None:
                _assign(self.model.metrics_variables, tracker.restore_metrics, "metrics")
                tracker.restore_metrics = None

        def on_train_batch_end(self, batch, logs=None):
            done = (tracker.offset if tracker.epoch == tracker.first else 0) + batch + 1
            tracker.batches += done - tracker.step
            tracker.step = done
            if not signals.preempting():
                signals.check()  # Ctrl-C
            elif done < tracker.steps:  # (after the last batch: at the epoch's end)
                tracker.checkpoint(self.model, peers)
                signals.check()

        def on_test_batch_end(self, batch, logs=None):
            if not signals.preempting():  # Ctrl-C now; a preemption at the epoch's end
                signals.check()

        def on_train_end(self, logs=None):
            # before the next fit call's callbacks reset themselves (once per call, not a
            # copy of the best weights every epoch)
            tracker.carry = callback_state(peers)

        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                tracker.history.setdefault(k, []).append(float(v))
            tracker.epoch, tracker.step = epoch + 1, 0
            if signals.preempting() or (
                    time.monotonic() - tracker.last_save >= tracker.every_s
                    and epoch + 1 < tracker.total):
                tracker.checkpoint(self.model, peers)
            signals.check()

    return Checkpointer()
