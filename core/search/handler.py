"""The worker's side of a search: the sampler fills in a claimed ticket, the trial trains (one
MLflow run, or one per seed nested under the trial's run), and Optuna is told the result through
`core.lifecycle.finish`, so its sampler sees it. A ticket whose result reached MLflow while its
worker was lost is told from that run instead of training again."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from core import lifecycle, tracking
from core.errors import ConfigError
from core.lifecycle import Outcome, Role
from core.search.samplers import make_pruner, make_sampler
from core.search.spec import Search, checked_paths, experiment_for
from core.study import record
from core.study.queue import Job, Queue, StudyMeta
from core.study.spec import Base
from core.study.worker import claimed, job_tags
from core.trial import Trial, resume_run_id, source_name

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from core.runner import TrialResult

PER_EPOCH = ("loss", "accuracy", "val_loss", "val_accuracy")


def worker_index() -> int:
    """Pool workers get their slot; workers elsewhere a number from their id."""
    import os

    from core.study.queue import worker_id

    env = os.environ.get("ABLAB_WORKER_INDEX")
    return int(env) if env and env.isdigit() else zlib.crc32(worker_id().encode()) % 10_000


def pruning_callback(trial: optuna.Trial, key: str):
    """Reports the per-epoch value to Optuna; when the pruner says so, stops training."""
    import keras

    class Prune(keras.callbacks.Callback):
        """`outcome`: PRUNED once the pruner stopped training (the runner ends the run so).
        A resumed trial reports only the epochs it trains: each value reaches Optuna once."""

        outcome: Outcome | None = None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(key)
            if value is None or not math.isfinite(value):
                return
            trial.report(float(value), epoch)
            if trial.should_prune():
                self.outcome = Outcome.PRUNED
                self.model.stop_training = True

    return Prune()


def trial_value(metric: str, res: TrialResult) -> float | None:
    if metric in res.metrics:
        return res.metrics[metric]
    hist = res.history.get(metric)
    return hist[-1] if hist else None


class SearchHandler:
    def __init__(self, queue: Queue, c: MlflowClient, meta: StudyMeta,
                 train: Callable[..., TrialResult] | None = None):
        self.s = Search.model_validate(meta["spec"])
        self.base = Base(meta["raw"], tuple(meta["explicit"]), meta["source"])
        self.meta, self.c, self.queue = meta, c, queue
        if train is None:
            from core.runner import run_trial

            train = run_trial
        self.train: Callable[..., TrialResult] = train
        epochs = self.base.experiment().train.epochs
        # The sampler's stream also depends on how far the study is, so a worker restarted
        # (or a search continued) does not draw the same startup points again.
        offset = worker_index() + len(queue.trials())
        self.study = optuna.load_study(study_name=queue.name, storage=queue.storage,
                                       sampler=make_sampler(self.s, offset),
                                       pruner=make_pruner(self.s, epochs))
        self.checked = checked_paths(self.s)
        self.cache: dict = {}
        s = self.s
        self.prune_key = s.metric if s.metric in PER_EPOCH else (
            "val_loss" if s.direction == "minimize" else "val_accuracy")

    def _finish(self, trial: optuna.Trial, job: Job, outcome: Outcome,
                value: float | list[float] | None = None, error: str | None = None) -> Outcome:
        return self.queue.finish(job, outcome, value, error=error, tell=self.study.tell,
                                 trial=trial)

    def run(self, job: Job) -> Outcome:
        trial = optuna.Trial(self.study, job.trial_id)
        exp_id = tracking.get_or_create_experiment(self.c, self.s.name)
        earlier = self._ran_before(exp_id, job)
        if earlier is not None:  # its result reached MLflow, but its worker stopped first
            self._finish(trial, job, *earlier)
            return Outcome.SKIPPED
        record.close_lost_attempts(self.c, exp_id, {lifecycle.TICKET: job.attrs["key"]},
                                   job.number)
        with claimed(self.queue, job):
            try:
                value = self.objective(trial, job)
            except optuna.TrialPruned:
                return self._finish(trial, job, Outcome.PRUNED)
            except (RuntimeError, ConfigError) as err:
                return self._finish(trial, job, Outcome.FAILED, error=str(err))
        return self._finish(trial, job, Outcome.OK, value)

    def _ran_before(self, exp_id: str, job: Job
                    ) -> tuple[Outcome, float | list[float] | None] | None:
        """A finished MLflow run of this ticket from a lost attempt: (outcome, value)."""
        key = record.quote(str(job.attrs.get("key", "")))
        runs = tracking.search(self.c, exp_id, f"tags.`{lifecycle.TICKET}` = '{key}' and "
                               "attributes.status = 'FINISHED' and "
                               f"tags.`{lifecycle.OPTUNA_STATE}` != 'FAIL'", max_results=10)
        for r in runs:
            if r.data.tags.get(lifecycle.OPTUNA_STATE) == TrialState.PRUNED.name:
                return Outcome.PRUNED, None
            values = [r.data.metrics.get(f"objective_{m}") for m in self.s.objective_names]
            if all(v is not None for v in values):
                return Outcome.OK, (values if self.s.multi else values[0])  # type: ignore
        return None

    def objective(self, trial: optuna.Trial, job: Job) -> float | list[float]:
        s, c = self.s, self.c
        params = {k: p.suggest(trial, k) for k, p in s.space.items()}
        exp = experiment_for(self.base, params, f"search {s.name}, trial {trial.number}",
                             self.checked)
        parent = self.meta["parent_run_id"]
        base_tags = {**job_tags(job, s.name), lifecycle.OPTUNA_STUDY: self.queue.name,
                     lifecycle.OPTUNA_PARAMS: json.dumps(params),
                     lifecycle.TICKET: job.attrs["key"]}
        exp_id = tracking.get_or_create_experiment(c, s.name)
        trial_run: str | None = None
        if s.seeds_per_trial > 1:  # one run for the trial, its seeds nested under it
            trial_run = lifecycle.create_run(c, exp_id, f"trial {trial.number}", Role.TRIAL, {
                **base_tags, lifecycle.PARENT: parent}, {**exp.flat(), **_p(params)})
            parent = trial_run
        weights_uri = self.meta["weights_uri"] if source_name(exp.model.weights) else None
        role = Role.TRIAL if trial_run is None else Role.SEED
        values: list[list[float]] = []
        runs: list[str] = []
        for i in range(s.seeds_per_trial):
            # Optuna prunes single-objective studies only: a multi-objective trial runs out
            cb = pruning_callback(trial, self.prune_key) if i == 0 and not s.multi else None
            t = Trial.new(exp, s.seed + i, s.name, source_hash=self.meta["source_hash"],
                          variant=f"trial {trial.number}", parent_run_id=parent,
                          weights_uri=weights_uri,
                          tags={**base_tags, lifecycle.ROLE: role.value},
                          # a preempted one-seed trial continues its run (core.checkpoint)
                          resume_run_id=resume_run_id(job.attrs) if trial_run is None
                          else None)
            res = self.train(t, c=c, cache=self.cache, callbacks=[cb] if cb else [])
            runs.append(res.run_id)
            if trial_run is None:
                tracking.log_params(c, res.run_id, _p(params))
            if res.status != "FINISHED":
                _mark(c, runs, trial_run, TrialState.FAIL)
                raise RuntimeError(f"trial {trial.number} failed: {res.error}")
            if res.outcome == Outcome.PRUNED:
                _mark(c, runs, trial_run, TrialState.PRUNED)
                raise optuna.TrialPruned(f"pruned at epoch {res.metrics.get('epochs_run')}")
            seed_values = [trial_value(m, res) for m in s.objective_names]
            bad = [m for m, v in zip(s.objective_names, seed_values, strict=True)
                   if v is None or not math.isfinite(v)]
            if bad:
                _mark(c, runs, trial_run, TrialState.FAIL)
                raise RuntimeError(f"trial {trial.number}: no finite {', '.join(bad)} "
                                   f"({res.outcome.value})")
            values.append([float(v) for v in seed_values if v is not None])
        means = [float(np.mean(col)) for col in zip(*values, strict=True)]
        if s.constraints:  # what the sampler's constraints_func reads (core.search.samplers)
            from core.search.samplers import CONSTRAINTS_ATTR

            res_metrics = {**res.metrics, **{m: v for m, v in zip(s.objective_names, means,
                                                                  strict=True)}}
            trial.set_user_attr(CONSTRAINTS_ATTR, [
                b.violation(float(res_metrics.get(k, float("nan"))))
                for k, b in s.constraints.items()])
        _mark(c, runs, trial_run, TrialState.COMPLETE, dict(zip(s.objective_names, means,
                                                                strict=True)))
        return means if s.multi else means[0]


def _p(params: dict[str, Any]) -> dict[str, Any]:
    return {f"optuna.{k}": v for k, v in params.items()}


def _mark(c: MlflowClient, runs: list[str], trial_run: str | None, state: TrialState,
          objectives: dict[str, float] | None = None) -> None:
    """The objectives first, then the Optuna state tags: a run tagged COMPLETE always
    carries its objectives, which is how a retried ticket finds a result its worker did not
    tell. The seed runs were ended by the runner, with their outcome; the trial's own run
    (several seeds) ends here."""
    target = trial_run if trial_run is not None else runs[0]
    if objectives:
        tracking.log_metrics(c, target, {f"objective_{m}": v for m, v in objectives.items()})
    for rid in runs + ([trial_run] if trial_run else []):
        tracking.set_tags(c, rid, {lifecycle.OPTUNA_STATE: state.name})
    if trial_run is not None:
        lifecycle.end_run(c, trial_run, STATE_OUTCOME[state])


STATE_OUTCOME = {TrialState.COMPLETE: Outcome.OK, TrialState.PRUNED: Outcome.PRUNED,
                 TrialState.FAIL: Outcome.FAILED}

