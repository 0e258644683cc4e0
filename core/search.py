"""Optuna searches over the same axes, tracked in MLflow.

A search file (searches/NAME.yaml):

    base: digits_cnn
    set: {train.epochs: 8}
    space:
      lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
      batch_size: {type: int, low: 16, high: 128, step: 16}
      optimizer: {type: categorical, choices: [adam, adamw, sgd]}
    n_trials: 20
    sampler: tpe          # tpe | random | grid | cmaes
    pruner: median        # median | hyperband | none
    metric: val_accuracy  # any per-epoch or final metric; per-epoch ones use the last epoch
    direction: maximize
    seeds_per_trial: 1    # >1: the objective is the mean over seeds
    timeout: null         # seconds, per worker
    smoke: {train.epochs: 2}

Each Optuna trial is one MLflow run nested under the search's parent run (with
seeds_per_trial > 1, the seeds' runs nest under the trial's run). Workers are processes that
each run Optuna's own `study.optimize` loop; the coordinator splits the trials still missing
up to `n_trials` between them, so a rerun with a larger total adds exactly the difference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core import tracking
from core.ablation import StudySpec, base_raw, check_axis, dotted_overrides, load_spec
from core.config import ConfigError, Experiment, deep_merge, validate
from core.paths import SEARCHES_DIR

PER_EPOCH = ("loss", "accuracy", "val_loss", "val_accuracy")


class Param(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Param:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs `choices`")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"{self.type} needs low < high")
        elif self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        elif self.log and self.step:
            raise ValueError("log scale and step cannot be combined (Optuna)")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def grid(self) -> list[Any]:
        if self.type == "categorical":
            return list(self.choices)
        if self.step is None and self.type == "float":
            raise ValueError("grid sampler: float params need a `step` (or use categorical)")
        step = self.step or 1
        n = int(round((self.high - self.low) / step))
        vals = [self.low + i * step for i in range(n + 1)]
        return [int(v) for v in vals] if self.type == "int" else vals


class PrunerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = Field(3, ge=0)
    warmup_epochs: int = Field(1, ge=0)


class Search(StudySpec):
    space: dict[str, Param]
    n_trials: int = Field(20, ge=1)
    sampler: Literal["tpe", "random", "grid", "cmaes"] = "tpe"
    pruner: PrunerSpec | Literal["median", "hyperband", "none"] = "median"
    metric: str = "val_accuracy"
    seeds_per_trial: int = Field(1, ge=1)
    seed: int = 0
    timeout: float | None = Field(None, gt=0)

    @property
    def pruner_spec(self) -> PrunerSpec:
        return self.pruner if isinstance(self.pruner, PrunerSpec) else PrunerSpec(type=self.pruner)

    @property
    def study_name(self) -> str:
        return f"search:{self.name}"


def load_search(name_or_path: str | Path) -> Search:
    s = load_spec(Search, name_or_path, SEARCHES_DIR, "search")
    path = s.path
    for key in s.space:
        check_axis(key, "space")
    if s.sampler == "grid":
        try:
            for p in s.space.values():
                p.grid()
        except ValueError as err:
            raise ConfigError(f"{path}: {err}") from None
    return s


def experiment_for(raw: dict[str, Any], params: dict[str, Any], source: str) -> Experiment:
    return validate(Experiment, deep_merge(raw, dotted_overrides(params, "space")), source)


# ----------------------------------------------------------------------------- Optuna objects


def make_sampler(s: Search, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    seed = s.seed + worker_index  # distinct streams, so parallel workers do not repeat
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.sampler == "grid":
        return optuna.samplers.GridSampler({k: p.grid() for k, p in s.space.items()}, seed=seed)
    if s.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(s: Search, epochs: int) -> optuna.pruners.BasePruner:
    p = s.pruner_spec
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials,
                                           n_warmup_steps=p.warmup_epochs)
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2),
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()


def pruning_callback(trial: optuna.Trial, key: str):
    """Reports the per-epoch value to Optuna; when the pruner says so, stops training."""
    import keras

    class Prune(keras.callbacks.Callback):
        pruned = False

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(key)
            if value is None or not math.isfinite(value):
                return
            trial.report(float(value), epoch)
            if trial.should_prune():
                Prune.pruned = True
                self.model.stop_training = True

    return Prune()


# ----------------------------------------------------------------------------- the objective


def trial_value(metric: str, res) -> float | None:
    if metric in res.metrics:
        return res.metrics[metric]
    hist = res.history.get(metric)
    return hist[-1] if hist else None


def make_objective(s: Search, raw: dict[str, Any], c, parent_run_id: str, cache: dict):
    from core.queue import worker_id
    from core.trial import TrialSpec, run_trial

    prune_key = s.metric if s.metric in PER_EPOCH else (
        "val_loss" if s.direction == "minimize" else "val_accuracy")

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_id())
        params = {k: p.suggest(trial, k) for k, p in s.space.items()}
        exp = experiment_for(raw, params, f"search {s.name}, trial {trial.number}")
        base_tags = {"ablab.study": s.name, "optuna.trial_number": str(trial.number),
                     "optuna.study": s.study_name, "optuna.params": json.dumps(params)}
        run_parent = parent_run_id
        trial_run = None
        if s.seeds_per_trial > 1:  # one run for the trial, its seeds nested under it
            trial_run = c.create_run(
                tracking.get_or_create_experiment(c, s.name), run_name=f"trial {trial.number}",
                tags={**base_tags, "ablab.role": "trial", "mlflow.parentRunId": parent_run_id})
            tracking.log_params(c, trial_run.info.run_id, {**exp.flat(), **_p(params)})
            run_parent = trial_run.info.run_id
        values, runs = [], []
        for i in range(s.seeds_per_trial):
            cb = pruning_callback(trial, prune_key) if i == 0 else None
            role = "trial" if trial_run is None else "seed"
            spec = TrialSpec(exp, s.seed + i, s.name, parent_run_id=run_parent,
                             run_name=f"trial {trial.number}" + (f" seed={s.seed + i}"
                                                                 if trial_run else ""),
                             tags={**base_tags, "ablab.role": role},
                             callbacks=[cb] if cb else [])
            res = run_trial(spec, c=c, cache=cache)
            runs.append(res.run_id)
            if trial_run is None:
                tracking.log_params(c, res.run_id, _p(params))
            if res.status != "FINISHED":
                _mark(c, runs, trial_run, "FAIL")
                raise RuntimeError(f"trial {trial.number} failed: {res.error}")
            if cb is not None and type(cb).pruned:
                _mark(c, runs, trial_run, "PRUNED")
                raise optuna.TrialPruned(f"pruned at epoch {res.metrics.get('epochs_run')}")
            value = trial_value(s.metric, res)
            if value is None or not math.isfinite(value):
                _mark(c, runs, trial_run, "FAIL")
                raise RuntimeError(f"trial {trial.number}: no finite {s.metric} "
                                   f"({res.outcome})")
            values.append(value)
        objective_value = float(sum(values) / len(values))
        _mark(c, runs, trial_run, "COMPLETE", objective_value, s.metric)
        return objective_value

    return objective


def _p(params: dict[str, Any]) -> dict[str, Any]:
    return {f"optuna.{k}": v for k, v in params.items()}


def _mark(c, runs: list[str], trial_run, state: str, value: float | None = None,
          metric: str = "") -> None:
    ids = runs + ([trial_run.info.run_id] if trial_run else [])
    for rid in ids:
        tags = {"optuna.state": state}
        if state == "PRUNED":
            tags["ablab.outcome"] = "pruned"
        tracking.set_tags(c, rid, tags)
    if trial_run is not None:
        if value is not None:
            tracking.log_metrics(c, trial_run.info.run_id, {f"objective_{metric}": value})
        c.set_terminated(trial_run.info.run_id, "FINISHED" if state != "FAIL" else "FAILED")
    elif value is not None:
        tracking.log_metrics(c, runs[0], {f"objective_{metric}": value})


# ----------------------------------------------------------------------------- the worker


def serve(s: Search, storage_uri: str, tracking_uri: str | None, n_trials: int,
          worker_index: int, sets: list[str] | None = None, smoke: bool = False) -> int:
    """A search worker: imports TensorFlow once, then Optuna's own optimize loop."""
    from core import queue as q
    from core.seeding import configure_gpus, quiet_tensorflow, silence_tf_python_logs

    quiet_tensorflow()
    import tensorflow  # noqa: F401

    silence_tf_python_logs()
    configure_gpus()
    raw = base_raw(s, sets, smoke)
    c = tracking.client(tracking_uri)
    storage = q.open_storage(storage_uri)
    epochs = Experiment.model_validate(raw).train.epochs
    study = optuna.load_study(study_name=s.study_name, storage=storage,
                              sampler=make_sampler(s, worker_index),
                              pruner=make_pruner(s, epochs))
    parent = study.user_attrs["mlflow_parent_run_id"]
    objective = make_objective(s, raw, c, parent, cache={})
    before = len(study.get_trials(deepcopy=False))
    study.optimize(objective, n_trials=n_trials, timeout=s.timeout,
                   catch=(RuntimeError, ConfigError), gc_after_trial=False)
    return len(study.get_trials(deepcopy=False)) - before
