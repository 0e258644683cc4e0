"""The axes registry: every field an ablation or search may vary, with an alias, a meaning and
the condition under which it acts.

Type, allowed values and default are read off the schema (`core/schema.py`) and, for named
choices, off the field's registry, so adding an axis is one `Axis(...)` line here. An axis
with `when=` only acts in some configs (e.g. `augment.ops.rotation` only under the `custom`
policy): setting or varying it where it cannot act is a config error naming what it needs, so
no study ever trains identical models under different names.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from annotated_types import Ge, Gt, Le, Lt

from core import plugins
from core.augment import POLICIES, is_plugin, resolve
from core.data import SOURCES
from core.dicts import get_dotted
from core.errors import ConfigError
from core.models import ACTIVATIONS, BACKBONES, FINETUNE, HEADS
from core.optim import OPTIMIZERS, SCHEDULES
from core.registry import Registry
from core.schema import OPTION_SECTIONS, Experiment, OpRanges, default_of, field_info
from core.train import FITS

# Fields whose values are registry names: the registry is the single source of those names.
NAMED: dict[str, Registry] = {r.field: r for r in (
    SOURCES, POLICIES, BACKBONES, HEADS, FINETUNE, ACTIVATIONS, OPTIMIZERS, SCHEDULES, FITS)}

PRETRAIN_EXAMPLE = "pretrain:digits_0_4_pretrain"


def _names(reg: Registry, pred: Callable[[dict], bool]) -> str:
    return "|".join(n for n in reg.names() if pred(reg.meta(n)))


@dataclass(frozen=True)
class When:
    """A condition on the resolved config under which an axis acts. `needs` says it in words,
    `shows` are the fields to quote back, `context` are overrides that make it true."""

    needs: str
    test: Callable[[Experiment], bool]
    shows: tuple[str, ...]
    context: dict[str, Any]


def _built_cnn(e: Experiment) -> bool:
    return bool(BACKBONES.meta(e.model.backbone).get("configurable")) and not e.model.pretrained


def _dense_head(e: Experiment) -> bool:
    return bool(HEADS.meta(e.model.head).get("dense"))


CUSTOM = When(f"augment.strength={_names(POLICIES, lambda m: bool(m.get('uses_ops')))}",
              lambda e: bool(POLICIES.meta(e.augment.strength).get("uses_ops")),
              ("augment.strength",), {"augment.strength": "custom"})
PRETRAINED = When("pretrained weights (model.weights=imagenet, pretrain:<experiment> or an "
                  "MLflow model URI); with weights none every layer trains",
                  lambda e: e.model.pretrained, ("model.weights",),
                  {"model.weights": PRETRAIN_EXAMPLE})
BN_CHOICE = When(f"pretrained weights and model.finetune="
                 f"{_names(FINETUNE, lambda m: bool(m.get('bn_choice')))} (the other policies fix "
                 "what BatchNorm does)",
                 lambda e: e.model.pretrained and FINETUNE.meta(e.model.finetune)["bn_choice"],
                 ("model.weights", "model.finetune"),
                 {"model.weights": PRETRAIN_EXAMPLE, "model.finetune": "full"})
TWO_PHASE = When("pretrained weights and model.head_epochs > 0",
                 lambda e: e.model.pretrained and e.model.head_epochs > 0,
                 ("model.weights", "model.head_epochs"),
                 {"model.weights": PRETRAIN_EXAMPLE, "model.head_epochs": 1,
                  "train.epochs": 2})
CONFIGURABLE = _names(BACKBONES, lambda m: bool(m.get("configurable")))
BUILT_CNN = When(f"a backbone built from the config: model.backbone={CONFIGURABLE} with "
                 "model.weights=none "
                 "(a pretrained backbone keeps its source's architecture)",
                 _built_cnn, ("model.backbone", "model.weights"),
                 {"model.backbone": "cnn", "model.weights": "none"})
ACTIVATION = When(f"{BUILT_CNN.needs}, or a head with a Dense layer (model.head="
                  f"{_names(HEADS, lambda m: bool(m.get('dense')))})",
                  lambda e: _built_cnn(e) or _dense_head(e),
                  ("model.backbone", "model.weights", "model.head"),
                  {"model.backbone": "cnn", "model.weights": "none"})
DENSE_HEAD = When(f"a head with a Dense layer (model.head="
                  f"{_names(HEADS, lambda m: bool(m.get('dense')))})",
                  _dense_head, ("model.head",), {"model.head": "gap_dense"})


def _uses(field: str) -> When:
    return When(f"train.optimizer={_names(OPTIMIZERS, lambda m: field in m['uses'])}",
                lambda e: field in OPTIMIZERS.meta(e.train.optimizer).get("uses", ()),
                ("train.optimizer",),
                {"train.optimizer": next(n for n in OPTIMIZERS.names()
                                         if field in OPTIMIZERS.meta(n)["uses"])})


AUGMENTED = When("augmentation to average over (augment.strength other than none)",
                 lambda e: is_plugin(e.augment) or resolve(e.augment) != OpRanges(),
                 ("augment.strength",),
                 {"augment.strength": "moderate"})


@dataclass(frozen=True)
class Axis:
    path: str
    alias: str
    meaning: str
    suggested: tuple[Any, ...] = ()  # typical values for open-ended numeric axes
    when: When | None = None

    def field(self):
        return field_info(self.path)

    @property
    def registry(self) -> Registry | None:
        return NAMED.get(self.path)

    @property
    def default(self) -> Any:
        return default_of(self.path)

    @property
    def type_name(self) -> str:
        ann = self.field().annotation
        if self.registry is not None or typing.get_origin(ann) is typing.Literal:
            return "choice"
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        base = args[0] if args else ann
        return getattr(base, "__name__", str(base))

    def choices(self) -> list[Any]:
        """The valid values of a choice or bool axis ([] for open-ended numbers)."""
        if self.registry is not None:
            return self.registry.names()
        ann = self.field().annotation
        if typing.get_origin(ann) is typing.Literal:
            return list(typing.get_args(ann))
        if ann is bool:
            return [False, True]
        return []

    @property
    def allowed(self) -> str:
        if self.choices():
            return ", ".join(str(a).lower() if isinstance(a, bool) else str(a)
                             for a in self.choices())
        lo: Any = None
        hi: Any = None
        lo_op, hi_op = ">=", "<="
        for m in self.field().metadata:
            if isinstance(m, Ge):
                lo = m.ge
            elif isinstance(m, Gt):
                lo, lo_op = m.gt, ">"
            elif isinstance(m, Le):
                hi = m.le
            elif isinstance(m, Lt):
                hi, hi_op = m.lt, "<"
        rng = " and ".join(
            s for s in (f"{lo_op} {lo}" if lo is not None else "",
                        f"{hi_op} {hi}" if hi is not None else "") if s
        )
        if self.suggested:
            rng += f" (e.g. {', '.join(map(str, self.suggested))})"
        return rng or "any"


SEED_AXIS = "seed"

AXES: tuple[Axis, ...] = (
    Axis("augment.strength", "augment", "augmentation policy: Keras preprocessing layers inside "
         "the model (rotation, shear, zoom, translation, flip, brightness, contrast)"),
    *(Axis(f"augment.ops.{op}", alias, f"custom policy: {text}", suggested, CUSTOM)
      for op, (alias, text, suggested) in {
          "rotation": ("rotation", "max rotation, fraction of a turn", (0.0, 0.05, 0.2)),
          "zoom": ("zoom", "max zoom factor", (0.0, 0.1, 0.3)),
          "shear": ("shear", "max shear factor", (0.0, 0.1, 0.3)),
          "translation": ("translation", "max shift, fraction of size", (0.0, 0.1, 0.2)),
          "horizontal_flip": ("flip", "random horizontal flips", ()),
          "brightness": ("brightness", "max brightness change", (0.0, 0.1, 0.3)),
          "contrast": ("contrast", "max contrast change", (0.0, 0.1, 0.3)),
      }.items()),
    Axis("model.bn_trainable", "bn_trainable",
         "transfer learning: pretrained backbone's BatchNorm trains (batch statistics, "
         "gamma/beta update) or stays frozen in inference mode", when=BN_CHOICE),
    Axis("model.finetune", "finetune", "transfer learning: which backbone weights train",
         when=PRETRAINED),
    Axis("model.weights", "weights", "backbone weights: none, imagenet, pretrain:<experiment> "
         "(pretrained once, reused) or an MLflow model URI",
         ("none", "imagenet", PRETRAIN_EXAMPLE)),
    Axis("model.head_epochs", "head_epochs", "two-phase fine-tuning: epochs with the backbone "
         "frozen before it unfreezes at a lower lr; 0 = one phase", (0, 2, 3), PRETRAINED),
    Axis("model.finetune_lr_factor", "finetune_lr_factor", "two-phase fine-tuning: phase-2 lr "
         "= train.lr x this", (0.01, 0.1, 1.0), TWO_PHASE),
    Axis("model.backbone", "backbone", "feature extractor: the project's CNN or a "
         "keras.applications network", ("cnn", "mobilenetv3small")),
    Axis("model.head", "head", "GlobalAveragePooling vs Flatten+Dense vs GAP+Dense classifier"),
    Axis("model.head_units", "head_units", "units of the head's hidden Dense layer",
         (32, 64, 128), DENSE_HEAD),
    Axis("model.depth", "depth", "number of conv blocks in the CNN backbone", (2, 3, 4),
         BUILT_CNN),
    Axis("model.width", "width", "filters in the first conv block (doubles per block)",
         (16, 32, 64), BUILT_CNN),
    Axis("model.activation", "activation", "nonlinearity (the dying-ReLU question)",
         when=ACTIVATION),
    Axis("model.batchnorm", "batchnorm", "BatchNormalization after each conv in the CNN",
         when=BUILT_CNN),
    Axis("model.dropout", "dropout", "dropout rate after each block and before the classifier",
         (0.0, 0.25, 0.5)),
    Axis("train.lr", "lr", "learning rate", (1e-4, 1e-3, 1e-2)),
    Axis("train.batch_size", "batch_size", "examples per gradient step", (16, 32, 64, 128)),
    Axis("train.optimizer", "optimizer", "optimizer"),
    Axis("train.momentum", "momentum", "SGD momentum", (0.0, 0.9, 0.99), _uses("train.momentum")),
    Axis("train.weight_decay", "weight_decay", "decoupled weight decay", (0, 1e-4, 1e-2),
         _uses("train.weight_decay")),
    Axis("train.lr_schedule", "lr_schedule", "learning-rate schedule"),
    Axis("train.fit", "fit", "the training loop: keras (model.fit), or module:function, your "
         "own loop with ablab's callbacks"),
    Axis("train.epochs", "epochs", "maximum training epochs", (5, 10, 30)),
    Axis("train.early_stopping_patience", "patience",
         "epochs without val_loss improvement before stopping (best weights restored); 0 = off",
         (0, 3, 5)),
    Axis("train.label_smoothing", "label_smoothing", "label smoothing of the cross-entropy",
         (0.0, 0.1, 0.2)),
    Axis("train.class_weight", "class_weight", "balanced: each class's examples weigh "
         "n / (k x its count) in the loss, for imbalanced data sets"),
    Axis("train.deterministic", "deterministic",
         "strict: op determinism, no XLA; fast: seeded, XLA allowed (GPU throughput)"),
    Axis("train.mixed_precision", "mixed_precision", "float16/bfloat16 compute, float32 weights"),
    Axis("train.pack", "pack", "seeds trained together as towers of one model (a worker "
         "claims that many of a variant's queued seeds); auto: by model size and device",
         (1, 5, 10, "auto")),
    Axis("data.image_size", "image_size", "images are resized to this square size",
         (8, 16, 32)),
    Axis("data.train_fraction", "train_fraction", "fraction of the training split used "
         "(stratified): mimics small data sets", (0.1, 0.5, 1.0)),
    Axis("data.source", "data", "data set", ("digits", "synthetic")),
    Axis("eval.tta", "tta", "test-time augmentation: 0 = off, N = average of N augmented views",
         (0, 4, 8), AUGMENTED),
)

SEED_MEANING = ("one seed drives init, shuffling, augmentation and dropout. Seeds are the "
                "replicates of every variant: an ablation lists them under `seeds:` (or "
                "--seeds N), `ablab train` takes --seed; not a vary:/grid:/space: axis")


def registered() -> tuple[Axis, ...]:
    return AXES


def by_alias() -> dict[str, Axis]:
    return {a.alias: a for a in AXES}


def by_path() -> dict[str, Axis]:
    return {a.path: a for a in AXES}


def resolve_path(key: str) -> str:
    """Alias or dotted path -> dotted path; unknown names pass through for the validator."""
    axis = by_alias().get(key)
    return axis.path if axis else key


def get_axis(key: str) -> Axis:
    axes = by_path() | by_alias()
    if key in axes:
        return axes[key]
    hint = difflib.get_close_matches(key, list(axes), n=1)
    raise ConfigError(
        f"Unknown axis {key!r}" + (f"; did you mean {hint[0]}?" if hint else "")
        + " (`ablab axes` lists them)"
    )


def describe(axis: Axis) -> dict[str, str]:
    d = axis.default
    default = str(d).lower() if isinstance(d, bool) else str(d)
    return {"path": axis.path, "alias": axis.alias, "type": axis.type_name,
            "values": axis.allowed, "default": default,
            "meaning": axis.meaning + (f" [acts with {axis.when.needs}]" if axis.when else "")}


def describe_options(exp: Experiment) -> list[dict[str, str]]:
    """The options of the plugins `exp` names, as axes (`model.options.width`)."""
    rows = []
    for section in OPTION_SECTIONS:
        for name, info, path in plugins.option_fields(section_plugins(exp, section)):
            ann = info.annotation
            value = getattr(exp, section).options.get(name, info.get_default(
                call_default_factory=True))
            rows.append({"path": f"{section}.options.{name}", "alias": "",
                         "type": getattr(ann, "__name__", str(ann)), "values": "",
                         "default": _fmt(value),
                         "meaning": f"{info.description or 'option'} [{path}]"})
    return rows


def describe_seed() -> dict[str, str]:
    return {"path": SEED_AXIS, "alias": SEED_AXIS, "type": "int", "values": "any int",
            "default": "0", "meaning": SEED_MEANING}


# ----------------------------------------------------------------------------- checks


def _fmt(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def plugin_fields(exp: Experiment) -> dict[str, str]:
    """{field: module:function} of every plugin `exp` names."""
    return {field: name for field, reg in NAMED.items()
            if plugins.is_path(name := get_dotted(exp, field)) and name not in reg}


def section_plugins(exp: Experiment, section: str) -> dict[str, Callable]:
    """The module:function plugins named in one section: {path: function}."""
    return {name: NAMED[field].plugin(name) for field, name in plugin_fields(exp).items()
            if field.startswith(section + ".")}


def check_names(exp: Experiment) -> None:
    """Registry-backed fields hold registered names or importable plugins with the right
    signature; plugin options validate; backbones get what they need."""
    for path, reg in NAMED.items():
        reg.check(get_dotted(exp, path))
    for section in OPTION_SECTIONS:
        plugins.check_options(section, getattr(exp, section).options,
                              section_plugins(exp, section))
    meta = BACKBONES.meta(exp.model.backbone)
    if meta.get("channels") and exp.data.channels != meta["channels"]:
        raise ConfigError(f"data.channels: {exp.model.backbone} needs {meta['channels']} "
                          f"channels (got {exp.data.channels})")
    if exp.model.weights == "imagenet" and not meta.get("imagenet"):
        with_weights = _names(BACKBONES, lambda m: bool(m.get("imagenet")))
        raise ConfigError(f"model.weights=imagenet: model.backbone={exp.model.backbone} has no "
                          f"ImageNet weights (those that do: {with_weights.replace('|', ', ')})")


def inactive(exp: Experiment, paths: Iterable[str]) -> list[str]:
    """One message per explicitly set axis that cannot act in `exp` (values equal to the
    schema default are fine: they are what an unset field would be)."""
    problems = []
    axes = by_path()
    for path in dict.fromkeys(paths):
        axis = axes.get(path)
        if axis is None or axis.when is None or axis.when.test(exp):
            continue
        value = get_dotted(exp, path)
        if value == axis.default:
            continue
        here = ", ".join(f"{p}={_fmt(get_dotted(exp, p))}" for p in axis.when.shows)
        problems.append(f"{path}={_fmt(value)} has no effect here: it acts only with "
                        f"{axis.when.needs}; this config has {here}")
    return problems


def check_acts(exp: Experiment, paths: Iterable[str]) -> None:
    problems = inactive(exp, paths)
    if problems:
        raise ConfigError("\n".join(problems))
