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
    # or several objectives, a Pareto front (Optuna's multi-objective samplers; no pruner):
    # objectives: [val_accuracy, latency_ms]
    # directions: [maximize, minimize]          # default: each metric's own direction
    # constraints: {latency_ms: {max: 20}}      # feasible trials only on the front
    seeds_per_trial: 1    # >1: the objective is the mean over seeds
    timeout: null         # seconds per worker
    smoke: {train.epochs: 2}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.axes import by_path
from core.config import validate
from core.dicts import deep_merge, nest
from core.errors import ConfigError
from core.schema import Experiment
from core.search.samplers import PRUNERS, SAMPLERS
from core.study.spec import Base, StudySpec, check_axis, dotted, load_spec
from core.trial import source_name


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

    @property
    def options(self) -> list[Any]:
        """A categorical's choices (the validator made sure there are some)."""
        assert self.choices is not None
        return self.choices

    @property
    def bounds(self) -> tuple[float, float]:
        """A range's (low, high) (the validator made sure both are set)."""
        assert self.low is not None and self.high is not None
        return self.low, self.high

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.options)
        lo, hi = self.bounds
        if self.type == "int":
            return trial.suggest_int(name, int(lo), int(hi), step=int(self.step or 1),
                                     log=self.log)
        return trial.suggest_float(name, lo, hi, step=self.step, log=self.log)

    def grid(self) -> list[Any]:
        if self.type == "categorical":
            return list(self.options)
        if self.step is None and self.type == "float":
            raise ValueError("grid sampler: float params need a `step` (or use categorical)")
        step = self.step or 1
        lo, hi = self.bounds
        n = int(round((hi - lo) / step))
        vals = [lo + i * step for i in range(n + 1)]
        return [int(v) for v in vals] if self.type == "int" else vals

    def other(self) -> Any:
        """A value other than the first (the end of the range, the last choice)."""
        return self.options[-1] if self.type == "categorical" else (
            int(self.bounds[1]) if self.type == "int" else self.bounds[1])

    def first(self) -> Any:
        return self.options[0] if self.type == "categorical" else (
            int(self.bounds[0]) if self.type == "int" else self.bounds[0])


class Bound(BaseModel):
    """A constraint on one metric of a trial: feasible when min <= value <= max."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 when satisfied, else how far outside."""
        if value != value:  # NaN: the metric is missing, infeasible
            return 1.0
        return max((self.min - value) if self.min is not None else -1.0,
                   (value - self.max) if self.max is not None else -1.0)


class PrunerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = "median"
    startup_trials: int = Field(3, ge=0)
    warmup_epochs: int = Field(1, ge=0)


class Search(StudySpec):
    space: dict[str, Param]
    n_trials: int = Field(20, ge=1)
    sampler: str = "tpe"
    pruner: PrunerSpec | str = "median"
    metric: str = "val_accuracy"
    seeds_per_trial: int = Field(1, ge=1)
    seed: int = 0
    timeout: float | None = Field(None, gt=0)
    objectives: list[str] | None = None
    directions_: list[Literal["maximize", "minimize"]] | None = Field(None, alias="directions")
    constraints: dict[str, Bound] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _objectives(self) -> Search:
        if self.directions_ and not self.objectives:
            raise ValueError("directions: list the objectives they belong to (objectives:)")
        if self.objectives:
            if len(set(self.objectives)) != len(self.objectives):
                raise ValueError("objectives: each metric once")
            if self.directions_ and len(self.directions_) != len(self.objectives):
                raise ValueError(f"directions: {len(self.directions_)} given for "
                                 f"{len(self.objectives)} objectives")
            self.metric = self.objectives[0]
            self.direction = self.directions[0]  # type: ignore[assignment]
        return self

    @property
    def multi(self) -> bool:
        return bool(self.objectives) and len(self.objectives or []) > 1

    @property
    def objective_names(self) -> list[str]:
        return list(self.objectives or [self.metric])

    @property
    def directions(self) -> list[str]:
        if not self.objectives:
            return [self.direction]
        from core.names import default_direction

        given: list[str] = list(self.directions_ or [])
        return given or [default_direction(m) for m in self.objectives]

    @property
    def pruner_spec(self) -> PrunerSpec:
        return self.pruner if isinstance(self.pruner, PrunerSpec) else PrunerSpec(type=self.pruner)

    def grid_size(self) -> int:
        n = 1
        for p in self.space.values():
            n *= len(p.grid())
        return n


def load_search(name_or_path: str | Path) -> Search:
    s = load_spec(Search, name_or_path, "searches")
    for key in s.space:
        check_axis(key, "space")
    SAMPLERS.check(s.sampler)
    PRUNERS.check(s.pruner_spec.type)
    if s.multi and not SAMPLERS.meta(s.sampler).get("multi"):
        multi = [n for n in SAMPLERS.names() if SAMPLERS.meta(n).get("multi")]
        raise ConfigError(f"{s.path}: sampler: {s.sampler} optimizes one objective; with "
                          f"{len(s.objective_names)} objectives use {', '.join(multi)}")
    if s.constraints and s.sampler not in ("tpe", "nsga2"):
        raise ConfigError(f"{s.path}: constraints: only the tpe and nsga2 samplers take them")
    if s.sampler == "grid":
        try:
            s.grid_size()
        except ValueError as err:
            raise ConfigError(f"{s.path}: {err}") from None
    return s


def checked_paths(s: Search) -> tuple[str, ...]:
    """Space parameters that must act in every sampled config: all but those whose condition
    depends on another searched parameter (weight_decay with optimizer in the space acts
    only for some samples, and that is the point of searching both)."""
    paths = {check_axis(k, "space") for k in s.space}
    axes = by_path()
    def conditional_on_space(p: str) -> bool:
        when = axes[p].when if p in axes else None
        return when is not None and bool(set(when.shows) & paths)

    return tuple(p for p in paths if not conditional_on_space(p))


def experiment_for(base: Base, params: dict[str, Any], source: str,
                   checked: tuple[str, ...] = ()):
    """The base with a sampled point; the `checked` parameters must act in it."""
    return validate(deep_merge(base.raw, nest(dotted(params, "space"))), source, checked)


def check_space(s: Search, base: Base) -> Experiment:
    """A bad space fails here, in the coordinator, not in a worker: the base with the first
    value of every parameter validates, and no sampled parameter is `pretrain:` weights."""
    first = {k: p.first() for k, p in s.space.items()}
    exp = experiment_for(base, first, f"search {s.name}", checked_paths(s))
    checked = checked_paths(s)
    for k, p in s.space.items():
        if check_axis(k, "space") in checked:  # a value other than the default must act too
            experiment_for(base, {**first, k: p.other()}, f"search {s.name}, space.{k}",
                           checked)
        if check_axis(k, "space") == "model.weights" and any(
                source_name(str(v)) for v in (p.choices or [])):
            raise ConfigError(f"space.{k}: pretrain:<experiment> weights cannot be searched; "
                              "put them in the base experiment")
    return exp
