"""What ablation and search files share: a base experiment, `set:` overrides for every trial,
a `smoke:` switch that shrinks the study for a quick end-to-end check, the metric and its
direction. Keys are axis aliases or dotted config paths, checked here."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.axes import SEED_AXIS, by_alias, resolve_path
from core.config import find_file, load_raw, parse_sets, read_yaml, validate, validate_model
from core.dicts import deep_merge, flatten, nest
from core.errors import ConfigError
from core.schema import Experiment, all_paths, option_path


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    description: str = ""
    base: str
    set: dict[str, Any] = Field(default_factory=dict)
    metric: str = "test_accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"
    smoke: dict[str, Any] = Field(default_factory=dict)
    path: str = ""

    @property
    def directions(self) -> list[str]:
        """The queue's directions: one per objective (several in a multi-objective search)."""
        return [self.direction]

    @property
    def question(self) -> str:
        """The comment that opens the study file (its question, command and duration)."""
        if not self.path or not Path(self.path).exists():
            return self.description
        lines = []
        for line in Path(self.path).read_text().splitlines():
            if not line.startswith("#"):
                break
            lines.append(line.lstrip("#").strip())
        return "\n".join(lines) or self.description


def load_spec(model: type[StudySpec], name_or_path: str | Path, kind: str):
    """An ablation or search file (`kind`: ablations, searches): found by name or path,
    named after the file."""
    path = find_file(name_or_path, kind)
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    data["path"] = str(path)
    return validate_model(model, data, str(path))


SEED_IS_NOT_AN_AXIS = ("seeds are the replicates of every variant, not something to vary "
                       "between them: list them under `seeds:` (e.g. seeds: [0, 1, 2]) or "
                       "pass --seeds N")


def check_axis(key: str, where: str) -> str:
    """An axis alias or any dotted config path; else an error naming the closest axis."""
    path = resolve_path(key)
    if path == SEED_AXIS:
        raise ConfigError(f"{where}.{key}: {SEED_IS_NOT_AN_AXIS}")
    if path in all_paths(Experiment) or option_path(path):
        return path  # a plugin's option is checked against its Options model
    known = list(by_alias()) + all_paths(Experiment)
    hint = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    raise ConfigError(f"{where}.{key}: not an axis" + (f"; did you mean {hint[0]}?" if hint
                      else "") + " (`ablab axes` lists them)")


def dotted(flat: dict[str, Any], where: str) -> dict[str, Any]:
    """{'lr': 0.1} -> {'train.lr': 0.1}, every key checked."""
    return {check_axis(k, where): v for k, v in flat.items()}


@dataclass(frozen=True)
class Base:
    """A study's base experiment as a raw dict, with the paths the study file and command line
    set explicitly (each must act in the config it lands in)."""

    raw: dict[str, Any]
    explicit: tuple[str, ...]
    source: str

    def experiment(self) -> Experiment:
        return validate(self.raw, self.source, self.explicit)

    def with_(self, overrides: dict[str, Any], source: str) -> Experiment:
        """The base with dotted `overrides` (a variant, a sampled point): only those must act
        here; the study-wide ones were checked on the base."""
        nested = nest(overrides)
        return validate(deep_merge(self.raw, nested), source, tuple(flatten(nested)))


def study_base(spec: StudySpec, sets: list[str] | None = None, smoke: bool = False) -> Base:
    """The base experiment with the file's `set:`, its `smoke:` if asked, then --set."""
    base_path = Path(spec.path).parent / f"{spec.base}.yaml" if spec.path else None
    beside = base_path is not None and base_path.exists() \
        and base_path.resolve() != Path(spec.path).resolve()  # `base: parts` in parts.yaml
    raw = load_raw(base_path if beside and base_path else spec.base)
    layers = [dotted(spec.set, "set")]
    if smoke and not spec.smoke:
        raise ConfigError(f"--smoke: {spec.name or spec.base} has no `smoke:` block, so a smoke "
                          "run would be the whole study; add one (e.g. smoke: {train.epochs: 1, "
                          "data.max_samples: 200}) or drop --smoke")
    if smoke:
        layers.append(dotted(spec.smoke, "smoke"))
    cli = flatten(parse_sets(sets))
    layers.append(cli)
    explicit: dict[str, None] = {}
    for layer in layers:
        nested = nest(layer)
        raw = deep_merge(raw, nested)
        explicit.update(dict.fromkeys(flatten(nested)))
    raw["name"] = raw.get("name", spec.base)
    src = f"{spec.name or spec.base} (base {spec.base})" + (
        f" with --set {' '.join(sets)}" if sets else "")
    return Base(raw, tuple(explicit), src)
