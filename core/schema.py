"""The experiment schema: pydantic models of one fully resolved training configuration.

A leaf module: registries, loaders and strategies import it, never the other way round. Fields
whose values are registry names (`data.source`, `model.head`, `augment.strength`, ...) are plain
strings here; `core.config.validate` checks them against their registries, so a new data source,
head or policy is one registration, never an edit of this file.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.dicts import flatten


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OpRanges(Section):
    """Per-op ranges of an augmentation policy (Keras preprocessing-layer factors)."""

    rotation: float = Field(0.0, ge=0, le=1, description="fraction of a full turn")
    shear: float = Field(0.0, ge=0, le=1)
    zoom: float = Field(0.0, ge=0, lt=1)
    translation: float = Field(0.0, ge=0, lt=1)
    horizontal_flip: bool = False
    brightness: float = Field(0.0, ge=0, le=1)
    contrast: float = Field(0.0, ge=0, le=1)


class DataConfig(Section):
    source: str = Field("digits", description="a registered data source (core/data)")
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
    # The settings of this section's module:function plugins (core/plugins.py), validated by
    # the plugin's own Options model; each is an axis (`vary: {data.options.NAME: [...]}`).
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% to train")
        if self.source == "folder" and not self.path:
            raise ValueError("data.path is required when data.source is 'folder'")
        return self


class AugmentConfig(Section):
    strength: str = Field("none", description="a registered augmentation policy")
    ops: OpRanges = Field(default_factory=OpRanges)
    # The settings of this section's module:function plugins (core/plugins.py), validated by
    # the plugin's own Options model; each is an axis (`vary: {augment.options.NAME: [...]}`).
    options: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(Section):
    backbone: str = "cnn"
    # none | imagenet | pretrain:<experiment> (ablab pretrains it once) | an MLflow model URI
    weights: str = "none"
    # With pretrained weights: which backbone weights train (see README, "Transfer learning").
    finetune: str = "full"
    bn_trainable: bool = False
    head_epochs: int = Field(0, ge=0, description="two-phase: epochs with the backbone frozen")
    finetune_lr_factor: float = Field(0.1, gt=0, le=1, description="phase-2 lr multiplier")
    depth: int = Field(3, ge=1, le=8)
    width: int = Field(32, ge=1, le=1024)
    activation: str = "relu"
    batchnorm: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)
    head: str = "gap"
    head_units: int = Field(64, ge=1)
    # The settings of this section's module:function plugins (core/plugins.py), validated by
    # the plugin's own Options model; each is an axis (`vary: {model.options.NAME: [...]}`).
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def pretrained(self) -> bool:
        return self.weights != "none"


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, le=10000)
    batch_size: int = Field(32, ge=1, le=65536)
    lr: float = Field(1e-3, gt=0, le=1e6)
    optimizer: str = "adam"
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    lr_schedule: str = "constant"
    early_stopping_patience: int = Field(0, ge=0, description="0 disables early stopping")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weight: Literal["none", "balanced"] = "none"
    deterministic: Literal["strict", "fast"] = "strict"
    mixed_precision: bool = False
    # Seeds trained together as towers of one model (core/pack.py); auto: by model size and
    # device. Part of a trial's identity: packing changes the random streams.
    pack: int | Literal["auto"] = Field(1, description="seeds per packed model, or auto")
    # keras: ablab's model.fit; module:function: the user's own loop (core/plugins.py).
    fit: str = "keras"
    # The settings of this section's module:function plugins (core/plugins.py), validated by
    # the plugin's own Options model; each is an axis (`vary: {train.options.NAME: [...]}`).
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("pack")
    @classmethod
    def _pack(cls, v):
        if isinstance(v, int) and not 1 <= v <= 256:
            raise ValueError(f"pack must be between 1 and 256 (got {v}), or auto")
        return v


class EvalConfig(Section):
    tta: int = Field(0, ge=0, le=64)
    log_model: bool = False


class Experiment(Section):
    name: str = "experiment"
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _phases(self) -> Experiment:
        if self.model.head_epochs >= self.train.epochs:
            raise ValueError("model.head_epochs must be fewer than train.epochs")
        if self.train.fit != "keras" and self.model.head_epochs:
            raise ValueError(f"train.fit={self.train.fit}: a loop of your own trains in one "
                             "phase; set model.head_epochs: 0")
        return self

    def flat(self) -> dict[str, Any]:
        """Every resolved field under its dotted name (MLflow params)."""
        return flatten(self.model_dump(mode="json"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


OPTION_SECTIONS = ("data", "augment", "model", "train")


def option_path(path: str) -> bool:
    """`model.options.width`: a plugin's option, an axis of its own."""
    parts = path.split(".")
    return len(parts) >= 3 and parts[0] in OPTION_SECTIONS and parts[1] == "options"


def all_paths(model: type[BaseModel] = Experiment, prefix: str = "") -> list[str]:
    """Every dotted field path of a schema model."""
    paths = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            paths.extend(all_paths(ann, f"{prefix}{name}."))
        else:
            paths.append(f"{prefix}{name}")
    return paths


def field_info(path: str, model: type[BaseModel] = Experiment):
    """The pydantic FieldInfo of a dotted path (KeyError if there is none)."""
    parts = path.split(".")
    for p in parts[:-1]:
        sub = model.model_fields[p].annotation
        assert isinstance(sub, type) and issubclass(sub, BaseModel), path
        model = sub
    return model.model_fields[parts[-1]]


def default_of(path: str) -> Any:
    value: Any = Experiment()
    for p in path.split("."):
        value = getattr(value, p)
    return value
