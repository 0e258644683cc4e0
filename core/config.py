"""Typed experiment configs: YAML with `base:` inheritance, dotted `--set` overrides.

Validation happens here, before TensorFlow or MLflow is touched, so a bad field costs nothing
and leaves no trace in the tracking store.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.paths import EXPERIMENTS_DIR


class ConfigError(Exception):
    """A config problem a person can fix; the CLI prints it and exits 2 without a traceback."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OpRanges(_Section):
    """Per-op ranges of a custom augmentation policy (Keras preprocessing-layer factors)."""

    rotation: float = Field(0.0, ge=0, le=1, description="fraction of a full turn")
    shear: float = Field(0.0, ge=0, le=1)
    zoom: float = Field(0.0, ge=0, lt=1)
    translation: float = Field(0.0, ge=0, lt=1)
    horizontal_flip: bool = False
    brightness: float = Field(0.0, ge=0, le=1)
    contrast: float = Field(0.0, ge=0, le=1)


class DataConfig(_Section):
    source: str = Field("digits", description="digits | synthetic | folder | keras:<name>")
    image_size: int = Field(32, ge=4, le=1024)
    channels: Literal[1, 3] = 3
    train_fraction: float = Field(1.0, gt=0, le=1)
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    vary_split_with_seed: bool = False
    max_samples: int | None = Field(None, ge=10)
    classes: list[int] | None = None
    # folder source
    path: str | None = None
    on_corrupt: Literal["error", "skip"] = "error"
    # synthetic source
    n_samples: int = Field(600, ge=10)
    defect_rate: float = Field(0.3, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% to train")
        if self.source == "folder" and not self.path:
            raise ValueError("data.path is required when data.source is 'folder'")
        return self


class AugmentConfig(_Section):
    strength: Literal["none", "moderate", "extreme", "custom"] = "none"
    ops: OpRanges = Field(default_factory=OpRanges)


class ModelConfig(_Section):
    backbone: str = "cnn"
    # none | imagenet | pretrain:<experiment> (ablab pretrains it once) | an MLflow model URI
    weights: str = "none"
    # With pretrained weights: which backbone weights train (see README, "Transfer learning").
    finetune: Literal["head_only", "bn_only", "full"] = "full"
    bn_trainable: bool = False
    head_epochs: int = Field(0, ge=0, description="two-phase: epochs with the backbone frozen")
    finetune_lr_factor: float = Field(0.1, gt=0, le=1, description="phase-2 lr multiplier")
    depth: int = Field(3, ge=1, le=8)
    width: int = Field(32, ge=1, le=1024)
    activation: Literal["relu", "prelu", "leaky_relu"] = "relu"
    batchnorm: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)
    head: Literal["gap", "flatten_dense", "gap_dense"] = "gap"
    head_units: int = Field(64, ge=1)


    @property
    def pretrained(self) -> bool:
        return self.weights != "none"

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if not self.pretrained:
            defaults = type(self).model_fields
            for f in ("finetune", "bn_trainable", "head_epochs"):
                if f in self.model_fields_set and getattr(self, f) != defaults[f].default:
                    raise ValueError(f"model.{f} applies to pretrained backbones; set "
                                     "model.weights (imagenet, pretrain:<experiment> or an "
                                     "MLflow model URI): with weights none every layer trains")
        return self


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1, le=10000)
    batch_size: int = Field(32, ge=1, le=65536)
    lr: float = Field(1e-3, gt=0, le=1e6)
    optimizer: Literal["adam", "adamw", "adamax", "sgd"] = "adam"
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    lr_schedule: Literal["constant", "cosine", "reduce_on_plateau"] = "constant"
    early_stopping_patience: int = Field(0, ge=0, description="0 disables early stopping")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    deterministic: Literal["strict", "fast"] = "strict"
    mixed_precision: bool = False


class EvalConfig(_Section):
    tta: int = Field(0, ge=0, le=64)
    log_model: bool = False


class Experiment(_Section):
    name: str = "experiment"
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _known_names(self) -> Experiment:
        # Registries are imported lazily: they import this module.
        from core.data import SOURCES
        from core.models import BACKBONES

        for field, value, known in (("data.source", self.data.source, SOURCES),
                                    ("model.backbone", self.model.backbone, BACKBONES)):
            if value not in known:
                hint = difflib.get_close_matches(value, list(known), n=1)
                raise ValueError(f"{field}: unknown {value!r}"
                                 + (f"; did you mean {hint[0]}?" if hint else "")
                                 + f" (known: {', '.join(sorted(known))})")
        if self.model.backbone != "cnn" and self.data.channels != 3:
            raise ValueError(f"data.channels: {self.model.backbone} needs 3 channels")
        if self.model.head_epochs >= self.train.epochs:
            raise ValueError("model.head_epochs must be fewer than train.epochs")
        return self

    def flat(self) -> dict[str, Any]:
        """Every resolved field under its dotted name (MLflow params)."""
        return flatten(self.model_dump(mode="json"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# Fields that describe a run but do not change its result: left out of the trial hash, so a
# renamed experiment or a resumed study on another machine recognises its finished trials.
NON_RESULT_FIELDS = {"name", "description", "eval.log_model"}


PRETRAIN_PREFIX = "pretrain:"
PRETRAIN_SEED = 0


def trial_hash(exp: Experiment, seed: int) -> str:
    """Identity of a trial. A `pretrain:<experiment>` source counts by its own hash, so editing
    the source experiment makes every trial fine-tuned from it new."""
    cfg = {k: v for k, v in exp.flat().items() if k not in NON_RESULT_FIELDS}
    if exp.model.weights.startswith(PRETRAIN_PREFIX):
        source = load_experiment(exp.model.weights[len(PRETRAIN_PREFIX):])
        if source.model.weights.startswith(PRETRAIN_PREFIX):
            raise ConfigError(f"model.weights={exp.model.weights}: a pretraining source cannot "
                              f"itself use model.weights={source.model.weights}")
        cfg["model.weights"] += "#" + trial_hash(source, PRETRAIN_SEED)
    blob = json.dumps({"config": cfg, "seed": int(seed)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- dict helpers


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(d: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars: 3e-4, true, [1, 2], relu."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_sets(sets: list[str] | None) -> dict[str, Any]:
    """['train.lr=3e-4', 'head=gap'] -> nested overrides; aliases resolve to dotted paths."""
    from core.axes import resolve_path

    out: dict[str, Any] = {}
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set train.lr=3e-4)")
        key, _, raw = item.partition("=")
        set_dotted(out, resolve_path(key.strip()), parse_value(raw.strip()))
    return out


# ----------------------------------------------------------------------------- loading


def all_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            paths.extend(all_paths(ann, f"{prefix}{name}."))
        else:
            paths.append(f"{prefix}{name}")
    return paths


def closest_key(bad: str, model: type[BaseModel] = None) -> str | None:
    """The valid dotted key nearest to `bad`, for 'did you mean' hints."""
    model = model or Experiment
    candidates = all_paths(model)
    sections = {p.split(".")[0] for p in candidates if "." in p}
    candidates += sorted(sections)
    match = difflib.get_close_matches(bad, candidates, n=1, cutoff=0.5)
    if not match:
        leaf = bad.rsplit(".", 1)[-1]
        by_leaf = {p.rsplit(".", 1)[-1]: p for p in candidates}
        leaf_match = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        return by_leaf[leaf_match[0]] if leaf_match else None
    return match[0]


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"Invalid config ({source}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not isinstance(p, int))
        if e["type"] == "extra_forbidden":
            hint = closest_key(loc, model)
            msg = f"  {loc}: unknown key"
            if hint:
                msg += f"; did you mean {hint}?"
        else:
            got = e.get("input")
            text = e["msg"].removeprefix("Value error, ")
            msg = f"  {loc}: {text}" if loc else f"  {text}"
            if not isinstance(got, dict):
                msg += f" (got {got!r})"
        lines.append(msg)
    return "\n".join(lines)


def validate(model: type[BaseModel], data: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, model)) from None


def find_file(name_or_path: str | Path, folder: Path, kind: str) -> Path:
    """A name in `folder` (with or without .yaml) or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p.resolve()
    for cand in (folder / f"{name_or_path}.yaml", folder / f"{name_or_path}.yml", p):
        if cand.is_file():
            return cand.resolve()
    known = sorted(q.stem for q in folder.glob("*.y*ml"))
    hint = difflib.get_close_matches(str(name_or_path), known, n=1)
    msg = f"No {kind} named {str(name_or_path)!r} in {folder}."
    if hint:
        msg += f" Did you mean {hint[0]!r}?"
    msg += f" Known: {', '.join(known) or '(none)'}."
    raise ConfigError(msg)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_raw(name_or_path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Resolve `base:` chains (relative to the file, then experiments/) into one dict."""
    path = find_file(name_or_path, EXPERIMENTS_DIR, "experiment")
    if path in _seen:
        raise ConfigError(f"{path}: circular base: chain {' -> '.join(map(str, _seen))}")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        data.setdefault("name", path.stem)
        return data
    base_path = path.parent / f"{base}.yaml"
    parent = load_raw(base_path if base_path.exists() else base, (*_seen, path))
    merged = deep_merge(parent, data)
    merged["name"] = data.get("name", path.stem)
    return merged


def load_experiment(
    name_or_path: str | Path,
    sets: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Experiment:
    raw = load_raw(name_or_path)
    if extra:
        raw = deep_merge(raw, extra)
    overrides = parse_sets(sets)
    raw = deep_merge(raw, overrides)
    src = str(name_or_path) + (f" with --set {' '.join(sets)}" if sets else "")
    return validate(Experiment, raw, src)


def experiment_from_dict(data: dict[str, Any], source: str = "config") -> Experiment:
    return validate(Experiment, data, source)
