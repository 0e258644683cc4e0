"""Offline transfer learning: `model.weights: pretrain:<experiment>` names a source task.

The source is trained once, in a run of its own (experiment `ablab-pretrain`, role
`pretrain`) keyed by the hash of its config, and its backbone logged as an MLflow
model; every later trial, study or worker that names the same source reuses it. Sources are
resolved (read and hashed) once per study, before any trial is queued, and pretrained before
any trial starts: a trial only ever receives the model URI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import lifecycle, tracking
from core.config import load_experiment
from core.errors import ConfigError
from core.lifecycle import Role
from core.schema import Experiment
from core.trial import Trial, source_name, trial_hash

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "ablab-pretrain"
SEED = 0


@dataclass(frozen=True)
class Source:
    name: str
    exp: Experiment
    hash: str


def source(name: str) -> Source:
    exp = load_experiment(name)
    if exp.model.pretrained:
        raise ConfigError(f"pretrain:{name}: a pretraining source cannot itself use "
                          f"model.weights={exp.model.weights}")
    return Source(name, exp, trial_hash(exp, SEED))


def sources_of(exps: Iterable[Experiment]) -> dict[str, Source]:
    """Each `pretrain:` source the experiments name, read once."""
    names = dict.fromkeys(n for n in (source_name(e.model.weights) for e in exps) if n)
    return {n: source(n) for n in names}


def find(c: MlflowClient, source_hash: str) -> str | None:
    """The model URI of a finished pretraining with this hash, if any."""
    e = c.get_experiment_by_name(EXPERIMENT)
    if e is None:
        return None
    runs = tracking.search(
        c, e.experiment_id,
        f"{lifecycle.role_filter(Role.PRETRAIN)} and tags.`{lifecycle.PRETRAIN_HASH}` = "
        f"'{source_hash}' and attributes.status = 'FINISHED'", max_results=1)
    return runs[0].data.tags.get(lifecycle.MODEL_URI) if runs else None


def ensure(src: Source, c: MlflowClient, cache: dict | None = None) -> str:
    """The source's model URI: found in the store, or trained now in a run of its own."""
    from core.runner import run_trial

    uri = find(c, src.hash)
    if uri:
        return uri
    trial = Trial(src.exp, SEED, src.hash, EXPERIMENT, variant=f"pretrain {src.name}",
                  tags={lifecycle.ROLE: Role.PRETRAIN.value, lifecycle.PRETRAIN_HASH: src.hash,
                        lifecycle.PRETRAIN_SOURCE: src.name})
    res = run_trial(trial, c=c, cache=cache, keep_backbone=True)
    if not res.outcome.trained:
        raise ConfigError(f"pretraining {src.name} failed: {res.error or res.outcome} "
                          f"(run {res.run_id})")
    return c.get_run(res.run_id).data.tags[lifecycle.MODEL_URI]
