"""The search strategy. The coordinator enqueues one empty "ticket" per trial still to run (up
to the requested total, so a rerun with a larger total adds exactly the difference); a worker
that claims a ticket lets its sampler fill in the parameters, trains, and tells Optuna the
result. Each Optuna trial is one MLflow run nested under the search's parent run (with
seeds_per_trial > 1, the seeds' runs nest under the trial's run)."""

from __future__ import annotations

import contextlib
import json
import math
import zlib
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.text import Text

from core import tracking
from core.errors import ConfigError
from core.pretrain import sources_of
from core.runner import run_trial
from core.search.samplers import make_pruner, make_sampler
from core.search.spec import Search, check_space, checked_paths, experiment_for
from core.study import record
from core.study.coordinator import Study
from core.study.options import RunOptions
from core.study.queue import Job, Queue, lost
from core.study.spec import Base, study_base
from core.study.worker import claimed, job_tags
from core.trial import Trial, source_name

PER_EPOCH = ("loss", "accuracy", "val_loss", "val_accuracy")


def ticket(i: int) -> str:
    return f"ticket-{i}"


def settled(t: FrozenTrial) -> bool:
    """A trial that counts toward the total: it finished, was pruned, or failed on its own."""
    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and not lost(t))


class SearchStudy(Study):
    kind = "search"

    def __init__(self, s: Search, opts: RunOptions, trials: int | None = None):
        super().__init__(s, opts)
        self.s = s
        self.base = study_base(s, opts.sets, opts.smoke)
        exp = check_space(s, self.base)
        self.exp = exp
        self.sources = sources_of([exp])
        total = trials or s.n_trials
        if s.sampler == "grid":
            total = min(total, s.grid_size())
        self.target = total
        self.parent = ""

    def total_items(self) -> int:
        return self.target

    def experiments(self) -> list:
        return [self.exp]

    def header(self) -> str:
        return (f"[bold]{self.name}[/]: {self.plan.done} trial(s) in the study, running "
                f"{len(self.plan.keys)} more (sampler {self.s.sampler}, pruner "
                f"{self.s.pruner_spec.type}).")

    def may_have_work(self, queue: Queue) -> bool:
        return sum(settled(t) for t in queue.trials()) < self.target

    def prepare(self, queue: Queue, c, exp_id: str) -> None:
        s = self.s
        self.parent = record.role_run(
            c, exp_id, "search", {"ablab.study": s.name}, f"search {s.name}",
            tags={"optuna.study": self.queue_name, "ablab.metric": s.metric},
            params={"sampler": s.sampler, "pruner": s.pruner_spec.type, "metric": s.metric,
                    "direction": s.direction, "seeds_per_trial": s.seeds_per_trial,
                    "space": s.model_dump_json(include={"space"})})
        queue.study.set_user_attr("mlflow_parent_run_id", self.parent)

    def meta(self) -> dict[str, Any]:
        src = next(iter(self.sources.values()), None)
        return {"spec": self.s.model_dump(mode="json"), "raw": self.base.raw,
                "explicit": list(self.base.explicit), "source": self.base.source,
                "parent_run_id": self.parent,
                "source_hash": src.hash if src else None,
                "weights_uri": self.uris.get(src.name) if src else None}

    def pending(self, queue: Queue, c, exp_id: str, at_start: bool) -> dict[str, dict]:
        """Tickets up to the target that have no settled trial. Points a person enqueued
        with Optuna's `enqueue_trial` are adopted as tickets, so they count toward it."""
        trials = queue.trials()
        keys = {t.user_attrs.get("key") for t in trials}
        free = (ticket(i) for i in range(10 ** 9) if ticket(i) not in keys)
        for t in trials:
            if t.state == TrialState.WAITING and not t.user_attrs.get("key"):
                queue.storage.set_trial_user_attr(queue.trial_id(t), "key", next(free))
        trials = queue.trials()
        done = {t.user_attrs.get("key") for t in trials if settled(t)}
        legacy = sum(1 for t in trials if settled(t) and not t.user_attrs.get("key"))
        todo = {}
        for i in range(self.target):
            k = ticket(i)
            if k in done:
                continue
            if legacy:  # trials of an older ablab, without tickets
                legacy -= 1
                continue
            todo[k] = {}
        return todo

    def retry_params(self, lost_attempts: list[FrozenTrial]) -> dict[str, Any] | None:
        """A lost trial is retried at the point it had sampled."""
        return dict(lost_attempts[-1].params) if lost_attempts else None

    def table(self, queue: Queue) -> Text:
        done = queue.trials((TrialState.COMPLETE,))
        pruned = len(queue.trials((TrialState.PRUNED,)))
        if not done:
            return Text(f"pruned {pruned}")
        pick = max if self.s.direction == "maximize" else min
        best = pick(done, key=lambda t: t.value)
        return Text(f"pruned {pruned}, best {self.s.metric}={best.value:.4f} "
                    f"(trial {best.number})")

    def summarize(self, interrupted: bool) -> dict:
        from core.search.report import finalize

        c = tracking.client(self.tracking_uri)
        exp_id = tracking.get_or_create_experiment(c, self.name)
        queue = Queue(self.storage, self.queue_name, create=False)
        summary = finalize(self.s, queue.study, self.base, c, exp_id, self.console)
        summary["interrupted"] = interrupted
        return summary


# ----------------------------------------------------------------------------- the worker


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
        pruned = False

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(key)
            if value is None or not math.isfinite(value):
                return
            trial.report(float(value), epoch)
            if trial.should_prune():
                Prune.pruned = True
                self.model.stop_training = True

    return Prune()


def trial_value(metric: str, res) -> float | None:
    if metric in res.metrics:
        return res.metrics[metric]
    hist = res.history.get(metric)
    return hist[-1] if hist else None


class SearchHandler:
    """Worker side: the sampler fills in a claimed ticket; train; tell Optuna."""

    def __init__(self, queue: Queue, c, meta: dict[str, Any]):
        self.s = Search.model_validate(meta["spec"])
        self.base = Base(meta["raw"], tuple(meta["explicit"]), meta["source"])
        self.meta, self.c, self.queue = meta, c, queue
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

    def run(self, job: Job) -> str:
        trial = optuna.Trial(self.study, job.trial_id)
        earlier = self._ran_before(job)
        if earlier is not None:  # its result reached MLflow, but its worker stopped first
            state, value = earlier
            self.queue.storage.set_trial_user_attr(job.trial_id, "outcome", "ok")
            self._tell(trial, state=state, values=value)
            return "skipped"
        record.close_lost_attempts(self.c, tracking.get_or_create_experiment(
            self.c, self.s.name), {"ablab.ticket": job.attrs["key"]}, job.number)
        with claimed(self.queue, job):
            try:
                value = self.objective(trial, job)
            except optuna.TrialPruned:
                self._tell(trial, state=TrialState.PRUNED)
                return "pruned"
            except (RuntimeError, ConfigError) as err:
                self.queue.storage.set_trial_user_attr(job.trial_id, "outcome", "failed")
                self.queue.storage.set_trial_user_attr(job.trial_id, "error", str(err)[:2000])
                self._tell(trial, state=TrialState.FAIL)
                return "failed"
        self.queue.storage.set_trial_user_attr(job.trial_id, "outcome", "ok")
        self._tell(trial, values=value)
        return "ok"

    def _ran_before(self, job: Job) -> tuple[TrialState, float | None] | None:
        """A finished MLflow run of this ticket from a lost attempt: (state, value)."""
        exp_id = tracking.get_or_create_experiment(self.c, self.s.name)
        key = record.quote(str(job.attrs.get("key", "")))
        runs = tracking.search(self.c, exp_id, f"tags.`ablab.ticket` = '{key}' and "
                               "attributes.status = 'FINISHED' and "
                               "tags.`optuna.state` != 'FAIL'", max_results=10)
        for r in runs:
            if r.data.tags.get("optuna.state") == "PRUNED":
                return TrialState.PRUNED, None
            value = r.data.metrics.get(f"objective_{self.s.metric}")
            if value is not None:
                return TrialState.COMPLETE, value
        return None

    def _tell(self, trial: optuna.Trial, **kw: Any) -> None:
        # GridSampler asks to stop the study once the grid is covered; outside Optuna's own
        # optimize loop that is a RuntimeError after the state was stored. The coordinator
        # caps a grid search at the grid's size instead.
        with contextlib.suppress(RuntimeError):
            self.study.tell(trial, **kw)

    def objective(self, trial: optuna.Trial, job: Job) -> float:
        s, c = self.s, self.c
        params = {k: p.suggest(trial, k) for k, p in s.space.items()}
        exp = experiment_for(self.base, params, f"search {s.name}, trial {trial.number}",
                             self.checked)
        parent = self.meta["parent_run_id"]
        base_tags = {**job_tags(job, s.name), "optuna.study": self.queue.name,
                     "optuna.params": json.dumps(params), "ablab.ticket": job.attrs["key"]}
        exp_id = tracking.get_or_create_experiment(c, s.name)
        trial_run = None
        if s.seeds_per_trial > 1:  # one run for the trial, its seeds nested under it
            trial_run = c.create_run(exp_id, run_name=f"trial {trial.number}", tags={
                **base_tags, "ablab.role": "trial", "mlflow.parentRunId": parent})
            tracking.log_params(c, trial_run.info.run_id, {**exp.flat(), **_p(params)})
            parent = trial_run.info.run_id
        weights_uri = self.meta["weights_uri"] if source_name(exp.model.weights) else None
        values, runs = [], []
        for i in range(s.seeds_per_trial):
            cb = pruning_callback(trial, self.prune_key) if i == 0 else None
            t = Trial.new(exp, s.seed + i, s.name, source_hash=self.meta["source_hash"],
                          variant=f"trial {trial.number}", parent_run_id=parent,
                          weights_uri=weights_uri,
                          tags={**base_tags, "ablab.role": "trial" if trial_run is None
                                else "seed"})
            res = run_trial(t, c=c, cache=self.cache, callbacks=[cb] if cb else [])
            runs.append(res.run_id)
            if trial_run is None:
                tracking.log_params(c, res.run_id, _p(params))
            if res.status != "FINISHED":
                _mark(c, runs, trial_run, "FAIL")
                raise RuntimeError(f"trial {trial.number} failed: {res.error}")
            if cb is not None and type(cb).pruned:
                _mark(c, runs, trial_run, "PRUNED")
                raise optuna.TrialPruned(f"pruned at epoch {res.metrics.get('epochs_run')}")
            value = trial_value(s.metric, res)
            if value is None or not math.isfinite(value):
                _mark(c, runs, trial_run, "FAIL")
                raise RuntimeError(f"trial {trial.number}: no finite {s.metric} "
                                   f"({res.outcome})")
            values.append(value)
        objective_value = float(sum(values) / len(values))
        _mark(c, runs, trial_run, "COMPLETE", objective_value, s.metric)
        return objective_value


def _p(params: dict[str, Any]) -> dict[str, Any]:
    return {f"optuna.{k}": v for k, v in params.items()}


def _mark(c, runs: list[str], trial_run, state: str, value: float | None = None,
          metric: str = "") -> None:
    """The objective first, then the state tags: a run tagged COMPLETE always carries its
    objective, which is how a retried ticket finds a result its worker did not tell."""
    target = trial_run.info.run_id if trial_run is not None else runs[0]
    if value is not None:
        tracking.log_metrics(c, target, {f"objective_{metric}": value})
    for rid in runs + ([trial_run.info.run_id] if trial_run else []):
        tags = {"optuna.state": state}
        if state == "PRUNED":
            tags["ablab.outcome"] = "pruned"
        tracking.set_tags(c, rid, tags)
    if trial_run is not None:
        c.set_terminated(trial_run.info.run_id, "FINISHED" if state != "FAIL" else "FAILED")
