"""The axes registry: every field an ablation or search may vary, with an alias and a meaning.

Type, allowed values and default are read off the Experiment model, so adding an axis is one
`Axis(...)` line here (plus its field in `core/config.py` if it is new).
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

from core.config import ConfigError, Experiment


@dataclass(frozen=True)
class Axis:
    path: str
    alias: str
    meaning: str
    suggested: tuple[Any, ...] = ()  # typical values for open-ended numeric axes

    def field(self):
        model: type[BaseModel] = Experiment
        parts = self.path.split(".")
        for p in parts[:-1]:
            model = model.model_fields[p].annotation
        return model.model_fields[parts[-1]]

    @property
    def default(self) -> Any:
        section = Experiment()
        for p in self.path.split("."):
            section = getattr(section, p)
        return section

    @property
    def type_name(self) -> str:
        ann = self.field().annotation
        if typing.get_origin(ann) is typing.Literal:
            return "choice"
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        base = args[0] if args else ann
        return getattr(base, "__name__", str(base))

    @property
    def allowed(self) -> str:
        f = self.field()
        ann = f.annotation
        if typing.get_origin(ann) is typing.Literal:
            return ", ".join(str(a).lower() if isinstance(a, bool) else str(a)
                             for a in typing.get_args(ann))
        if ann is bool:
            return "true, false"
        lo = hi = None
        lo_op, hi_op = ">=", "<="
        for m in f.metadata:
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


AXES: tuple[Axis, ...] = (
    Axis("augment.strength", "augment", "augmentation policy: Keras preprocessing layers inside "
         "the model (rotation, shear, zoom, translation, flip, brightness, contrast)"),
    Axis("augment.ops.rotation", "rotation", "custom policy: max rotation, fraction of a turn"),
    Axis("augment.ops.zoom", "zoom", "custom policy: max zoom factor"),
    Axis("augment.ops.shear", "shear", "custom policy: max shear factor"),
    Axis("augment.ops.translation", "translation", "custom policy: max shift, fraction of size"),
    Axis("augment.ops.horizontal_flip", "flip", "custom policy: random horizontal flips"),
    Axis("augment.ops.brightness", "brightness", "custom policy: max brightness change"),
    Axis("augment.ops.contrast", "contrast", "custom policy: max contrast change"),
    Axis("model.bn_trainable", "bn_trainable",
         "transfer learning: pretrained backbone's BatchNorm trains (batch statistics, "
         "gamma/beta update) or stays frozen in inference mode"),
    Axis("model.finetune", "finetune", "transfer learning: which backbone weights train "
         "(head_only, bn_only, full)"),
    Axis("model.weights", "weights", "backbone weights: none, imagenet, pretrain:<experiment> "
         "(pretrained once, reused) or an MLflow model URI",
         ("none", "imagenet", "pretrain:digits_0_4_pretrain")),
    Axis("model.head_epochs", "head_epochs", "two-phase fine-tuning: epochs with the backbone "
         "frozen before it unfreezes at a lower lr; 0 = one phase", (0, 2, 3)),
    Axis("model.backbone", "backbone", "feature extractor: the project's CNN or a "
         "keras.applications network"),
    Axis("model.head", "head", "GlobalAveragePooling vs Flatten+Dense vs GAP+Dense classifier"),
    Axis("model.depth", "depth", "number of conv blocks in the CNN backbone", (2, 3, 4)),
    Axis("model.width", "width", "filters in the first conv block (doubles per block)",
         (16, 32, 64)),
    Axis("model.activation", "activation", "nonlinearity (the dying-ReLU question)"),
    Axis("model.batchnorm", "batchnorm", "BatchNormalization after each conv in the CNN"),
    Axis("model.dropout", "dropout", "dropout rate after each block and before the classifier",
         (0.0, 0.25, 0.5)),
    Axis("train.lr", "lr", "learning rate", (1e-4, 1e-3, 1e-2)),
    Axis("train.batch_size", "batch_size", "examples per gradient step", (16, 32, 64, 128)),
    Axis("train.optimizer", "optimizer", "optimizer"),
    Axis("train.lr_schedule", "lr_schedule", "learning-rate schedule"),
    Axis("train.epochs", "epochs", "maximum training epochs", (5, 10, 30)),
    Axis("train.early_stopping_patience", "patience",
         "epochs without val_loss improvement before stopping (best weights restored); 0 = off",
         (0, 3, 5)),
    Axis("train.label_smoothing", "label_smoothing", "label smoothing of the cross-entropy",
         (0.0, 0.1, 0.2)),
    Axis("train.weight_decay", "weight_decay", "decoupled weight decay (adamw)", (0, 1e-4)),
    Axis("train.deterministic", "deterministic",
         "strict: op determinism, no XLA; fast: seeded, XLA allowed (GPU throughput)"),
    Axis("train.mixed_precision", "mixed_precision", "float16/bfloat16 compute, float32 weights"),
    Axis("data.image_size", "image_size", "images are resized to this square size",
         (8, 16, 32)),
    Axis("data.train_fraction", "train_fraction", "fraction of the training split used "
         "(stratified): mimics small data sets", (0.1, 0.5, 1.0)),
    Axis("data.source", "data", "data set: digits, synthetic, folder, keras:mnist|"
         "fashion_mnist|cifar10"),
    Axis("eval.tta", "tta", "test-time augmentation: 0 = off, N = average of N augmented views",
         (0, 4, 8)),
    Axis("seed", "seed", "one seed drives init, shuffling, augmentation and dropout", (0, 1, 2)),
)

SEED_AXIS = "seed"
# Axes that only mean something for a pretrained backbone (model.weights != none).
TRANSFER_ONLY = ("model.bn_trainable", "model.finetune", "model.head_epochs",
                 "model.finetune_lr_factor")


def registered() -> tuple[Axis, ...]:
    """Axes whose field exists in this build (transfer-learning axes arrive with their issue)."""
    out = []
    for a in AXES:
        if a.path == SEED_AXIS:
            out.append(a)
            continue
        try:
            a.field()
        except KeyError:
            continue
        out.append(a)
    return tuple(out)


def by_alias() -> dict[str, Axis]:
    return {a.alias: a for a in registered()}


def resolve_path(key: str) -> str:
    """Alias or dotted path -> dotted path; unknown names pass through for the validator."""
    if key in by_alias():
        return by_alias()[key].path
    return key


def get_axis(key: str) -> Axis:
    axes = {a.path: a for a in registered()} | by_alias()
    if key in axes:
        return axes[key]
    hint = difflib.get_close_matches(key, list(axes), n=1)
    raise ConfigError(
        f"Unknown axis {key!r}" + (f"; did you mean {hint[0]}?" if hint else "")
        + " (`ablab axes` lists them)"
    )


def describe(axis: Axis) -> dict[str, str]:
    if axis.path == SEED_AXIS:
        return {"path": "seed", "alias": "seed", "type": "int", "values": "any int",
                "default": "0", "meaning": axis.meaning}
    d = axis.default
    default = str(d).lower() if isinstance(d, bool) else str(d)
    return {"path": axis.path, "alias": axis.alias, "type": axis.type_name,
            "values": axis.allowed, "default": default, "meaning": axis.meaning}
