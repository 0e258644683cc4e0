"""Ablation studies: a base experiment, what varies, the seeds. Expansion into trials is pure.

An ablation file (ablations/NAME.yaml):

    base: digits_cnn              # an experiment name or path
    set: {train.epochs: 8}        # optional overrides for every variant
    vary: {augment: [none, moderate, extreme]}   # one factor at a time, or
    grid: {head: [gap, flatten_dense], lr: [0.001, 0.01]}   # full factorial
    seeds: 5                      # a count (0..N-1) or a list
    metric: test_accuracy
    direction: maximize
    baseline: augment=none        # the reference variant (default: the base config)
    smoke: {train.epochs: 1}      # applied by --smoke: a quick end-to-end check
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.axes import registered, resolve_path
from core.config import (
    ConfigError,
    Experiment,
    all_paths,
    deep_merge,
    find_file,
    load_raw,
    parse_sets,
    read_yaml,
    set_dotted,
    trial_hash,
    validate,
)
from core.paths import ABLATIONS_DIR


class StudySpec(BaseModel):
    """What ablation and search files share: a base experiment, overrides, a smoke switch."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    description: str = ""
    base: str
    set: dict[str, Any] = Field(default_factory=dict)
    metric: str = "test_accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"
    smoke: dict[str, Any] = Field(default_factory=dict)
    path: str = ""


class Ablation(StudySpec):
    vary: dict[str, list[Any]] | None = None
    grid: dict[str, list[Any]] | None = None
    seeds: int | list[int] = 5
    baseline: str | None = None

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
        return self

    def seed_list(self, override: int | None = None) -> list[int]:
        if override is not None:
            return list(range(override))
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any]
    exp: Experiment
    is_baseline: bool = False

    @property
    def hash(self) -> str:
        return trial_hash(self.exp, -1)


@dataclass(frozen=True)
class Trial:
    variant: Variant
    seed: int

    @property
    def hash(self) -> str:
        return trial_hash(self.variant.exp, self.seed)


def fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def variant_name(overrides: dict[str, Any]) -> str:
    """Readable and stable: `augment=extreme`, `head=gap,lr=0.001`."""
    return ",".join(f"{k}={fmt_value(v)}" for k, v in overrides.items()) or "baseline"


def load_spec(model: type, name_or_path: str | Path, folder: Path, kind: str):
    """An ablation or search file: found by name or path, named after the file."""
    path = find_file(name_or_path, folder, kind)
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    data["path"] = str(path)
    return validate(model, data, str(path))


def load_ablation(name_or_path: str | Path) -> Ablation:
    return load_spec(Ablation, name_or_path, ABLATIONS_DIR, "ablation")


def check_axis(key: str, where: str) -> str:
    """An axis alias or any dotted config path; else an error naming the closest axis."""
    path = resolve_path(key)
    if path in all_paths(Experiment):
        return path
    known = [a.alias for a in registered()] + all_paths(Experiment)
    hint = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    raise ConfigError(f"{where}.{key}: not an axis" + (f"; did you mean {hint[0]}?" if hint
                      else "") + " (`ablab axes` lists them)")


def dotted_overrides(flat: dict[str, Any], where: str = "set") -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for k, v in flat.items():
        set_dotted(nested, check_axis(k, where), v)
    return nested


def base_raw(spec: StudySpec, sets: list[str] | None = None,
             smoke: bool = False) -> dict[str, Any]:
    """The base experiment of an ablation or a search with its `set:` overrides, its `smoke:`
    ones if asked, then the command line's --set."""
    base_path = Path(spec.path).parent / f"{spec.base}.yaml" if spec.path else None
    raw = load_raw(base_path if base_path and base_path.exists() else spec.base)
    raw = deep_merge(raw, dotted_overrides(spec.set))
    if smoke:
        raw = deep_merge(raw, dotted_overrides(spec.smoke, "smoke"))
    raw = deep_merge(raw, parse_sets(sets))
    raw["name"] = raw.get("name", spec.base)
    return raw


def expand_variants(ab: Ablation, sets: list[str] | None = None,
                    smoke: bool = False) -> list[Variant]:
    """vary: each value of each axis against the base; grid: the full factorial. Variants whose
    resolved config is identical collapse into one (the first name wins)."""
    raw = base_raw(ab, sets, smoke)
    src = f"ablation {ab.name}"
    base = validate(Experiment, raw, f"{src} (base {ab.base})")
    combos: list[dict[str, Any]]
    if ab.vary:
        combos = [{axis: v} for axis, values in ab.vary.items() for v in values]
    elif not ab.grid:
        combos = [{}]  # one config, many seeds
    else:
        keys = list(ab.grid)
        combos = [dict(zip(keys, vals, strict=True))
                  for vals in itertools.product(*(ab.grid[k] for k in keys))]
    variants: list[Variant] = []
    seen: dict[str, str] = {}
    for combo in combos:
        where = "vary" if ab.vary else "grid"
        exp = validate(Experiment, deep_merge(raw, dotted_overrides(combo, where)),
                       f"{src}, variant {variant_name(combo)}")
        h = trial_hash(exp, -1)
        if h in seen:
            continue
        seen[h] = variant_name(combo)
        variants.append(Variant(variant_name(combo), combo, exp))
    base_hash = trial_hash(base, -1)
    if ab.vary and base_hash not in seen:
        variants.insert(0, Variant("baseline", {}, base))
        seen[base_hash] = "baseline"
    names = [v.name for v in variants]
    if ab.baseline is not None:
        if ab.baseline not in names:
            hint = difflib.get_close_matches(ab.baseline, names, n=1)
            raise ConfigError(f"baseline: no variant named {ab.baseline!r}"
                              + (f"; did you mean {hint[0]!r}?" if hint else "")
                              + f" (variants: {', '.join(names)})")
        ref = ab.baseline
    else:
        ref = seen.get(base_hash, names[0])
    return [Variant(v.name, v.overrides, v.exp, v.name == ref) for v in variants]


def expand_trials(ab: Ablation, seeds: int | None = None, sets: list[str] | None = None,
                  smoke: bool = False) -> list[Trial]:
    """Seed-major order, so an interrupted study has an even number of seeds per variant."""
    variants = expand_variants(ab, sets, smoke)
    return [Trial(v, s) for s in ab.seed_list(seeds) for v in variants]
