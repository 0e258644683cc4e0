"""Ablation studies: a base experiment, what varies, the seeds. Expansion into trials is pure.

An ablation file (ablations/NAME.yaml):

    base: digits_cnn              # an experiment name or path
    set: {train.epochs: 8}        # optional overrides for every variant
    vary: {augment: [none, moderate, extreme]}   # one factor at a time, or
    grid: {head: [gap, flatten_dense], lr: [0.001, 0.01]}   # full factorial
    seeds: 5                      # a count (0..N-1), a list, or adaptive:
    # seeds: {min: 3, max: 30, step: 3}   looks after min, min+step, ... seeds; a variant
    #                                      stops once decided (core/sequential.py)
    metric: test_accuracy
    direction: maximize
    baseline: augment=none        # the reference variant (default: the base config)
    delta: 0.01                   # smallest difference of interest: equivalence, seed planning
    missing_as: chance            # a diverged/failed seed counts as chance | worst | exclude
    smoke: {train.epochs: 1}      # applied by --smoke: a quick end-to-end check
"""

from __future__ import annotations

import difflib
import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core import names
from core.errors import ConfigError
from core.pretrain import Source, sources_of
from core.schema import Experiment
from core.sequential import SeedPlan
from core.study.spec import StudySpec, dotted, load_spec, study_base
from core.trial import Trial, source_name, trial_hash

POCOCK_FEW_LOOKS = 5  # up to this many looks, Pocock's early spending costs power (README)


class AdaptiveSeeds(BaseModel):
    """Seeds spent where the verdict is still open: a look after `min` seeds per variant,
    then every `step` more, up to `max`; alpha spending `obf` (strict early) or `pocock`."""

    model_config = ConfigDict(extra="forbid")

    min: int = Field(3, ge=2)
    max: int = Field(30, ge=3)
    step: int = Field(3, ge=1)
    spending: Literal["obf", "pocock"] = "obf"

    @model_validator(mode="after")
    def _order(self) -> AdaptiveSeeds:
        if self.max <= self.min:
            raise ValueError(f"max ({self.max}) must be above min ({self.min})")
        looks = len(self.plan().looks())
        if self.spending == "pocock" and looks <= POCOCK_FEW_LOOKS:
            warnings.warn(f"seeds: Pocock spending with {looks} looks gives up 12-17 points "
                          f"of power against a fixed {self.max} seeds to save 2-3 seeds on "
                          "average (simulated, README 'Statistics'); spending: obf loses "
                          "almost none", stacklevel=2)
        return self

    def plan(self) -> SeedPlan:
        return SeedPlan(self.min, self.max, self.step, self.spending)


class Ablation(StudySpec):
    vary: dict[str, list[Any]] | None = None
    grid: dict[str, list[Any]] | None = None
    seeds: int | list[int] | AdaptiveSeeds = 5
    baseline: str | None = None
    # The smallest difference of interest, in the metric's units: with it the report can say
    # "equivalent within ±delta" (TOST) and plans seeds for 80% power to detect it.
    delta: float | None = Field(None, gt=0)
    # How a seed without a metric (diverged, failed) counts in the verdict.
    missing_as: Literal["chance", "worst", "exclude"] = "chance"
    # Several metrics, one study: the first is primary (it sets `metric` and `direction`);
    # each is a name or {name: maximize|minimize} (default: names.default_direction). Unset:
    # the primary metric, then the cost metrics (core/ablation/metrics.py).
    metrics: list[str | dict[str, Literal["maximize", "minimize"]]] | None = None

    @model_validator(mode="after")
    def _primary(self) -> Ablation:
        if self.metrics:
            first = self.metrics[0]
            name, d = next(iter(first.items())) if isinstance(first, dict) else (first, None)
            self.metric = name
            self.direction = "minimize" if (d or names.default_direction(
                name, self.direction)) == "minimize" else "maximize"
        return self

    @field_validator("seeds", mode="before")
    @classmethod
    def _adaptive(cls, v):
        """A mapping is an adaptive plan: its own errors, named by key, not the union's."""
        if not isinstance(v, dict):
            return v
        unknown = sorted(set(v) - set(AdaptiveSeeds.model_fields))
        if unknown:
            hint = difflib.get_close_matches(unknown[0], list(AdaptiveSeeds.model_fields), n=1)
            raise ValueError(f"unknown key {unknown[0]!r}" + (f"; did you mean {hint[0]}?"
                             if hint else "") + " (adaptive seeds take min, max, step, "
                             "spending)")
        try:
            return AdaptiveSeeds(**v)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(map(str, err["loc"]))
            raise ValueError(f"{where + ': ' if where else ''}{err['msg']}".replace(
                "Value error, ", "")) from None

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("seeds must be at least 1")
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError("seeds must be a non-empty list of distinct ints")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> Ablation:
        if self.vary and self.grid:
            raise ValueError("give one of `vary` (one factor at a time) or `grid`, not both")
        for axis, values in (self.vary or self.grid or {}).items():
            if not values:
                raise ValueError(f"{axis}: list at least one value")
            seen = [repr(v) for v in values]
            twice = sorted({v for v in seen if seen.count(v) > 1})
            if twice:
                raise ValueError(f"{axis}: {', '.join(twice)} listed more than once; each "
                                 "value is one variant")
        return self

    def seed_list(self, override: int | None = None) -> list[int]:
        """Every seed a variant may get (adaptive: up to `max`)."""
        if override is not None:
            return list(range(override))
        if isinstance(self.seeds, AdaptiveSeeds):
            return list(range(self.seeds.max))
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def seed_plan(self, override: int | None = None) -> SeedPlan | None:
        """The adaptive plan, unless --seeds N forces a fixed count."""
        if override is None and isinstance(self.seeds, AdaptiveSeeds):
            return self.seeds.plan()
        return None


def load_ablation(name_or_path: str | Path) -> Ablation:
    return load_spec(Ablation, name_or_path, "ablations")


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any]
    exp: Experiment
    hash: str  # the config's identity without a seed: parents are found again by it
    is_baseline: bool = False


def fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def variant_name(overrides: dict[str, Any]) -> str:
    """Readable and stable: `augment=extreme`, `head=gap,lr=0.001`."""
    return ",".join(f"{k}={fmt_value(v)}" for k, v in overrides.items()) or "baseline"


def _source_hash(exp: Experiment, sources: dict[str, Source]) -> str | None:
    name = source_name(exp.model.weights)
    return sources[name].hash if name else None


def expand_variants(ab: Ablation, sets: list[str] | None = None, smoke: bool = False,
                    ) -> tuple[list[Variant], dict[str, Source]]:
    """vary: each value of each axis against the base; grid: the full factorial. Variants whose
    resolved config is identical collapse into one (the first name wins). Returns the
    variants and the `pretrain:` sources they name, each read once."""
    base = study_base(ab, sets, smoke)
    base_exp = base.experiment()
    where = "vary" if ab.vary else "grid"
    if ab.vary:
        combos = [{axis: v} for axis, values in ab.vary.items() for v in values]
    elif not ab.grid:
        combos = [{}]  # one config, many seeds
    else:
        keys = list(ab.grid)
        combos = [dict(zip(keys, vals, strict=True))
                  for vals in itertools.product(*(ab.grid[k] for k in keys))]
    exps = [(combo, base.with_(dotted(combo, where), f"ablation {ab.name}, variant "
                               f"{variant_name(combo)}")) for combo in combos]
    sources = sources_of([base_exp, *(e for _, e in exps)])
    variants: list[Variant] = []
    seen: dict[str, str] = {}
    for combo, exp in exps:
        h = trial_hash(exp, -1, _source_hash(exp, sources))
        if h in seen:
            continue
        seen[h] = variant_name(combo)
        variants.append(Variant(variant_name(combo), combo, exp, h))
    base_hash = trial_hash(base_exp, -1, _source_hash(base_exp, sources))
    if ab.vary and base_hash not in seen:
        variants.insert(0, Variant("baseline", {}, base_exp, base_hash))
        seen[base_hash] = "baseline"
    names = [v.name for v in variants]
    if (ab.vary or ab.grid) and len(variants) < 2:
        raise ConfigError(f"{where}: every value gives the same config ({names[0]}), so there "
                          "is nothing to compare; list values that differ")
    if ab.baseline is not None:
        if ab.baseline not in names:
            hint = difflib.get_close_matches(ab.baseline, names, n=1)
            raise ConfigError(f"baseline: no variant named {ab.baseline!r}"
                              + (f"; did you mean {hint[0]!r}?" if hint else "")
                              + f" (variants: {', '.join(names)})")
        ref = ab.baseline
    else:
        ref = seen.get(base_hash, names[0])
    return [Variant(v.name, v.overrides, v.exp, v.hash, v.name == ref) for v in variants], sources


def expand(ab: Ablation, seeds: int | None = None, sets: list[str] | None = None,
           smoke: bool = False) -> tuple[list[Variant], list[Trial], dict[str, Source]]:
    """Variants, their trials and their pretraining sources. Trials come in seed-major order,
    so an interrupted study has an even number of seeds per variant. Each trial's hash is
    computed here, once."""
    variants, sources = expand_variants(ab, sets, smoke)
    trials = [Trial.new(v.exp, s, ab.name, source_hash=_source_hash(v.exp, sources),
                        variant=v.name)
              for s in ab.seed_list(seeds) for v in variants]
    return variants, trials, sources


def expand_trials(ab: Ablation, seeds: int | None = None, sets: list[str] | None = None,
                  smoke: bool = False) -> list[Trial]:
    return expand(ab, seeds, sets, smoke)[1]
