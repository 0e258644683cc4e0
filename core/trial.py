"""The one Trial type: one (config, seed) training = exactly one MLflow run.

Its identity (`hash`) is computed once, when a study is expanded or a search samples it, and
travels with it through the queue to the worker, which never recomputes it. Fields that do not
change results (name, description, whether the model file is kept) are left out of the hash,
so a renamed experiment or a study resumed on another machine recognises its finished trials.
A `pretrain:<experiment>` backbone counts by its source's hash (taken when the study is
expanded) and reaches the worker as a resolved MLflow model URI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from core.config import experiment_from_dict
from core.schema import Experiment

NON_RESULT_FIELDS = {"name", "description", "eval.log_model"}
PRETRAIN_PREFIX = "pretrain:"


def source_name(weights: str) -> str | None:
    """`pretrain:digits_0_4_pretrain` -> 'digits_0_4_pretrain'; other weights -> None."""
    return weights[len(PRETRAIN_PREFIX):] if weights.startswith(PRETRAIN_PREFIX) else None


def trial_hash(exp: Experiment, seed: int, source_hash: str | None = None) -> str:
    """Identity of a (config, seed). A `pretrain:` backbone needs its source's hash."""
    cfg = {k: v for k, v in exp.flat().items() if k not in NON_RESULT_FIELDS}
    if source_name(exp.model.weights):
        if not source_hash:
            raise ValueError(f"model.weights={exp.model.weights}: the trial hash needs the "
                             "pretraining source's hash (core.pretrain.source)")
        cfg["model.weights"] += "#" + source_hash
    blob = json.dumps({"config": cfg, "seed": int(seed)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class TrialAttrs(TypedDict, total=False):
    """What a queued trial carries to a worker anywhere (Optuna trial user attrs; JSON)."""

    key: str  # the trial hash, or a search ticket: lost work is retried by key
    trial_hash: str
    seed: int
    study: str
    variant: str
    parent_run_id: str | None
    weights_uri: str | None
    tags: dict[str, str]
    config: str  # the resolved Experiment, as JSON
    pack_key: str  # equal for trials that differ only in their seed
    # set while it runs and when it ends (core.lifecycle)
    checkpoint: str  # a preempted trial's checkpoint, `runs:/<run id>/checkpoint`
    pack_partners: list[int]  # a preempted pack's queue trials: resumed together
    worker: str
    outcome: str
    mlflow_run_id: str
    error: str


def checkpoint_run_id(attrs: Mapping[str, Any]) -> str | None:
    """The run whose artifacts hold a queued trial's checkpoint (a pack's: its first run)."""
    uri = attrs.get("checkpoint")
    return uri.split("/")[1] if isinstance(uri, str) and uri.startswith("runs:/") else None


def resume_run_id(attrs: Mapping[str, Any]) -> str | None:
    """The run a queued trial continues: its own preempted run, when it has a checkpoint."""
    return (attrs.get("mlflow_run_id") or checkpoint_run_id(attrs)) \
        if checkpoint_run_id(attrs) else None


@dataclass(frozen=True)
class Trial:
    exp: Experiment
    seed: int
    hash: str
    study: str  # the MLflow experiment its run goes to
    variant: str = ""  # readable: `augment=extreme`, `trial 3`
    parent_run_id: str | None = None
    weights_uri: str | None = None  # the resolved model URI of a `pretrain:` backbone
    tags: Mapping[str, str] = field(default_factory=dict)  # extra run tags (role, optuna, ...)
    # a preempted attempt's run, continued from the checkpoint in `checkpoint_run_id`'s
    # artifacts (its own run; a pack's first run) (core.checkpoint)
    resume_run_id: str | None = None
    checkpoint_run_id: str | None = None

    @classmethod
    def new(cls, exp: Experiment, seed: int, study: str, *, source_hash: str | None = None,
            **kw: Any) -> Trial:
        return cls(exp, int(seed), trial_hash(exp, seed, source_hash), study, **kw)

    def replace(self, **changes: Any) -> Trial:
        return dataclasses.replace(self, **changes)

    @property
    def run_name(self) -> str:
        return f"{self.variant or self.exp.name} seed={self.seed}"

    def to_attrs(self) -> TrialAttrs:
        """Everything a worker anywhere needs, as JSON values (Optuna trial user attrs).
        `pack_key` is equal for trials that differ only in their seed: they may be trained
        together (`train.pack`)."""
        config = json.dumps(self.exp.model_dump(mode="json"))
        blob = json.dumps([config, self.study, self.variant, self.parent_run_id,
                           self.weights_uri])
        return {"key": self.hash, "trial_hash": self.hash, "seed": self.seed, "study": self.study,
                "variant": self.variant, "parent_run_id": self.parent_run_id,
                "weights_uri": self.weights_uri, "tags": dict(self.tags), "config": config,
                "pack_key": hashlib.sha256(blob.encode()).hexdigest()[:16]}

    @classmethod
    def from_attrs(cls, a: Mapping[str, Any]) -> Trial:
        exp = experiment_from_dict(json.loads(a["config"]), f"trial {a['trial_hash']}")
        return cls(exp, int(a["seed"]), a["trial_hash"], a["study"], a.get("variant", ""),
                   a.get("parent_run_id"), a.get("weights_uri"), dict(a.get("tags") or {}),
                   resume_run_id(a), checkpoint_run_id(a))
